//! Giving the objects of stores written before short names their short names (`fsck --repair`),
//! and rewriting the stubs that name them, crash-safely.
//!
//! For every long-named object, in three steps, each durable before the next: (1) a hard link
//! under its short name; (2) every stub of a layer tree whose redirect names a long name gets
//! the short one; (3) the long name is removed. A crash leaves two names of one inode: stubs
//! naming either read the same bytes, `gc` keeps both (they share a short name), `fsck` finds
//! both good, and the next repair goes on.
//!
//! Step 3 waits while an overlay mount uses `objects/` as a layer: the kernel reads a stub's
//! redirect when it first looks the stub up and follows it when the file is first opened,
//! maybe much later, so a mounted stub may still need the long name. A repair run with nothing
//! mounted removes it.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use strata_cow::conventions::{Attr, Namespace};

use crate::durable::Written;
use crate::error::{IoContext, StoreError};
use crate::fsck::ObjectFiles;
use crate::object::{ObjectId, ObjectName};
use crate::store::Store;

/// What giving objects their short names did.
#[derive(Debug, Default)]
pub(crate) struct Shortened {
    /// Objects now only under their short names (hex ids, sorted).
    pub(crate) renamed: Vec<String>,
    /// Objects that got their short names but keep their long ones while `objects/` is mounted.
    pub(crate) kept_long: u64,
}

impl Store {
    /// Gives every long-named object of `files` (the listing of `objects/`) its short name and
    /// rewrites the stubs naming it. The caller holds the store lock exclusively.
    pub(crate) fn shorten_names(&self, files: &ObjectFiles) -> Result<Shortened, StoreError> {
        let long: Vec<(ObjectId, &Path)> = files
            .iter()
            .filter_map(|(name, path)| match name {
                ObjectName::Long(id) => Some((*id, path.as_path())),
                ObjectName::Short(_) => None,
            })
            .collect();
        self.link_short_names(&long)?;
        // Also when no object is long-named any more: a long-named object that was quarantined
        // and put back (by a repair or an import) came back under its short name.
        self.rewrite_stubs()?;
        if long.is_empty() {
            return Ok(Shortened::default());
        }
        let objects = fs::canonicalize(self.objects_dir()).at(self.objects_dir())?;
        let mounts = strata_cow::overlays_using(&objects).at(Path::new("/proc/self/mountinfo"))?;
        if let Some(point) = mounts.first() {
            tracing::info!(
                objects = long.len(),
                mount = %point.display(),
                "objects/ is mounted: long object names stay until a repair with nothing mounted"
            );
            return Ok(Shortened {
                renamed: Vec::new(),
                kept_long: long.len() as u64,
            });
        }
        let mut written = Written::default();
        let mut renamed = Vec::new();
        for (id, path) in &long {
            fs::remove_file(path).at(path)?;
            written.add(path.parent().unwrap_or(path).to_path_buf());
            renamed.push(id.hex());
        }
        self.sync(written)?;
        renamed.sort();
        Ok(Shortened {
            renamed,
            kept_long: 0,
        })
    }

    /// Step 1: a hard link under each object's short name (one there already holds the same
    /// bytes, as every name is trusted to), durable.
    pub(crate) fn link_short_names(&self, long: &[(ObjectId, &Path)]) -> Result<(), StoreError> {
        let mut written = Written::default();
        for (id, path) in long {
            let dest = self.objects.path(&ObjectName::short(id));
            let fan = dest.parent().unwrap_or(&dest).to_path_buf();
            match fs::create_dir(&fan) {
                Ok(()) => written.add(self.objects_dir().to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).at(&fan),
            }
            match fs::hard_link(path, &dest) {
                Ok(()) => written.add(fan),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).at(&dest),
            }
        }
        self.sync(written)
    }

    /// Step 2: every stub of a layer tree whose redirect names an object's long name gets its
    /// short name, where the object has it, durable. Every tree in `layers/` is searched,
    /// whatever strategy its row records (a crash during a materialization may have left stubs
    /// in a tree the row does not say).
    fn rewrite_stubs(&self) -> Result<(), StoreError> {
        // Only root makes stubs (and sees `trusted.` xattrs); a rootless tree may even hold
        // directories its owner cannot read.
        if !rustix::process::geteuid().is_root() {
            return Ok(());
        }
        let name = Namespace::Trusted.name(Attr::Redirect);
        // The directories, not the database's rows: a repair must not stop at a damaged row.
        let layers = self.root().join("layers");
        let mut files = Vec::new();
        for entry in fs::read_dir(&layers).at(&layers)? {
            let tree = entry.at(&layers)?.path().join("tree");
            if tree.is_dir() {
                regular_files(&tree, &mut files)?;
            }
        }
        let rewritten: Vec<PathBuf> = files
            .into_par_iter()
            .map(|path| {
                let old = strata_cow::xattr::get(&path, name).at(&path)?;
                let Some(ObjectName::Long(id)) = old.as_deref().and_then(parse_redirect) else {
                    return Ok(None);
                };
                let short = ObjectName::short(&id);
                if !self.objects.exists(&short)? {
                    return Ok(None);
                }
                strata_cow::xattr::set(&path, name, short.redirect().as_bytes()).at(&path)?;
                Ok(Some(path))
            })
            .filter_map(Result::transpose)
            .collect::<Result<_, StoreError>>()?;
        let mut written = Written::default();
        for path in rewritten {
            written.add(path);
        }
        self.sync(written)
    }
}

/// The object a redirect `/<fan-out>/<name>` names.
fn parse_redirect(redirect: &[u8]) -> Option<ObjectName> {
    let redirect = std::str::from_utf8(redirect).ok()?;
    let (fan, file) = redirect.strip_prefix('/')?.split_once('/')?;
    ObjectName::parse(fan, file)
}

/// Adds every non-empty regular file under `dir` to `out`, following no symlink.
fn regular_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let kind = entry.file_type().at(&path)?;
        if kind.is_dir() {
            regular_files(&path, out)?;
        } else if kind.is_file() && entry.metadata().at(&path)?.len() > 0 {
            out.push(path);
        }
    }
    Ok(())
}
