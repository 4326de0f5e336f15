//! The mount table of this process (`/proc/self/mountinfo`), for unmounting a whole tree.
//!
//! # References
//! - [`proc_pid_mountinfo(5)`](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html)

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of the table: a mount, its parent, and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: u64,
    parent: u64,
    point: PathBuf,
}

/// Reads `/proc/self/mountinfo`.
fn table() -> io::Result<Vec<Entry>> {
    Ok(parse(&std::fs::read("/proc/self/mountinfo")?))
}

fn parse(text: &[u8]) -> Vec<Entry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let parent = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let point = unescape(fields.nth(2)?);
            Some(Entry { id, parent, point })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escapes of space, tab, newline and backslash.
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let code = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match code {
            Some(digits) if field[i] == b'\\' => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')),
                );
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mount points of every mount below the top mount at `target`, deepest first (the order to
/// unmount them in); empty when nothing is mounted below it. Mounts hidden under the top mount
/// are not its descendants and are left alone.
pub(crate) fn submounts(target: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(submounts_in(&table()?, target))
}

fn submounts_in(table: &[Entry], target: &Path) -> Vec<PathBuf> {
    let at_target: Vec<&Entry> = table.iter().filter(|e| e.point == target).collect();
    // The top of a stack at `target` is the one no other mount at `target` sits on.
    let Some(top) = at_target
        .iter()
        .find(|e| !at_target.iter().any(|other| other.parent == e.id))
    else {
        return Vec::new();
    };
    let mut found: Vec<(usize, &Entry)> = Vec::new();
    let mut frontier = vec![(0usize, top.id)];
    while let Some((depth, id)) = frontier.pop() {
        for child in table.iter().filter(|e| e.parent == id && e.id != id) {
            found.push((depth + 1, child));
            frontier.push((depth + 1, child.id));
        }
    }
    found.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    found.into_iter().map(|(_, e)| e.point.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\
27 1 254:0 / / rw - ext4 /dev/vda rw
40 27 254:0 /t /tmp/t rw - ext4 /dev/vda rw
41 40 254:0 /t /tmp/t rw - ext4 /dev/vda rw
42 41 0:5 / /tmp/t/proc rw - proc proc rw
43 42 0:6 / /tmp/t/proc/sys\\040x rw - tmpfs t rw
44 40 0:7 / /tmp/t/hidden rw - tmpfs t rw
45 27 0:8 / /tmp/other rw - tmpfs t rw
";

    #[test]
    fn submounts_of_the_top_mount_deepest_first() {
        let table = parse(SAMPLE);
        assert_eq!(table.len(), 7);
        assert_eq!(table[4].point, Path::new("/tmp/t/proc/sys x"));
        assert_eq!(
            submounts_in(&table, Path::new("/tmp/t")),
            [
                PathBuf::from("/tmp/t/proc/sys x"),
                PathBuf::from("/tmp/t/proc")
            ]
        );
        assert!(submounts_in(&table, Path::new("/tmp/other")).is_empty());
        assert!(submounts_in(&table, Path::new("/nowhere")).is_empty());
    }
}
