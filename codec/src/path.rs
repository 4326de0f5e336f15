//! Entry paths of a layer, cleaned the way every OCI consumer must: relative to the layer root,
//! never leaving it.

/// `path` as a clean relative path: a leading `/`, empty and `.` components dropped (`./a//b/`
/// becomes `a/b`). The layer root itself is the empty path. `None` for a path that cannot be
/// confined to the layer: one with a `..` component (even one that would stay inside, as no
/// honest writer emits it) or a NUL byte (no file system takes it).
///
/// ```
/// use strata_codec::path::clean;
/// assert_eq!(clean(b"./usr//bin/").as_deref(), Some(&b"usr/bin"[..]));
/// assert_eq!(clean(b"/etc/passwd").as_deref(), Some(&b"etc/passwd"[..]));
/// assert_eq!(clean(b"./").as_deref(), Some(&b""[..]));
/// assert_eq!(clean(b"a/../../x"), None);
/// ```
pub fn clean(path: &[u8]) -> Option<Vec<u8>> {
    if path.contains(&0) {
        return None;
    }
    let mut out = Vec::with_capacity(path.len());
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            part => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Some(out)
}

/// The parent and final name of a clean path (`a/b/c` → `a/b`, `c`); the parent of a top-level
/// name is the empty path.
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => (&[], path),
    }
}
