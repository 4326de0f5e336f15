//! The layer store's import and the diff crate's applier read layers through one codec, so they
//! agree on every layer: both accept it or both refuse it, and when both accept it they see the
//! same entries (the tree the applier writes onto an empty directory is the tree the import's
//! entries describe).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use proptest::prelude::*;
use strata_diff::{ApplyOptions, Ownership};
use strata_layer_store::TarError;
use strata_layer_store::fuzzing as tarstream;
use strata_layer_store::{Entry, EntryKind, Limits, ObjectId};
use strata_testkit::hostile::pax_record;
use strata_testkit::tree::{self, Kind, Options};

/// Small limits, so that generated layers reach every one of them cheaply.
fn limits() -> Limits {
    Limits::default()
        .with_entries_per_layer(10)
        .with_pax_bytes(400, 1500)
        .with_xattr_bytes(40, 100)
}

/// How a header block's checksum is written.
#[derive(Debug, Clone, Copy)]
enum Sum {
    Unsigned,
    /// The signed sum (as old writers computed it), where it differs and is not negative.
    Signed,
    Wrong,
}

/// One member of a generated layer.
#[derive(Debug, Clone)]
enum Member {
    File {
        path: &'static str,
        len: usize,
    },
    Dir(&'static str),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
    /// A type flag layers may not carry.
    Odd(&'static str, u8),
    /// A PAX header for the next member: its path (maybe long) and an xattr.
    Pax {
        path: Option<String>,
        xattr: Option<(&'static str, usize)>,
        global: bool,
    },
    /// A GNU long name for the next member.
    LongName(String),
}

const PATHS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "./d",
    "/e",
    "a/",
    "f\u{e9}",
    "../x",
    "a/../b",
    ".wh.a",
    "a/.wh.b",
    ".wh.",
    "a/.wh..wh..opq",
    ".wh..wh.x",
    "",
];

fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(PATHS)
}

fn member() -> impl Strategy<Value = Member> {
    prop_oneof![
        4 => (path(), 0..1200usize).prop_map(|(path, len)| Member::File { path, len }),
        2 => path().prop_map(Member::Dir),
        1 => (path(), prop::sample::select(&["/etc", "a", "../.."][..]))
            .prop_map(|(p, t)| Member::Symlink(p, t)),
        2 => (path(), path()).prop_map(|(p, t)| Member::Hardlink(p, t)),
        1 => path().prop_map(Member::Fifo),
        1 => (path(), prop::sample::select(&b"SVDMN"[..])).prop_map(|(p, f)| Member::Odd(p, f)),
        2 => (
            prop::option::of((0..4usize, path()).prop_map(|(n, p)| format!("{}{p}", "long/".repeat(n * 30)))),
            prop::option::of((prop::sample::select(&["a", "b", ""][..]), 0..80usize)),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(path, xattr, global)| Member::Pax { path, xattr, global }),
        1 => (1..3usize, path()).prop_map(|(n, p)| Member::LongName(format!("{}{p}", "n/".repeat(n * 60)))),
    ]
}

/// A layer: members with their checksums, what follows the end marker, and maybe a cut.
fn layer() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            (
                member(),
                prop_oneof![8 => Just(Sum::Unsigned), 3 => Just(Sum::Signed), 1 => Just(Sum::Wrong)],
            ),
            0..12,
        ),
        prop_oneof![6 => Just(0usize), 1 => Just(700), 1 => Just((1 << 20) + 1)],
        prop::option::of(0.0..1.0f64),
    )
        .prop_map(|(members, trailer, cut)| {
            let mut out = Vec::new();
            for (member, sum) in &members {
                write_member(&mut out, member, *sum);
            }
            out.resize(out.len() + 1024 + trailer, 0);
            if trailer > 0 {
                let at = out.len() - trailer;
                out[at] = 1;
            }
            if let Some(cut) = cut.filter(|c| *c < 0.15) {
                out.truncate((out.len() as f64 * cut / 0.15) as usize);
            }
            out
        })
}

