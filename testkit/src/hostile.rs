//! Hostile inputs, built by code: layers and layouts that try to escape their root or exhaust
//! memory, disk or time. Shared by the layer store's tests, the CLI's memory checks and the
//! benches.

use std::fs;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// gzip of `data` at level 1 (these inputs are large and compress trivially).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// One PAX record, `"<len> <key>=<value>\n"`, whose length counts itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A tar being written by hand: entries the tar crate would refuse to write are the point.
#[derive(Default)]
pub struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    /// An empty archive.
    pub fn new() -> Self {
        RawTar::default()
    }

    /// Appends an entry of `kind` named `path` (written verbatim, `..` and all), with `link`
    /// as its link name and `data` as its content.
    pub fn entry(&mut self, kind: tar::EntryType, path: &[u8], link: &[u8], data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        let ustar = h.as_ustar_mut().expect("a ustar header");
        ustar.name[..path.len()].copy_from_slice(path);
        ustar.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().next_multiple_of(512), 0);
    }

    /// A directory.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(tar::EntryType::Directory, path.as_bytes(), b"", b"");
        self
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.entry(tar::EntryType::Regular, path.as_bytes(), b"", data);
        self
    }

    /// A symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(
            tar::EntryType::Symlink,
            path.as_bytes(),
            target.as_bytes(),
            b"",
        );
        self
    }

    /// A hard link to `target`.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(
            tar::EntryType::Link,
            path.as_bytes(),
            target.as_bytes(),
            b"",
        );
        self
    }

    /// A PAX extended header for the next entry (`global`: for every later entry).
    pub fn pax(&mut self, records: &[u8], global: bool) -> &mut Self {
        let kind = if global {
            tar::EntryType::XGlobalHeader
        } else {
            tar::EntryType::XHeader
        };
        self.entry(kind, b"pax_header", b"", records);
        self
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.resize(out.len() + 1024, 0);
        out
    }
}

/// A layer that plants a host file: directory `d` with `d/secret`, then `d` replaced by a
/// symlink to `outside` (absolute, or `../`s climbing out of the tree), then a hard link `h`
/// to `d/secret`. Resolved through the symlink, `h` would be the host's `outside/secret`.
pub fn host_link_layer(outside: &str) -> Vec<u8> {
    RawTar::new()
        .dir("d")
        .file("d/secret", b"harmless")
        .symlink("d", outside)
        .hardlink("h", "d/secret")
        .finish()
}

/// A layer that writes below its own symlink to `outside`: `d -> outside`, then `d/x`.
pub fn write_through_symlink_layer(outside: &str) -> Vec<u8> {
    RawTar::new()
        .symlink("d", outside)
        .file("d/x", b"planted")
        .finish()
}

/// A gzip'd layer holding one file of `size` zero bytes (an inflation bomb).
pub fn zero_bomb(size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").expect("a short name");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(h.as_bytes()).expect("writing to memory");
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        e.write_all(&zeros[..n]).expect("writing to memory");
        left -= n as u64;
    }
    e.write_all(&vec![
        0u8;
        (size.next_multiple_of(512) - size) as usize + 1024
    ])
    .expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// A layer of one file and `n` hard links, each naming the one before.
pub fn hardlink_chain(n: usize) -> Vec<u8> {
    let mut tar = RawTar::new();
    tar.file("l0", b"x");
    for i in 1..=n {
        tar.hardlink(&format!("l{i}"), &format!("l{}", i - 1));
    }
    tar.finish()
}

/// A layer of `files` files, each with one xattr of `value_len` bytes.
pub fn xattr_flood(files: usize, value_len: usize) -> Vec<u8> {
    let record = pax_record("SCHILY.xattr.user.big", &vec![b'x'; value_len]);
    let mut tar = RawTar::new();
    for i in 0..files {
        tar.pax(&record, false).file(&format!("f{i}"), b"");
    }
    tar.finish()
}

/// A layer whose one global PAX header of about `value_len` bytes under `key` applies to
/// `files` files.
pub fn global_pax(key: &str, value_len: usize, files: usize) -> Vec<u8> {
    let mut tar = RawTar::new();
    tar.pax(&pax_record(key, &vec![b'x'; value_len]), true);
    for i in 0..files {
        tar.file(&format!("f{i}"), b"");
    }
    tar.finish()
}

/// A layer of `n` empty files in directories of 1000.
pub fn many_entries(n: usize) -> Vec<u8> {
    let mut tar = RawTar::new();
    for i in 0..n {
        if i % 1000 == 0 {
            tar.dir(&format!("d{}", i / 1000));
        }
        tar.file(&format!("d{}/f{}", i / 1000, i % 1000), b"");
    }
    tar.finish()
}

/// Writes at `dir` an OCI layout whose index nests `depth` sub-indexes, each listing the next
/// `width` times: tiny on disk, `width^depth` descriptors when walked naively.
pub fn nested_index_layout(dir: &Path, width: usize, depth: usize) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("creating the layout");
    // The innermost index lists nothing.
    let mut index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []
    }))
    .expect("json");
    for _ in 0..depth {
        let digest = sha256(&index);
        fs::write(blobs.join(&digest[7..]), &index).expect("writing a blob");
        let entry = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
        });
        index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": vec![entry; width],
        }))
        .expect("json");
    }
    fs::write(dir.join("index.json"), &index).expect("writing index.json");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("writing oci-layout");
}
