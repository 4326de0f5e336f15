//! [`Client`]: the async API, one handle per store.

use std::sync::Arc;

use strata_layer_store::Store;

use crate::{PullError, PullOptions, PullReport, PushError, PushOptions, PushReport};

/// Pulls images into, and pushes them from, one store; async (tokio).
///
/// The store's own work (verifying, unpacking and committing layers; exporting blobs) runs on
/// tokio's blocking threads, so the handle shares the store by `Arc`. Dropping an operation's
/// future stops it soon after: layers being downloaded stop, what was received stays under
/// `tmp/pull/` for the next pull to resume from, and nothing of the image becomes visible.
///
/// Needs a tokio runtime with I/O and time enabled (`#[tokio::main]` has both). Without one,
/// use [`blocking::Client`](crate::blocking::Client).
#[derive(Debug, Clone)]
pub struct Client {
    store: Arc<Store>,
}

impl Client {
    /// A client for `store`.
    pub fn new(store: Arc<Store>) -> Client {
        Client { store }
    }

    /// The store it pulls into and pushes from.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Pulls `reference` (`registry/repository[:tag][@digest]`) into the store and tags the
    /// image with it (or [`PullOptions::name`]). Only layers whose diff_id the store lacks are
    /// downloaded; each is verified (digest, size, diff_id) while it streams into the import.
    ///
    /// # Errors
    /// [`PullError::TagNotFound`] when the repository lacks the tag, [`PullError::Layer`]
    /// when a layer fails to verify, [`RegistryError::Tls`](crate::RegistryError::Tls) (in [`PullError::Registry`]) when
    /// the registry does not speak TLS, and others naming the reference and the blob at fault;
    /// nothing of the image is visible after an error.
    pub async fn pull(
        &self,
        reference: &str,
        options: &PullOptions,
    ) -> Result<PullReport, PullError> {
        Ok(crate::pull::pull(&self.store, reference, options).await?)
    }

    /// Pushes image `image` (a tag or id in the store) to `reference`.
    ///
    /// # Errors
    /// [`PushError::Export`] when the store cannot write a layer's blob;
    /// [`RegistryError::Store`](crate::RegistryError::Store) (in [`PushError::Registry`]) when the store has no such image,
    /// and the registry's failures as for [`pull`](Client::pull).
    pub async fn push(
        &self,
        image: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<PushReport, PushError> {
        Ok(crate::push::push(&self.store, image, reference, options).await?)
    }
}
