//! Any sequence of imports, removals and GCs leaves fsck clean and every surviving image
//! exportable bit for bit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use strata_layer_store::{Durability, GcOptions, Store, StoreError};

use crate::fixtures::{Comp, Image, Item, sha256};

const IMAGES: usize = 4;

/// Four images over a small pool of contents: 0 and 2 share their base layer, every image shares
/// some file contents with another.
fn pool() -> &'static (tempfile::TempDir, Vec<(PathBuf, Image)>) {
    static POOL: OnceLock<(tempfile::TempDir, Vec<(PathBuf, Image)>)> = OnceLock::new();
    POOL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let content = |n: u8| vec![n; 3000 + usize::from(n) * 100];
        let base = vec![
            Item::File("bin/sh".into(), content(1), 0o755),
            Item::File("etc/os".into(), content(2), 0o644),
        ];
        let layers: [Vec<Vec<Item>>; IMAGES] = [
            vec![
                base.clone(),
                vec![Item::File("app/x".into(), content(3), 0o644)],
            ],
            vec![vec![Item::File("other/sh".into(), content(1), 0o755)]],
            vec![
                base,
                vec![
                    Item::Whiteout("etc/os".into()),
                    Item::File("y".into(), content(4), 0o600),
                ],
            ],
            vec![vec![
                Item::File("z".into(), content(4), 0o644),
                Item::File("w".into(), content(5), 0o644),
            ]],
        ];
        let images = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let comp = if i % 2 == 0 { Comp::Zstd } else { Comp::Plain };
                let image = Image::new(l, comp);
                let src = dir.path().join(format!("src{i}"));
                image.write_oci(&src, &format!("img{i}"));
                (src, image)
            })
            .collect();
        (dir, images)
    })
}

#[derive(Debug, Clone)]
enum Op {
    Import(usize),
    Remove(usize),
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IMAGES).prop_map(Op::Import),
        2 => (0..IMAGES).prop_map(Op::Remove),
        1 => Just(Op::Gc),
    ]
}

fn exports_bit_for_bit(store: &Store, i: usize, image: &Image, scratch: &Path) {
    let out = scratch.join(format!("export{i}"));
    let report = store.export(&format!("img{i}"), &out).unwrap();
    assert_eq!(report.manifest, image.manifest_digest());
    for blob in image.blobs.iter().chain([&image.config, &image.manifest]) {
        let exported = std::fs::read(out.join("blobs/sha256").join(&sha256(blob)[7..])).unwrap();
        assert!(exported == *blob, "image {i}: a blob differs");
    }
    std::fs::remove_dir_all(out).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_history_leaves_fsck_clean_and_survivors_exportable(ops in prop::collection::vec(op(), 1..10)) {
        let (_, images) = pool();
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap().with_durability(Durability::None);
        let mut live = BTreeSet::new();
        for op in &ops {
            match *op {
                Op::Import(i) => {
                    crate::import(&store, &images[i].0, &format!("img{i}")).unwrap();
                    live.insert(i);
                }
                Op::Remove(i) => match store.remove_image(&format!("img{i}")) {
                    Ok(()) => prop_assert!(live.remove(&i)),
                    Err(StoreError::ImageNotFound { .. }) => prop_assert!(!live.contains(&i)),
                    Err(e) => panic!("{e}"),
                },
                Op::Gc => {
                    store.gc(GcOptions::default()).unwrap();
                }
            }
        }
        store.gc(GcOptions::default()).unwrap();
        let fsck = store.fsck(Default::default()).unwrap();
        prop_assert!(fsck.is_clean(), "{:?}", fsck.problems);
        prop_assert_eq!(store.images().unwrap().len(), live.len());
        for &i in &live {
            exports_bit_for_bit(&store, i, &images[i].1, tmp.path());
        }
    }
}
