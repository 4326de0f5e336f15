//! A root written by the earlier release (redb) converts once into `strata.db`, keeping every
//! row, and a conversion that cannot read the old file changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use strata_metadb::{CLI_NAMESPACE, CONTAINERD_NAMESPACE, Database, Error};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/root-redb.tar.gz");

/// Unpacks the checked-in sample root into `dest`.
fn sample_root(dest: &Path) {
    let file = fs::File::open(SAMPLE).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(dest)
        .unwrap();
    assert!(dest.join("strata.redb").exists());
}

fn count(db: &Database, sql: &str) -> i64 {
    db.read(|tx| Ok::<_, Error>(tx.query_row(sql, [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn a_redb_root_converts_once_keeping_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    sample_root(root);
    // What an interrupted conversion leaves is discarded, not trusted.
    fs::write(root.join("strata.db.converting"), b"half a database").unwrap();

    let db = Database::open(root).unwrap();
    assert!(root.join("strata.db").exists());
    assert!(
        !root.join("strata.redb").exists(),
        "the old file is renamed aside"
    );
    assert!(root.join("strata.redb.converted").exists());
    assert!(!root.join("strata.db.converting").exists());

    assert_eq!(count(&db, "SELECT count(*) FROM layers"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM images"), 1);
    let names: Vec<String> = db
        .read(|tx| {
            let mut stmt = tx.prepare("SELECT name FROM names ORDER BY name")?;
            let names = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok::<_, Error>(names)
        })
        .unwrap();
    assert_eq!(
        names,
        [
            "docker.io/library/sample:other",
            "docker.io/library/sample:v1"
        ]
    );
    // `strata rootfs` registered the image's layer for its container.
    assert_eq!(count(&db, "SELECT count(*) FROM gc_roots"), 1);

    let snapshots: BTreeMap<String, (String, Option<String>)> = db
        .read(|tx| {
            let mut stmt = tx.prepare("SELECT key, namespace, parent FROM snapshots")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            Ok::<_, Error>(rows)
        })
        .unwrap();
    let expect = |ns: &str, parent: Option<&str>| (ns.to_owned(), parent.map(str::to_owned));
    assert_eq!(
        snapshots,
        BTreeMap::from([
            (
                "cli-child".to_owned(),
                expect(CLI_NAMESPACE, Some("cli-committed"))
            ),
            ("cli-committed".to_owned(), expect(CLI_NAMESPACE, None)),
            ("cli-container".to_owned(), expect(CLI_NAMESPACE, None)),
            (
                "default/4/sha256:bbbb".to_owned(),
                expect(CONTAINERD_NAMESPACE, None)
            ),
            (
                "default/5/view".to_owned(),
                expect(CONTAINERD_NAMESPACE, Some("default/4/sha256:bbbb"))
            ),
        ])
    );
    let spare = count(&db, "SELECT count(*) FROM snapshot_pool");
    assert!(spare > 0);
    // Ids are never reused: the counter is past every dir the old release made.
    let next = count(
        &db,
        "SELECT value FROM counters WHERE name = 'snapshotter.next_id'",
    );
    let highest = fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<i64>().ok())
        .max()
        .unwrap();
    assert!(next > highest, "next id {next}, highest dir {highest}");
    drop(db);

    // Opening again converts nothing: a row removed since stays removed.
    let db = Database::open(root).unwrap();
    db.write(|tx| Ok::<_, Error>(tx.execute("DELETE FROM names WHERE name LIKE '%:other'", [])?))
        .unwrap();
    drop(db);
    let db = Database::open(root).unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM names"), 1);
}

#[test]
fn an_unreadable_redb_file_fails_the_conversion_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    sample_root(root);
    let legacy = root.join("strata.redb");
    let mut bytes = fs::read(&legacy).unwrap();
    bytes[..4096].fill(0x5a);
    fs::write(&legacy, &bytes).unwrap();

    let err = Database::open(root).expect_err("a damaged redb file");
    assert!(matches!(err, Error::Convert { .. }), "{err:?}");
    assert!(err.to_string().contains("strata.redb"), "{err}");
    assert_eq!(
        fs::read(&legacy).unwrap(),
        bytes,
        "the old file is untouched"
    );
    assert!(!root.join("strata.db").exists());
    assert!(!root.join("strata.db.converting").exists());
}
