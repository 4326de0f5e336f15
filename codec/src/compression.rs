//! Which compression a layer blob uses, told by its first bytes, and the reader that undoes it.
//!
//! ```
//! use std::io::Read;
//! use strata_codec::compression::{self, Format};
//!
//! assert_eq!(Format::sniff(&[0x1f, 0x8b, 8]), Format::Gzip);
//! assert_eq!(Format::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Format::Zstd);
//! assert_eq!(Format::sniff(b"etc/\0"), Format::Plain);
//!
//! let blob = zstd::encode_all(&b"a tar"[..], 3)?;
//! let mut plain = String::new();
//! compression::decompressed(&blob[..])?.read_to_string(&mut plain)?;
//! assert_eq!(plain, "a tar");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, BufRead, BufReader, Read};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Read-ahead of [`decompressed`]: large enough that the decoder rarely waits on small reads.
const BUFFER: usize = 256 << 10;

/// The compression of a layer blob, by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// No compression: a tar (`application/vnd.oci.image.layer.v1.tar`).
    Plain,
    /// gzip (`…tar+gzip`); concatenated members are read as one stream.
    Gzip,
    /// zstd (`…tar+zstd`).
    Zstd,
}

impl Format {
    /// The format of a blob that starts with `prefix`; anything that is neither gzip nor zstd
    /// is taken as a plain tar (whose parser then judges it).
    pub fn sniff(prefix: &[u8]) -> Format {
        if prefix.starts_with(GZIP_MAGIC) {
            Format::Gzip
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Format::Zstd
        } else {
            Format::Plain
        }
    }

    /// A reader of `blob` (in this format) decompressed.
    pub fn decoder<'a>(self, blob: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Format::Plain => Box::new(blob),
            Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
            Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob)?),
        })
    }
}

/// `blob` decompressed, its format sniffed from its first bytes.
pub fn decompressed<'a>(blob: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(BUFFER, blob);
    let format = Format::sniff(reader.fill_buf()?);
    format.decoder(reader)
}
