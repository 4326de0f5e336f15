//! Bounds on what an untrusted image may make a reader spend: memory, disk and time stay
//! proportional to these, whatever the image's bytes say.

/// Limits a reader of images enforces on its source: the layer store's import and the applier
/// read layer tars within the same ones (so what one accepts, the other does), and the import
/// reads image indexes within them too. The defaults admit every image seen in the wild by a
/// wide margin; raise them for a source you trust ([`Limits::unlimited`] lifts them all).
///
/// ```
/// use strata_codec::Limits;
/// let limits = Limits::default().with_entries_per_layer(5_000_000);
/// assert_eq!(limits.entries_per_layer, 5_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// How deep image indexes may nest below `index.json` (an index naming an index, …).
    pub index_depth: usize,
    /// Descriptors, over all indexes of the source, that an import looks at.
    pub index_descriptors: usize,
    /// Bytes of one PAX extended header or GNU long name/link record.
    pub pax_bytes_per_entry: u64,
    /// Bytes of PAX and GNU extension records in one layer, a global header counted once for
    /// every entry it applies to.
    pub pax_bytes_per_layer: u64,
    /// Bytes of xattr names and values of one entry.
    pub xattr_bytes_per_entry: u64,
    /// Bytes of xattr names and values in one layer.
    pub xattr_bytes_per_layer: u64,
    /// Entries (files, directories, links, whiteouts, …) of one layer.
    pub entries_per_layer: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            index_depth: 4,
            index_descriptors: 4096,
            pax_bytes_per_entry: 1 << 20,
            pax_bytes_per_layer: 32 << 20,
            xattr_bytes_per_entry: 128 << 10,
            xattr_bytes_per_layer: 16 << 20,
            // About 1 KB of memory each while the layer is imported.
            entries_per_layer: 250_000,
        }
    }
}

impl Limits {
    /// No limit at all: for sources as trusted as the machine itself.
    pub fn unlimited() -> Self {
        Limits {
            index_depth: usize::MAX,
            index_descriptors: usize::MAX,
            pax_bytes_per_entry: u64::MAX,
            pax_bytes_per_layer: u64::MAX,
            xattr_bytes_per_entry: u64::MAX,
            xattr_bytes_per_layer: u64::MAX,
            entries_per_layer: u64::MAX,
        }
    }

    /// With at most `n` entries per layer.
    pub fn with_entries_per_layer(mut self, n: u64) -> Self {
        self.entries_per_layer = n;
        self
    }

    /// With at most `bytes` of xattrs per entry and `per_layer` per layer.
    pub fn with_xattr_bytes(mut self, per_entry: u64, per_layer: u64) -> Self {
        self.xattr_bytes_per_entry = per_entry;
        self.xattr_bytes_per_layer = per_layer;
        self
    }

    /// With at most `per_entry` bytes of one PAX record and `per_layer` per layer.
    pub fn with_pax_bytes(mut self, per_entry: u64, per_layer: u64) -> Self {
        self.pax_bytes_per_entry = per_entry;
        self.pax_bytes_per_layer = per_layer;
        self
    }

    /// With indexes nested at most `depth` deep and at most `descriptors` in all.
    pub fn with_index(mut self, depth: usize, descriptors: usize) -> Self {
        self.index_depth = depth;
        self.index_descriptors = descriptors;
        self
    }
}

/// Which limit an input went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::index_depth`].
    IndexDepth,
    /// [`Limits::index_descriptors`].
    IndexDescriptors,
    /// [`Limits::pax_bytes_per_entry`].
    PaxBytesPerEntry,
    /// [`Limits::pax_bytes_per_layer`].
    PaxBytesPerLayer,
    /// [`Limits::xattr_bytes_per_entry`].
    XattrBytesPerEntry,
    /// [`Limits::xattr_bytes_per_layer`].
    XattrBytesPerLayer,
    /// [`Limits::entries_per_layer`].
    EntriesPerLayer,
    /// The size of a layer record the store can read back.
    RecordSize,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::IndexDepth => "nesting depth of image indexes",
            Limit::IndexDescriptors => "descriptors in image indexes",
            Limit::PaxBytesPerEntry => "bytes of one PAX or long-name record",
            Limit::PaxBytesPerLayer => "bytes of PAX and long-name records per layer",
            Limit::XattrBytesPerEntry => "xattr bytes per entry",
            Limit::XattrBytesPerLayer => "xattr bytes per layer",
            Limit::EntriesPerLayer => "entries per layer",
            Limit::RecordSize => "size of a layer record",
        })
    }
}
