//! Keeps the store's history bounded, as the Kubernetes API server does: every `every`, it
//! compacts to the revision seen one period earlier, so that watches and paginated lists have
//! at least one period to resume before they get 410 Gone.

use std::time::Duration;

use dialtone_store::Store;

pub async fn run_compactor(store: std::sync::Arc<dyn Store>, every: Duration) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(every).await;
        let current = match store.revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "compactor cannot read the revision");
                continue;
            }
        };
        if let Some(target) = previous.filter(|p| *p > 1) {
            match store.compact(target).await {
                Ok(()) => tracing::debug!(revision = target, "compacted the store"),
                Err(e) => tracing::debug!(revision = target, error = %e, "compaction skipped"),
            }
        }
        previous = Some(current);
    }
}
