//! The layer writer: bytes, names, whiteouts, hardlinks, PAX, digests.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};
use strata_diff::{Compression, ContentCheck, Threads, WriteError, WriteOptions};

use crate::support::{both, can_mount, set_mtime};

/// (path, type flag, link name, size, PAX records) of every entry of a plain tar.
type Listed = Vec<(Vec<u8>, char, Vec<u8>, u64, Vec<(String, Vec<u8>)>)>;

fn list(tar_bytes: &[u8]) -> Listed {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let pax = entry
            .pax_extensions()
            .unwrap()
            .map(|exts| {
                exts.map(|e| {
                    let e = e.unwrap();
                    (e.key().unwrap().to_string(), e.value_bytes().to_vec())
                })
                .collect()
            })
            .unwrap_or_default();
        out.push((
            entry.path_bytes().into_owned(),
            char::from(entry.header().entry_type().as_byte()),
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default(),
            entry.size(),
            pax,
        ));
    }
    out
}

fn write(
    set: &strata_diff::ChangeSet,
    options: &WriteOptions,
) -> (Vec<u8>, strata_diff::LayerDigests) {
    let mut out = Vec::new();
    let digests = strata_diff::write_layer(set, options, &mut out).unwrap();
    (out, digests)
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn parents_once_whiteouts_hardlinks_and_deterministic_bytes() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (o, n) = (old.path(), new.path());
    for root in [o, n] {
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/lib/a"), "a").unwrap();
        fs::write(root.join("usr/lib/b"), "b").unwrap();
        fs::write(root.join("usr/gone"), "g").unwrap();
        set_mtime(&root.join("usr/lib/b"), 1000, 1);
        set_mtime(&root.join("usr/gone"), 1000, 1);
    }
    fs::write(n.join("usr/lib/a"), "A2").unwrap();
    fs::remove_file(n.join("usr/gone")).unwrap();
    fs::hard_link(n.join("usr/lib/a"), n.join("usr/lib/a-link")).unwrap();
    for root in [o, n] {
        set_mtime(&root.join("usr/lib"), 3000, 1);
        set_mtime(&root.join("usr"), 3000, 1);
    }
    let set = both(o, n, ContentCheck::Ambiguous);
    let (bytes, digests) = write(&set, &WriteOptions::new(Compression::None));
    let names: Vec<(String, char, String)> = list(&bytes)
        .into_iter()
        .map(|(p, t, l, _, _)| {
            (
                String::from_utf8(p).unwrap(),
                t,
                String::from_utf8(l).unwrap(),
            )
        })
        .collect();
    // usr and usr/lib did not change: each is written once, as the parent of the first change.
    assert_eq!(
        names,
        [
            ("usr/".into(), '5', "".into()),
            ("usr/.wh.gone".into(), '0', "".into()),
            ("usr/lib/".into(), '5', "".into()),
            ("usr/lib/a".into(), '0', "".into()),
            ("usr/lib/a-link".into(), '1', "usr/lib/a".into()),
        ]
    );
    assert_eq!(digests.diff_id, digests.digest);
    assert_eq!(digests.digest, sha(&bytes));
    assert_eq!(digests.size, bytes.len() as u64);
    // Same input, same bytes; and the compressed forms carry the same diff_id.
    assert_eq!(write(&set, &WriteOptions::new(Compression::None)).0, bytes);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let (blob, d) = write(&set, &WriteOptions::new(compression));
        assert_eq!(d.diff_id, digests.diff_id, "{compression:?}");
        assert_eq!(d.digest, sha(&blob));
        assert_eq!(write(&set, &WriteOptions::new(compression)).0, blob);
        let mut plain = Vec::new();
        match compression {
            Compression::Gzip => flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut plain),
            _ => zstd::Decoder::new(&blob[..])
                .unwrap()
                .read_to_end(&mut plain),
        }
        .unwrap();
        assert_eq!(plain, bytes);
    }
    // Whiteouts sit at the epoch with no owner.
    let mut archive = tar::Archive::new(&bytes[..]);
    let wh = archive.entries().unwrap().nth(1).unwrap().unwrap();
    assert_eq!(wh.header().mtime().unwrap(), 0);
    assert_eq!(wh.header().username_bytes(), Some(&b""[..]));
}

