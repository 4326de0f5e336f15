//! Text output as docker prints it: tables whose columns fit their values, human sizes,
//! relative and RFC 3339 dates.

use std::time::SystemTime;

/// Rows under headers, each column as wide as its widest value, three spaces apart.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row, one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, without a trailing newline; the last column is not padded.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = width - cell.chars().count() + 3;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out
        };
        let mut lines = vec![line(self.headers.clone())];
        lines.extend(
            self.rows
                .iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        );
        lines.join("\n")
    }
}

/// The first 12 hex digits of an id, as docker shows ids.
pub fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// `bytes` in decimal units, as docker prints sizes (`1.2MB`).
pub fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        // Three significant digits, as docker's go-units does.
        let digits = if value < 10.0 {
            2
        } else if value < 100.0 {
            1
        } else {
            0
        };
        format!("{value:.digits$}{}", units[unit])
    }
}

/// How long before `now` `then` was, in docker's words (`3 hours ago`).
pub fn ago(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or_default().as_secs();
    let (minute, hour, day) = (60, 3600, 86_400);
    let text = match secs {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        s if s < minute => format!("{s} seconds"),
        s if s < 2 * minute => "About a minute".to_owned(),
        s if s < hour => format!("{} minutes", s / minute),
        s if s < 2 * hour => "About an hour".to_owned(),
        s if s < 2 * day => format!("{} hours", s / hour),
        s if s < 14 * day => format!("{} days", s / day),
        s if s < 60 * day => format!("{} weeks", s / (7 * day)),
        s if s < 730 * day => format!("{} months", s / (30 * day)),
        s => format!("{} years", s / (365 * day)),
    };
    format!("{text} ago")
}

/// `t` as RFC 3339 in UTC with nanoseconds (`2026-12-05T03:37:43.123005522Z`).
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Parses an RFC 3339 time (`2024-01-02T03:04:05.678Z`, or with a `+01:00` offset), as image
/// configs carry in `created`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn columns_fit_their_widest_value() {
        let mut t = Table::new(&["KEY", "KIND"]);
        t.row(vec!["a".repeat(80), "active".into()]);
        t.row(vec!["b".into(), "view".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("KEY{}KIND", " ".repeat(80)));
        assert_eq!(lines[1], format!("{}   active", "a".repeat(80)));
        assert_eq!(lines[2], format!("b{}view", " ".repeat(82)));
    }

    #[test]
    fn sizes_and_dates_read_as_docker_prints_them() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(1_234_567), "1.23MB");
        assert_eq!(human(45_600_000), "45.6MB");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let before = |s| now - Duration::from_secs(s);
        assert_eq!(ago(before(0), now), "Less than a second ago");
        assert_eq!(ago(before(90), now), "About a minute ago");
        assert_eq!(ago(before(3 * 3600), now), "3 hours ago");
        assert_eq!(ago(before(3 * 86_400), now), "3 days ago");
        let t = parse_rfc3339("2026-12-05T03:37:43.123005522Z").expect("parses");
        assert_eq!(rfc3339(t), "2026-12-05T03:37:43.123005522Z");
        let offset = parse_rfc3339("2026-12-05T04:37:43+01:00").expect("parses");
        assert_eq!(rfc3339(offset), "2026-12-05T03:37:43.000000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
