//! Interop with real peers: images umoci and skopeo make import into Strata, and what Strata
//! exports umoci unpacks and skopeo reads and copies (verifying every digest).

use std::fs;
use std::path::Path;
use std::process::Command;

use strata_layer_store::Store;

use crate::import;

fn run(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A two-layer image made by umoci in `dir/L` under tag `t`.
fn umoci_image(dir: &Path) {
    run("umoci", &["init", "--layout", "L"], dir);
    run("umoci", &["new", "--image", "L:t"], dir);
    for (i, file) in ["etc/one", "usr/bin/two"].iter().enumerate() {
        run("umoci", &["unpack", "--image", "L:t", "bundle"], dir);
        let path = dir.join("bundle/rootfs").join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("layer {i}\n").repeat(1000)).unwrap();
        if i == 1 {
            fs::remove_file(dir.join("bundle/rootfs/etc/one")).unwrap();
        }
        run("umoci", &["repack", "--image", "L:t", "bundle"], dir);
        fs::remove_dir_all(dir.join("bundle")).unwrap();
    }
}

#[test]
fn umoci_and_skopeo_images_import_and_strata_exports_read_back() -> anyhow::Result<()> {
    if !(strata_testkit::peer("umoci", "umoci") && strata_testkit::peer("skopeo", "skopeo")) {
        return Ok(());
    }
    if !crate::materialize::can_mount() {
        // umoci unpack keeps ownership only as root.
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    umoci_image(dir);
    run("skopeo", &["copy", "oci:L:t", "oci-archive:A.tar:t"], dir);
    run(
        "skopeo",
        &["copy", "oci:L:t", "docker-archive:D.tar:t:latest"],
        dir,
    );
    run(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            "oci:L:t",
            "oci:Z:t",
        ],
        dir,
    );

    let store = Store::open(dir.join("store"))?;
    let from_umoci = import(&store, &dir.join("L"), "t")?;
    let from_archive = import(&store, &dir.join("A.tar"), "archive")?;
    let from_docker = import(&store, &dir.join("D.tar"), "docker")?;
    let from_zstd = import(&store, &dir.join("Z"), "zstd")?;
    let diff_ids = |r: &strata_layer_store::ImportReport| {
        r.layers.iter().map(|l| l.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(from_umoci.layers.len(), 2);
    for other in [&from_archive, &from_docker, &from_zstd] {
        assert_eq!(
            diff_ids(other),
            diff_ids(&from_umoci),
            "same layers, any packaging"
        );
    }

    for name in ["t", "zstd", "docker"] {
        let out = dir.join(format!("out-{name}"));
        store.export(name, &out)?;
        // Tags are stored, and exported, normalized as docker does: t is docker.io/library/t:latest.
        let tag = strata_layer_store::name::normalize(name)?;
        let layout = format!("oci:{}:{tag}", out.display());
        let inspect = Command::new("skopeo").args(["inspect", &layout]).output()?;
        assert!(
            inspect.status.success(),
            "{}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&inspect.stdout)?;
        assert_eq!(json["Layers"].as_array().map(Vec::len), Some(2));
        let copy = format!("oci:{}:{tag}", dir.join(format!("copy-{name}")).display());
        run("skopeo", &["copy", &layout, &copy], dir);
        if name == "zstd" {
            continue; // umoci 0.4 predates zstd layers
        }
        run(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{}:{tag}", out.display()),
                &format!("b-{name}"),
            ],
            dir,
        );
        let rootfs = dir.join(format!("b-{name}/rootfs"));
        assert_eq!(
            fs::read_to_string(rootfs.join("usr/bin/two"))?,
            "layer 1\n".repeat(1000)
        );
        assert!(!rootfs.join("etc/one").exists(), "the whiteout applied");
    }
    // umoci's own blobs come back bit for bit when its gzip is reproducible, and the layer
    // tars always do.
    let record = store.image("t")?;
    for layer in &record.layers {
        let mut tar = Vec::new();
        store.write_layer_tar(&store.layer_record(&layer.hex())?, &mut tar)?;
        assert_eq!(crate::fixtures::sha256(&tar), layer.to_string());
    }
    Ok(())
}
