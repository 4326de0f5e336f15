//! The merge walk: overlay's lookup rules applied to every name, top layer first.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{CWD, Mode, RenameFlags};

use super::copy::{self, copy_data, copy_metadata};
use super::{FallbackError, Flatten, Stats};
use crate::conventions::{self, Opacity};

/// One lower's directory that contributes to a merged directory.
#[derive(Debug, Clone)]
struct Source {
    /// Index of the lower in the stack (hard links never cross lowers).
    layer: usize,
    path: PathBuf,
}

struct Builder<'a> {
    spec: &'a Flatten,
    /// The final target, for error messages (the tree is built under a temp name).
    target: &'a Path,
    stats: Stats,
    /// First copy of each multiply-linked inode, per lower: `(layer, dev, ino)`.
    links: HashMap<(usize, u64, u64), PathBuf>,
}

/// Builds the merged tree in a temp dir beside `target`, then renames it into place.
pub(super) fn build(spec: &Flatten, target: &Path) -> Result<Stats, FallbackError> {
    let tmp = temp_name(target);
    let mut builder = Builder {
        spec,
        target,
        stats: Stats::default(),
        links: HashMap::new(),
    };
    // Layer roots always merge: overlay ignores opacity on them.
    let roots = spec
        .lowers
        .iter()
        .enumerate()
        .map(|(layer, path)| Source {
            layer,
            path: path.clone(),
        })
        .collect();
    let built = builder.dir(&tmp, Path::new(""), roots).and_then(|()| {
        rustix::fs::renameat_with(CWD, &tmp, CWD, target, RenameFlags::NOREPLACE).map_err(|e| {
            FallbackError::Write {
                path: target.to_path_buf(),
                source: e.into(),
            }
        })
    });
    if built.is_err() {
        if let Err(err) = fs::remove_dir_all(&tmp) {
            tracing::warn!(tmp = %tmp.display(), %err, "could not remove the half-built tree");
        }
    }
    built.map(|()| builder.stats)
}

/// `.NAME.strata-tmp-PID-N` beside `target`.
fn temp_name(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.strata-tmp-{}-{n}", std::process::id()))
}

