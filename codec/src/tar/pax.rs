//! The records of a PAX extended header (`"<len> <key>=<value>\n"`), split by their lengths.
//!
//! Never split at newlines (as the `tar` crate does): xattr values are binary, and a file
//! capability may hold a `\n` byte.
//!
//! ```
//! let records: Vec<_> = strata_codec::tar::pax::records(b"12 path=abc\n25 SCHILY.xattr.user.a=\n\n")
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(records, [(&b"path"[..], &b"abc"[..]), (&b"SCHILY.xattr.user.a"[..], &b"\n"[..])]);
//! ```

use super::Time;

/// The records of the PAX header `data`, in order, as `(key, value)`; an error (what is
/// wrong) ends the iteration.
pub fn records(data: &[u8]) -> Records<'_> {
    Records { data }
}

/// Iterator of [`records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        match split_record(self.data) {
            Ok((key, value, len)) => {
                self.data = &self.data[len..];
                Some(Ok((key, value)))
            }
            Err(reason) => {
                self.data = &[];
                Some(Err(reason))
            }
        }
    }
}

/// The first record of `data`: its key, its value and its length.
fn split_record(data: &[u8]) -> Result<(&[u8], &[u8], usize), &'static str> {
    let space = data
        .iter()
        .position(|&b| b == b' ')
        .ok_or("PAX record without a length")?;
    let len: usize = std::str::from_utf8(&data[..space])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("PAX record length is not a number")?;
    if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
        return Err("PAX record length out of range");
    }
    let record = &data[space + 1..len - 1];
    let eq = record
        .iter()
        .position(|&b| b == b'=')
        .ok_or("PAX record without '='")?;
    Ok((&record[..eq], &record[eq + 1..], len))
}

/// Owned `(key, value)` pairs of one header.
pub(super) type Owned = Vec<(Vec<u8>, Vec<u8>)>;

/// The records of `data`, owned, appended to `out`.
pub(super) fn parse_into(data: &[u8], out: &mut Owned) -> Result<(), &'static str> {
    for record in records(data) {
        let (key, value) = record?;
        out.push((key.to_vec(), value.to_vec()));
    }
    Ok(())
}

/// A decimal PAX number (`size`, `uid`, `gid`).
pub(super) fn decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A PAX time: seconds, maybe negative, maybe with a fraction (nanoseconds kept).
pub(super) fn time(v: &[u8]) -> Option<Time> {
    let text = std::str::from_utf8(v).ok()?.trim();
    let (sec, frac) = text.split_once('.').unwrap_or((text, ""));
    let sec: i64 = sec.parse().ok()?;
    let digits = &frac.as_bytes()[..frac.len().min(9)];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nsec = 0u32;
    for i in 0..9 {
        nsec = nsec * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(Time { sec, nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_may_hold_newlines() {
        let mut out = Owned::new();
        parse_into(b"25 SCHILY.xattr.user.a=\n\n12 path=abc\n", &mut out).unwrap();
        assert_eq!(
            out,
            [
                (b"SCHILY.xattr.user.a".to_vec(), b"\n".to_vec()),
                (b"path".to_vec(), b"abc".to_vec())
            ]
        );
        assert!(parse_into(b"99 path=abc\n", &mut Owned::new()).is_err());
    }

    #[test]
    fn fractional_and_negative_times() {
        let t = |sec, nsec| Some(Time { sec, nsec });
        assert_eq!(time(b"1700000000.5"), t(1_700_000_000, 500_000_000));
        assert_eq!(time(b"12"), t(12, 0));
        assert_eq!(time(b"-3.25"), t(-3, 250_000_000));
        assert_eq!(time(b"1.1234567891"), t(1, 123_456_789));
        assert_eq!(time(b"1.x"), None);
    }
}
