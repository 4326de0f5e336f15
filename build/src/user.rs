//! `USER` and `--chown` values as ids: numbers as they are, names looked up in the image's
//! `/etc/passwd` and `/etc/group`, read inside the rootfs.

use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use strata_diff::confined::Root;

use crate::error::{BuildError, Result};

/// The uid and gid of `spec` (`user`, `user:group`, numeric or names) in the rootfs at
/// `rootfs`; a user without a group gets its primary group (or 0 for an unknown uid).
pub fn resolve(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let bad = |reason: String| BuildError::User {
        user: spec.to_owned(),
        reason,
    };
    let passwd = read_etc(rootfs, "passwd");
    let entry = |name: &str, by_id: bool, table: &str| -> Option<Vec<String>> {
        table
            .lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.len() > 2 && if by_id { f[2] == name } else { f[0] == name })
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (
            uid,
            entry(user, true, &passwd).and_then(|f| f.get(3)?.parse().ok()),
        ),
        Err(_) => {
            let fields = entry(user, false, &passwd)
                .ok_or_else(|| bad(format!("no user {user:?} in the image's /etc/passwd")))?;
            let uid = fields[2]
                .parse()
                .map_err(|_| bad(format!("bad uid in /etc/passwd: {}", fields[2])))?;
            (uid, fields.get(3).and_then(|g| g.parse().ok()))
        }
    };
    let gid = match group {
        None => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read_etc(rootfs, "group");
                let fields = entry(g, false, &groups)
                    .ok_or_else(|| bad(format!("no group {g:?} in the image's /etc/group")))?;
                fields[2]
                    .parse()
                    .map_err(|_| bad(format!("bad gid in /etc/group: {}", fields[2])))?
            }
        },
    };
    Ok((uid, gid))
}

/// `/etc/<name>` of the rootfs, or empty when it has none (or it is not a regular file).
fn read_etc(rootfs: &Path, name: &str) -> String {
    let read = || -> std::io::Result<String> {
        let etc = Root::open(rootfs)?.open_dir(Path::new("etc"))?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&etc, name, flags, Mode::empty())?;
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text)?;
        Ok(text)
    };
    read().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve_in_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = |s: &str| resolve(dir.path(), s);
        assert_eq!(r("app").unwrap(), (1000, 1001));
        assert_eq!(r("app:staff").unwrap(), (1000, 50));
        assert_eq!(r("1000").unwrap(), (1000, 1001));
        assert_eq!(r("7:8").unwrap(), (7, 8));
        assert_eq!(r("42").unwrap(), (42, 0));
        assert!(r("nobody").is_err());
        assert!(r("app:nogroup").is_err());
    }
}
