//! Text output as docker prints it: tables whose columns fit their values, human sizes,
//! relative and RFC 3339 dates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Parses an RFC 3339 time (`2024-01-02T03:04:05.678Z`, or with a `+01:00` offset), as image
/// configs carry in `created`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        let digits = &frac[..len.min(9)];
        nanos = format!("{digits:0<9}").parse().ok()?;
        rest = &frac[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

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