fn write_member(out: &mut Vec<u8>, member: &Member, sum: Sum) {
    let data: Vec<u8>;
    let (flag, path, link, body): (u8, &[u8], &[u8], &[u8]) = match member {
        Member::File { path, len } => {
            data = (0..*len).map(|i| (i % 251) as u8).collect();
            (b'0', path.as_bytes(), b"", &data)
        }
        Member::Dir(p) => (b'5', p.as_bytes(), b"", b""),
        Member::Symlink(p, t) => (b'2', p.as_bytes(), t.as_bytes(), b""),
        Member::Hardlink(p, t) => (b'1', p.as_bytes(), t.as_bytes(), b""),
        Member::Fifo(p) => (b'6', p.as_bytes(), b"", b""),
        Member::Odd(p, f) => (*f, p.as_bytes(), b"", b""),
        Member::Pax {
            path,
            xattr,
            global,
        } => {
            let mut records = Vec::new();
            if let Some(p) = path {
                records.extend(pax_record("path", p.as_bytes()));
            }
            // `trusted.` names: root may set them on symlinks and FIFOs too (a global header
            // gives its xattrs to every entry), where `user.` names are refused by the kernel.
            if let Some((name, len)) = xattr.filter(|_| is_root()) {
                let key = match name {
                    "" => "SCHILY.xattr.".to_owned(),
                    name => format!("SCHILY.xattr.trusted.{name}"),
                };
                records.extend(pax_record(&key, &vec![b'v'; len]));
            }
            data = records;
            let flag = if *global { b'g' } else { b'x' };
            (flag, b"pax", b"", &data)
        }
        Member::LongName(name) => {
            data = name.as_bytes().to_vec();
            (b'L', b"././@LongLink", b"", &data)
        }
    };
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
    h[136..148].copy_from_slice(b"14000000000\0");
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar\x0000");
    let unsigned: u64 = h.iter().map(|&b| u64::from(b)).sum::<u64>() + 8 * 32;
    let signed: i64 = h.iter().map(|&b| i64::from(b as i8)).sum::<i64>() + 8 * 32;
    let stored = match sum {
        Sum::Unsigned => unsigned,
        Sum::Signed => u64::try_from(signed).unwrap_or(unsigned),
        Sum::Wrong => unsigned + 1,
    };
    h[148..156].copy_from_slice(format!("{stored:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// File contents by object.
type Objects = BTreeMap<ObjectId, Vec<u8>>;

/// The import's view: the entries, or the error.
fn import(layer: &[u8]) -> Result<(Vec<Entry>, Objects), TarError> {
    let mut objects = BTreeMap::new();
    let parts = tarstream::split(layer, &limits(), |file: &mut dyn Read, at| {
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|source| at.read_error(source))?;
        let id = ObjectId::of(&buf);
        objects.insert(id, buf);
        Ok::<_, TarError>(id)
    })?;
    Ok((parts.entries, objects))
}

/// The tree the import's entries describe, as an applier onto an empty directory makes it.
/// Whiteouts hide only what the layer did not write itself; an opaque marker makes its
/// directory (without writing it) and hides what is in it that the layer did not write.
fn model(entries: &[Entry], objects: &Objects) -> BTreeMap<Vec<u8>, Kind> {
    let mut tree: BTreeMap<Vec<u8>, Kind> = BTreeMap::new();
    let mut written: BTreeSet<Vec<u8>> = BTreeSet::new();
    let parents = |path: &[u8]| -> Vec<Vec<u8>> {
        let slashes = path.iter().enumerate().filter(|(_, b)| **b == b'/');
        slashes.map(|(at, _)| path[..at].to_vec()).collect()
    };
    let below = |dir: &[u8]| [dir, b"/"].concat();
    for entry in entries {
        let path = entry.path.as_slice();
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(at) => (&path[..at], &path[at + 1..]),
            None => (&b""[..], path),
        };
        if path.is_empty() {
            continue;
        }
        let hidden = if name == b".wh..wh..opq" {
            for p in parents(path) {
                tree.entry(p).or_insert(Kind::Dir);
            }
            Some(parent.to_vec())
        } else if let Some(hidden) = name.strip_prefix(b".wh.") {
            let target = if parent.is_empty() {
                hidden.to_vec()
            } else {
                [parent, b"/", hidden].concat()
            };
            if !written.contains(&target) {
                let prefix = below(&target);
                tree.retain(|k, _| *k != target && !k.starts_with(&prefix));
                continue;
            }
            // A directory the layer wrote loses what it did not write, as if opaque.
            (tree.get(&target) == Some(&Kind::Dir)).then_some(target)
        } else {
            None
        };
        if let Some(dir) = hidden {
            let prefix = below(&dir);
            let root = dir.is_empty();
            tree.retain(|k, _| !(root || k.starts_with(&prefix)) || written.contains(k));
            continue;
        }
        if name.starts_with(b".wh.") {
            continue;
        }
        let node = match &entry.kind {
            EntryKind::Dir => Kind::Dir,
            EntryKind::File { object, .. } => Kind::File(objects[object].clone()),
            EntryKind::Hardlink { target } => tree.get(target).cloned().expect("a held file"),
            EntryKind::Symlink { target } => Kind::Symlink(OsStr::from_bytes(target).into()),
            _ => Kind::Fifo,
        };
        for p in parents(path) {
            tree.insert(p.clone(), Kind::Dir);
            written.insert(p);
        }
        if node != Kind::Dir {
            let prefix = below(path);
            tree.retain(|k, _| !k.starts_with(&prefix));
        }
        tree.insert(path.to_vec(), node);
        written.insert(path.to_vec());
    }
    tree
}

/// The tree under `root`, in the model's shape; every file in it has mode 0644.
fn walk(root: &Path) -> BTreeMap<Vec<u8>, Kind> {
    tree::snapshot(root, &Options::default())
        .into_iter()
        .map(|(path, node)| {
            if let Kind::File(_) = node.kind {
                assert_eq!(node.mode, 0o644, "{path:?}");
            }
            (path.into_os_string().into_encoded_bytes(), node.kind)
        })
        .collect()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn apply(layer: &[u8], root: &Path) -> Result<(), strata_diff::ApplyError> {
    let options = ApplyOptions::default()
        .with_ownership(if is_root() {
            Ownership::FromLayer
        } else {
            Ownership::Caller
        })
        .with_limits(limits());
    strata_diff::apply_layer(layer, root, &options).map(drop)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn import_and_apply_accept_the_same_layers_with_the_same_entries(layer in layer()) {
        let root = tempfile::tempdir().unwrap();
        let imported = import(&layer);
        let applied = apply(&layer, root.path());
        match (&imported, &applied) {
            (Ok((entries, objects)), Ok(())) => {
                prop_assert_eq!(walk(root.path()), model(entries, objects));
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(
                false,
                "import {:?} but apply {:?}",
                imported.as_ref().map(|_| "accepted"),
                applied
            ),
        }
    }
}

/// A one-file layer whose PAX header is about `pax_len` bytes long.
fn with_pax(pax_len: usize) -> Vec<u8> {
    let mut records = pax_record("comment", &vec![b'c'; pax_len - 20]);
    records.extend(pax_record("path", b"f"));
    strata_testkit::hostile::RawTar::new()
        .pax(&records, false)
        .file("f", b"x")
        .finish()
}

#[test]
fn one_cap_on_extended_headers_for_import_and_apply() {
    // Under the default limit of 1 MiB both read it; over it (the applier used to take up to
    // 16 MiB) both refuse it.
    for (len, accepted) in [(1 << 19, true), ((1 << 20) + 4096, false)] {
        let layer = with_pax(len);
        let root = tempfile::tempdir().unwrap();
        let options = ApplyOptions::default();
        let applied = strata_diff::apply_layer(&layer[..], root.path(), &options);
        let imported = tarstream::split(&layer[..], &Limits::default(), |f: &mut dyn Read, at| {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(|e| at.read_error(e))?;
            Ok::<_, TarError>(ObjectId::of(&buf))
        });
        assert_eq!(applied.is_ok(), accepted, "apply of {len}: {applied:?}");
        assert_eq!(imported.is_ok(), accepted, "import of {len}");
    }
}

#[test]
fn signed_header_checksums_are_read_by_import_and_apply() {
    let mut layer = Vec::new();
    write_member(
        &mut layer,
        &Member::File {
            path: "f\u{e9}",
            len: 3,
        },
        Sum::Signed,
    );
    layer.resize(layer.len() + 1024, 0);
    let (entries, _) = import(&layer).expect("import reads a signed checksum");
    assert_eq!(entries[0].path, "f\u{e9}".as_bytes());
    let root = tempfile::tempdir().unwrap();
    apply(&layer, root.path()).expect("apply reads a signed checksum");
    assert_eq!(fs::read(root.path().join("f\u{e9}")).unwrap(), [0, 1, 2]);
}
