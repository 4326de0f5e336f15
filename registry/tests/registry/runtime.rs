//! The async API on tokio runtimes of both flavours, and the blocking wrapper from inside a
//! runtime, where starting one of its own would panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_layer_store::Progress;
use strata_registry::{Client, blocking};
use tokio::sync::Notify;

use crate::{World, app_image, assert_exports, pull_options, push_options, single};

#[tokio::test]
async fn the_blocking_client_works_inside_a_tokio_runtime() {
    let Some(world) = World::new() else {
        return;
    };
    let image = app_image();
    world.import(&image, "app");
    let reference = world.reference("app:1");
    // Both calls come from a runtime's thread.
    blocking::Client::new(world.source.store.clone())
        .push("app", &reference, &push_options())
        .unwrap();
    let target = world.store("target");
    let report = blocking::Client::new(target.store.clone())
        .pull(&reference, &pull_options())
        .unwrap();
    assert_eq!(report.layers.len(), 3);
    assert_exports(&target, &reference, &image);
}

#[test]
fn the_blocking_client_works_inside_block_on_of_a_multi_thread_runtime() {
    let Some(world) = World::new() else {
        return;
    };
    let image = single("mt", 41, 256 << 10);
    let reference = world.publish(&image, "mt");
    let target = world.store("target");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime
        .block_on(async {
            blocking::Client::new(target.store.clone()).pull(&reference, &pull_options())
        })
        .unwrap();
    assert_eq!(report.bytes_present, 0);
    assert_exports(&target, &reference, &image);
}

#[tokio::test]
async fn the_async_client_pushes_and_pulls_on_a_current_thread_runtime() {
    let Some(world) = World::new() else {
        return;
    };
    let image = app_image();
    world.import(&image, "app");
    let reference = world.reference("app:async");
    let pushed = Client::new(world.source.store.clone())
        .push("app", &reference, &push_options())
        .await
        .unwrap();
    assert_eq!(pushed.manifest, image.manifest_digest());
    let target = world.store("target");
    let report = Client::new(target.store.clone())
        .pull(&reference, &pull_options())
        .await
        .unwrap();
    assert_eq!(format!("sha256:{}", report.image), image.manifest_digest());
    assert_exports(&target, &reference, &image);
}

/// Wakes a waiter once `after` bytes of some layer were imported.
struct NotifyAfter {
    seen: AtomicU64,
    after: u64,
    notify: Arc<Notify>,
}

impl Progress for NotifyAfter {
    fn advance(&self, _: usize, bytes: u64) {
        let before = self.seen.fetch_add(bytes, Ordering::Relaxed);
        if before < self.after && before + bytes >= self.after {
            self.notify.notify_one();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_pull_makes_nothing_visible_and_the_next_pull_completes_it() {
    let Some(world) = World::new() else {
        return;
    };
    let image = single("drop", 42, 4 << 20);
    let reference = world.publish(&image, "drop");
    let target = world.store("target");
    let client = Client::new(target.store.clone());
    let notify = Arc::new(Notify::new());
    let options = pull_options().with_progress(Some(Arc::new(NotifyAfter {
        seen: AtomicU64::new(0),
        after: 64 << 10,
        notify: notify.clone(),
    })));
    tokio::select! {
        result = client.pull(&reference, &options) => panic!("the pull finished first: {result:?}"),
        () = notify.notified() => {}
    }
    assert!(target.images().unwrap().is_empty());
    // The next pull waits for the dropped one's layer to let go of its partial download, and
    // takes over from there.
    let report = client.pull(&reference, &pull_options()).await.unwrap();
    let size = image.blobs[0].len() as u64;
    assert_eq!(report.bytes_resumed + report.bytes_fetched, size);
    assert_exports(&target, &reference, &image);
}
