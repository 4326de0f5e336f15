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
    /// `major:minor` of the mounted file system.
    device: String,
    /// The directory of that file system mounted here (not `/` for a bind).
    root: PathBuf,
    point: PathBuf,
    fs_type: String,
    /// The file system's own options (`lowerdir=…,upperdir=…` for an overlay).
    super_options: String,
}

/// Reads `/proc/self/mountinfo`.
fn table() -> io::Result<Vec<Entry>> {
    Ok(parse(&std::fs::read("/proc/self/mountinfo")?))
}

fn parse(text: &[u8]) -> Vec<Entry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
            let mut fields = line.split(|&b| b == b' ');
            let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let parent = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let device = text(fields.next()?);
            let root = unescape(fields.next()?);
            let point = unescape(fields.next()?);
            // Optional fields end at " - ", then type, source and super options.
            let mut rest = fields.skip_while(|f| *f != b"-").skip(1);
            let fs_type = text(rest.next().unwrap_or_default());
            let super_options = text(rest.nth(1).unwrap_or_default());
            Some(Entry {
                id,
                parent,
                device,
                root,
                point,
                fs_type,
                super_options,
            })
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

/// Where `spec` is mounted now, in this process's mount namespace: overlays with its upper
/// directory (or, read-only, its lower directories), binds of its source directory.
pub(crate) fn points_of(spec: &crate::MountSpec) -> io::Result<Vec<PathBuf>> {
    let bind_source = if spec.fs_type == "bind" {
        let stat = rustix::fs::stat(spec.source.as_str())?;
        let device = rustix::fs::Dev::from(stat.st_dev);
        Some(format!(
            "{}:{}",
            rustix::fs::major(device),
            rustix::fs::minor(device)
        ))
    } else {
        None
    };
    Ok(points_in(&table()?, spec, bind_source.as_deref()))
}

/// Where overlays that name `dir` among their layers are mounted, in this process's mount
/// namespace (their options name every layer by its path).
pub(crate) fn overlays_using(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(overlays_in(&table()?, dir))
}

/// Overlays of `table` whose layer options name `dir` (after `=`, `:` or `::`).
fn overlays_in(table: &[Entry], dir: &Path) -> Vec<PathBuf> {
    let dir = dir.to_string_lossy();
    table
        .iter()
        .filter(|e| e.fs_type == "overlay")
        .filter(|e| {
            e.super_options
                .split([',', '=', ':'])
                .any(|path| path == dir)
        })
        .map(|e| e.point.clone())
        .collect()
}

fn points_in(table: &[Entry], spec: &crate::MountSpec, bind_device: Option<&str>) -> Vec<PathBuf> {
    let key = |prefix: &str| spec.options.iter().find(|o| o.starts_with(prefix)).cloned();
    let overlay_key = key("upperdir=").or_else(|| key("lowerdir="));
    table
        .iter()
        .filter(|e| match (&overlay_key, bind_device) {
            (_, Some(device)) => {
                // A bind shows the directory it binds, relative to its file system's root.
                e.device == device
                    && e.root != Path::new("/")
                    && Path::new(&spec.source)
                        .ends_with(e.root.strip_prefix("/").unwrap_or(&e.root))
            }
            (Some(key), None) => {
                e.fs_type == "overlay" && e.super_options.split(',').any(|o| o == key)
            }
            (None, None) => false,
        })
        .map(|e| e.point.clone())
        .collect()
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

    #[test]
    fn overlays_are_found_by_any_layer() {
        let table = parse(
            b"\
27 1 254:0 / / rw - ext4 /dev/vda rw
50 27 0:40 / /mnt/a rw - overlay overlay rw,lowerdir=/l/1:/l/2::/objects,metacopy=on
51 27 0:41 / /mnt/b rw - overlay overlay rw,lowerdir+=/l/1,datadir+=/objects
52 27 0:42 / /mnt/c rw - overlay overlay rw,lowerdir=/objects-2,upperdir=/u,workdir=/w
53 27 254:0 /objects /mnt/d rw - ext4 /dev/vda rw
",
        );
        assert_eq!(
            overlays_in(&table, Path::new("/objects")),
            [PathBuf::from("/mnt/a"), PathBuf::from("/mnt/b")]
        );
        assert_eq!(
            overlays_in(&table, Path::new("/l/2")),
            [PathBuf::from("/mnt/a")]
        );
        assert!(overlays_in(&table, Path::new("/l")).is_empty());
    }

    #[test]
    fn a_spec_is_found_where_it_is_mounted() {
        let table = parse(b"\
27 1 254:0 / / rw - ext4 /dev/vda rw
50 27 0:40 / /mnt/a rw shared:9 - overlay overlay rw,lowerdir=/s/1/fs,upperdir=/s/2/fs,workdir=/s/2/work
51 27 254:0 /s/3/fs /mnt/b rw - ext4 /dev/vda rw
");
        assert_eq!(table[1].fs_type, "overlay");
        let overlay = crate::MountSpec {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            options: vec!["lowerdir=/s/1/fs".into(), "upperdir=/s/2/fs".into()],
        };
        assert_eq!(points_in(&table, &overlay, None), [PathBuf::from("/mnt/a")]);
        let bind = crate::MountSpec {
            fs_type: "bind".into(),
            source: "/s/3/fs".into(),
            options: vec!["rbind".into()],
        };
        assert_eq!(
            points_in(&table, &bind, Some("254:0")),
            [PathBuf::from("/mnt/b")]
        );
        let other = crate::MountSpec {
            source: "/s/4/fs".into(),
            ..bind
        };
        assert!(points_in(&table, &other, Some("254:0")).is_empty());
    }
}
