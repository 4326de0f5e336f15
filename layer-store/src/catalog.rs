//! What the store holds, by name: images, their names (tags), and layers.

use std::fs;

use strata_metadb::Tx;

use crate::db::{IMAGES, LAYERS, names};
use crate::error::{IoContext, StoreError};
use crate::name;
use crate::record::{self, ImageRecord, Kind, LayerMeta, LayerRecord};
use crate::store::Store;

impl Store {
    /// Every image, ordered by id.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.db.read(|tx| {
            IMAGES
                .all(tx)?
                .iter()
                .map(|(_, value)| Ok(record::decode(Kind::Image, value)?))
                .collect()
        })
    }

    /// The image named `name`: a reference, normalized as docker does (`busybox` is
    /// `docker.io/library/busybox:latest`), or a unique prefix of its id (the manifest digest,
    /// `sha256:` optional) of at least [`MIN_ID_PREFIX`] hex digits.
    ///
    /// # Errors
    /// [`StoreError::ImageNotFound`] when nothing matches, [`StoreError::AmbiguousImage`] when
    /// the prefix matches several images.
    pub fn image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        self.db.read(|tx| {
            let id = resolve(tx, name)?;
            image_record(tx, &id, name)
        })
    }

    /// Tags image `source` (a name or id prefix, as [`Store::image`] takes) as `target` too;
    /// `target` moves from the image it named before, as `docker tag` does. Returns the
    /// normalized target.
    ///
    /// # Errors
    /// `target` is not a reference ([`StoreError::Name`]), or `source` names no image.
    pub fn tag(&self, source: &str, target: &str) -> Result<String, StoreError> {
        let target = name::normalize(target)?;
        self.db.write(|tx| {
            let id = resolve(tx, source)?;
            let previous = names::set(tx, &target, &id)?;
            if let Some(previous) = previous.filter(|p| *p != id) {
                crate::import::untag(tx, &previous, &target)?;
            }
            let mut image = image_record(tx, &id, source)?;
            if !image.tags.contains(&target) {
                image.tags.push(target.clone());
            }
            IMAGES.put(tx, &id, &record::encode(Kind::Image, &image)?)
        })?;
        Ok(target)
    }

    /// Every layer with its metadata row, ordered by id.
    pub fn layers(&self) -> Result<Vec<(String, LayerMeta)>, StoreError> {
        self.db.read(|tx| {
            LAYERS
                .all(tx)?
                .into_iter()
                .map(|(id, value)| Ok((id, record::decode(Kind::LayerMeta, &value)?)))
                .collect()
        })
    }

    /// The metadata row of layer `id`, if the store has it.
    pub fn layer_meta(&self, id: &str) -> Result<Option<LayerMeta>, StoreError> {
        Ok(self.layer_metas(&[id])?.pop().flatten())
    }

    /// The metadata rows of layers `ids`, in order, from one read of the database.
    pub(crate) fn layer_metas(&self, ids: &[&str]) -> Result<Vec<Option<LayerMeta>>, StoreError> {
        self.db.read(|tx| {
            ids.iter()
                .map(|id| match LAYERS.get(tx, id)? {
                    Some(v) => Ok(Some(record::decode(Kind::LayerMeta, &v)?)),
                    None => Ok(None),
                })
                .collect()
        })
    }

    /// The full record of layer `id` (read from `layers/<id>/manifest`).
    pub fn layer_record(&self, id: &str) -> Result<LayerRecord, StoreError> {
        if self.layer_meta(id)?.is_none() {
            return Err(StoreError::LayerNotFound { id: id.to_owned() });
        }
        self.read_layer_record(id)
    }

    /// `layers/<id>/manifest`, for a caller that knows the layer exists.
    pub(crate) fn read_layer_record(&self, id: &str) -> Result<LayerRecord, StoreError> {
        let path = self.layer_dir(id).join("manifest");
        let bytes = fs::read(&path).at(&path)?;
        Ok(record::decode_layer(&bytes)?)
    }

    /// Removes tag `name` and nothing else: an image left without tags stays, listed by its
    /// id (as docker keeps a dangling image), until [`remove_image`](Store::remove_image)
    /// names it by id.
    ///
    /// # Errors
    /// [`StoreError::ImageNotFound`] when no image has this tag.
    pub fn untag(&self, name: &str) -> Result<(), StoreError> {
        let tag = name::normalize(name)?;
        self.db.write(|tx| {
            let id = names::remove(tx, &tag)?.ok_or_else(|| StoreError::ImageNotFound {
                name: name.to_owned(),
            })?;
            crate::import::untag(tx, &id, &tag)
        })
    }

    /// Removes tag `name`; the image goes with its last tag. Its layers stay until
    /// [`gc`](Store::gc).
    ///
    /// # Errors
    /// [`StoreError::DatabaseDamaged`] when the metadata database fails SQLite's check: a
    /// write would build on damage.
    pub fn remove_image(&self, name: &str) -> Result<(), StoreError> {
        self.db.verify()?;
        self.db.write(|tx| {
            // Read inside the transaction that changes it: a concurrent import, tag or rmi
            // commits before or after, never in between.
            let id = resolve(tx, name)?;
            let image = image_record(tx, &id, name)?;
            let tag = name::normalize(name).ok();
            let named = |t: &String| t == name || Some(t) == tag.as_ref();
            let tags: Vec<String> = if image.tags.iter().any(named) {
                image.tags.iter().filter(|t| !named(t)).cloned().collect()
            } else {
                Vec::new()
            };
            for tag in image.tags.iter().filter(|t| !tags.contains(t)) {
                names::remove(tx, tag)?;
            }
            if tags.is_empty() {
                IMAGES.remove(tx, &id)
            } else {
                let updated = ImageRecord {
                    tags,
                    ..image.clone()
                };
                IMAGES.put(tx, &id, &record::encode(Kind::Image, &updated)?)
            }
        })
    }
}

