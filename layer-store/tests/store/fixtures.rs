//! Test images built by code: layer tars with every entry kind, compressed in every supported
//! way, packaged as OCI layouts, OCI archives, docker archives and bare layers.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use strata_testkit::tree::{self, Kind, Mtime, Options, Xattrs};

/// One entry of a test layer.
#[derive(Debug, Clone)]
pub enum Item {
    File(String, Vec<u8>, u32),
    Dir(String, u32),
    Symlink(String, String),
    Hardlink(String, String),
    /// `.wh.<name>` in the path's directory.
    Whiteout(String),
    /// `.wh..wh..opq` in this directory.
    Opaque(String),
    /// A file with a PAX xattr.
    FileWithXattr(String, Vec<u8>, String, Vec<u8>),
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    Plain,
    /// flate2 (zlib-rs) level 6: reproducible.
    Gzip,
    /// GNU gzip -n: probably not reproducible by zlib-rs.
    GzipCli,
    /// zstd crate, one shot (content size in the frame, no checksum).
    Zstd,
    /// zstd CLI: content size and checksum.
    ZstdCli,
}

impl Comp {
    pub fn media_type(self) -> &'static str {
        match self {
            Comp::Plain => "application/vnd.oci.image.layer.v1.tar",
            Comp::Gzip | Comp::GzipCli => "application/vnd.oci.image.layer.v1.tar+gzip",
            Comp::Zstd | Comp::ZstdCli => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_700_000_000);
    h
}

/// A layer tar of `items`, as GNU tar would lay it out (long names, PAX xattrs).
pub fn layer_tar(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        match item {
            Item::File(path, data, mode) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Item::FileWithXattr(path, data, name, value) => {
                let key = format!("SCHILY.xattr.{name}");
                b.append_pax_extensions([(key.as_str(), &value[..])])
                    .unwrap();
                let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Item::Dir(path, mode) => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                b.append_data(&mut h, format!("{path}/"), &[][..]).unwrap();
            }
            Item::Symlink(path, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Item::Hardlink(path, target) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Item::Whiteout(path) => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                b.append_data(&mut h, wh, &[][..]).unwrap();
            }
            Item::Opaque(dir) => {
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                b.append_data(&mut h, format!("{dir}/.wh..wh..opq"), &[][..])
                    .unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn compress(tar: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::Plain => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::GzipCli => cli(tar, "gzip", &["-n"], "gz"),
        Comp::ZstdCli => cli(tar, "zstd", &["-q", "--rm"], "zst"),
        Comp::Zstd => zstd::bulk::compress(tar, 3).unwrap(),
    }
}

fn cli(tar: &[u8], tool: &str, args: &[&str], ext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.tar");
    fs::write(&path, tar).unwrap();
    let status = Command::new(tool).args(args).arg(&path).status().unwrap();
    assert!(status.success(), "{tool} failed");
    fs::read(dir.path().join(format!("layer.tar.{ext}"))).unwrap()
}

/// A built image: its layer tars and blobs, config and manifest.
pub struct Image {
    pub tars: Vec<Vec<u8>>,
    pub blobs: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    pub fn new(layers: &[Vec<Item>], comp: Comp) -> Image {
        let tars: Vec<Vec<u8>> = layers.iter().map(|l| layer_tar(l)).collect();
        let blobs: Vec<Vec<u8>> = tars.iter().map(|t| compress(t, comp)).collect();
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&config),
                "size": config.len(),
            },
            "layers": blobs.iter().map(|b| serde_json::json!({
                "mediaType": comp.media_type(),
                "digest": sha256(b),
                "size": b.len(),
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Image {
            tars,
            blobs,
            config,
            manifest,
        }
    }

    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Writes an OCI image layout at `dir` tagged `tag`.
    pub fn write_oci(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            fs::write(blobs.join(&sha256(bytes)[7..]), bytes).unwrap();
        };
        put(&self.config);
        put(&self.manifest);
        for blob in &self.blobs {
            put(blob);
        }
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": self.manifest_digest(),
                "size": self.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Writes an OCI archive (a tar of the layout) at `path`.
    pub fn write_oci_archive(&self, path: &Path, tag: &str) {
        let dir = tempfile::tempdir().unwrap();
        self.write_oci(dir.path(), tag);
        let mut b = tar::Builder::new(fs::File::create(path).unwrap());
        b.append_dir_all(".", dir.path()).unwrap();
        b.finish().unwrap();
    }

    /// Writes a `docker save` archive at `path` (plain layer tars, as docker writes them).
    pub fn write_docker_archive(&self, path: &Path, tag: &str) {
        let mut b = tar::Builder::new(fs::File::create(path).unwrap());
        let add = |b: &mut tar::Builder<fs::File>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        let config_name = format!("{}.json", &sha256(&self.config)[7..]);
        add(&mut b, &config_name, &self.config);
        let mut layers: Vec<String> = Vec::new();
        for tar in &self.tars {
            let dir = &sha256(tar)[7..19];
            let name = format!("{dir}/layer.tar");
            if layers.contains(&name) {
                // A repeated layer is a symlink to the first copy, as docker save writes it.
                let name = format!("{dir}-{}/layer.tar", layers.len());
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, &name, format!("../{dir}/layer.tar"))
                    .unwrap();
                layers.push(name);
                continue;
            }
            add(&mut b, &name, tar);
            layers.push(name);
        }
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": layers,
        }]);
        add(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        b.finish().unwrap();
    }
}

