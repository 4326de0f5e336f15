//! The fields of a 512-byte header block.

use super::BLOCK;

/// Byte ranges of the header fields read here.
pub(super) const NAME: std::ops::Range<usize> = 0..100;
pub(super) const MODE: std::ops::Range<usize> = 100..108;
pub(super) const UID: std::ops::Range<usize> = 108..116;
pub(super) const GID: std::ops::Range<usize> = 116..124;
pub(super) const SIZE: std::ops::Range<usize> = 124..136;
pub(super) const MTIME: std::ops::Range<usize> = 136..148;
const CHECKSUM: std::ops::Range<usize> = 148..156;
pub(super) const TYPE: usize = 156;
pub(super) const LINK: std::ops::Range<usize> = 157..257;
const MAGIC: std::ops::Range<usize> = 257..263;
pub(super) const DEV_MAJOR: std::ops::Range<usize> = 329..337;
pub(super) const DEV_MINOR: std::ops::Range<usize> = 337..345;
const PREFIX: std::ops::Range<usize> = 345..500;

/// Whether the stored checksum is the sum of the block's bytes, the checksum field counted as
/// spaces: unsigned (POSIX) or signed (what some old writers computed; GNU tar takes both).
pub(super) fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let Some(stored) = number(&block[CHECKSUM]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if CHECKSUM.contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored) == Ok(signed)
}

/// A numeric field: octal digits (leading spaces or NULs, ended by a space or NUL), empty for
/// 0, or GNU base-256 (high bit set; negative values refused). `None` if it does not parse.
pub(super) fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut value = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let start = field
        .iter()
        .position(|&b| b != b' ' && b != 0)
        .unwrap_or(field.len());
    let rest = &field[start..];
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == 0)
        .unwrap_or(rest.len());
    let mut value = 0u64;
    for &d in &rest[..end] {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

/// `bytes` up to its first NUL.
pub(super) fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// A ustar or GNU header (which both carry device numbers).
pub(super) fn has_devices(block: &[u8; BLOCK]) -> bool {
    block[MAGIC].starts_with(b"ustar")
}

/// The path the block itself gives: `prefix/name` in a POSIX ustar header (GNU headers use
/// the prefix bytes for other things), `name` otherwise.
pub(super) fn path(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = trim_nul(&block[NAME]);
    let prefix = trim_nul(&block[PREFIX]);
    if &block[MAGIC] == b"ustar\0" && !prefix.is_empty() {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(name);
        path
    } else {
        name.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base256() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"  644 \0"), Some(0o644));
        assert_eq!(number(b"\0\0\0"), Some(0));
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]),
            Some(2 << 32)
        );
        assert_eq!(number(&[0xc0, 0, 0, 1]), None);
        assert_eq!(number(b"0009"), None);
    }

    fn block_with_checksum(fill: u8, checksum: u64) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..100].fill(fill);
        let text = format!("{checksum:06o}\0 ");
        block[CHECKSUM].copy_from_slice(text.as_bytes());
        block
    }

    #[test]
    fn checksums_signed_or_unsigned() {
        // 100 bytes of 0xff: unsigned 25500, signed -100, plus 8 spaces for the field.
        let unsigned = 100 * 255 + 8 * 32;
        assert!(checksum_ok(&block_with_checksum(0xff, unsigned)));
        assert!(!checksum_ok(&block_with_checksum(0xff, unsigned + 1)));
        // A negative signed sum cannot be written in octal; a positive one can.
        let mut block = block_with_checksum(0x80, 0);
        block[200..300].fill(0x7f);
        let signed = (100 * -128i64 + 100 * 127 + 8 * 32) as u64;
        block[CHECKSUM].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert!(checksum_ok(&block));
    }
}
