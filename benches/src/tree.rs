//! Generating a profile-shaped tree, and editing one like an image build step.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::profile::{Profile, draw};
use crate::rng::Rng;

/// Which tree to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Same seed, same tree (names, sizes, bytes, modes, mtimes).
    pub seed: u64,
    /// Fraction of the profile's entry counts to generate (1.0: a full-size tree).
    pub scale: f64,
}

/// How a tree is edited by [`mutate`], each as a fraction of the tree's regular files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edits {
    /// Seed of the choices made.
    pub seed: u64,
    /// Entries added, as a new subtree (fraction of the profile's entry counts).
    pub add: f64,
    /// Files rewritten with new content and a later mtime.
    pub modify: f64,
    /// Files deleted.
    pub delete: f64,
    /// Files whose mode changes (metadata only).
    pub chmod: f64,
}

impl Edits {
    /// What installing a few packages does to a minimal base generated at `scale`: about 66 %
    /// more entries, a few percent of files rewritten, a few deleted or chmodded (the Debian
    /// base → python3 pair has 6.8k → 11.2k entries and 4.5k changes).
    pub fn build_step(seed: u64, scale: f64) -> Edits {
        Edits {
            seed,
            add: 0.66 * scale,
            modify: 0.03,
            delete: 0.01,
            chmod: 0.005,
        }
    }
}

/// What [`generate`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeStats {
    /// All entries below the root.
    pub entries: u64,
    /// Directories.
    pub dirs: u64,
    /// Regular files, hardlinks included.
    pub files: u64,
    /// Extra names of hardlinked files.
    pub hardlinks: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Fifos.
    pub other: u64,
    /// Bytes of regular-file data (each inode once).
    pub bytes: u64,
}

/// What [`mutate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EditStats {
    /// Entries added.
    pub added: u64,
    /// Files rewritten.
    pub modified: u64,
    /// Files deleted.
    pub deleted: u64,
    /// Files chmodded.
    pub chmodded: u64,
}

const WORDS: [&str; 16] = [
    "lib", "share", "doc", "bin", "locale", "python", "perl", "man", "include", "apt", "dpkg",
    "systemd", "udev", "terminfo", "zoneinfo", "x86_64",
];
const EXTS: [&str; 8] = ["so", "py", "gz", "h", "conf", "txt", "pm", "mo"];
/// 2022-09-13: a package build date.
const EPOCH: u64 = 1_663_000_000;

/// Generates a tree shaped like `profile` under `root` (which must exist, empty), scaled and
/// seeded by `shape`. File mtimes have zero nanoseconds, as package managers leave them.
pub fn generate(root: &Path, profile: &Profile, shape: &Shape) -> io::Result<TreeStats> {
    let mut rng = Rng::new(shape.seed);
    let scaled = |n: u64| ((n as f64 * shape.scale).round() as u64).max(u64::from(n > 0));
    let max_depth = profile.depth.iter().map(|b| b.hi).max().unwrap_or(1).max(1);
    let mut stats = TreeStats::default();

    // Directories, level by level, so a parent always exists one level up.
    let mut levels: Vec<Vec<PathBuf>> = vec![vec![PathBuf::new()]];
    let n_dirs = scaled(profile.dirs);
    let mut dirs_in_order = Vec::new();
    for i in 0..n_dirs {
        let depth = (draw(&profile.depth, &mut rng).clamp(1, max_depth) as usize).min(levels.len());
        let parent = skewed(&levels[depth - 1], &mut rng, 2).clone();
        let dir = parent.join(format!("{}{i}", WORDS[rng.below(16) as usize]));
        fs::create_dir(root.join(&dir))?;
        if levels.len() == depth {
            levels.push(Vec::new());
        }
        levels[depth].push(dir.clone());
        dirs_in_order.push(dir);
        stats.dirs += 1;
    }

    let mut files = Vec::new();
    for i in 0..scaled(profile.files) {
        let parent = pick_parent(&levels, profile, max_depth, &mut rng);
        let file = parent.join(format!("f{i}.{}", EXTS[rng.below(8) as usize]));
        let size = draw(&profile.file_sizes, &mut rng);
        write_file(&root.join(&file), size, &mut rng)?;
        if rng.chance(0.2) {
            fs::set_permissions(root.join(&file), fs::Permissions::from_mode(0o755))?;
        }
        set_mtime(&root.join(&file), EPOCH + rng.below(1_000_000))?;
        stats.bytes += size;
        files.push(file);
    }
    stats.files = files.len() as u64;

    for i in 0..scaled(profile.hardlinked_files) / 2 {
        if files.is_empty() {
            break;
        }
        let target = &files[rng.below(files.len() as u64) as usize];
        let link = target.with_file_name(format!("h{i}"));
        fs::hard_link(root.join(target), root.join(&link))?;
        stats.hardlinks += 1;
        stats.files += 1;
    }
    for i in 0..scaled(profile.symlinks) {
        let parent = pick_parent(&levels, profile, max_depth, &mut rng);
        let target = match files.len() {
            0 => PathBuf::from("/nowhere"),
            n => Path::new("/").join(&files[rng.below(n as u64) as usize]),
        };
        symlink(target, root.join(parent.join(format!("l{i}"))))?;
        stats.symlinks += 1;
    }
    for i in 0..scaled(profile.other) {
        let parent = pick_parent(&levels, profile, max_depth, &mut rng);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join(parent.join(format!("p{i}"))),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )?;
        stats.other += 1;
    }
    // Directory times last (children change them), deepest first.
    for dir in dirs_in_order.iter().rev() {
        set_mtime(&root.join(dir), EPOCH + rng.below(1_000_000))?;
    }
    stats.entries = stats.dirs + stats.files + stats.symlinks + stats.other;
    Ok(stats)
}

