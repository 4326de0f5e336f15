//! `Store::history`: an image's config history aligned with its layers, as `docker history`
//! shows it (entries marked `empty_layer` own no layer).

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::import::{Document, parse_json};
use crate::store::Store;

/// One step of an image's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// When the step ran (RFC 3339), if recorded.
    pub created: Option<String>,
    /// The command that made it, if recorded.
    pub created_by: Option<String>,
    /// A comment, if recorded.
    pub comment: Option<String>,
    /// The layer the step made: `None` for steps that changed only the config.
    pub layer: Option<HistoryLayer>,
}

/// The layer of a [`HistoryEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HistoryLayer {
    /// The blob's digest (from the manifest).
    pub digest: String,
    /// The blob's size.
    pub size: u64,
    /// The layer's diff_id.
    pub diff_id: String,
}

#[derive(Deserialize)]
struct Config {
    /// Missing and `null` (which some tools write) both mean no history.
    #[serde(default, deserialize_with = "null_as_empty")]
    history: Vec<Step>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Step>, D::Error> {
    Ok(Option::<Vec<Step>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct Step {
    created: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    size: u64,
}

impl Store {
    /// The history of image `name`, oldest first. Layers the config's history does not account
    /// for get entries of their own with nothing recorded.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let image = self.image(name)?;
        let config: Config = parse_json("config", Document::Config, &image.config)?;
        let manifest: Manifest = parse_json("manifest", Document::Manifest, &image.manifest)?;
        let mut layers = manifest
            .layers
            .into_iter()
            .zip(&image.layers)
            .map(|(d, diff_id)| HistoryLayer {
                digest: d.digest,
                size: d.size,
                diff_id: diff_id.to_string(),
            });
        let mut out: Vec<HistoryEntry> = config
            .history
            .into_iter()
            .map(|step| HistoryEntry {
                layer: if step.empty_layer {
                    None
                } else {
                    layers.next()
                },
                created: step.created,
                created_by: step.created_by,
                comment: step.comment,
            })
            .collect();
        out.extend(layers.map(|layer| HistoryEntry {
            created: None,
            created_by: None,
            comment: None,
            layer: Some(layer),
        }));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_null_history_is_empty() {
        for config in [r#"{}"#, r#"{"history": null}"#, r#"{"history": []}"#] {
            let parsed: Config = serde_json::from_str(config).unwrap();
            assert!(parsed.history.is_empty(), "{config}");
        }
        let parsed: Config =
            serde_json::from_str(r#"{"history": [{"created_by": "RUN x", "empty_layer": true}]}"#)
                .unwrap();
        assert_eq!(parsed.history[0].created_by.as_deref(), Some("RUN x"));
        assert!(parsed.history[0].empty_layer);
    }
}
