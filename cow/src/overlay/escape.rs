//! Escaping of paths in overlay's classic option string, as the kernel parses it: options split
//! at unescaped `,`, `lowerdir` at unescaped `:` (`::` before data-only lowers), and a backslash
//! makes the next byte literal in every path.
//!
//! # References
//! - `ovl_next_opt`, `ovl_parse_param_split_lowerdirs`, `ovl_unescape` in
//!   [fs/overlayfs/params.c](https://github.com/torvalds/linux/blob/master/fs/overlayfs/params.c)

use std::path::{Path, PathBuf};

use super::path_bytes;

/// Appends `path` to `out`, with `\`, `:` and `,` escaped by a backslash.
pub(crate) fn escape_path(out: &mut Vec<u8>, path: &Path) {
    for &b in path_bytes(path) {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Removes one level of backslash escapes.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Splits option data at unescaped commas, keeping escapes (as `ovl_next_opt` does).
pub(crate) fn split_options(data: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                word.push(c);
                word.extend(chars.next());
            }
            ',' => words.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    words.push(word);
    words.retain(|w| !w.is_empty());
    words
}

/// Splits a `lowerdir` value into regular and data-only lowers, unescaped; `None` for what the
/// kernel refuses: empty layers, `:::`, a trailing colon, a regular layer after a data-only one.
pub(crate) fn split_lowerdir(value: &str) -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut lowers, mut data) = (Vec::new(), Vec::new());
    let mut current = String::new();
    let mut in_data = false;
    let mut chars = value.chars().peekable();
    loop {
        match chars.next() {
            Some('\\') => current.push(chars.next()?),
            Some(c) if c != ':' => current.push(c),
            separator => {
                if current.is_empty() {
                    return None;
                }
                let dir = PathBuf::from(std::mem::take(&mut current));
                if in_data { &mut data } else { &mut lowers }.push(dir);
                if separator.is_none() {
                    return Some((lowers, data));
                }
                if chars.next_if_eq(&':').is_some() {
                    in_data = true;
                } else if in_data {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paths(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn lowerdir_with_data_layers() {
        let (l, d) = split_lowerdir("/a:/b::/c::/d").unwrap();
        assert_eq!(l, paths(&["/a", "/b"]));
        assert_eq!(d, paths(&["/c", "/d"]));
    }

    #[test]
    fn lowerdir_escapes() {
        let (l, d) = split_lowerdir(r"/a\:b:/c\,d:/e\\f").unwrap();
        assert_eq!(l, paths(&["/a:b", "/c,d", r"/e\f"]));
        assert!(d.is_empty());
    }

    #[test]
    fn lowerdir_refusals() {
        for bad in [
            "",
            "/a:",
            "/a::",
            "/a:::/b",
            "/a::/b:/c",
            ":/a",
            "/a::",
            r"/a\",
        ] {
            assert_eq!(split_lowerdir(bad), None, "{bad:?}");
        }
        assert_eq!(split_lowerdir(r"/a\:").unwrap().0, paths(&["/a:"]));
    }

    #[test]
    fn options_split_at_unescaped_commas() {
        assert_eq!(
            split_options(r"lowerdir=/a\,b:/c,upperdir=/u,index=off"),
            vec![r"lowerdir=/a\,b:/c", "upperdir=/u", "index=off"]
        );
    }

    proptest! {
        /// Arbitrary option text never panics the parsers, and what they accept is well formed.
        #[test]
        fn parsers_take_any_text(text in "([a-z:,\\\\]|\\PC){0,40}") {
            for word in split_options(&text) {
                prop_assert!(!word.is_empty());
                if let Some((lowers, data)) = split_lowerdir(&word) {
                    prop_assert!(!lowers.is_empty());
                    prop_assert!(lowers.iter().chain(&data).all(|p| !p.as_os_str().is_empty()));
                }
                let _ = unescape(&word);
            }
        }

        /// Any list of non-empty paths survives escape → join → split → unescape.
        #[test]
        fn lowerdir_round_trip(
            lowers in prop::collection::vec("[a-z:,\\\\/]{1,8}", 1..6),
            data in prop::collection::vec("[a-z:,\\\\/]{1,8}", 0..3),
        ) {
            let mut out = Vec::new();
            for (i, l) in lowers.iter().enumerate() {
                if i > 0 { out.push(b':'); }
                escape_path(&mut out, Path::new(l));
            }
            for d in &data {
                out.extend_from_slice(b"::");
                escape_path(&mut out, Path::new(d));
            }
            let text = String::from_utf8(out).unwrap();
            let words = split_options(&text);
            prop_assert_eq!(words.len(), 1);
            let (l, d) = split_lowerdir(&words[0]).unwrap();
            prop_assert_eq!(l, paths(&lowers.iter().map(String::as_str).collect::<Vec<_>>()));
            prop_assert_eq!(d, paths(&data.iter().map(String::as_str).collect::<Vec<_>>()));
        }
    }
}