/// Edits the tree at `root` like an image build step: a new profile-shaped subtree, and
/// rewritten, deleted and chmodded files. Deterministic for a given tree and seed.
pub fn mutate(root: &Path, profile: &Profile, edits: &Edits) -> io::Result<EditStats> {
    let mut rng = Rng::new(edits.seed ^ 0xED17);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk(root, Path::new(""), &mut files, &mut dirs)?;
    let mut stats = EditStats::default();
    let later = EPOCH + 50_000_000;
    for file in &files {
        let full = root.join(file);
        let roll = rng.unit();
        if roll < edits.delete {
            fs::remove_file(&full)?;
            stats.deleted += 1;
        } else if roll < edits.delete + edits.modify {
            let size = draw(&profile.file_sizes, &mut rng);
            fs::remove_file(&full)?; // break hardlinks rather than write through them
            write_file(&full, size, &mut rng)?;
            set_mtime(&full, later + rng.below(1000))?;
            stats.modified += 1;
        } else if roll < edits.delete + edits.modify + edits.chmod {
            fs::set_permissions(&full, fs::Permissions::from_mode(0o700))?;
            stats.chmodded += 1;
        }
    }
    if edits.add > 0.0 && !dirs.is_empty() {
        let home = &dirs[rng.below(dirs.len() as u64) as usize];
        let sub = root.join(home).join(format!("pkg-{}", edits.seed));
        fs::create_dir(&sub)?;
        let added = generate(
            &sub,
            profile,
            &Shape {
                seed: edits.seed,
                scale: edits.add,
            },
        )?;
        set_mtime(&sub, later)?;
        set_mtime(&root.join(home), later)?;
        stats.added = added.entries + 1;
    }
    Ok(stats)
}

/// A parent directory for a non-directory entry, at a depth drawn from the profile; fan-out is
/// skewed so that a few directories hold many entries, as in a real tree.
fn pick_parent<'a>(
    levels: &'a [Vec<PathBuf>],
    profile: &Profile,
    max_depth: u64,
    rng: &mut Rng,
) -> &'a PathBuf {
    let depth = (draw(&profile.depth, rng).clamp(1, max_depth) as usize).min(levels.len());
    skewed(&levels[depth - 1], rng, 3)
}

/// An item of `items`, earlier ones much more likely (`power` sets the skew).
fn skewed<'a, T>(items: &'a [T], rng: &mut Rng, power: i32) -> &'a T {
    let i = (items.len() as f64 * rng.unit().powi(power)) as usize;
    &items[i.min(items.len() - 1)]
}

/// Writes `size` bytes that compress about as well as real binaries and text (roughly 2:1).
fn write_file(path: &Path, size: u64, rng: &mut Rng) -> io::Result<()> {
    const TEXT: &[u8] =
        b"The quick brown fox jumps over the lazy dog; ELF\x7f\0\0\0\x02\x01 libc.so.6 \n";
    let mut data = Vec::with_capacity(size as usize);
    while (data.len() as u64) < size {
        if rng.chance(0.5) {
            data.extend_from_slice(TEXT);
        } else {
            for _ in 0..8 {
                data.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
        }
    }
    data.truncate(size as usize);
    fs::write(path, data)
}

fn set_mtime(path: &Path, secs: u64) -> io::Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs as i64,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs as i64,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Regular files and directories below `root`, in sorted order.
fn walk(
    root: &Path,
    rel: &Path,
    files: &mut Vec<PathBuf>,
    dirs: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(name);
        let meta = fs::symlink_metadata(root.join(&path))?;
        if meta.is_dir() {
            dirs.push(path.clone());
            walk(root, &path, files, dirs)?;
        } else if meta.is_file() {
            files.push(path);
        }
    }
    Ok(())
}
