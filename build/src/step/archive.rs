//! `ADD` of a local tar archive: unpacked into the destination, as docker does, rather than
//! copied. An archive is a source whose content is a tar (`ustar` magic), or gzip or zstd data
//! with a tar suffix (`.tar.gz`, `.tgz`, `.tar.zst`, `.tzst`); bzip2 and xz archives are copied
//! as files. Unpacking goes through the layer applier, so no entry reaches outside the
//! destination; entries keep the archive's owners and modes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;

use strata_diff::ApplyOptions;
use strata_diff::confined::proc_path;

use crate::tree::Source;

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const TAR_SUFFIXES: [&str; 4] = [".tar.gz", ".tgz", ".tar.zst", ".tzst"];

/// `source` opened at its start when it is an archive `ADD` unpacks.
pub(super) fn open(source: &Source) -> io::Result<Option<File>> {
    let Some(mut file) = source.open_file()? else {
        return Ok(None);
    };
    let mut head = [0u8; 263];
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..])? {
            0 => break,
            n => len += n,
        }
    }
    let head = &head[..len];
    let name = source.name().to_string_lossy();
    let tar = head.len() >= 262 && &head[257..262] == b"ustar";
    let compressed = (head.starts_with(GZIP) || head.starts_with(ZSTD))
        && TAR_SUFFIXES.iter().any(|s| name.ends_with(s));
    if !(tar || compressed) {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(Some(file))
}

/// Unpacks `archive` into the directory `dir` (a handle inside the rootfs).
pub(super) fn unpack(archive: File, dir: &OwnedFd) -> Result<(), String> {
    // The applier opens its root by path: the handle's own `/proc` name, with `.` last so
    // that no symlink is followed on the way.
    strata_diff::apply_layer(
        archive,
        &proc_path(dir, ".".as_ref()),
        &ApplyOptions::default(),
    )
    .map(drop)
    .map_err(|e| e.to_string())
}