/// What a stack of layers looks like once applied in order: path → entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Symlink(String),
}

/// Applies layers in order to a model of the tree (OCI semantics).
pub fn apply_model(layers: &[Vec<Item>]) -> BTreeMap<String, Node> {
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    let remove_under = |tree: &mut BTreeMap<String, Node>, path: &str, keep_self: bool| {
        let prefix = format!("{path}/");
        tree.retain(|k, _| !(k.starts_with(&prefix) || (!keep_self && k == path)));
    };
    for layer in layers {
        // Opaque markers and whiteouts apply to lower layers only (OCI image spec,
        // "Whiteouts"), so apply them first.
        for item in layer {
            match item {
                Item::Opaque(dir) => remove_under(&mut tree, dir, true),
                Item::Whiteout(p) => remove_under(&mut tree, p, false),
                _ => {}
            }
        }
        for item in layer {
            let ensure_parents = |tree: &mut BTreeMap<String, Node>, path: &str| {
                let mut acc = String::new();
                for part in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(part);
                    tree.entry(acc.clone()).or_insert(Node::Dir(0o755));
                }
            };
            match item {
                Item::File(p, data, mode) => {
                    ensure_parents(&mut tree, p);
                    remove_under(&mut tree, p, false);
                    tree.insert(p.clone(), Node::File(data.clone(), *mode));
                }
                Item::FileWithXattr(p, data, _, _) => {
                    ensure_parents(&mut tree, p);
                    tree.insert(p.clone(), Node::File(data.clone(), 0o644));
                }
                Item::Dir(p, mode) => {
                    ensure_parents(&mut tree, p);
                    if !matches!(tree.get(p), Some(Node::Dir(_))) {
                        remove_under(&mut tree, p, false);
                    }
                    tree.insert(p.clone(), Node::Dir(*mode));
                }
                Item::Symlink(p, target) => {
                    ensure_parents(&mut tree, p);
                    remove_under(&mut tree, p, false);
                    tree.insert(p.clone(), Node::Symlink(target.clone()));
                }
                Item::Hardlink(p, target) => {
                    let node = tree[target].clone();
                    tree.insert(p.clone(), node);
                }
                Item::Whiteout(_) | Item::Opaque(_) => {}
            }
        }
    }
    tree
}

