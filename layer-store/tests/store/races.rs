//! Operations that read what they change do it inside their write transaction: racing ones
//! leave no acknowledged name missing and no name dangling.

use std::path::Path;
use std::sync::Barrier;

use strata_layer_store::{ImportError, ImportOptions, Store, Strategy};

use crate::fixtures::{Comp, Image, read_tree, sample_layers};

fn import_named(store: &Store, source: &Path, name: &str) -> Result<(), ImportError> {
    let options = ImportOptions::default().with_name(Some(name.to_owned()));
    store.import(source, &options).map(drop)
}

/// Every name the store lists resolves to an image that carries it.
fn assert_no_dangling_name(store: &Store) {
    for image in store.images().unwrap() {
        for tag in &image.tags {
            let found = store
                .image(tag)
                .unwrap_or_else(|e| panic!("{tag} dangles: {e}"));
            assert_eq!(found.id(), image.id(), "{tag}");
        }
    }
}

/// A store and, beside it, an OCI layout of a one-layer image to import.
fn one_image_source() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    Image::new(&sample_layers()[..1], Comp::Gzip).write_oci(&source, "x");
    let store = Store::open(tmp.path().join("store")).unwrap();
    (tmp, source, store)
}

/// Runs `a` and `b` at the same moment on two threads.
fn race<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            start.wait();
            a()
        });
        let b = s.spawn(|| {
            start.wait();
            b()
        });
        (a.join().unwrap(), b.join().unwrap())
    })
}

#[test]
fn rmi_racing_an_import_of_the_same_image_loses_no_acknowledged_name() {
    let (_tmp, source, store) = one_image_source();
    for round in 0..150 {
        import_named(&store, &source, "a").unwrap();
        let (removed, imported) = race(
            || store.remove_image("a"),
            || import_named(&store, &source, "b"),
        );
        removed.unwrap();
        imported.unwrap();
        assert!(store.image("b").is_ok(), "round {round}: b names nothing");
        assert!(
            store.image("a").is_err(),
            "round {round}: a survived its rmi"
        );
        assert_no_dangling_name(&store);
        store.remove_image("b").unwrap();
    }
}

#[test]
fn two_rmis_of_one_image_leave_no_dangling_name() {
    let (_tmp, source, store) = one_image_source();
    for round in 0..150 {
        import_named(&store, &source, "a").unwrap();
        store.tag("a", "b").unwrap();
        let (a, b) = race(|| store.remove_image("a"), || store.remove_image("b"));
        a.unwrap();
        b.unwrap();
        assert!(store.images().unwrap().is_empty(), "round {round}");
        assert_no_dangling_name(&store);
    }
}

#[test]
fn two_materializations_of_one_layer_both_succeed_and_leave_one_whole_tree() {
    let (_tmp, source, store) = one_image_source();
    import_named(&store, &source, "x").unwrap();
    let id = store.image("x").unwrap().layers[0].hex();
    store.materialize(&id, Some(Strategy::Copy)).unwrap();
    let expected = read_tree(&store.layer_tree(&id));
    // Alternating strategies makes every round build a new tree.
    let rounds = [Strategy::Hardlink, Strategy::Copy].repeat(40);
    for (round, strategy) in rounds.into_iter().enumerate() {
        let (a, b) = race(
            || store.materialize(&id, Some(strategy)),
            || store.materialize(&id, Some(strategy)),
        );
        assert_eq!(a.unwrap(), strategy, "round {round}");
        assert_eq!(b.unwrap(), strategy, "round {round}");
        assert_eq!(read_tree(&store.layer_tree(&id)), expected, "round {round}");
    }
}
