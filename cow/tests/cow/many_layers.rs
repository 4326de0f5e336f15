//! The kernel's 500-layer maximum through both interfaces, 501 refused up front, and 32 mounts
//! from parallel threads.

use std::fs;
use std::path::PathBuf;

use anyhow::Result;
use strata_cow::MountError;
use strata_cow::overlay::{MAX_LAYERS, MountApi, Overlay};

use crate::support::{Scratch, require_root};

/// `count` layers under `layers/`, each with its own file and a copy of `shared`; names padded
/// to `name_len` characters.
fn layers(s: &Scratch, count: usize, name_len: usize) -> Result<Vec<PathBuf>> {
    (0..count)
        .map(|i| {
            let name = format!("layers/{i:0name_len$}");
            Ok(s.layer(
                &name,
                &[
                    (&format!("own-{i}"), &i.to_string()),
                    ("shared", &i.to_string()),
                ],
            )?)
        })
        .collect()
}

fn mount_line(target: &std::path::Path) -> Result<String> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let target = target.to_str().expect("utf-8 temp path");
    Ok(info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .expect("mounted")
        .to_owned())
}

#[test]
fn five_hundred_layers_mount_through_both_apis() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lowers = layers(&s, MAX_LAYERS, 3)?;
    for api in [MountApi::New, MountApi::Legacy] {
        let (upper, work, target) = s.rw(&format!("{api:?}"))?;
        let guard = Overlay::new()
            .lowers(&lowers)
            .upper(&upper, &work)
            .api(api)
            .mount_at(&target)?;
        assert_eq!(
            fs::read_to_string(target.join("shared"))?,
            "0",
            "{api:?}: top layer wins"
        );
        for i in 0..MAX_LAYERS {
            assert_eq!(
                fs::read_to_string(target.join(format!("own-{i}")))?,
                i.to_string()
            );
        }
        let line = mount_line(&target)?;
        match api {
            MountApi::Legacy => {
                // Absolute paths would overflow the page: compacted to relative ones.
                assert!(line.contains("lowerdir=000:001:002:"), "{api:?}: {line}");
            }
            _ => assert!(line.contains("lowerdir+="), "{line}"),
        }
        fs::write(target.join("shared"), "written")?;
        assert_eq!(fs::read_to_string(upper.join("shared"))?, "written");
        assert_eq!(fs::read_to_string(lowers[0].join("shared"))?, "0");
        guard.unmount()?;
    }
    Ok(())
}

#[test]
fn legacy_options_too_long_even_compacted_are_refused() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let lowers = layers(&s, 100, 60)?;
    let target = s.dir("target")?;
    let err = Overlay::new()
        .lowers(&lowers)
        .api(MountApi::Legacy)
        .mount_at(&target)
        .expect_err("6 KiB of relative paths");
    match err {
        MountError::OptionsTooLong { len, max, parent } => {
            assert!(len > max);
            assert_eq!(parent, s.path().join("layers"));
        }
        other => panic!("expected OptionsTooLong, got {other}"),
    }
    // The new API takes them one at a time.
    let _guard = Overlay::new()
        .lowers(&lowers)
        .api(MountApi::New)
        .mount_at(&target)?;
    assert_eq!(fs::read_to_string(target.join("shared"))?, "0");
    Ok(())
}

#[test]
fn more_than_five_hundred_are_refused_before_the_kernel() {
    // Nonexistent paths prove the kernel (and the filesystem) were never asked.
    let lowers = (0..=MAX_LAYERS).map(|i| format!("/nonexistent/{i}"));
    for api in [MountApi::New, MountApi::Legacy] {
        let overlay = Overlay::new().lowers(lowers.clone()).api(api);
        let errors = [
            overlay
                .mount_at("/nonexistent-target".as_ref())
                .expect_err("501"),
            overlay.mount_detached().expect_err("501"),
        ];
        for err in errors {
            assert!(
                matches!(
                    err,
                    MountError::TooManyLayers {
                        count: 501,
                        max: 500
                    }
                ),
                "{err}"
            );
        }
    }
    let data_too = Overlay::new()
        .lowers((0..499).map(|i| format!("/nonexistent/{i}")))
        .data_lower("/nonexistent/d1")
        .data_lower("/nonexistent/d2");
    let err = data_too.mount_detached().expect_err("data lowers count");
    assert!(
        matches!(err, MountError::TooManyLayers { count: 501, .. }),
        "{err}"
    );
}

#[test]
fn thirty_two_parallel_mounts() -> Result<()> {
    require_root!();
    let s = Scratch::new()?;
    let shared = layers(&s, 2, 3)?;
    // Long names push the legacy string over a page, so half the threads go through the
    // CLONE_FS + chdir thread while the others mount with the new API.
    let long = layers(&s, 60, 50)?;
    let cwd = std::env::current_dir()?;
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let (s, shared, long) = (&s, &shared, &long);
                scope.spawn(move || -> Result<()> {
                    let (upper, work, target) = s.rw(&format!("t{i}"))?;
                    let (api, lowers) = if i % 2 == 0 {
                        (MountApi::New, shared.clone())
                    } else {
                        (MountApi::Legacy, long.clone())
                    };
                    let guard = Overlay::new()
                        .lowers(lowers)
                        .upper(&upper, &work)
                        .api(api)
                        .mount_at(&target)?;
                    fs::write(target.join("mine"), i.to_string())?;
                    assert_eq!(fs::read_to_string(target.join("shared"))?, "0");
                    assert_eq!(fs::read_to_string(upper.join("mine"))?, i.to_string());
                    guard.unmount()?;
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread panicked")?;
        }
        Ok(())
    })?;
    assert_eq!(std::env::current_dir()?, cwd, "the process cwd never moved");
    Ok(())
}
