//! The blocking API: [`Client`] runs each operation of the async
//! [`crate::Client`] to completion on a tokio runtime of its own, built for the call.
//!
//! It works from a plain thread and from inside a tokio runtime alike: a runtime cannot be
//! started from a thread that runs one (tokio panics with "Cannot start a runtime from within a
//! runtime"), so there the call runs on a scoped thread of its own and the caller's thread waits
//! for it. Either way the calling thread blocks until the operation ends; from async code,
//! prefer [`crate::Client`], which does not.
//!
//! ```no_run
//! use std::sync::Arc;
//! use strata_layer_store::Store;
//! use strata_registry::{PullOptions, blocking};
//! # fn main() -> anyhow::Result<()> {
//! let store = Arc::new(Store::open("/var/lib/strata")?);
//! let report = blocking::Client::new(store).pull("127.0.0.1:5000/app:1", &PullOptions::default())?;
//! println!("image {}", report.image);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use strata_layer_store::Store;

use crate::{
    Connection, PullError, PullOptions, PullReport, PushError, PushOptions, PushReport,
    RegistryError,
};

/// Worker threads of a call's runtime: the network side only (unpacking runs on blocking
/// threads), which two keep busy.
const WORKERS: usize = 2;

/// [`crate::login`], blocking.
pub fn login(server: &str, connection: &Connection) -> Result<(), RegistryError> {
    run(crate::login(server, connection))?
}

/// The blocking counterpart of [`crate::Client`].
#[derive(Debug, Clone)]
pub struct Client {
    inner: crate::Client,
}

impl Client {
    /// A client for `store`.
    pub fn new(store: Arc<Store>) -> Client {
        Client {
            inner: crate::Client::new(store),
        }
    }

    /// The store it pulls into and pushes from.
    pub fn store(&self) -> &Arc<Store> {
        self.inner.store()
    }

    /// [`crate::Client::pull`], blocking. Set [`PullOptions::cancel`] to stop it from another
    /// thread.
    ///
    /// # Errors
    /// As [`crate::Client::pull`]; [`RegistryError::Runtime`] (in [`PullError::Registry`])
    /// when no runtime can be started.
    pub fn pull(&self, reference: &str, options: &PullOptions) -> Result<PullReport, PullError> {
        run(self.inner.pull(reference, options))?
    }

    /// [`crate::Client::push`], blocking.
    ///
    /// # Errors
    /// As [`crate::Client::push`]; [`RegistryError::Runtime`] (in [`PushError::Registry`])
    /// when no runtime can be started.
    pub fn push(
        &self,
        image: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<PushReport, PushError> {
        run(self.inner.push(image, reference, options))?
    }
}

/// Runs `future` to completion on a runtime of its own: on this thread, or on a scoped thread
/// when this one is inside a runtime already.
fn run<F>(future: F) -> Result<F::Output, RegistryError>
where
    F: Future + Send,
    F::Output: Send,
{
    let block_on = move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("strata-registry")
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        Ok(runtime.block_on(future))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return block_on();
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("strata-registry-call".to_owned())
            .spawn_scoped(scope, block_on)
            .map_err(RegistryError::Runtime)?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
