//! Overlay's on-disk conventions, checked against the kernel: metadata-only stubs over a data-only
//! lower, xwhiteouts, opaque markers in both namespaces.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use anyhow::Result;
use strata_cow::conventions::{self, Namespace, Opacity, Stub, Time, WhiteoutStyle};
use strata_cow::overlay::{MountApi, Overlay};
use strata_cow::xattr;

use crate::support::{Scratch, require_root};

const OBJECT: &[u8] = b"the object's bytes\n";

#[test]
fn stub_over_data_lower_shows_stub_metadata_and_object_bytes() -> Result<()> {
    require_root!();
    for api in [MountApi::New, MountApi::Legacy] {
        let s = Scratch::new()?;
        let objects = s.dir("objects")?;
        fs::create_dir(objects.join("ab"))?;
        let object = objects.join("ab/cdef");
        fs::write(&object, OBJECT)?;
        fs::set_permissions(&object, fs::Permissions::from_mode(0o444))?;
        let stubs = s.dir("stubs")?;
        fs::create_dir_all(stubs.join("usr/bin"))?;
        let stub_path = stubs.join("usr/bin/tool");
        let xattrs = [(b"user.note".to_vec(), b"from the stub".to_vec())];
        let mtime = Time {
            sec: 1_600_000_000,
            nsec: 123_456_789,
        };
        conventions::create_metacopy_stub(
            &stub_path,
            &Stub {
                size: OBJECT.len() as u64,
                mode: 0o4750,
                uid: 1234,
                gid: 5678,
                mtime,
                xattrs: &xattrs,
                redirect: b"/ab/cdef",
            },
        )?;
        assert!(conventions::is_metacopy(&stub_path, Namespace::Trusted)?);
        assert_eq!(
            conventions::redirect(&stub_path, Namespace::Trusted)?.as_deref(),
            Some(&b"/ab/cdef"[..])
        );
        // Sparse: no data extent at all (st_blocks may count an xattr block).
        let stub_file = fs::File::open(&stub_path)?;
        let data = rustix::fs::seek(&stub_file, rustix::fs::SeekFrom::Data(0));
        assert_eq!(data, Err(rustix::io::Errno::NXIO), "the stub stays sparse");

        let (upper, work, target) = s.rw("rw")?;
        let _guard = Overlay::new()
            .lower(&stubs)
            .data_lower(&objects)
            .upper(&upper, &work)
            .api(api)
            .mount_at(&target)?;
        let seen = target.join("usr/bin/tool");
        assert_eq!(fs::read(&seen)?, OBJECT, "{api:?}");
        let meta = fs::metadata(&seen)?;
        assert_eq!(meta.mode() & 0o7777, 0o4750);
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_600_000_000, 123_456_789)
        );
        assert_eq!(meta.len(), OBJECT.len() as u64);
        assert_eq!(
            xattr::get(&seen, b"user.note")?.as_deref(),
            Some(&b"from the stub"[..])
        );
        // The data-only lower is not part of the merged tree.
        assert!(!target.join("ab").exists());

        OpenOptions::new()
            .append(true)
            .open(&seen)?
            .write_all(b"appended\n")?;
        let expected = [OBJECT, b"appended\n"].concat();
        assert_eq!(fs::read(&seen)?, expected);
        assert_eq!(
            fs::read(upper.join("usr/bin/tool"))?,
            expected,
            "copied up in full"
        );
        assert_eq!(fs::read(&object)?, OBJECT, "the object never changes");
        assert_eq!(fs::metadata(&object)?.mode() & 0o7777, 0o444);
        assert_eq!(fs::metadata(upper.join("usr/bin/tool"))?.uid(), 1234);
    }
    Ok(())
}

#[test]
fn xwhiteouts_hide_lower_entries_in_a_dir_marked_x() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let base = s.layer(
        "base",
        &[("d/gone", "b"), ("d/keep", "k"), ("rootgone", "r")],
    )?;
    let top = s.dir("top")?;
    fs::create_dir(top.join("d"))?;
    conventions::create_xwhiteout(&top.join("d/gone"), Namespace::Trusted)?;
    conventions::create_xwhiteout(&top.join("rootgone"), Namespace::Trusted)?;
    assert_eq!(
        conventions::opacity(&top.join("d"), Namespace::Trusted)?,
        Opacity::Xwhiteouts
    );
    assert_eq!(
        conventions::opacity(&top, Namespace::Trusted)?,
        Opacity::Xwhiteouts
    );
    let meta = fs::symlink_metadata(top.join("d/gone"))?;
    assert_eq!(
        conventions::whiteout_style(&top.join("d/gone"), &meta, Namespace::Trusted)?,
        Some(WhiteoutStyle::Xattr(Namespace::Trusted))
    );
    let target = s.dir("target")?;
    let _guard = Overlay::new().lower(&top).lower(&base).mount_at(&target)?;
    let names = |dir: &std::path::Path| -> Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(dir)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        names.sort();
        Ok(names)
    };
    assert_eq!(names(&target.join("d"))?, ["keep"]);
    assert_eq!(names(&target)?, ["d"]);
    assert!(!target.join("d/gone").exists());
    Ok(())
}

