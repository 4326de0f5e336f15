//! The image fetcher of `strata serve`: Strata's registry client pulls what containerd's CRI
//! plugin asks for, with the credentials `strata login` (or `docker login`) stored.

use std::sync::Arc;

use strata_layer_store::Store;
use strata_registry::{Connection, Credentials, LayerFetch, PullOptions, blocking};
use strata_snapshotter::{FetchError, Fetched, ImageFetcher};

/// Pulls images into one store, layers in parallel and resumable, and materializes their
/// layers at once, so the remote snapshots that follow do not wait for them.
pub struct RegistryFetcher {
    client: blocking::Client,
}

impl RegistryFetcher {
    /// A fetcher into `store`.
    pub fn new(store: Arc<Store>) -> RegistryFetcher {
        RegistryFetcher {
            client: blocking::Client::new(store),
        }
    }
}

impl ImageFetcher for RegistryFetcher {
    fn fetch(&self, reference: &str) -> Result<Fetched, FetchError> {
        // Plain HTTP to a registry on loopback, HTTPS elsewhere; the credentials of docker's
        // config.json.
        let options = PullOptions::default()
            .with_connection(Connection::default().with_credentials(Credentials::docker()));
        let report = self.client.pull(reference, &options)?;
        let store = self.client.store();
        let layers: Vec<String> = store
            .image(&report.image)?
            .layers
            .iter()
            .map(|diff_id| diff_id.hex())
            .collect();
        store.materialize_layers(&layers, None)?;
        Ok(Fetched {
            layers: report.layers.len(),
            layers_fetched: report
                .layers
                .iter()
                .filter(|layer| layer.fetch == LayerFetch::Fetched)
                .count(),
        })
    }
}
