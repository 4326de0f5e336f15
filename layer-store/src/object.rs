//! Content objects: every regular file's bytes stored once under `objects/<fan-out>/<name>`,
//! named by their blake3 hash (see [`name`] for the two forms of names), immutable (mode 0444),
//! written under `tmp/` and renamed into place.

mod name;

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Access, AtFlags, CWD, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::durable::Written;
use crate::error::{IoContext, StoreError};
pub(crate) use name::{ObjectName, ShortName, is_fan};

/// Files at least this large are hashed with memory mapping and rayon.
const PARALLEL_HASH_MIN: u64 = 1 << 20;

/// The name of a content object: the blake3 hash of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        ObjectId(*blake3::hash(bytes).as_bytes())
    }

    /// 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The hex digits as a fan-out path, `ab/cdef…` (64 digits): where checkouts live, and
    /// objects of stores written before objects got short names.
    pub fn relative_path(&self) -> String {
        let hex = self.hex();
        format!("{}/{}", &hex[..2], &hex[2..])
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.hex())
    }
}

impl FromStr for ObjectId {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(ObjectId(out))
    }
}

/// Whether an insert wrote a new object or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The object was written.
    New,
    /// An object with these bytes already existed; nothing was written.
    Existing,
}

/// The objects directory of one store.
#[derive(Debug)]
pub(crate) struct Objects {
    dir: PathBuf,
    /// `dir`, open: lookups and renames relative to it walk two path components, not the
    /// store root's whole path, once per object.
    fd: OwnedFd,
    next_tmp: AtomicU64,
}

/// The objects one import staged in its own directory, before [`Objects::publish`].
#[derive(Debug)]
pub(crate) struct Stage {
    dir: PathBuf,
    /// `dir`, open: objects are created relative to it, without walking the store's path.
    fd: OwnedFd,
    /// Ids staged so far: remembered here rather than asked of the file system per file.
    staged: HashSet<ObjectId>,
    /// Which fan-out directories existed when the stage was made: an object none of whose
    /// names has its fan-out there is not looked up (a first import asks nothing per file).
    /// Should another import publish it meanwhile, [`Objects::publish`] finds it there and
    /// drops the copy.
    fanouts: HashSet<[u8; 2]>,
}

impl Stage {
    /// The staging directory: sync it before [`Objects::publish`], or a crash could leave a
    /// published object whose data never reached the disk, which later imports would trust.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a file `name` in the stage for writing, with mode 0444: the descriptor may
    /// write, nobody may later.
    fn create_file(&self, name: &str) -> Result<File, StoreError> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o444))
            .map(File::from)
            .at(&self.dir.join(name))
    }
}

/// Which side of a copy failed.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// Zero runs this long (and aligned) become holes.
const ZERO_RUN: usize = 64 << 10;

/// Copies exactly `size` bytes of `reader` into `file`, hashing them; aligned all-zero runs
/// become holes, so a file of zeros (an inflated bomb, a sparse disk image) costs no disk.
fn copy_sparse(reader: &mut dyn Read, file: &mut File, size: u64) -> Result<ObjectId, Copy> {
    use std::io::{Seek, SeekFrom};
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut hole = false;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        // Whole buffers keep the runs aligned with the file's blocks.
        let mut filled = 0;
        while filled < want {
            match reader.read(&mut buf[filled..want]) {
                Ok(0) => return Err(Copy::Read(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Copy::Read(e)),
            }
        }
        hasher.update(&buf[..filled]);
        for run in buf[..filled].chunks(ZERO_RUN) {
            if run.len() == ZERO_RUN && run.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(ZERO_RUN as i64))
                    .map_err(Copy::Write)?;
                hole = true;
            } else {
                file.write_all(run).map_err(Copy::Write)?;
            }
        }
        left -= filled as u64;
    }
    if hole {
        file.set_len(size).map_err(Copy::Write)?;
    }
    Ok(ObjectId(*hasher.finalize().as_bytes()))
}

