//! The tar reader on tars written by the `tar` crate and by hand.

use std::io::Read;

use strata_codec::tar::{EntryType, LinkTarget, TarError, TarReader, Time, Whiteout};
use strata_codec::{Limit, Limits};

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(100);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn read_all(
    tar: &[u8],
    limits: Limits,
) -> Result<Vec<(strata_codec::tar::Header, Vec<u8>)>, TarError> {
    let mut reader = TarReader::new(tar, limits);
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        let mut contents = Vec::new();
        reader.read_to_end(&mut contents).unwrap();
        out.push((entry, contents));
    }
    Ok(out)
}

#[test]
fn long_names_links_and_binary_xattrs_are_resolved() -> anyhow::Result<()> {
    let long = format!("{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut header(tar::EntryType::Directory, 0), "d", &[][..])?;
    // A file capability may hold a newline: PAX records are split by length.
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &b"\x01\n\x02"[..])])?;
    b.append_data(&mut header(tar::EntryType::Regular, 3), &long, &b"abc"[..])?;
    b.append_link(&mut header(tar::EntryType::Link, 0), "d/hard", &long)?;
    b.append_link(
        &mut header(tar::EntryType::Symlink, 0),
        "d/soft",
        "/etc/passwd",
    )?;
    b.append_data(
        &mut header(tar::EntryType::Regular, 0),
        "d/.wh.gone",
        &[][..],
    )?;
    b.append_data(
        &mut header(tar::EntryType::Regular, 0),
        "d/.wh..wh..opq",
        &[][..],
    )?;
    let entries = read_all(&b.into_inner()?, Limits::default())?;
    let paths: Vec<&[u8]> = entries.iter().map(|(e, _)| e.path.as_slice()).collect();
    assert_eq!(
        paths,
        [
            b"d".as_slice(),
            long.as_bytes(),
            b"d/hard",
            b"d/soft",
            b"d/.wh.gone",
            b"d/.wh..wh..opq"
        ]
    );
    let (file, contents) = &entries[1];
    assert_eq!(
        (file.kind.clone(), contents.as_slice()),
        (EntryType::File, &b"abc"[..])
    );
    assert_eq!((file.mode, file.uid, file.gid), (0o4755, 1000, 100));
    assert_eq!(
        file.mtime,
        Time {
            sec: 1_700_000_000,
            nsec: 0
        }
    );
    assert_eq!(
        file.xattrs,
        [(b"security.capability".to_vec(), b"\x01\n\x02".to_vec())]
    );
    assert_eq!(
        entries[2].0.kind,
        EntryType::Hardlink {
            target: long.clone().into_bytes(),
            held: LinkTarget::ThisLayer
        }
    );
    assert_eq!(
        entries[3].0.kind,
        EntryType::Symlink {
            target: b"/etc/passwd".to_vec()
        }
    );
    assert_eq!(
        entries[4].0.whiteout(),
        Some(Whiteout::Hides {
            parent: b"d",
            name: b"gone"
        })
    );
    assert_eq!(
        entries[5].0.whiteout(),
        Some(Whiteout::Opaque { dir: b"d" })
    );
    Ok(())
}

#[test]
fn a_global_header_applies_to_every_later_entry_and_is_counted_for_each() -> anyhow::Result<()> {
    let mut tar = strata_testkit::hostile::RawTar::new();
    tar.pax(&strata_testkit::hostile::pax_record("mtime", b"5.25"), true);
    tar.file("a", b"").file("b", b"");
    let layer = tar.finish();
    let entries = read_all(&layer, Limits::default())?;
    for (entry, _) in &entries {
        assert_eq!(
            entry.mtime,
            Time {
                sec: 5,
                nsec: 250_000_000
            }
        );
    }
    let tight = Limits::default().with_pax_bytes(1 << 20, 30);
    let Err(TarError::OverLimit { limit, .. }) = read_all(&layer, tight) else {
        panic!("the global header was counted once only");
    };
    assert_eq!(limit, Limit::PaxBytesPerLayer);
    Ok(())
}

#[test]
fn hostile_members_are_refused_by_name() {
    use strata_testkit::hostile::RawTar;
    let cases: [(&str, Vec<u8>); 6] = [
        ("dotdot", RawTar::new().file("../x", b"").finish()),
        (
            "below a symlink",
            RawTar::new()
                .symlink("l", "/etc")
                .file("l/passwd", b"")
                .finish(),
        ),
        (
            "link to a dir",
            RawTar::new().dir("d").hardlink("h", "d").finish(),
        ),
        ("link to itself", RawTar::new().hardlink("h", "h").finish()),
        ("empty whiteout", RawTar::new().file("d/.wh.", b"").finish()),
        (
            "root as a symlink",
            RawTar::new().symlink(".", "x").finish(),
        ),
    ];
    for (name, layer) in cases {
        let err = read_all(&layer, Limits::default()).map(drop).unwrap_err();
        let ok = match name {
            "dotdot" => matches!(err, TarError::UnsafePath { .. }),
            "below a symlink" => matches!(err, TarError::BelowNonDirectory { .. }),
            "link to a dir" | "link to itself" => matches!(err, TarError::DanglingHardlink { .. }),
            "empty whiteout" => matches!(err, TarError::InvalidWhiteout { .. }),
            _ => matches!(err, TarError::RootNotDirectory { .. }),
        };
        assert!(ok, "{name}: {err:?}");
    }
    // A link to a file of a layer below is the caller's to judge.
    let below = RawTar::new().hardlink("h", "lower/file").finish();
    let entries = read_all(&below, Limits::default()).unwrap();
    assert!(matches!(
        entries[0].0.kind,
        EntryType::Hardlink {
            held: LinkTarget::Below,
            ..
        }
    ));
}

#[test]
fn more_than_a_mebibyte_after_the_end_is_refused() {
    let mut layer = strata_testkit::hostile::RawTar::new()
        .file("f", b"x")
        .finish();
    // The trailer starts after the first zero block of the end marker.
    let trailer_start = layer.len() - 512;
    layer.resize(trailer_start + (1 << 20), 0);
    assert!(read_all(&layer, Limits::default()).is_ok());
    layer.push(0);
    assert!(matches!(
        read_all(&layer, Limits::default()),
        Err(TarError::TrailingData { .. })
    ));
}
