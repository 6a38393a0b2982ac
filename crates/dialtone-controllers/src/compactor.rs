//! Keeps the store bounded. Its history, as the Kubernetes API server does: every `every`,
//! it compacts to the revision seen one period earlier, so that watches and paginated lists
//! have at least one period to resume before they get 410 Gone. And its records: expired
//! and orphaned tokens, and deleted orgs' records once their retention has ended.

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

pub async fn run_record_sweeper(
    registry: dialtone_store::registry::Registry,
    every: Duration,
    clock: fn() -> jiff::Timestamp,
) {
    loop {
        match registry.sweep_records(clock()).await {
            Ok(swept) if swept != Default::default() => {
                tracing::info!(tokens = swept.tokens, orgs = swept.orgs, "swept records")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot sweep records"),
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dialtone_store::{EmbeddedStore, KeyRange, Store, StoreError, Txn};

    #[tokio::test]
    async fn old_revisions_are_compacted_one_period_late() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        for i in 0..5 {
            store
                .txn(Txn::default().put(format!("/k/{i}"), "v"))
                .await
                .unwrap();
        }
        let compactor = tokio::spawn(super::run_compactor(
            store.clone(),
            std::time::Duration::from_millis(20),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        store.txn(Txn::default().put("/k/late", "v")).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        compactor.abort();
        let old = store.range(&KeyRange::prefix("/k/"), Some(1), 0).await;
        assert!(matches!(old, Err(StoreError::Compacted { .. })), "{old:?}");
        assert_eq!(
            store
                .range(&KeyRange::prefix("/k/"), None, 0)
                .await
                .unwrap()
                .kvs
                .len(),
            6
        );
    }
}