impl Objects {
    /// Opens the objects under `dir`, which must exist. Fan-out directories are created as
    /// objects need them: 256 mkdirs cost a new store 0.1 s on a busy file system.
    pub(crate) fn open(dir: PathBuf) -> Result<Self, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&dir, flags, Mode::empty()).at(&dir)?;
        Ok(Objects {
            dir,
            fd,
            next_tmp: AtomicU64::new(0),
        })
    }

    /// The objects directory (the data-only lower of stub mounts).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the object file `name`.
    pub(crate) fn path(&self, name: &ObjectName) -> PathBuf {
        self.dir.join(name.relative_path())
    }

    /// Whether a file `name` exists.
    pub(crate) fn exists(&self, name: &ObjectName) -> Result<bool, StoreError> {
        let path = name.relative_path();
        match rustix::fs::accessat(&self.fd, &path, Access::EXISTS, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e).at(&self.dir.join(path)),
        }
    }

    /// Where object `id` is stored, if the store has it: the one lookup of an object by id.
    /// Its short name first; then the long name, which objects of stores written before short
    /// names keep (they are never moved, so stubs naming them stay good).
    pub(crate) fn find(&self, id: &ObjectId) -> Result<Option<ObjectName>, StoreError> {
        for name in [ObjectName::short(id), ObjectName::long(id)] {
            if self.exists(&name)? {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Whether object `id` exists (a lookup that fails counts as absent).
    pub(crate) fn contains(&self, id: &ObjectId) -> bool {
        matches!(self.find(id), Ok(Some(_)))
    }

    /// The name a stub's redirect gives object `id`: where the store has it, else its short
    /// name, where an import staging it right now publishes it (stubs are built meanwhile).
    pub(crate) fn redirect(&self, id: &ObjectId) -> Result<String, StoreError> {
        let name = self.find(id)?.unwrap_or_else(|| ObjectName::short(id));
        Ok(name.redirect())
    }

    /// Opens object `id` for reading; returns its path too, for messages.
    ///
    /// # Errors
    /// [`StoreError::ObjectMissing`] when the store lacks it.
    pub(crate) fn open_object(&self, id: &ObjectId) -> Result<(File, PathBuf), StoreError> {
        let missing = || StoreError::ObjectMissing { id: id.hex() };
        let path = self.path(&self.find(id)?.ok_or_else(missing)?);
        match File::open(&path) {
            Ok(file) => Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Creates the staging directory `dir` for objects of one import.
    pub(crate) fn stage(&self, dir: PathBuf) -> Result<Stage, StoreError> {
        fs::create_dir(&dir).at(&dir)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&dir, flags, Mode::empty()).at(&dir)?;
        let mut fanouts = HashSet::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let name = entry.at(&self.dir)?.file_name();
            if let Some(fan) = name.to_str().filter(|n| is_fan(n)) {
                let fan = fan.as_bytes();
                fanouts.insert([fan[0], fan[1]]);
            }
        }
        Ok(Stage {
            dir,
            fd,
            staged: HashSet::new(),
            fanouts,
        })
    }

    /// Whether `id` need not be staged again: the store (under either name) or `stage` has it.
    fn known(&self, stage: &Stage, id: &ObjectId) -> Result<bool, StoreError> {
        if stage.staged.contains(id) {
            return Ok(true);
        }
        for name in [ObjectName::short(id), ObjectName::long(id)] {
            if stage.fanouts.contains(&name.fan()) && self.exists(&name)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stages `bytes` as an object in `stage` (a directory of one import) unless the store or
    /// the stage already has it; [`publish`](Objects::publish) moves staged objects into place.
    pub(crate) fn stage_bytes(
        &self,
        stage: &mut Stage,
        bytes: &[u8],
    ) -> Result<(ObjectId, Inserted), StoreError> {
        let id = ObjectId::of(bytes);
        if self.known(stage, &id)? {
            return Ok((id, Inserted::Existing));
        }
        let name = id.hex();
        let mut file = stage.create_file(&name)?;
        file.write_all(bytes).at(&stage.dir.join(name))?;
        stage.staged.insert(id);
        Ok((id, Inserted::New))
    }

    /// Stages the file at `path`, whose bytes hash to `id`, as a hard link (no data is copied)
    /// unless the store or the stage already has it. The caller gives the link an object's
    /// metadata.
    pub(crate) fn stage_link(
        &self,
        stage: &mut Stage,
        path: &Path,
        id: &ObjectId,
    ) -> Result<Inserted, StoreError> {
        if self.known(stage, id)? {
            return Ok(Inserted::Existing);
        }
        rustix::fs::linkat(CWD, path, &stage.fd, id.hex(), AtFlags::empty()).at(path)?;
        stage.staged.insert(*id);
        Ok(Inserted::New)
    }

    /// Stages exactly `size` bytes read from `reader`, hashing while writing.
    pub(crate) fn stage_stream(
        &self,
        stage: &mut Stage,
        reader: &mut dyn Read,
        size: u64,
        read_error: &dyn Fn(io::Error) -> StoreError,
    ) -> Result<(ObjectId, Inserted), StoreError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!("partial.{n}");
        let tmp_path = stage.dir.join(&tmp_name);
        let mut file = stage.create_file(&tmp_name)?;
        let result = copy_sparse(reader, &mut file, size);
        let id = match result {
            Ok(id) => id,
            Err(err) => {
                let _ = fs::remove_file(&tmp_path);
                return Err(match err {
                    Copy::Read(e) => read_error(e),
                    Copy::Write(e) => StoreError::Io {
                        path: tmp_path,
                        source: e,
                    },
                });
            }
        };
        if self.known(stage, &id)? {
            fs::remove_file(&tmp_path).at(&tmp_path)?;
            return Ok((id, Inserted::Existing));
        }
        let staged = stage.dir.join(id.hex());
        fs::rename(&tmp_path, &staged).at(&staged)?;
        stage.staged.insert(id);
        Ok((id, Inserted::New))
    }

    /// Moves every object staged in `stage` into place and removes the staging directory (one
    /// rename at a time: the kernel serializes renames between directories anyway); `written`
    /// learns the fan-out directories that gained entries (the objects' data must be durable
    /// already: see [`Stage::dir`]). Objects go under their short names. A concurrent writer of
    /// the same bytes may have won the race, which is fine: the content is the same. Returns
    /// how many objects were new.
    pub(crate) fn publish(&self, stage: &Stage, written: &mut Written) -> Result<u64, StoreError> {
        let stage_fd = &stage.fd;
        let placed: Vec<Option<ObjectName>> = stage
            .staged
            .iter()
            .map(|id| {
                let name = id.hex();
                let dest_name = ObjectName::short(id);
                let dest = dest_name.relative_path();
                let rename = || {
                    rustix::fs::renameat_with(
                        stage_fd,
                        &name,
                        &self.fd,
                        &dest,
                        RenameFlags::NOREPLACE,
                    )
                };
                let renamed = match rename() {
                    Err(Errno::NOENT) => {
                        let fanout = &dest[..2];
                        match rustix::fs::mkdirat(&self.fd, fanout, Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(e).at(&self.dir.join(fanout)),
                        }
                        rename()
                    }
                    other => other,
                };
                match renamed {
                    Ok(()) => Ok(Some(dest_name)),
                    Err(Errno::EXIST) => rustix::fs::unlinkat(stage_fd, &name, AtFlags::empty())
                        .map(|()| None)
                        .at(&stage.dir.join(&name)),
                    Err(e) => Err(e).at(&self.dir.join(&dest)),
                }
            })
            .collect::<Result<_, StoreError>>()?;
        fs::remove_dir(&stage.dir).at(&stage.dir)?;
        let mut fanouts: Vec<[u8; 2]> = placed.into_iter().flatten().map(|n| n.fan()).collect();
        let new = fanouts.len() as u64;
        fanouts.sort_unstable();
        fanouts.dedup();
        for fan in fanouts {
            written.add(self.dir.join(String::from_utf8_lossy(&fan).as_ref()));
        }
        // Where a fan-out directory was new.
        written.add(self.dir.clone());
        Ok(new)
    }
}

/// The blake3 of the file at `path`: memory-mapped and hashed with rayon when large.
pub fn hash_file(path: &Path) -> Result<ObjectId, StoreError> {
    let len = fs::symlink_metadata(path).at(path)?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= PARALLEL_HASH_MIN {
        hasher.update_mmap_rayon(path).at(path)?;
    } else {
        hasher.update_reader(File::open(path).at(path)?).at(path)?;
    }
    Ok(ObjectId(*hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn objects() -> (tempfile::TempDir, Objects) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("objects")).unwrap();
        fs::create_dir(root.path().join("tmp")).unwrap();
        let objects = Objects::open(root.path().join("objects")).unwrap();
        (root, objects)
    }

    #[test]
    fn same_bytes_are_one_read_only_object() {
        let (root, objects) = objects();
        let mut stage = objects.stage(root.path().join("tmp/stage")).unwrap();
        let (a, first) = objects.stage_bytes(&mut stage, b"hello").unwrap();
        let (b, second) = objects
            .stage_stream(&mut stage, &mut &b"hello"[..], 5, &read_error)
            .unwrap();
        let mut written = Written::default();
        assert_eq!(objects.publish(&stage, &mut written).unwrap(), 1);
        assert!(!written.is_whole_fs());
        assert_eq!((a, first, second), (b, Inserted::New, Inserted::Existing));
        let path = objects.path(&objects.find(&a).unwrap().unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(hash_file(&path).unwrap(), a);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn an_object_published_after_the_stage_was_made_is_not_duplicated() {
        let (root, objects) = objects();
        // The second stage is made before its fan-out exists, so it does not look the object
        // up: publishing finds it there and drops the staged copy.
        let mut first = objects.stage(root.path().join("tmp/first")).unwrap();
        let mut second = objects.stage(root.path().join("tmp/second")).unwrap();
        let (a, inserted_a) = objects.stage_bytes(&mut first, b"shared").unwrap();
        let mut written = Written::default();
        assert_eq!(objects.publish(&first, &mut written).unwrap(), 1);
        let (b, inserted_b) = objects.stage_bytes(&mut second, b"shared").unwrap();
        assert_eq!(
            (a, inserted_a, inserted_b),
            (b, Inserted::New, Inserted::New)
        );
        assert_eq!(objects.publish(&second, &mut written).unwrap(), 0);
        assert_eq!(
            fs::read(objects.path(&objects.find(&a).unwrap().unwrap())).unwrap(),
            b"shared"
        );
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
        // A stage made now sees the fan-out and finds the object without staging it.
        let mut third = objects.stage(root.path().join("tmp/third")).unwrap();
        let (_, inserted_c) = objects.stage_bytes(&mut third, b"shared").unwrap();
        assert_eq!(inserted_c, Inserted::Existing);
    }

    #[test]
    fn an_object_under_its_long_name_is_found_and_not_staged_again() {
        let (root, objects) = objects();
        let id = ObjectId::of(b"old");
        // As a store written before short names holds it.
        let long = ObjectName::long(&id);
        let path = objects.path(&long);
        fs::create_dir(path.parent().unwrap()).unwrap();
        fs::write(&path, b"old").unwrap();
        assert_eq!(objects.find(&id).unwrap(), Some(long));
        assert_eq!(
            objects.redirect(&id).unwrap(),
            format!("/{}", id.relative_path())
        );
        let mut stage = objects.stage(root.path().join("tmp/stage")).unwrap();
        let (got, inserted) = objects.stage_bytes(&mut stage, b"old").unwrap();
        assert_eq!((got, inserted), (id, Inserted::Existing));
        // A new object gets its short name, in a fan-out directory of its own.
        let (new, _) = objects.stage_bytes(&mut stage, b"new").unwrap();
        objects.publish(&stage, &mut Written::default()).unwrap();
        let short = ObjectName::short(&new);
        assert_eq!(objects.find(&new).unwrap(), Some(short));
        assert_eq!(objects.redirect(&new).unwrap().len(), 24);
        assert_eq!(fs::read(objects.path(&short)).unwrap(), b"new");
        let (mut file, _) = objects.open_object(&id).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"old");
        assert!(matches!(
            objects.open_object(&ObjectId::of(b"absent")),
            Err(StoreError::ObjectMissing { .. })
        ));
    }

    #[test]
    fn short_stream_leaves_nothing() {
        let (root, objects) = objects();
        let mut stage = objects.stage(root.path().join("tmp/stage")).unwrap();
        assert!(
            objects
                .stage_stream(&mut stage, &mut &b"abc"[..], 10, &read_error)
                .is_err()
        );
        assert_eq!(fs::read_dir(stage.dir()).unwrap().count(), 0);
    }

    fn read_error(source: io::Error) -> StoreError {
        StoreError::Io {
            path: PathBuf::from("<source>"),
            source,
        }
    }

    #[test]
    fn zero_runs_become_holes() {
        use std::os::unix::fs::MetadataExt;
        let (root, objects) = objects();
        let mut stage = objects.stage(root.path().join("tmp/stage")).unwrap();
        let mut data = vec![0u8; 64 << 20];
        data[5 << 20] = 7;
        data.extend_from_slice(b"tail");
        let (id, _) = objects
            .stage_stream(&mut stage, &mut &data[..], data.len() as u64, &read_error)
            .unwrap();
        assert_eq!(id, ObjectId::of(&data));
        let mut written = Written::default();
        objects.publish(&stage, &mut written).unwrap();
        let path = objects.path(&objects.find(&id).unwrap().unwrap());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), data.len() as u64);
        // Two 64 KiB runs hold data; the rest is holes.
        assert!(
            meta.blocks() * 512 <= 1 << 20,
            "{} bytes allocated",
            meta.blocks() * 512
        );
        assert!(fs::read(&path).unwrap() == data);
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let (root, _) = objects();
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let path = root.path().join("big");
        fs::write(&path, &data).unwrap();
        assert_eq!(hash_file(&path).unwrap(), ObjectId::of(&data));
    }
}
