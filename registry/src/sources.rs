//! Where a blob the target repository lacks can be mounted from (`POST
//! …/blobs/uploads/?mount=DIGEST&from=REPO`), so a push moves no bytes the registry already
//! holds elsewhere: the repository the caller names first, then every other repository of the
//! same registry that an image of the store holding the blob is named after (the names it was
//! pulled or tagged under).

use std::collections::HashMap;

use oci_client::Reference;
use strata_layer_store::{ImageRecord, Store, StoreError};

/// Repositories tried per blob, at most: each is one request when it fails.
const MAX_SOURCES: usize = 4;

/// The mount sources of one push.
#[derive(Default)]
pub(crate) struct MountSources {
    /// The repository the caller named.
    named: Option<Reference>,
    /// Blob digest → repositories of the target's registry that an image holding it is named
    /// after.
    by_digest: HashMap<String, Vec<Reference>>,
}

impl MountSources {
    /// The sources for pushing to `target`: `named` (a repository of its registry), then what
    /// the store's image names say.
    pub fn find(
        store: &Store,
        target: &Reference,
        named: Option<&str>,
    ) -> Result<MountSources, StoreError> {
        let repository = |repo: &str| {
            Reference::with_tag(
                target.registry().to_owned(),
                repo.to_owned(),
                "latest".to_owned(),
            )
        };
        let mut sources = MountSources {
            named: named.map(repository),
            by_digest: HashMap::new(),
        };
        for image in store.images()? {
            let repos: Vec<String> = image
                .tags
                .iter()
                .filter_map(|name| name.parse::<Reference>().ok())
                .filter(|r| {
                    r.resolve_registry() == target.resolve_registry()
                        && r.repository() != target.repository()
                })
                .map(|r| r.repository().to_owned())
                .collect();
            if repos.is_empty() {
                continue;
            }
            for digest in blob_digests(&image) {
                let known = sources.by_digest.entry(digest).or_default();
                for repo in &repos {
                    if known.len() < MAX_SOURCES && known.iter().all(|k| k.repository() != repo) {
                        known.push(repository(repo));
                    }
                }
            }
        }
        Ok(sources)
    }

    /// The repositories to try mounting `digest` from, in order.
    pub fn of(&self, digest: &str) -> impl Iterator<Item = &Reference> {
        self.named
            .iter()
            .chain(self.by_digest.get(digest).into_iter().flatten())
    }
}

/// The digests of the config and layer blobs `image`'s manifest names.
fn blob_digests(image: &ImageRecord) -> Vec<String> {
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&image.manifest) else {
        return Vec::new();
    };
    let layers = manifest["layers"].as_array().into_iter().flatten();
    std::iter::once(&manifest["config"])
        .chain(layers)
        .filter_map(|d| d["digest"].as_str().map(str::to_owned))
        .collect()
}