#[test]
fn pax_for_long_and_non_utf8_names_big_ids_and_xattrs() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n = new.path();
    let long_dir = "d".repeat(150);
    let long_name = "n".repeat(120);
    fs::create_dir(n.join(&long_dir)).unwrap();
    fs::write(n.join(&long_dir).join(&long_name), "long").unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs::write(n.join(odd), "latin1").unwrap();
    fs::write(n.join("attrs"), "x").unwrap();
    strata_cow::xattr::set(&n.join("attrs"), b"user.binary", b"\x00\x01\xff").unwrap();
    std::os::unix::fs::symlink("t".repeat(140), n.join("longlink")).unwrap();
    let root = can_mount();
    if root {
        rustix::fs::chownat(
            rustix::fs::CWD,
            n.join("attrs"),
            Some(rustix::fs::Uid::from_raw(3_000_000)),
            Some(rustix::fs::Gid::from_raw(5)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        strata_cow::xattr::set(&n.join("attrs"), b"trusted.overlay.opaque", b"y").unwrap();
        strata_cow::xattr::set(&n.join("attrs"), b"trusted.other", b"kept").unwrap();
    }
    let set = both(old.path(), n, ContentCheck::Ambiguous);
    let (bytes, _) = write(&set, &WriteOptions::new(Compression::None));
    let listed = list(&bytes);
    let find = |path: &[u8]| {
        listed
            .iter()
            .find(|e| e.0 == path)
            .unwrap_or_else(|| panic!("{:?} missing", String::from_utf8_lossy(path)))
    };
    let attrs = find(b"attrs");
    assert!(
        attrs
            .4
            .contains(&("SCHILY.xattr.user.binary".into(), b"\x00\x01\xff".to_vec()))
    );
    assert!(
        !attrs.4.iter().any(|(k, _)| k.contains("overlay")),
        "{:?}",
        attrs.4
    );
    if root {
        assert!(attrs.4.contains(&("uid".into(), b"3000000".to_vec())));
        assert!(
            attrs
                .4
                .contains(&("SCHILY.xattr.trusted.other".into(), b"kept".to_vec()))
        );
    }
    let long = format!("{long_dir}/{long_name}");
    let entry = find(long.as_bytes());
    assert!(entry.4.iter().any(|(k, _)| k == "path"));
    let odd_entry = find(b"caf\xe9");
    assert!(
        odd_entry
            .4
            .iter()
            .any(|(k, v)| k == "path" && v == b"caf\xe9")
    );
    assert_eq!(find(b"longlink").2, "t".repeat(140).as_bytes());
    // GNU tar reads it back, names and all.
    let listing = std::process::Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(listing.status.success());
    assert!(String::from_utf8_lossy(&listing.stdout).contains(&long));
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fs::write(new.path().join("late"), "x").unwrap();
    fs::write(new.path().join("early"), "x").unwrap();
    set_mtime(&new.path().join("late"), 2_000_000_000, 0);
    set_mtime(&new.path().join("early"), 1_000, 0);
    let set = both(old.path(), new.path(), ContentCheck::Ambiguous);
    let options = WriteOptions::new(Compression::None).with_source_date_epoch(Some(1_500_000_000));
    let (bytes, _) = write(&set, &options);
    let mut archive = tar::Archive::new(&bytes[..]);
    let times: Vec<u64> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().mtime().unwrap())
        .collect();
    assert_eq!(times, [1_000, 1_500_000_000]);
}

#[test]
fn reserved_whiteout_names_in_the_source_are_refused() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fs::write(new.path().join(".wh.sneaky"), "x").unwrap();
    let set = both(old.path(), new.path(), ContentCheck::Ambiguous);
    let err =
        strata_diff::write_layer(&set, &WriteOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, WriteError::ReservedName { path } if path == &new.path().join(".wh.sneaky")),
        "{err}"
    );
}

#[test]
fn a_file_that_shrinks_while_written_is_an_error() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fs::write(new.path().join("f"), "0123456789").unwrap();
    let set = both(old.path(), new.path(), ContentCheck::Ambiguous);
    fs::write(new.path().join("f"), "01").unwrap();
    let err =
        strata_diff::write_layer(&set, &WriteOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, WriteError::Changed { expected: 10, .. }),
        "{err}"
    );
}

#[test]
fn overlapped_and_sequential_writers_give_the_same_bytes_and_output_errors() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Sizes around the hand-over chunk (128 KiB) and the read chunk.
    for (i, size) in [0usize, 1, 511, 65_536, 131_071, 131_072, 131_073, 700_001]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
        fs::write(new.path().join(format!("f{i}")), data).unwrap();
    }
    let set = both(old.path(), new.path(), ContentCheck::Ambiguous);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let with = |threads| WriteOptions::new(compression).with_threads(threads);
        let seq = write(&set, &with(Threads::Sequential));
        assert_eq!(write(&set, &with(Threads::Rayon)), seq, "{compression:?}");
    }

    /// Accepts `left` bytes, then fails like a full disk.
    struct Full {
        left: usize,
    }
    impl io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    for threads in [Threads::Sequential, Threads::Rayon] {
        let options = WriteOptions::new(Compression::None).with_threads(threads);
        match strata_diff::write_layer(&set, &options, Full { left: 300_000 }) {
            Err(WriteError::Output(e)) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
            other => panic!("{threads:?}: {other:?}"),
        }
    }
}
