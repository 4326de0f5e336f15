//! ustar headers with PAX extended records where ustar cannot say it (POSIX.1-2001 `pax`).
//!
//! Written by hand rather than through the `tar` crate so that every byte is ours to pin:
//! no uname/gname, no atime/ctime, a fixed PAX header name, numbers in octal.

use std::io::{self, Write};

/// The type flag of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeFlag {
    File,
    Link,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl TypeFlag {
    fn byte(self) -> u8 {
        match self {
            TypeFlag::File => b'0',
            TypeFlag::Link => b'1',
            TypeFlag::Symlink => b'2',
            TypeFlag::Char => b'3',
            TypeFlag::Block => b'4',
            TypeFlag::Dir => b'5',
            TypeFlag::Fifo => b'6',
        }
    }
}

/// Everything a tar entry's header says.
pub(crate) struct EntryHeader<'a> {
    /// The archive path, with a trailing `/` for a directory.
    pub path: &'a [u8],
    pub flag: TypeFlag,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

const BLOCK: usize = 512;
/// Largest value of an 11-digit octal field (size, mtime): 8 GiB - 1.
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// Largest value of a 7-digit octal field (uid, gid): 2097151.
const MAX_OCTAL_7: u64 = 0o777_7777;

/// Writes the header blocks of `h` (a PAX header first when needed).
pub(crate) fn write_header(out: &mut impl Write, h: &EntryHeader<'_>) -> io::Result<()> {
    let mut pax = Vec::new();
    let split = split_ustar_path(h.path);
    if split.is_none() || !h.path.is_ascii() {
        record(&mut pax, b"path", h.path);
    }
    if h.link.len() > 100 || !h.link.is_ascii() {
        record(&mut pax, b"linkpath", h.link);
    }
    if h.size > MAX_OCTAL_11 {
        record(&mut pax, b"size", h.size.to_string().as_bytes());
    }
    if h.uid > MAX_OCTAL_7 {
        record(&mut pax, b"uid", h.uid.to_string().as_bytes());
    }
    if h.gid > MAX_OCTAL_7 {
        record(&mut pax, b"gid", h.gid.to_string().as_bytes());
    }
    if h.mtime < 0 || h.mtime as u64 > MAX_OCTAL_11 {
        record(&mut pax, b"mtime", h.mtime.to_string().as_bytes());
    }
    for (name, value) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        record(&mut pax, &key, value);
    }
    if !pax.is_empty() {
        let pax_header = ustar(&UstarFields {
            name: b"PaxHeader",
            prefix: b"",
            flag: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: 0,
            link: b"",
            dev_major: 0,
            dev_minor: 0,
        });
        out.write_all(&pax_header)?;
        out.write_all(&pax)?;
        out.write_all(&[0u8; BLOCK][..padding(pax.len() as u64)])?;
    }
    let (prefix, name) = split.unwrap_or((b"", truncate(h.path, 100)));
    let header = ustar(&UstarFields {
        name,
        prefix,
        flag: h.flag.byte(),
        mode: h.mode,
        uid: h.uid.min(MAX_OCTAL_7),
        gid: h.gid.min(MAX_OCTAL_7),
        size: h.size.min(MAX_OCTAL_11),
        mtime: h.mtime.clamp(0, MAX_OCTAL_11 as i64) as u64,
        link: truncate(h.link, 100),
        dev_major: h.dev_major,
        dev_minor: h.dev_minor,
    });
    out.write_all(&header)
}

/// Zero bytes that pad `len` bytes of data to a whole block.
pub(crate) fn padding(len: u64) -> usize {
    (BLOCK - (len % BLOCK as u64) as usize) % BLOCK
}

/// The two zero blocks that end an archive.
pub(crate) fn write_trailer(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

struct UstarFields<'a> {
    name: &'a [u8],
    prefix: &'a [u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev_major: u32,
    dev_minor: u32,
}

fn ustar(f: &UstarFields<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..f.name.len()].copy_from_slice(f.name);
    octal(&mut b[100..108], u64::from(f.mode & 0o7777));
    octal(&mut b[108..116], f.uid);
    octal(&mut b[116..124], f.gid);
    octal(&mut b[124..136], f.size);
    octal(&mut b[136..148], f.mtime);
    b[156] = f.flag;
    b[157..157 + f.link.len()].copy_from_slice(f.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if matches!(f.flag, b'3' | b'4') {
        octal(&mut b[329..337], u64::from(f.dev_major));
        octal(&mut b[337..345], u64::from(f.dev_minor));
    }
    b[345..345 + f.prefix.len()].copy_from_slice(f.prefix);
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
}

/// Writes `value` as zero-padded octal digits followed by a NUL into `field`.
fn octal(field: &mut [u8], mut value: u64) {
    let digits = field.len() - 1;
    field[digits] = 0;
    for slot in field[..digits].iter_mut().rev() {
        *slot = b'0' + (value & 7) as u8;
        value >>= 3;
    }
}

/// Splits `path` into ustar's (prefix ≤ 155, name ≤ 100) at a `/`, if it fits at all.
fn split_ustar_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((b"", path));
    }
    if path.len() > 256 {
        return None;
    }
    // The prefix must end at a '/', which is dropped; the rest must fit the name field.
    path.iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0)
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(_, name)| !name.is_empty())
}

fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

/// Appends the PAX record `"<len> <key>=<value>\n"`, whose length counts itself.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        for value_len in [0usize, 1, 5, 90, 95, 96, 997, 998, 9995] {
            let mut out = Vec::new();
            record(&mut out, b"path", &vec![b'a'; value_len]);
            let text = std::str::from_utf8(&out).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                out.len(),
                "value of {value_len}"
            );
        }
    }

    #[test]
    fn long_paths_split_at_a_slash_or_go_to_pax() {
        let long = [vec![b'd'; 120], b"/".to_vec(), vec![b'f'; 50]].concat();
        assert_eq!(split_ustar_path(&long), Some((&long[..120], &long[121..])));
        assert_eq!(split_ustar_path(&[b'x'; 101]), None);
        assert_eq!(split_ustar_path(&[b'x'; 300]), None);
    }
}