/// Reads a real directory tree into the model's shape.
pub fn read_tree(root: &Path) -> BTreeMap<String, Node> {
    tree::snapshot(root, &Options::default())
        .into_iter()
        .map(|(path, node)| {
            let model = match node.kind {
                Kind::File(data) => Node::File(data, node.mode),
                Kind::Dir => Node::Dir(node.mode),
                Kind::Symlink(target) => Node::Symlink(target.to_string_lossy().into_owned()),
                other => panic!("{path:?}: {other:?} has no place in the model"),
            };
            (path.to_string_lossy().into_owned(), model)
        })
        .collect()
}

/// A varied two-layer image: nested dirs, a long name, xattrs, links, and in layer 2 a whiteout,
/// an opaque dir, a replaced file and shared content.
pub fn sample_layers() -> Vec<Vec<Item>> {
    let long = format!("deep/{}/file.txt", "n".repeat(120));
    vec![
        vec![
            Item::Dir("etc".into(), 0o755),
            Item::File("etc/hostname".into(), b"strata\n".to_vec(), 0o644),
            Item::File(
                "etc/passwd".into(),
                b"root:x:0:0::/root:/bin/sh\n".to_vec(),
                0o644,
            ),
            Item::Dir("bin".into(), 0o755),
            Item::File("bin/tool".into(), vec![0x7f; 70_000], 0o755),
            Item::Symlink("bin/alias".into(), "tool".into()),
            Item::Hardlink("bin/tool2".into(), "bin/tool".into()),
            Item::File(long, b"long name\n".to_vec(), 0o600),
            Item::FileWithXattr(
                "etc/caps".into(),
                b"cap".to_vec(),
                "user.test".into(),
                // Binary, with newlines, like a file capability can be: PAX records split by
                // length, not at newlines.
                b"v\n\x00\x0a\xff\n".to_vec(),
            ),
            Item::Dir("var/cache".into(), 0o755),
            Item::File("var/cache/a".into(), b"cached a".to_vec(), 0o644),
            Item::File("var/cache/b".into(), b"cached b".to_vec(), 0o644),
            Item::File("empty".into(), Vec::new(), 0o644),
        ],
        // Like every real layer writer, layer 2 carries its parent directories: a layer
        // materialized on its own cannot know a lower layer's metadata for an implicit parent.
        vec![
            Item::Dir("etc".into(), 0o755),
            Item::Whiteout("etc/hostname".into()),
            Item::Dir("var/cache".into(), 0o755),
            Item::Opaque("var/cache".into()),
            Item::File("var/cache/c".into(), b"cached c".to_vec(), 0o644),
            Item::File(
                "etc/passwd".into(),
                b"root:x:0:0::/root:/bin/bash\n".to_vec(),
                0o644,
            ),
            Item::Dir("usr".into(), 0o755),
            Item::Dir("usr/share".into(), 0o755),
            Item::File("usr/share/copy".into(), vec![0x7f; 70_000], 0o644),
        ],
    ]
}

/// An entry's owner, group, mtime and user xattrs.
pub type Meta = (u32, u32, Option<i64>, Vec<(Vec<u8>, Vec<u8>)>);

/// Owner, mtime (non-directories only: implicit parents get the time of creation) and user
/// xattrs of every entry under `root`.
pub fn read_meta(root: &Path) -> BTreeMap<String, Meta> {
    let options = Options::default()
        .with_mtime(Mtime::Seconds)
        .with_xattrs(Xattrs::Matching(|name| name.starts_with(b"user.")));
    tree::snapshot(root, &options)
        .into_iter()
        .map(|(path, node)| {
            let mtime = node
                .mtime
                .filter(|_| node.kind != Kind::Dir)
                .map(|(s, _)| s);
            let (uid, gid) = node.owner;
            (
                path.to_string_lossy().into_owned(),
                (uid, gid, mtime, node.xattrs),
            )
        })
        .collect()
}
