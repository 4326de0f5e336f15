//! Crash recovery: leftovers are removed on open, ids are not reused, and everything a returned
//! Commit named survives SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use strata_snapshotter::{Kind, Labels, Snapshotter};

#[test]
fn open_removes_leftovers_and_skips_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Snapshotter::open(dir.path()).unwrap();
        s.prepare("kept", None, Labels::new()).unwrap();
    }
    // What a crash can leave: a published dir whose transaction never committed, a staging dir
    // of a dead process, and a half-removed dir.
    std::fs::create_dir_all(dir.path().join("snapshots/1000/fs/deep")).unwrap();
    std::fs::create_dir_all(dir.path().join("snapshots/not-an-id")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp/snapshotter-1-2-3/fs")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp/4242.abandoned/layer.x")).unwrap();

    let s = Snapshotter::open(dir.path()).unwrap();
    let names = |sub: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let spare = s.spare_dirs().unwrap();
    assert!(spare > 0);
    assert!(!dir.path().join("snapshots/1000").exists());
    assert!(!dir.path().join("snapshots/not-an-id").exists());
    assert_eq!(names("snapshots").len(), 1 + spare);
    // Staging of dead processes is the layer store's GC's to remove; a live handle's stays.
    let own = s.store().staging_dir().unwrap();
    s.store()
        .gc(strata_layer_store::GcOptions::default())
        .unwrap();
    assert_eq!(
        names("tmp"),
        [own.file_name().unwrap().to_str().unwrap()],
        "only the live handle's staging stays"
    );
    assert_eq!(s.stat("kept").unwrap().kind, Kind::Active);
    // Use up the spares: the next ids come after the 1000 seen on disk, never 1000 itself.
    for i in 0..=spare {
        s.prepare(&format!("next-{i}"), None, Labels::new())
            .unwrap();
    }
    assert!(!dir.path().join("snapshots/1000").exists());
    assert!(dir.path().join("snapshots/1001").exists());
}

/// Helper process for [`sigkill_keeps_every_returned_commit`]: prepares and commits a chain,
/// printing each name once its Commit returned.
#[test]
#[ignore = "helper process, run by sigkill_keeps_every_returned_commit"]
fn crash_child_worker() {
    let Some(root) = std::env::var_os("STRATA_CRASH_ROOT") else {
        return;
    };
    let s = Snapshotter::open(root).unwrap();
    let mut out = std::io::stdout().lock();
    let mut parent: Option<String> = None;
    for i in 0.. {
        let key = format!("active-{i}");
        let name = format!("committed-{i}");
        s.prepare(&key, parent.as_deref(), Labels::new()).unwrap();
        s.prepare(&format!("scratch-{i}"), None, Labels::new())
            .unwrap();
        s.commit(&name, &key, Labels::new()).unwrap();
        writeln!(out, "COMMITTED {name}").unwrap();
        out.flush().unwrap();
        parent = Some(name);
    }
}

#[test]
fn sigkill_keeps_every_returned_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_child_worker",
            "--ignored",
            "--nocapture",
        ])
        .env("STRATA_CRASH_ROOT", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut committed = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(name) = line.unwrap().strip_prefix("COMMITTED ") {
            committed.push(name.to_owned());
            if committed.len() == 40 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-work
    child.wait().unwrap();
    assert_eq!(committed.len(), 40);

    let s = Snapshotter::open(dir.path()).unwrap();
    for (i, name) in committed.iter().enumerate() {
        let info = s.stat(name).unwrap();
        assert_eq!(info.kind, Kind::Committed);
        let parent = (i > 0).then(|| format!("committed-{}", i - 1));
        assert_eq!(info.parent, parent);
    }
    // Every dir on disk is named by a record or is a spare, and nothing is left staged.
    let on_disk = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .count();
    let records = s.list::<&str>(&[]).unwrap().len();
    assert_eq!(on_disk, records + s.spare_dirs().unwrap());
    let staged = std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("snapshotter-")
        })
        .count();
    assert_eq!(staged, 0);
}
