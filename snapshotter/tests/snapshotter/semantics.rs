//! containerd's metadata semantics: kinds, errors, labels, times, Walk filters. No mounts.

use std::sync::{Arc, Barrier};
use std::time::SystemTime;

use strata_snapshotter::{Error, ErrorKind, FieldPaths, Kind, Labels, Precondition};

use crate::{fresh, labels};

const GC: &str = "containerd.io/gc.root";

#[test]
fn error_kinds_match_containerd() {
    let (_dir, s) = fresh();
    s.prepare("a", None, Labels::new()).unwrap();
    s.view("v", None, Labels::new()).unwrap();
    fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorKind {
        r.unwrap_err().kind()
    }

    assert_eq!(kind(s.stat("nope").map(drop)), ErrorKind::NotFound);
    assert_eq!(
        kind(s.prepare("a", None, Labels::new())),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(s.view("a", None, Labels::new())),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(s.prepare("b", Some("missing"), Labels::new())),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(s.prepare("b", Some("a"), Labels::new())),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(s.view("b", Some("v"), Labels::new())),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(s.commit("c", "v", Labels::new())),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(
        kind(s.commit("c", "nope", Labels::new())),
        ErrorKind::NotFound
    );
    assert_eq!(kind(s.remove("nope")), ErrorKind::NotFound);
    assert_eq!(
        kind(s.prepare("", None, Labels::new())),
        ErrorKind::InvalidArgument
    );

    s.commit("c", "a", Labels::new()).unwrap();
    s.prepare("a2", None, Labels::new()).unwrap();
    // Commit onto a name any kind holds fails, and leaves the active snapshot alone.
    assert_eq!(
        kind(s.commit("c", "a2", Labels::new())),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(s.commit("v", "a2", Labels::new())),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.stat("a2").unwrap().kind, Kind::Active);

    s.prepare("child", Some("c"), Labels::new()).unwrap();
    let err = s.remove("c").unwrap_err();
    assert!(matches!(
        err,
        Error::FailedPrecondition {
            reason: Precondition::HasChildren,
            ..
        }
    ));
    assert!(err.to_string().contains("remove"), "{err}");

    let long = "x".repeat(4097);
    assert_eq!(
        kind(s.prepare("l", None, labels(&[("k", &long)]))),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        s.update("c", labels(&[("k", &long)]), FieldPaths::AllLabels)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn commit_keeps_parent_replaces_labels_and_renames_key() {
    let (_dir, s) = fresh();
    s.prepare("base-a", None, labels(&[("old", "1")])).unwrap();
    s.commit("base", "base-a", labels(&[(GC, "now")])).unwrap();
    s.prepare("top-a", Some("base"), Labels::new()).unwrap();
    s.commit("top", "top-a", Labels::new()).unwrap();

    let base = s.stat("base").unwrap();
    assert_eq!(
        (base.kind, base.parent, base.labels),
        (Kind::Committed, None, labels(&[(GC, "now")]))
    );
    assert_eq!(s.stat("top").unwrap().parent.as_deref(), Some("base"));
    assert_eq!(s.stat("base-a").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.stat("top-a").unwrap_err().kind(), ErrorKind::NotFound);
    // The child index followed the rename: base still has a child, top has none.
    assert_eq!(
        s.remove("base").unwrap_err().kind(),
        ErrorKind::FailedPrecondition
    );
    s.remove("top").unwrap();
    s.remove("base").unwrap();
}

#[test]
fn ids_and_dirs_are_stable_across_commit_and_never_reused() {
    let (dir, s) = fresh();
    let snap = |id: u64| dir.path().join(format!("snapshots/{id}"));
    s.prepare("a", None, Labels::new()).unwrap();
    std::fs::write(snap(1).join("fs/file"), b"data").unwrap();
    s.commit("c", "a", Labels::new()).unwrap();
    assert_eq!(std::fs::read(snap(1).join("fs/file")).unwrap(), b"data");
    s.remove("c").unwrap();
    assert!(!snap(1).exists());
    s.prepare("a", None, Labels::new()).unwrap();
    assert_eq!(std::fs::read_dir(snap(2).join("fs")).unwrap().count(), 0);
    // Every dir on disk is a snapshot's or a spare.
    let on_disk = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 1 + s.spare_dirs().unwrap());
}

#[test]
fn usage_counts_the_upper_and_freezes_at_commit() {
    let (dir, s) = fresh();
    s.prepare("a", None, Labels::new()).unwrap();
    let empty = s.usage("a").unwrap();
    assert_eq!(empty.inodes, 1);
    let upper = dir.path().join("snapshots/1/fs");
    std::fs::write(upper.join("f"), vec![7u8; 64 * 1024]).unwrap();
    std::fs::hard_link(upper.join("f"), upper.join("g")).unwrap();
    let used = s.usage("a").unwrap();
    assert_eq!(used.inodes, 2, "a hardlinked inode counts once");
    assert!(used.size >= 64 * 1024, "{used:?}");
    s.commit("c", "a", Labels::new()).unwrap();
    assert_eq!(s.usage("c").unwrap(), used);
    // Frozen: later changes to the dir do not show.
    std::fs::write(upper.join("h"), b"late").unwrap();
    assert_eq!(s.usage("c").unwrap(), used);
    s.view("v", Some("c"), Labels::new()).unwrap();
    assert_eq!(s.usage("v").unwrap().size, 0);
}

/// containerd's `checkUpdate`: times, full and partial label updates, immutable fields.
#[test]
fn update() {
    let (_dir, s) = fresh();
    let t1 = SystemTime::now();
    s.prepare("c1-a", None, Labels::new()).unwrap();
    s.commit("c1", "c1-a", Labels::new()).unwrap();
    s.prepare("c2-a", Some("c1"), Labels::new()).unwrap();
    s.commit("c2", "c2-a", Labels::new()).unwrap();
    s.prepare("a1", Some("c2"), Labels::new()).unwrap();
    s.prepare("a2", None, Labels::new()).unwrap();
    s.view("v1", Some("c2"), Labels::new()).unwrap();
    s.view("v2", None, Labels::new()).unwrap();
    let t2 = SystemTime::now();
    let cases = [
        ("c1", Kind::Committed, None),
        ("c2", Kind::Committed, Some("c1")),
        ("a1", Kind::Active, Some("c2")),
        ("a2", Kind::Active, None),
        ("v1", Kind::View, Some("c2")),
        ("v2", Kind::View, None),
    ];
    for (name, kind, parent) in cases {
        let st = s.stat(name).unwrap();
        assert!(st.created >= t1 && st.created <= t2, "{name}");
        assert_eq!(st.created, st.updated, "{name}");
        assert_eq!(
            (st.kind, st.parent.as_deref(), st.name.as_str()),
            (kind, parent, name)
        );

        let all = labels(&[("l1", "v1"), ("l2", "v2"), ("l3", "v3"), (GC, "root")]);
        let u1 = SystemTime::now();
        let st2 = s.update(name, all.clone(), FieldPaths::AllLabels).unwrap();
        let u2 = SystemTime::now();
        assert_eq!(st2.created, st.created);
        assert!(st2.updated >= u1 && st2.updated <= u2);
        assert_eq!((st2.kind, st2.parent.as_deref()), (kind, parent));
        assert_eq!(st2.labels, all);

        let st3 = s
            .update(
                name,
                labels(&[("l1", "updated"), ("l4", "v4")]),
                FieldPaths::Only(&["labels.l1", "labels.l2"]),
            )
            .unwrap();
        assert_eq!(
            st3.labels,
            labels(&[("l1", "updated"), ("l3", "v3"), (GC, "root")])
        );

        let replaced = labels(&[("l4", "v4"), (GC, "root")]);
        let st4 = s
            .update(name, replaced.clone(), FieldPaths::Only(&["labels"]))
            .unwrap();
        assert_eq!(st4.labels, replaced);
        assert_eq!(s.stat(name).unwrap(), st4);

        let err = s
            .update(name, Labels::new(), FieldPaths::Only(&["parent"]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert_eq!(
            s.stat(name).unwrap(),
            st4,
            "a refused update changes nothing"
        );
    }
    assert_eq!(
        s.update("nope", Labels::new(), FieldPaths::AllLabels)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// containerd's `checkRemove`: keys are reusable across kinds once removed.
#[test]
fn remove_and_key_reuse() {
    let (_dir, s) = fresh();
    s.prepare("committed-a", None, Labels::new()).unwrap();
    s.commit("committed-1", "committed-a", Labels::new())
        .unwrap();
    s.prepare("reuse-1", Some("committed-1"), Labels::new())
        .unwrap();
    s.remove("reuse-1").unwrap();
    s.view("reuse-1", Some("committed-1"), Labels::new())
        .unwrap();
    s.remove("reuse-1").unwrap();
    s.prepare("reuse-1", None, Labels::new()).unwrap();
    s.remove("committed-1").unwrap();
    s.commit("committed-1", "reuse-1", Labels::new()).unwrap();
}

/// containerd's `checkWalk`, filter for filter.
#[test]
fn walk_filters() {
    let (_dir, s) = fresh();
    let gc = labels(&[(GC, "check-walk")]);
    let with_l = |l: &str| labels(&[(GC, "check-walk"), ("l", l)]);
    s.prepare("a-np", None, gc.clone()).unwrap();
    s.prepare("p-tmp", None, gc.clone()).unwrap();
    s.commit("p", "p-tmp", gc.clone()).unwrap();
    s.prepare("a", Some("p"), gc.clone()).unwrap();
    s.view("v", Some("p"), gc.clone()).unwrap();
    s.prepare("p-wl-tmp", None, gc.clone()).unwrap();
    s.commit("p-wl", "p-wl-tmp", with_l("1")).unwrap();
    s.prepare("a-wl", Some("p-wl"), with_l("2")).unwrap();
    s.view("v-wl", Some("p-wl"), with_l("3")).unwrap();
    s.prepare("a-np-wl", None, with_l("2")).unwrap();

    let cases: &[(&[&str], &[&str])] = &[
        (
            &["labels.\"containerd.io/gc.root\"==check-walk"],
            &["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"],
        ),
        (
            &["kind==active,labels.\"containerd.io/gc.root\"==check-walk"],
            &["a-np", "a", "a-wl", "a-np-wl"],
        ),
        (
            &["kind==view,labels.\"containerd.io/gc.root\"==check-walk"],
            &["v", "v-wl"],
        ),
        (
            &["kind==committed,labels.\"containerd.io/gc.root\"==check-walk"],
            &["p", "p-wl"],
        ),
        (&["name==p", "name==a-np-wl"], &["p", "a-np-wl"]),
        (&["name==a-wl,labels.l"], &["a-wl"]),
        (&["parent==p"], &["a", "v"]),
        (
            &["parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk"],
            &["a", "v", "a-wl", "v-wl"],
        ),
        (&["labels.l"], &["p-wl", "a-wl", "v-wl", "a-np-wl"]),
        (&["labels.l==2"], &["a-wl", "a-np-wl"]),
    ];
    for (filters, want) in cases {
        let mut got: Vec<String> = s
            .list(filters)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        let mut want: Vec<&str> = want.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "filters {filters:?}");
    }
    assert_eq!(
        s.list(&["kind=="]).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

/// containerd's `checkStatInWalk`: the callback may call back in.
#[test]
fn stat_inside_walk() {
    let (_dir, s) = fresh();
    s.prepare("c1-a", None, Labels::new()).unwrap();
    s.commit("c1", "c1-a", labels(&[(GC, "x")])).unwrap();
    s.prepare("c2-a", Some("c1"), Labels::new()).unwrap();
    s.commit("c2", "c2-a", Labels::new()).unwrap();
    s.prepare("a1", Some("c2"), Labels::new()).unwrap();
    s.view("v1", Some("c2"), Labels::new()).unwrap();
    let mut seen = 0;
    s.walk::<&str>(&[], |info| {
        assert_eq!(s.stat(&info.name).unwrap(), info);
        seen += 1;
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, 4);
}

#[test]
fn close_twice() {
    let (_dir, s) = fresh();
    s.prepare("p", None, Labels::new()).unwrap();
    s.commit("n", "p", Labels::new()).unwrap();
    s.remove("n").unwrap();
    s.close().unwrap();
    s.close().unwrap();
    assert_eq!(
        s.stat("n").unwrap_err().kind(),
        ErrorKind::FailedPrecondition
    );
}

/// Colliding writers: exactly one wins, every loser gets containerd's error kind.
#[test]
fn concurrent_collisions_have_one_winner() {
    let (_dir, s) = fresh();
    let s = Arc::new(s);
    s.prepare("base-a", None, Labels::new()).unwrap();
    s.commit("base", "base-a", Labels::new()).unwrap();
    for round in 0..20 {
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let key = format!("k{round}");
        let results: Vec<_> = (0..threads)
            .map(|t| {
                let (s, barrier, key) = (s.clone(), barrier.clone(), key.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    if t % 2 == 0 {
                        s.prepare(&key, Some("base"), Labels::new())
                    } else {
                        s.view(&key, Some("base"), Labels::new())
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        exactly_one_wins(results);

        // Commits of different actives onto one name: one wins, the rest AlreadyExists.
        let actives: Vec<String> = (0..threads).map(|t| format!("r{round}-a{t}")).collect();
        for a in &actives {
            s.prepare(a, Some("base"), Labels::new()).unwrap();
        }
        let name = format!("r{round}-committed");
        let barrier = Arc::new(Barrier::new(threads));
        let results: Vec<_> = actives
            .iter()
            .map(|a| {
                let (s, barrier, a, name) = (s.clone(), barrier.clone(), a.clone(), name.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.commit(&name, &a, Labels::new())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        exactly_one_wins(results);
    }
}

/// Of racing operations on one name, exactly one succeeded and the others saw AlreadyExists.
fn exactly_one_wins<T: std::fmt::Debug>(results: Vec<Result<T, Error>>) {
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for err in results.into_iter().filter_map(Result::err) {
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    }
}
