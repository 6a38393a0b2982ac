//! The one list–watch loop, as kube-runtime's watcher: list, hand over what was listed,
//! watch from the listed revision, hand over each change, and when the watch ends
//! (compaction answers 410, a store member goes, the connection drops) list again, backing
//! off while the store does not answer. Every index and controller that follows the store
//! follows it through [`reflect`]; none writes its own loop.

use std::future::Future;

use dialtone_store::Revision;
use dialtone_store::registry::RegistryError;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::backoff;

/// A source's changes, each with its revision.
pub type Changes<C> = BoxStream<'static, Result<(Revision, C), RegistryError>>;

/// What a source lists and then watches.
pub trait ListWatch: Send + Sync {
    type Item: Send;
    type Change: Send;

    /// What the loop's log lines call it.
    fn describe(&self) -> &'static str;

    /// Everything, and the revision it was read at.
    fn list(
        &self,
    ) -> impl Future<Output = Result<(Vec<Self::Item>, Revision), RegistryError>> + Send;

    /// Every change after `after`, each with its revision.
    fn watch(
        &self,
        after: Revision,
    ) -> impl Future<Output = Result<Changes<Self::Change>, RegistryError>> + Send;
}

/// What [`reflect`] hands over.
pub enum Event<I, C> {
    /// A full list: whatever was known before is replaced by it.
    Listed(Vec<I>, Revision),
    Changed(C, Revision),
}

/// Lists everything, retrying with backoff until the store answers.
pub async fn list_until_listed<L: ListWatch>(source: &L) -> (Vec<L::Item>, Revision) {
    backoff::until_ok(source.describe(), backoff::RELOAD, || source.list()).await
}

/// Follows `source` for as long as it runs, handing every list and change to `apply`.
/// With `resume`, the caller has listed already (at that revision) and the loop begins by
/// watching; otherwise it begins by listing.
pub async fn reflect<L: ListWatch>(
    source: &L,
    resume: Option<Revision>,
    mut apply: impl FnMut(Event<L::Item, L::Change>) + Send,
) {
    let mut revision = match resume {
        Some(revision) => revision,
        None => {
            let (items, revision) = list_until_listed(source).await;
            apply(Event::Listed(items, revision));
            revision
        }
    };
    // Watches in a row that ended before their first change: a store that lists but
    // cannot watch is not listed again at once.
    let mut fruitless = 0;
    loop {
        let mut seen = false;
        match source.watch(revision).await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        Ok((at, change)) => {
                            seen = true;
                            apply(Event::Changed(change, at));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "{}: watch ended", source.describe());
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "{}: cannot watch", source.describe()),
        }
        fruitless = if seen { 0 } else { fruitless + 1 };
        if fruitless > 0 {
            tokio::time::sleep(backoff::RELOAD.delay(fruitless)).await;
        }
        // Changes may have been missed since the last one seen (a compaction's 410 ends a
        // watch): list afresh rather than resume.
        let (items, listed) = list_until_listed(source).await;
        revision = listed;
        apply(Event::Listed(items, revision));
    }
}
