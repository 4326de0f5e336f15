//! Hostile layers: whatever they hold, nothing outside the target root may change.
//!
//! Each case runs in a sandbox holding `root/` (the target) and `outside/` (a secret file and a
//! directory); `@` in a name or link target stands for the sandbox's absolute path. After the
//! apply (an error is fine), `outside/` must be byte-for-byte and metadata-for-metadata the same
//! and the sandbox may hold nothing new.

use std::fs;
use std::path::Path;

use strata_codec::tar::TarError;
use strata_diff::{ApplyError, ApplyOptions, Whiteouts};

use crate::support::{Raw, RawTar, state};

/// One step of a hostile layer; `@` expands to the sandbox path.
enum Step {
    File(&'static str),
    Dir(&'static str),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
    Char(&'static str),
    /// A PAX `path` record naming the next (file) entry.
    PaxPath(&'static str),
    /// A PAX `linkpath` record for a hardlink entry.
    PaxHardlink(&'static str, &'static str),
    /// A file entry with an xattr.
    FileXattr(&'static str),
    /// A directory entry with mode 0777.
    DirOpen(&'static str),
}

/// What the applier must say.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Either outcome; only the sandbox check matters.
    Any,
    Unsafe,
    InvalidWhiteout,
    MissingLink,
}

use Expect::*;
use Step::*;

const CASES: &[(&str, &[Step], Expect)] = &[
    ("dotdot file", &[File("../outside/pwned")], Unsafe),
    ("dotdot twice", &[File("../../pwned")], Unsafe),
    ("dotdot after dot", &[File("./../outside/pwned")], Unsafe),
    (
        "dotdot in the middle",
        &[File("a/../../outside/pwned")],
        Unsafe,
    ),
    (
        "deep dotdot",
        &[File("a/b/c/../../../../outside/pwned")],
        Unsafe,
    ),
    ("absolute name", &[File("@/outside/pwned")], Any),
    (
        "absolute secret overwrite",
        &[File("@/outside/secret")],
        Any,
    ),
    ("pax path dotdot", &[PaxPath("../outside/pwned")], Unsafe),
    ("pax path absolute", &[PaxPath("@/outside/secret")], Any),
    (
        "symlink dir then file",
        &[Symlink("evil", "../outside"), File("evil/pwned")],
        Any,
    ),
    (
        "abs symlink dir then file",
        &[Symlink("evil", "@/outside"), File("evil/pwned")],
        Any,
    ),
    (
        "symlink then overwrite secret through it",
        &[Symlink("evil", "../outside"), File("evil/secret")],
        Any,
    ),
    (
        "abs symlink then overwrite secret",
        &[Symlink("evil", "@/outside"), File("evil/secret")],
        Any,
    ),
    (
        "symlink to file then file over it",
        &[Symlink("evil", "@/outside/secret"), File("evil")],
        Any,
    ),
    (
        "symlink chain",
        &[
            Symlink("a", "b"),
            Symlink("b", "../outside"),
            File("a/pwned"),
        ],
        Any,
    ),
    (
        "abs symlink chain",
        &[
            Symlink("a", "/b"),
            Symlink("b", "@/outside"),
            File("a/secret"),
        ],
        Any,
    ),
    (
        "symlink to root slash",
        &[Symlink("a", "/"), File("a/pwned")],
        Any,
    ),
    ("symlink up", &[Symlink("up", ".."), File("up/pwned")], Any),
    (
        "symlink up twice",
        &[Symlink("up", "../.."), File("up/outside/secret")],
        Any,
    ),
    (
        "magic link",
        &[Symlink("p", "/proc/self/root@/outside"), File("p/pwned")],
        Any,
    ),
    (
        "proc cwd magic link",
        &[Symlink("p", "/proc/self/cwd"), File("p/pwned")],
        Any,
    ),
    (
        "dir through symlink",
        &[Symlink("evil", "@/outside"), Dir("evil/sub/")],
        Any,
    ),
    (
        "dir over symlink",
        &[Symlink("evil", "@/outside/dir"), DirOpen("evil/")],
        Any,
    ),
    (
        "dir over symlink then file",
        &[
            Symlink("evil", "@/outside"),
            Dir("evil/"),
            File("evil/secret"),
        ],
        Any,
    ),
    (
        "implied parent through symlink",
        &[Symlink("evil", "../outside"), File("evil/new/deeper/pwned")],
        Any,
    ),
    (
        "symlink inside symlinked dir",
        &[Symlink("evil", "../outside"), Symlink("evil/l", "x")],
        Any,
    ),
    (
        "fifo through symlink",
        &[Symlink("evil", "../outside"), Fifo("evil/fifo")],
        Any,
    ),
    (
        "device through symlink",
        &[Symlink("evil", "../outside"), Char("evil/dev")],
        Any,
    ),
    (
        "xattr through symlink",
        &[Symlink("evil", "@/outside"), FileXattr("evil/secret")],
        Any,
    ),
    (
        "xattr on symlink to secret",
        &[Symlink("evil", "@/outside/secret"), FileXattr("evil")],
        Any,
    ),
    (
        "hardlink dotdot target",
        &[Hardlink("link", "../outside/secret")],
        Unsafe,
    ),
    (
        "hardlink absolute target",
        &[Hardlink("link", "@/outside/secret")],
        MissingLink,
    ),
    (
        "hardlink through symlink target",
        &[Symlink("d", "@/outside"), Hardlink("link", "d/secret")],
        MissingLink,
    ),
    (
        "hardlink through relative symlink",
        &[Symlink("d", "../outside"), Hardlink("link", "d/secret")],
        MissingLink,
    ),
    (
        "hardlink placed through symlink",
        &[
            File("x"),
            Symlink("evil", "../outside"),
            Hardlink("evil/pwned", "x"),
        ],
        Any,
    ),
    (
        "hardlink to symlink then write",
        &[
            Symlink("evil", "@/outside/secret"),
            Hardlink("link", "evil"),
            File("link"),
        ],
        Any,
    ),
    ("hardlink to dot", &[Hardlink("link", ".")], Unsafe),
    (
        "pax linkpath dotdot",
        &[PaxHardlink("link", "../outside/secret")],
        Unsafe,
    ),
    ("whiteout dotdot", &[File("../outside/.wh.secret")], Unsafe),
    (
        "whiteout through symlink",
        &[Symlink("evil", "../outside"), File("evil/.wh.secret")],
        Any,
    ),
    (
        "whiteout through abs symlink",
        &[Symlink("evil", "@/outside"), File("evil/.wh.secret")],
        Any,
    ),
    (
        "whiteout of dir through symlink",
        &[Symlink("evil", "@"), File("evil/.wh.outside")],
        Any,
    ),
    (
        "opaque through symlink",
        &[Symlink("evil", "../outside"), File("evil/.wh..wh..opq")],
        Any,
    ),
    (
        "opaque through abs symlink",
        &[Symlink("evil", "@/outside"), File("evil/.wh..wh..opq")],
        Any,
    ),
    (
        "opaque at root through slash",
        &[Symlink("evil", "/"), File("evil/.wh..wh..opq")],
        Any,
    ),
    (
        "whiteout of the symlink itself",
        &[Symlink("evil", "../outside"), File(".wh.evil")],
        Any,
    ),
    ("whiteout dot", &[File(".wh..")], InvalidWhiteout),
    ("whiteout empty", &[File("d/.wh.")], InvalidWhiteout),
    (
        "whiteout of whiteout",
        &[File(".wh..wh.x")],
        InvalidWhiteout,
    ),
    ("absolute whiteout", &[File("@/outside/.wh.secret")], Any),
];

fn expand(s: &str, sandbox: &Path) -> Vec<u8> {
    s.replace('@', sandbox.to_str().unwrap()).into_bytes()
}

fn build(steps: &[Step], sandbox: &Path) -> Vec<u8> {
    let mut tar = RawTar::new();
    for step in steps {
        let e = |s: &str| expand(s, sandbox);
        tar = match *step {
            File(name) => tar.add(&e(name), Raw::File(b"pwned")),
            Dir(name) => tar.add(&e(name), Raw::Dir),
            DirOpen(name) => {
                tar.add_with(&e(name), Raw::Dir, |h| h.set_mode(0o777));
                tar
            }
            Symlink(name, target) => tar.add(&e(name), Raw::Symlink(&e(target))),
            Hardlink(name, target) => tar.add(&e(name), Raw::Hardlink(&e(target))),
            Fifo(name) => tar.add(&e(name), Raw::Fifo),
            Char(name) => tar.add(&e(name), Raw::Char(1, 3)),
            PaxPath(name) => tar
                .pax(&[("path", &e(name))])
                .add(b"placeholder", Raw::File(b"pwned")),
            PaxHardlink(name, target) => tar
                .pax(&[("linkpath", &e(target))])
                .add(&e(name), Raw::Hardlink(b"placeholder")),
            FileXattr(name) => tar
                .pax(&[("SCHILY.xattr.user.pwned", b"1")])
                .add(&e(name), Raw::File(b"pwned")),
        };
    }
    tar.finish()
}

fn sandbox() -> tempfile::TempDir {
    let sandbox = tempfile::tempdir().unwrap();
    let s = sandbox.path();
    fs::create_dir_all(s.join("root")).unwrap();
    fs::create_dir_all(s.join("outside/dir")).unwrap();
    fs::write(s.join("outside/secret"), "secret").unwrap();
    sandbox
}

fn run_case(name: &str, steps: &[Step], expect: Expect, options: &ApplyOptions) {
    let sandbox = sandbox();
    let s = sandbox.path();
    let before = state(&s.join("outside"));
    let layer = build(steps, s);
    let result = strata_diff::apply_layer(&layer[..], &s.join("root"), options);
    assert_eq!(
        state(&s.join("outside")),
        before,
        "{name}: outside changed ({result:?})"
    );
    let mut top: Vec<_> = fs::read_dir(s)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["outside", "root"], "{name}: sandbox gained entries");
    let got = match &result {
        Err(ApplyError::Layer(TarError::UnsafePath { .. })) => Unsafe,
        Err(ApplyError::Layer(TarError::InvalidWhiteout { .. })) => InvalidWhiteout,
        Err(ApplyError::MissingLinkTarget { .. }) => MissingLink,
        _ => Any,
    };
    if expect != Any {
        assert_eq!(got, expect, "{name}: {result:?}");
    }
}

#[test]
fn at_least_forty_hostile_layers_stay_inside_the_root() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    for (name, steps, expect) in CASES {
        run_case(name, steps, *expect, &ApplyOptions::default());
    }
}

#[test]
fn hostile_layers_stay_inside_the_root_when_kept_as_an_overlay_lower() {
    if !crate::support::can_mount() {
        return;
    }
    let options = ApplyOptions::default().with_whiteouts(Whiteouts::Overlay(
        strata_cow::conventions::Namespace::Trusted,
    ));
    for (name, steps, expect) in CASES {
        run_case(name, steps, *expect, &options);
    }
}
