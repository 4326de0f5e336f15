//! The shape of a real root filesystem, read from a `*.profile.tsv` file
//! (`section<TAB>key<TAB>count` lines; `#` starts a comment).

use crate::rng::Rng;

/// A histogram bucket: `count` items with a value in `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Smallest value of the bucket.
    pub lo: u64,
    /// Largest value of the bucket.
    pub hi: u64,
    /// How many items fall in it.
    pub count: u64,
}

/// The shape of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// Number of directories.
    pub dirs: u64,
    /// Number of regular files.
    pub files: u64,
    /// Number of symlinks.
    pub symlinks: u64,
    /// Number of other entries (fifos, devices).
    pub other: u64,
    /// Regular files that share their inode with another path.
    pub hardlinked_files: u64,
    /// File sizes in bytes.
    pub file_sizes: Vec<Bucket>,
    /// Entries per directory.
    pub dir_entries: Vec<Bucket>,
    /// Depth of entries below the root (1 = a child of the root).
    pub depth: Vec<Bucket>,
}

/// A profile file line that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("profile line {line}: {reason}")]
#[non_exhaustive]
pub struct ProfileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

const DEBIAN_MINBASE: &str = include_str!("../profiles/debian-bookworm-minbase.profile.tsv");

impl Profile {
    /// A Debian bookworm `debootstrap --variant=minbase` root: about 6,800 entries, 200 MB.
    pub fn debian_minbase() -> Profile {
        Profile::parse(DEBIAN_MINBASE).expect("the bundled profile parses")
    }

    /// Reads a `*.profile.tsv` file.
    pub fn parse(tsv: &str) -> Result<Profile, ProfileError> {
        let mut p = Profile::default();
        for (i, line) in tsv.lines().enumerate() {
            let err = |reason| ProfileError {
                line: i + 1,
                reason,
            };
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let (Some(section), Some(key), Some(count)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(err("expected section, key and count"));
            };
            let count: u64 = count
                .trim()
                .parse()
                .map_err(|_| err("count is not a number"))?;
            let range = || -> Result<Bucket, ProfileError> {
                let (lo, hi) = key.split_once('-').unwrap_or((key, key));
                let lo = lo.parse().map_err(|_| err("bad range"))?;
                let hi = hi.parse().map_err(|_| err("bad range"))?;
                Ok(Bucket { lo, hi, count })
            };
            match (section, key) {
                ("kind", "dir") => p.dirs = count,
                ("kind", "file") => p.files = count,
                ("kind", "symlink") => p.symlinks = count,
                ("kind", "other") => p.other = count,
                ("total", "hardlinked_files") => p.hardlinked_files = count,
                ("total", _) => {}
                ("file_size_bytes", _) => p.file_sizes.push(range()?),
                ("dir_entries", _) => p.dir_entries.push(range()?),
                ("depth", _) => p.depth.push(range()?),
                _ => return Err(err("unknown section or key")),
            }
        }
        Ok(p)
    }

    /// Total entries (all kinds).
    pub fn entries(&self) -> u64 {
        self.dirs + self.files + self.symlinks + self.other
    }
}

/// Draws a value from a histogram: a bucket by its weight, then uniformly inside it.
pub(crate) fn draw(buckets: &[Bucket], rng: &mut Rng) -> u64 {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0;
    }
    let mut pick = rng.below(total);
    for b in buckets {
        if pick < b.count {
            return b.lo + rng.below(b.hi - b.lo + 1);
        }
        pick -= b.count;
    }
    unreachable!("pick < total")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_profile_reads_back() {
        let p = Profile::debian_minbase();
        assert_eq!((p.dirs, p.files, p.symlinks, p.other), (784, 5329, 646, 8));
        assert_eq!(p.file_sizes.iter().map(|b| b.count).sum::<u64>(), 5329);
        assert!(Profile::parse("kind\tdir\tmany").is_err());
    }
}
