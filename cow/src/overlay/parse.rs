//! Reading the classic option words back into an [`Overlay`] (for [`MountSpec::mount_at`]).
//!
//! [`MountSpec::mount_at`]: crate::MountSpec::mount_at

use std::path::PathBuf;

use super::{Overlay, OverlayOptions, RedirectDir, split_lowerdir, split_options, unescape};
use crate::MountError;

impl Overlay {
    /// Reads a spec's options back (see [`to_spec`](Overlay::to_spec)); commas inside one word
    /// split it, as in `mount(2)` data.
    pub(crate) fn from_spec_options(options: &[String]) -> Result<Overlay, MountError> {
        let invalid = |word: &str, reason| MountError::InvalidSpec {
            option: word.to_owned(),
            reason,
        };
        let mut overlay = Overlay::new().options(OverlayOptions::default().with_index(None));
        let (mut upper, mut work) = (None, None);
        let bool_value = |word: &str, value: &str| match value {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(invalid(word, "expected on or off")),
        };
        for word in options.iter().flat_map(|o| split_options(o)) {
            let (key, value) = match word.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (word.as_str(), None),
            };
            let opts = &mut overlay.options;
            match (key, value) {
                ("lowerdir", Some(v)) => {
                    let (lowers, data) =
                        split_lowerdir(v).ok_or_else(|| invalid(&word, "malformed lowerdir"))?;
                    overlay.lowers = lowers;
                    overlay.data_lowers = data;
                }
                ("upperdir", Some(v)) => upper = Some(PathBuf::from(unescape(v))),
                ("workdir", Some(v)) => work = Some(PathBuf::from(unescape(v))),
                ("userxattr", None) => opts.userxattr = true,
                ("volatile", None) => opts.volatile = true,
                ("ro", None) => opts.read_only = true,
                ("rw", None) => opts.read_only = false,
                ("index", Some(v)) => opts.index = Some(bool_value(&word, v)?),
                ("metacopy", Some(v)) => opts.metacopy = Some(bool_value(&word, v)?),
                ("redirect_dir", Some(v)) => {
                    opts.redirect_dir = Some(
                        RedirectDir::parse(v)
                            .ok_or_else(|| invalid(&word, "unknown redirect_dir mode"))?,
                    );
                }
                _ => return Err(invalid(&word, "unknown overlay option")),
            }
        }
        match (upper, work) {
            (Some(upper), Some(work)) => Ok(overlay.upper(upper, work)),
            (None, None) => Ok(overlay),
            _ => Err(invalid(
                "upperdir/workdir",
                "upperdir and workdir go together",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn dirs(max: usize) -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("/[a-z:,\\\\ ]{1,10}(/[a-z:,]{1,5})?", 0..max)
    }

    proptest! {
        /// `to_spec` and the spec parser agree on every path and option: reading a spec back
        /// gives the same directories, and writing it again gives the same spec.
        #[test]
        fn spec_round_trips(
            lowers in dirs(6).prop_filter("one lower", |l| !l.is_empty()),
            data in dirs(3),
            upper in proptest::option::of(("/[a-z:,]{1,8}", "/[a-z,]{1,8}")),
            userxattr: bool,
            volatile: bool,
            read_only: bool,
            metacopy in proptest::option::of(any::<bool>()),
        ) {
            let mut overlay = Overlay::new().lowers(&lowers).options(OverlayOptions::default().with_userxattr(userxattr).with_volatile(volatile).with_read_only(read_only).with_metacopy(metacopy));
            for d in &data {
                overlay = overlay.data_lower(d);
            }
            if let Some((u, w)) = &upper {
                overlay = overlay.upper(u, w);
            }
            let spec = overlay.to_spec();
            let back = Overlay::from_spec_options(&spec.options).unwrap();
            prop_assert_eq!(back.lower_dirs(), overlay.lower_dirs());
            prop_assert_eq!(back.data_lower_dirs(), overlay.data_lower_dirs());
            prop_assert_eq!(back.upper_dirs(), overlay.upper_dirs());
            prop_assert_eq!(back.to_spec(), spec);
        }
    }
}
