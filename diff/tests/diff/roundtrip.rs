//! Property: `apply(copy of old, layer(changes(old, new)))` equals `new` (content, type, mode,
//! owner, xattrs, symlink targets, hardlink groups, mtimes to the second), and diffing the
//! result against `new` again finds nothing.
//!
//! Trees are built from a list of operations over a small pool of paths (nested, long,
//! non-UTF-8), so that proptest can shrink a failure to the few operations that matter.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use strata_diff::{ApplyOptions, Compression, ContentCheck, WriteOptions};

use crate::support::{both, set_mtime, state};

fn paths() -> Vec<Vec<u8>> {
    let long = vec![b'L'; 120];
    let mut nested_long = b"d/".to_vec();
    nested_long.extend_from_slice(&long);
    vec![
        b"a".to_vec(),
        b"b".to_vec(),
        b"d".to_vec(),
        b"d/a".to_vec(),
        b"d/b".to_vec(),
        b"d/e".to_vec(),
        b"d/e/f".to_vec(),
        b"caf\xe9".to_vec(),
        "\u{e9}t\u{e9}".as_bytes().to_vec(),
        long,
        nested_long,
    ]
}

const MODES: [u32; 4] = [0o644, 0o600, 0o755, 0o4755];
const TARGETS: [&str; 4] = ["a", "../x", "/abs/target", "d/a"];

#[derive(Debug, Clone, PartialEq)]
struct Attrs {
    mode: u32,
    uid: u32,
    xattr: Option<Vec<u8>>,
    mtime: (i64, i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    File(Vec<u8>, Attrs),
    Dir(Attrs),
    Symlink(&'static str, Attrs),
    Fifo(Attrs),
    /// A hardlink to the file at this path.
    Link(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        path: usize,
        kind: u8,
        data: Vec<u8>,
        attrs: (usize, usize, Option<Vec<u8>>, i64, i64),
    },
    Link {
        path: usize,
        target: usize,
    },
    Delete {
        path: usize,
    },
    /// A metadata-only edit: new mode, owner or xattr, and always a later mtime.
    Touch {
        path: usize,
        mode: usize,
        xattr: Option<Vec<u8>>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let n = paths().len();
    prop_oneof![
        4 => (0..n, 0u8..4, proptest::collection::vec(any::<u8>(), 0..64), (0..4usize, 0..3usize, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)), 1000i64..1002, prop_oneof![Just(0i64), Just(500)]))
            .prop_map(|(path, kind, data, attrs)| Op::Create { path, kind, data, attrs }),
        1 => (0..n, 0..n).prop_map(|(path, target)| Op::Link { path, target }),
        1 => (0..n).prop_map(|path| Op::Delete { path }),
        2 => (0..n, 0..4usize, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)))
            .prop_map(|(path, mode, xattr)| Op::Touch { path, mode, xattr }),
    ]
}

type Spec = BTreeMap<Vec<u8>, Node>;

fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

/// Applies `ops` to `spec`. `dirty` collects the files created or edited, the only ones a new
/// hardlink may point at (a layer cannot link a new name to an unchanged lower file).
fn run(spec: &mut Spec, ops: &[Op], uids: &[u32], dirty: &mut BTreeSet<Vec<u8>>, edit: bool) {
    let pool = paths();
    for (i, op) in ops.iter().enumerate() {
        let fresh_sec = 5000 + i as i64;
        match op {
            Op::Create {
                path,
                kind,
                data,
                attrs: (mode, uid, xattr, sec, nsec),
            } => {
                let path = &pool[*path];
                if !parent(path).is_none_or(|p| matches!(spec.get(p), Some(Node::Dir(_)))) {
                    continue;
                }
                let attrs = Attrs {
                    mode: MODES[*mode],
                    uid: uids[*uid % uids.len()],
                    xattr: xattr.clone(),
                    mtime: if edit { (fresh_sec, 0) } else { (*sec, *nsec) },
                };
                remove(spec, path);
                let node = match kind {
                    0 => Node::File(data.clone(), attrs),
                    1 => Node::Dir(Attrs {
                        mode: attrs.mode & 0o777 | 0o700,
                        ..attrs
                    }),
                    2 => Node::Symlink(
                        TARGETS[data.len() % TARGETS.len()],
                        Attrs {
                            xattr: None,
                            mode: 0o777,
                            ..attrs
                        },
                    ),
                    // user.* xattrs exist only on files and directories.
                    _ => Node::Fifo(Attrs {
                        xattr: None,
                        ..attrs
                    }),
                };
                spec.insert(path.clone(), node);
                dirty.insert(path.clone());
            }
            Op::Link { path, target } => {
                let (path, target) = (&pool[*path], &pool[*target]);
                let linkable = matches!(spec.get(target), Some(Node::File(..)))
                    && (!edit || dirty.contains(target))
                    && path != target
                    && !target.starts_with(&[path.as_slice(), b"/"].concat())
                    && parent(path).is_none_or(|p| matches!(spec.get(p), Some(Node::Dir(_))));
                if linkable {
                    remove(spec, path);
                    spec.insert(path.clone(), Node::Link(target.clone()));
                }
            }
            Op::Delete { path } => remove(spec, &pool[*path]),
            Op::Touch { path, mode, xattr } => {
                let mut path = pool[*path].clone();
                if let Some(Node::Link(target)) = spec.get(&path) {
                    path = target.clone();
                }
                if let Some(node) = spec.get_mut(&path) {
                    let is_fifo = matches!(node, Node::Fifo(_));
                    let attrs = match node {
                        Node::File(_, a) | Node::Fifo(a) => a,
                        Node::Dir(a) => {
                            a.mode = MODES[*mode] & 0o777 | 0o700;
                            a.mtime = (fresh_sec, 0);
                            dirty.insert(path);
                            continue;
                        }
                        Node::Symlink(_, a) => {
                            a.mtime = (fresh_sec, 0);
                            continue;
                        }
                        Node::Link(_) => unreachable!(),
                    };
                    attrs.mode = MODES[*mode];
                    attrs.xattr = if is_fifo { None } else { xattr.clone() };
                    attrs.mtime = (fresh_sec, 0);
                    dirty.insert(path);
                }
            }
        }
    }
}