#[test]
fn markers_round_trip_in_both_namespaces() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    for ns in Namespace::ALL {
        let dir = s.dir(&format!("{ns:?}"))?;
        assert_eq!(conventions::opacity(&dir, ns)?, Opacity::Transparent);
        conventions::set_opacity(&dir, ns, Opacity::Opaque)?;
        assert_eq!(conventions::opacity(&dir, ns)?, Opacity::Opaque);
        let other = if ns == Namespace::User {
            Namespace::Trusted
        } else {
            Namespace::User
        };
        assert_eq!(conventions::opacity(&dir, other)?, Opacity::Transparent);

        let wh = dir.join("wh");
        conventions::create_whiteout(&wh, WhiteoutStyle::CharDevice)?;
        let meta = fs::symlink_metadata(&wh)?;
        assert_eq!(
            conventions::whiteout_style(&wh, &meta, ns)?,
            Some(WhiteoutStyle::CharDevice)
        );
        let plain = dir.join("plain");
        fs::write(&plain, "")?;
        let meta = fs::symlink_metadata(&plain)?;
        assert_eq!(conventions::whiteout_style(&plain, &meta, ns)?, None);
        assert!(conventions::is_overlay_xattr(
            ns.name(conventions::Attr::Redirect)
        ));
    }
    Ok(())
}

#[test]
fn stubs_refuse_overlay_xattrs() -> Result<()> {
    let s = Scratch::new()?;
    let xattrs = [(b"trusted.overlay.redirect".to_vec(), b"/x".to_vec())];
    let err = conventions::create_metacopy_stub(
        &s.path().join("stub"),
        &Stub {
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Time::default(),
            xattrs: &xattrs,
            redirect: b"/ab/cd",
        },
    )
    .expect_err("overlay xattr");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!s.path().join("stub").exists());
    Ok(())
}

#[test]
fn xattr_helpers_never_follow_a_final_symlink() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let file = s.layer("d", &[("file", "x")])?.join("file");
    let link = s.path().join("d/link");
    std::os::unix::fs::symlink("file", &link)?;
    xattr::set(&link, b"trusted.on-link", b"1")?;
    xattr::set(&file, b"user.on-file", b"2")?;
    xattr::set(&file, b"user.big", &vec![b'v'; 3000])?;
    assert_eq!(xattr::list(&link)?, [b"trusted.on-link".to_vec()]);
    assert_eq!(xattr::get(&file, b"trusted.on-link")?, None);
    assert_eq!(
        xattr::get(&file, b"user.big")?.map(|v| v.len()),
        Some(3000),
        "grows its buffer"
    );
    let names: Vec<Vec<u8>> = xattr::all(&file)?.into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [b"user.big".to_vec(), b"user.on-file".to_vec()],
        "sorted"
    );
    xattr::remove(&link, b"trusted.on-link")?;
    xattr::remove(&link, b"trusted.on-link")?; // already gone: fine
    assert!(xattr::list(&link)?.is_empty());
    assert_eq!(
        xattr::get(&file, b"user.on-file")?.as_deref(),
        Some(&b"2"[..])
    );
    Ok(())
}

#[test]
fn a_whiteout_that_hides_nothing_is_listed_but_not_found() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let top = s.dir("top/only-here")?;
    conventions::create_whiteout(&top.join("ghost"), WhiteoutStyle::CharDevice)?;
    let base = s.layer("base", &[("gone", "x")])?;
    conventions::create_whiteout(&s.path().join("top/gone"), WhiteoutStyle::CharDevice)?;
    let target = s.dir("target")?;
    let _guard = Overlay::new()
        .lower(s.path().join("top"))
        .lower(&base)
        .mount_at(&target)?;
    // In a merged dir the whiteout is filtered out of readdir...
    assert_eq!(fs::read_dir(&target)?.count(), 1, "only `only-here`");
    // ...in a dir that merges with nothing it is listed, yet no lookup finds it.
    let listed: Vec<_> = fs::read_dir(target.join("only-here"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(listed, ["ghost"]);
    let err = fs::symlink_metadata(target.join("only-here/ghost")).expect_err("whiteout");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    Ok(())
}
