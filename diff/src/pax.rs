//! The records of a PAX extended header (`"<len> <key>=<value>\n"`), split by their lengths.
//!
//! Never split at newlines (as the `tar` crate does): xattr values are binary, and a file
//! capability may hold a `\n` byte. Both tar readers of Strata (the applier's, and the layer
//! store's splitter) read PAX records through this one parser.
//!
//! ```
//! let records: Vec<_> = strata_diff::pax::records(b"12 path=abc\n25 SCHILY.xattr.user.a=\n\n")
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(records, [(&b"path"[..], &b"abc"[..]), (&b"SCHILY.xattr.user.a"[..], &b"\n"[..])]);
//! ```

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
        let record = split_record(self.data);
        match record {
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