impl Builder<'_> {
    fn read_error(path: &Path) -> impl FnOnce(io::Error) -> FallbackError + '_ {
        move |source| FallbackError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    fn write_error(&self, rel: &Path) -> impl FnOnce(io::Error) -> FallbackError + use<'_> {
        let path = self.target.join(rel);
        move |source| FallbackError::Write { path, source }
    }

    /// Builds the merged directory `dst` (`rel` in the target) from `sources`, topmost first.
    fn dir(&mut self, dst: &Path, rel: &Path, sources: Vec<Source>) -> Result<(), FallbackError> {
        rustix::fs::mkdirat(CWD, dst, Mode::from_raw_mode(0o700))
            .map_err(|e| self.write_error(rel)(e.into()))?;
        self.stats.dirs += 1;
        let mut names = BTreeSet::new();
        for source in &sources {
            for entry in fs::read_dir(&source.path).map_err(Self::read_error(&source.path))? {
                names.insert(entry.map_err(Self::read_error(&source.path))?.file_name());
            }
        }
        for name in names {
            self.entry(dst, rel, &sources, name)?;
        }
        let top = &sources[0].path;
        let meta = fs::symlink_metadata(top).map_err(Self::read_error(top))?;
        copy_metadata(top, &meta, dst).map_err(self.write_error(rel))
    }

    /// Resolves `name` in the merged dir as overlay's lookup would, and places it.
    fn entry(
        &mut self,
        dst_dir: &Path,
        rel_dir: &Path,
        sources: &[Source],
        name: OsString,
    ) -> Result<(), FallbackError> {
        let (dst, rel) = (dst_dir.join(&name), rel_dir.join(&name));
        let ns = self.spec.namespace;
        let mut found = sources.iter().enumerate().filter_map(|(i, source)| {
            let path = source.path.join(&name);
            fs::symlink_metadata(&path).ok().map(|meta| (i, path, meta))
        });
        let Some((i, path, meta)) = found.next() else {
            return Ok(());
        };
        if conventions::whiteout_style(&path, &meta, ns)
            .map_err(Self::read_error(&path))?
            .is_some()
        {
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if !meta.is_dir() {
            return self.leaf(sources[i].layer, &path, &meta, &dst, &rel);
        }
        // A directory merges with the same-named dirs below it, down to an opaque one or to
        // anything that is not a directory (a file or a whiteout hides everything below).
        let mut merged = vec![Source {
            layer: sources[i].layer,
            path: path.clone(),
        }];
        let mut opaque = conventions::opacity(&path, ns).map_err(Self::read_error(&path))?;
        for (j, lower_path, lower_meta) in found {
            if opaque == Opacity::Opaque || !lower_meta.is_dir() {
                break;
            }
            opaque =
                conventions::opacity(&lower_path, ns).map_err(Self::read_error(&lower_path))?;
            merged.push(Source {
                layer: sources[j].layer,
                path: lower_path,
            });
        }
        self.dir(&dst, &rel, merged)
    }

    /// Places a non-directory.
    fn leaf(
        &mut self,
        layer: usize,
        src: &Path,
        meta: &Metadata,
        dst: &Path,
        rel: &Path,
    ) -> Result<(), FallbackError> {
        let ft = meta.file_type();
        if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(layer, meta.dev(), meta.ino())) {
                fs::hard_link(first, dst).map_err(self.write_error(rel))?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links
                .insert((layer, meta.dev(), meta.ino()), dst.to_path_buf());
        }
        if ft.is_file() {
            let data_path = self.data_of(src)?;
            let data = data_path.as_deref().unwrap_or(src);
            let src_fd = copy::open_read(data).map_err(Self::read_error(data))?;
            let len = rustix::fs::fstat(&src_fd)
                .map_err(|e| Self::read_error(data)(e.into()))?
                .st_size as u64;
            let dst_fd = copy::create(dst).map_err(self.write_error(rel))?;
            let used = copy_data(&src_fd, &dst_fd, len, self.spec.method)
                .map_err(self.write_error(rel))?;
            used.count(&mut self.stats);
            self.stats.files += 1;
            self.stats.bytes += len;
        } else if ft.is_symlink() {
            let link = fs::read_link(src).map_err(Self::read_error(src))?;
            std::os::unix::fs::symlink(&link, dst).map_err(self.write_error(rel))?;
            self.stats.symlinks += 1;
        } else {
            copy::make_special(dst, meta).map_err(self.write_error(rel))?;
            self.stats.specials += 1;
        }
        copy_metadata(src, meta, dst).map_err(self.write_error(rel))
    }

    /// For a metadata-only file, the object in a data-only lower that holds its bytes.
    fn data_of(&self, src: &Path) -> Result<Option<PathBuf>, FallbackError> {
        let ns = self.spec.namespace;
        if !conventions::is_metacopy(src, ns).map_err(Self::read_error(src))? {
            return Ok(None);
        }
        let redirect = conventions::redirect(src, ns)
            .map_err(Self::read_error(src))?
            .unwrap_or_default();
        let relative = Path::new(std::ffi::OsStr::from_bytes(&redirect));
        let relative = relative.strip_prefix("/").unwrap_or(relative);
        let found = (!relative.as_os_str().is_empty())
            .then(|| {
                self.spec
                    .data_lowers
                    .iter()
                    .map(|d| d.join(relative))
                    .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
            })
            .flatten();
        match found {
            Some(path) => Ok(Some(path)),
            None => Err(FallbackError::MissingData {
                path: src.to_path_buf(),
                redirect: String::from_utf8_lossy(&redirect).into_owned(),
            }),
        }
    }
}