/// Removes `path` and what is below it; hardlinks to a removed file become the file.
fn remove(spec: &mut Spec, path: &[u8]) {
    let mut below = path.to_vec();
    below.push(b'/');
    let gone: Vec<Vec<u8>> = spec
        .keys()
        .filter(|k| k.as_slice() == path || k.starts_with(&below))
        .cloned()
        .collect();
    for key in &gone {
        if let Some(Node::File(data, attrs)) = spec.remove(key) {
            let links: Vec<Vec<u8>> = spec
                .iter()
                .filter(|(_, n)| matches!(n, Node::Link(t) if t == key))
                .map(|(k, _)| k.clone())
                .collect();
            // The first remaining link takes over the inode; the others now point at it.
            if let Some((first, rest)) = links.split_first() {
                spec.insert(first.clone(), Node::File(data, attrs));
                for other in rest {
                    spec.insert(other.clone(), Node::Link(first.clone()));
                }
            }
        }
    }
}

fn build(root: &Path, spec: &Spec) {
    let p = |k: &[u8]| root.join(OsStr::from_bytes(k));
    for (key, node) in spec {
        match node {
            Node::Dir(_) => fs::create_dir(p(key)).unwrap(),
            Node::File(data, _) => fs::write(p(key), data).unwrap(),
            Node::Symlink(target, _) => std::os::unix::fs::symlink(target, p(key)).unwrap(),
            Node::Fifo(_) => rustix::fs::mknodat(
                rustix::fs::CWD,
                p(key),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap(),
            Node::Link(_) => {}
        }
    }
    for (key, node) in spec {
        if let Node::Link(target) = node {
            fs::hard_link(p(target), p(key)).unwrap();
        }
    }
    // Metadata deepest first, so that a directory's mtime is set after its children exist.
    for (key, node) in spec.iter().rev() {
        let attrs = match node {
            Node::File(_, a) | Node::Dir(a) | Node::Symlink(_, a) | Node::Fifo(a) => a,
            Node::Link(_) => continue,
        };
        let path = p(key);
        rustix::fs::chownat(
            rustix::fs::CWD,
            &path,
            Some(rustix::fs::Uid::from_raw(attrs.uid)),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if let Some(value) = &attrs.xattr {
            strata_cow::xattr::set(&path, b"user.test", value).unwrap();
        }
        if !matches!(node, Node::Symlink(..)) {
            fs::set_permissions(&path, fs::Permissions::from_mode(attrs.mode)).unwrap();
        }
        set_mtime(&path, attrs.mtime.0, attrs.mtime.1);
    }
}

fn uids() -> Vec<u32> {
    if rustix::process::geteuid().is_root() {
        vec![0, 1000, 3_000_000]
    } else {
        vec![rustix::process::geteuid().as_raw()]
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn apply_of_the_written_changes_reproduces_the_new_tree(
        old_ops in proptest::collection::vec(op(), 0..24),
        edits in proptest::collection::vec(op(), 0..16),
        compression in prop_oneof![Just(Compression::None), Just(Compression::Gzip), Just(Compression::Zstd)],
    ) {
        let uids = uids();
        let mut old_spec = Spec::new();
        run(&mut old_spec, &old_ops, &uids, &mut BTreeSet::new(), false);
        let mut new_spec = old_spec.clone();
        run(&mut new_spec, &edits, &uids, &mut BTreeSet::new(), true);

        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let [old, new, copy] = [0, 1, 2].map(|i| dirs[i].path().to_path_buf());
        build(&old, &old_spec);
        build(&copy, &old_spec);
        build(&new, &new_spec);

        let set = both(&old, &new, ContentCheck::Ambiguous);
        let mut layer = Vec::new();
        strata_diff::write_layer(&set, &WriteOptions::new(compression), &mut layer).unwrap();
        let options = ApplyOptions::default().with_ownership(if rustix::process::geteuid().is_root() { strata_diff::Ownership::FromLayer } else { strata_diff::Ownership::Caller });
        strata_diff::apply_layer(&layer[..], &copy, &options).unwrap();
        let (got, want): (BTreeMap<PathBuf, _>, BTreeMap<PathBuf, _>) = (state(&copy), state(&new));
        prop_assert_eq!(got, want);
        let again = both(&copy, &new, ContentCheck::Ambiguous);
        prop_assert!(again.changes.is_empty(), "{:?}", crate::support::lines(&again));
    }
}
