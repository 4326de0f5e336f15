//! Running the store's synchronous work (imports, exports, locks) off the async threads, and
//! stopping it when the caller cancels or drops an operation.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::RegistryError;

/// Waits for every worker of `workers` and gathers what each returned; a panic in one resumes
/// here.
pub(crate) async fn join_all<T: 'static>(
    mut workers: tokio::task::JoinSet<Vec<T>>,
) -> Result<Vec<T>, RegistryError> {
    let mut results = Vec::new();
    while let Some(joined) = workers.join_next().await {
        results.extend(joined.map_err(resume_panic)?);
    }
    Ok(results)
}

/// A task that did not finish: its panic resumes here, or the runtime shut down under it.
fn resume_panic(e: tokio::task::JoinError) -> RegistryError {
    match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(_) => RegistryError::Runtime(io::Error::other(
            "the runtime shut down under a running operation",
        )),
    }
}

/// Runs `work` on tokio's blocking threads and waits for it; a panic there resumes here.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, RegistryError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(resume_panic)
}

/// Whether an operation should stop: its caller asked (a flag it set), or dropped it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    asked: Option<Arc<AtomicBool>>,
    dropped: Arc<AtomicBool>,
}

impl Stop {
    /// A stop that also obeys `asked`.
    pub fn new(asked: Option<Arc<AtomicBool>>) -> Stop {
        Stop {
            asked,
            dropped: Arc::default(),
        }
    }

    /// Whether to stop now.
    pub fn is_set(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
            || self
                .asked
                .as_ref()
                .is_some_and(|a| a.load(Ordering::Relaxed))
    }

    /// A guard that stops the work when dropped (with the operation's future).
    pub fn on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.dropped.clone())
    }
}

/// Stops the work of an operation whose future is dropped, so that its blocking threads end
/// soon instead of downloading a layer nobody waits for.
pub(crate) struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
