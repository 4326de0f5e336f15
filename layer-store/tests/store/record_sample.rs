//! Record format v1 is pinned: checked-in samples decode to known values; the fuzz corpus
//! (written by our own encoder) is replayed without panics.

use std::fs;
use std::path::{Path, PathBuf};

use strata_layer_store::digest::Sha256;
use strata_layer_store::fuzzing::{self as record, Kind};
use strata_layer_store::{
    BlobCompression as Compression, Chunk, Entry, EntryKind, ImageRecord, LayerMeta, LayerRecord,
    ObjectId, Strategy, Time,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn tar_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tar_reader")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/record")
}

pub fn sample_layer() -> LayerRecord {
    let object = ObjectId::of(b"hello");
    LayerRecord {
        diff_id: Sha256::of(b"tar"),
        tar_size: 3072,
        blob_digest: Sha256::of(b"blob"),
        blob_size: 99,
        compression: Compression::Gzip {
            header: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
            level: Some(6),
        },
        stream: vec![
            Chunk::Raw(vec![b'h'; 512]),
            Chunk::Object {
                id: object,
                size: 5,
            },
            Chunk::Raw(vec![0; 507 + 1024]),
        ],
        entries: vec![
            Entry {
                path: b"etc".to_vec(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: Time { sec: 1, nsec: 2 },
                xattrs: vec![],
            },
            Entry {
                path: b"etc/hello".to_vec(),
                kind: EntryKind::File { object, size: 5 },
                mode: 0o4755,
                uid: 1000,
                gid: 100,
                mtime: Time {
                    sec: 1_700_000_000,
                    nsec: 5,
                },
                xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
            },
            Entry {
                path: b"etc/link".to_vec(),
                kind: EntryKind::Symlink {
                    target: b"hello".to_vec(),
                },
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: Time::default(),
                xattrs: vec![],
            },
            Entry {
                path: b"dev/null".to_vec(),
                kind: EntryKind::CharDevice { major: 1, minor: 3 },
                mode: 0o666,
                uid: 0,
                gid: 0,
                mtime: Time::default(),
                xattrs: vec![],
            },
        ],
    }
}

pub fn sample_image() -> ImageRecord {
    let layers = vec![Sha256::of(b"one"), Sha256::of(b"two")];
    ImageRecord {
        manifest: br#"{"schemaVersion":2}"#.to_vec(),
        manifest_digest: Sha256::of(br#"{"schemaVersion":2}"#),
        config: b"{}".to_vec(),
        tags: vec!["sample:v1".to_owned()],
        chain_ids: strata_layer_store::chain_ids(&layers),
        layers,
    }
}

pub fn sample_meta() -> LayerMeta {
    LayerMeta {
        tar_size: 3072,
        file_bytes: 5,
        materialized: Some(Strategy::Stub),
    }
}

/// Writes the samples and the fuzz seed corpus after a deliberate format change (and a version
/// bump): `cargo test -p strata-layer-store --test store -- --ignored regenerate`.
#[test]
#[ignore = "rewrites the pinned samples and the record corpus; run by hand"]
fn regenerate_samples() -> anyhow::Result<()> {
    fs::create_dir_all(data_dir())?;
    fs::create_dir_all(corpus_dir())?;
    let files = [
        (
            "record-v1-layer.bin",
            record::encode(Kind::Layer, &sample_layer())?,
        ),
        (
            "record-v1-image.bin",
            record::encode(Kind::Image, &sample_image())?,
        ),
        (
            "record-v1-layermeta.bin",
            record::encode(Kind::LayerMeta, &sample_meta())?,
        ),
    ];
    for (name, bytes) in &files {
        fs::write(data_dir().join(name), bytes)?;
        fs::write(corpus_dir().join(name), bytes)?;
        fs::write(
            corpus_dir().join(format!("{name}.truncated")),
            &bytes[..bytes.len() / 2],
        )?;
    }
    fs::write(
        corpus_dir().join("payload-layer.bin"),
        postcard::to_stdvec(&sample_layer())?,
    )?;
    let tars = tar_corpus_dir();
    fs::create_dir_all(&tars)?;
    for (i, layer) in crate::fixtures::sample_layers().iter().enumerate() {
        fs::write(
            tars.join(format!("sample-{i}.tar")),
            crate::fixtures::layer_tar(layer),
        )?;
    }
    Ok(())
}

#[test]
fn version_1_samples_decode() -> anyhow::Result<()> {
    let read = |name: &str| fs::read(data_dir().join(name));
    let layer: LayerRecord = record::decode(Kind::Layer, &read("record-v1-layer.bin")?)?;
    assert_eq!(layer, sample_layer());
    let image: ImageRecord = record::decode(Kind::Image, &read("record-v1-image.bin")?)?;
    assert_eq!(image, sample_image());
    let meta: LayerMeta = record::decode(Kind::LayerMeta, &read("record-v1-layermeta.bin")?)?;
    assert_eq!(meta, sample_meta());
    Ok(())
}

/// Replays every fuzz input (seeds and any crashers saved there): errors are fine, panics are
/// bugs.
#[test]
fn fuzz_corpus_replays_without_panics() -> anyhow::Result<()> {
    let mut replayed = 0;
    for entry in fs::read_dir(corpus_dir())? {
        crate::record_contract::decode_all(&fs::read(entry?.path())?);
        replayed += 1;
    }
    assert!(replayed >= 7, "the seed corpus is missing");
    Ok(())
}

/// Replays the `import` fuzz target's corpus (seeded with the hostile layers) through its
/// contract: nothing outside the store changes.
#[test]
fn import_corpus_stays_confined() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/import");
    let mut replayed = 0;
    for entry in fs::read_dir(dir)? {
        crate::confinement::import_confined(&fs::read(entry?.path())?);
        replayed += 1;
    }
    assert!(replayed >= 5, "the seed corpus is missing");
    Ok(())
}

/// Writes the `import` target's seeds: the hostile layers of `strata_testkit::hostile`, small.
#[test]
#[ignore = "rewrites the import corpus seeds; run by hand"]
fn regenerate_import_seeds() -> anyhow::Result<()> {
    use strata_testkit::hostile;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/import");
    fs::create_dir_all(&dir)?;
    // From a tree at store/layers/<id>/tree (or store/tmp/<dir>/tree), the sandbox's outside.
    let outside = "../../../../outside";
    for (name, bytes) in [
        ("host-link.tar", hostile::host_link_layer(outside)),
        (
            "through-symlink.tar",
            hostile::write_through_symlink_layer(outside),
        ),
        ("hardlink-chain.tar", hostile::hardlink_chain(20)),
        ("xattrs.tar", hostile::xattr_flood(2, 64)),
        (
            "global-pax.tar",
            hostile::global_pax("SCHILY.xattr.user.x", 16, 3),
        ),
        ("entries.tar", hostile::many_entries(30)),
        ("bomb.tar.gz", hostile::zero_bomb(1 << 20)),
    ] {
        fs::write(dir.join(name), bytes)?;
    }
    for entry in fs::read_dir(tar_corpus_dir())? {
        let entry = entry?;
        fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    Ok(())
}