/// The fewest hex digits of an image id that name it.
pub const MIN_ID_PREFIX: usize = 4;

/// The record of image `id`, which `name` resolved to.
fn image_record(tx: &Tx<'_>, id: &str, name: &str) -> Result<ImageRecord, StoreError> {
    let value = IMAGES
        .get(tx, id)?
        .ok_or_else(|| StoreError::ImageNotFound {
            name: name.to_owned(),
        })?;
    Ok(record::decode(Kind::Image, &value)?)
}

/// The id of the image `name` names: its tag (normalized, or as stored by older versions),
/// else a unique id prefix.
fn resolve(tx: &Tx<'_>, name: &str) -> Result<String, StoreError> {
    let not_found = || StoreError::ImageNotFound {
        name: name.to_owned(),
    };
    let normalized = name::normalize(name).ok();
    for candidate in normalized.as_deref().into_iter().chain([name]) {
        if let Some(id) = names::get(tx, candidate)? {
            return Ok(id);
        }
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    let hex = prefix.len() >= MIN_ID_PREFIX
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(not_found());
    }
    let mut found = crate::db::image_ids_with_prefix(tx, prefix)?;
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => Err(StoreError::AmbiguousImage {
            prefix: prefix.to_owned(),
            candidates: found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn an_id_prefix_of_several_images_is_ambiguous_and_lists_them() -> Result<(), StoreError> {
        let root = tempfile::tempdir().at(Path::new("tempdir"))?;
        let store = Store::open(root.path())?;
        let ids = [
            format!("abcd1{}", "0".repeat(59)),
            format!("abcd2{}", "0".repeat(59)),
        ];
        store
            .db
            .write(|tx| ids.iter().try_for_each(|id| IMAGES.put(tx, id, b"")))?;
        let err = store.image("sha256:abcd").expect_err("two images match");
        assert!(
            matches!(&err, StoreError::AmbiguousImage { prefix, candidates }
                if prefix == "abcd" && *candidates == ids),
            "{err}"
        );
        assert!(
            err.to_string().contains("abcd10000000, abcd20000000"),
            "{err}"
        );
        let short = store.image("abc").expect_err("3 digits are too few");
        assert!(matches!(short, StoreError::ImageNotFound { .. }), "{short}");
        Ok(())
    }
}
