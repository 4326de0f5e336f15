//! CRI-driven fetch: Prepares labelled as containerd's unpacker labels them with snapshot
//! annotations on have an image fetcher bring the image the store lacks, once for all its
//! layers and all Prepares at once, then get remote snapshots; a failed fetch leaves an
//! ordinary Prepare.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_layer_store::digest::Sha256;
use strata_snapshotter::{
    ErrorKind, Fetch, FetchError, Fetched, IMAGE_REF_LABEL, ImageFetcher, Kind, LAYER_DIGEST_LABEL,
    Labels, MANIFEST_DIGEST_LABEL, Snapshotter, TARGET_LABEL,
};

use crate::conformance::suite;
use crate::image::{image_layout, import};
use crate::labels;

/// Imports an OCI layout into the store as the image it is asked for: a registry stand-in
/// that needs no network. Counts its calls.
struct LayoutFetcher {
    suite_root: PathBuf,
    oci: PathBuf,
    calls: AtomicUsize,
}

impl ImageFetcher for LayoutFetcher {
    fn fetch(&self, _reference: &str) -> Result<Fetched, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let store = strata_layer_store::Store::open(&self.suite_root)?;
        store.import(&self.oci, &strata_layer_store::ImportOptions::default())?;
        Ok(Fetched {
            layers: 2,
            layers_fetched: 2,
        })
    }
}

/// Fails every fetch, counting them.
struct Unreachable(AtomicUsize);

impl ImageFetcher for Unreachable {
    fn fetch(&self, reference: &str) -> Result<Fetched, FetchError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(format!("{reference}: cannot connect to the registry").into())
    }
}

/// The chain IDs of layers with these diff_ids, bottom first.
fn chain_ids(tars: &[Vec<u8>]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::new();
    for tar in tars {
        let diff_id = Sha256::of(tar).to_string();
        chains.push(match chains.last() {
            None => diff_id,
            Some(below) => Sha256::of(format!("{below} {diff_id}").as_bytes()).to_string(),
        });
    }
    chains
}

/// The labels of containerd's unpacker for layer `chain` of image `reference`.
fn cri_labels(reference: &str, chain: &str) -> Labels {
    labels(&[
        (TARGET_LABEL, chain),
        (IMAGE_REF_LABEL, reference),
        (LAYER_DIGEST_LABEL, "sha256:0123"),
        (MANIFEST_DIGEST_LABEL, "sha256:4567"),
    ])
}

/// What a Prepare of `chain` on `parent` answered: the remote snapshot's name containerd's
/// Walk finds after AlreadyExists, or `None` for an ordinary active snapshot.
fn prepare(
    sn: &Snapshotter,
    fetch: &Fetch,
    key: &str,
    chain: &str,
    parent: Option<&str>,
) -> Option<String> {
    match sn.prepare_fetching(key, parent, cri_labels("registry.test/img:1", chain), fetch) {
        Ok(_) => {
            assert_eq!(sn.stat(key).unwrap().kind, Kind::Active);
            None
        }
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
            let filter = format!(
                r#"labels."containerd.io/snapshot.ref"=={chain},parent=="{}""#,
                parent.unwrap_or("")
            );
            let found = sn.list(&[filter]).unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            Some(found[0].name.clone())
        }
    }
}

#[test]
fn one_fetch_brings_every_layer_for_every_prepare() {
    let Some(suite) = suite() else { return };
    let (oci, tars) = image_layout(&suite);
    let chains = chain_ids(&tars);
    let fetcher = Arc::new(LayoutFetcher {
        suite_root: suite.sn.root().to_owned(),
        oci,
        calls: AtomicUsize::new(0),
    });
    let fetch = Fetch::new(fetcher.clone());
    let sn = &suite.sn;

    // The bottom layer, asked for four times at once (four pulls of one image).
    let bottoms: Vec<Option<String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let (fetch, chain) = (&fetch, &chains[0]);
                s.spawn(move || prepare(sn, fetch, &format!("extract-{i}"), chain, None))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let bottom = bottoms[0].clone().expect("a remote snapshot");
    assert!(bottoms.iter().all(|b| b.as_ref() == Some(&bottom)));
    // The top layer: in the store already, no second fetch.
    let top = prepare(sn, &fetch, "extract-top", &chains[1], Some(&bottom));
    assert!(top.is_some());
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
    assert_eq!(fetch.layers_fetched(), 2);
    assert_eq!(
        sn.list::<&str>(&[]).unwrap().len(),
        2,
        "only the remote snapshots"
    );

    // Without the CRI labels, nothing is fetched: a chain the store lacks is unpacked.
    let unknown = format!("sha256:{}", "0".repeat(64));
    sn.prepare_fetching(
        "plain",
        top.as_deref(),
        labels(&[(TARGET_LABEL, &unknown)]),
        &fetch,
    )
    .unwrap();
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failed_fetch_leaves_ordinary_prepares() {
    let Some(suite) = suite() else { return };
    let (oci, tars) = image_layout(&suite);
    let chains = chain_ids(&tars);
    let fetcher = Arc::new(Unreachable(AtomicUsize::new(0)));
    let fetch = Fetch::new(fetcher.clone());
    let sn = &suite.sn;

    assert_eq!(prepare(sn, &fetch, "extract-1", &chains[0], None), None);
    sn.commit("layer-1", "extract-1", Labels::new()).unwrap();
    // The next layer of the same pull does not try again.
    assert_eq!(
        prepare(sn, &fetch, "extract-2", &chains[1], Some("layer-1")),
        None
    );
    assert_eq!(fetcher.0.load(Ordering::SeqCst), 1);
    assert_eq!(fetch.layers_fetched(), 0);

    // Once the store holds the image (say, `strata pull` beside the server), its layers are
    // remote snapshots again, with no fetch.
    import(&suite, &oci);
    assert!(prepare(sn, &fetch, "extract-3", &chains[0], None).is_some());
    assert_eq!(fetcher.0.load(Ordering::SeqCst), 1);
}
