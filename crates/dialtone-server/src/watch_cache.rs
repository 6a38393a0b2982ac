//! The API's watch cache, after kube-apiserver's: one store watch per kind, shared by every
//! client watching that kind. Each change is decoded once, and encoded as a watch line once
//! (when the first watcher needs it), however many clients receive it.
//!
//! Each kind keeps its latest changes in a bounded buffer. A client watching from a revision
//! the buffer holds every later change of is served from it; one watching from an older
//! revision gets a store watch of its own, as before. A client that falls further behind
//! than the buffer reaches is told so with 410 Gone, and lists again, as with a compaction.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Bytes;
use dialtone_controllers::Supervisor;
use dialtone_store::registry::{Change, ChangeKind, RawObject, Registry, RegistryError};
use dialtone_store::{Revision, StoreError};
use dialtone_types::{KINDS, KindInfo, ResourcePath, WatchEvent, WatchEventType};
use futures::{Stream, StreamExt};

/// Changes kept per kind. A watcher more than this many changes of its kind behind is
/// ended with 410 Gone.
const CAPACITY: usize = 1024;

/// One change of one object, as every watcher of its kind receives it.
pub struct CachedChange {
    /// Added, modified or deleted.
    pub kind: ChangeKind,
    /// The object's path.
    pub path: ResourcePath,
    /// The object after the change (for a deletion, as it was).
    pub object: RawObject,
    /// The change's store revision.
    pub revision: Revision,
    line: OnceLock<Bytes>,
}

impl From<Change> for CachedChange {
    fn from(change: Change) -> Self {
        CachedChange {
            kind: change.kind,
            path: change.path,
            object: change.object,
            revision: change.revision,
            line: OnceLock::new(),
        }
    }
}

impl CachedChange {
    /// The change as one line of a watch stream, encoded once for all its watchers.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| {
                let type_ = match self.kind {
                    ChangeKind::Added => WatchEventType::Added,
                    ChangeKind::Modified => WatchEventType::Modified,
                    ChangeKind::Deleted => WatchEventType::Deleted,
                };
                watch_line(type_, &self.object)
            })
            .clone()
    }
}

/// One watch event as a line of a newline-delimited JSON stream.
pub fn watch_line<T: serde::Serialize>(type_: WatchEventType, object: &T) -> Bytes {
    let mut bytes = serde_json::to_vec(&WatchEvent { type_, object }).expect("serializable");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The changes of every kind, each kind in its own buffer.
pub struct WatchCache {
    kinds: HashMap<&'static str, Arc<KindCache>>,
}

struct KindCache {
    buffer: RwLock<Buffer>,
    /// Bumped after every change appended (and on a reset), to wake the watchers.
    appended: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct Buffer {
    /// Which run of the cache's store watch filled the buffer; 0 before the first. A
    /// watcher from an earlier run may have missed changes and is ended.
    run: u64,
    /// Every change after this revision is in `changes`.
    complete_after: Revision,
    /// The position of `changes[0]` among all the changes this run appended.
    first: u64,
    changes: VecDeque<Arc<CachedChange>>,
}

impl Buffer {
    fn push(&mut self, change: Arc<CachedChange>) {
        if self.changes.len() == CAPACITY
            && let Some(evicted) = self.changes.pop_front()
        {
            self.first += 1;
            // Changes of the evicted one's revision may remain, but not all of them.
            self.complete_after = self.complete_after.max(evicted.revision);
        }
        self.changes.push_back(change);
    }

    /// The changes from position `next` on, or `None` when the watcher fell behind the
    /// buffer or the buffer was refilled since.
    fn from(&self, run: u64, next: u64) -> Option<Vec<Arc<CachedChange>>> {
        if run != self.run || next < self.first {
            return None;
        }
        let skip = (next - self.first) as usize;
        Some(self.changes.iter().skip(skip).cloned().collect())
    }
}

impl WatchCache {
    /// An empty cache for every kind; [`WatchCache::follow`] fills it.
    pub fn new() -> Arc<Self> {
        let kinds = KINDS
            .iter()
            .map(|kind| {
                let cache = Arc::new(KindCache {
                    buffer: RwLock::new(Buffer::default()),
                    appended: tokio::sync::watch::channel(0).0,
                });
                (kind.plural, cache)
            })
            .collect();
        Arc::new(WatchCache { kinds })
    }

    /// Follows the store under `supervisor`: each run watches every kind from the current
    /// revision, and a run that ends (the store failed) is replaced by a fresh one, whose
    /// start ends the watchers of the last (they may have missed changes in between).
    pub fn follow(self: &Arc<Self>, registry: Registry, supervisor: &Arc<Supervisor>) {
        let cache = self.clone();
        supervisor.spawn("watch cache", move |run| {
            let (cache, registry) = (cache.clone(), registry.clone());
            async move {
                if let Err(e) = cache.run(&registry, u64::from(run) + 1).await {
                    tracing::warn!("watch cache: {e}");
                }
            }
        });
    }

    async fn run(&self, registry: &Registry, run: u64) -> Result<(), RegistryError> {
        let start = registry.store().revision().await?;
        let mut streams = Vec::new();
        for kind in KINDS {
            streams.push(registry.watch(kind, None, start).await?.boxed());
        }
        for cache in self.kinds.values() {
            cache.update(|buffer| {
                *buffer = Buffer {
                    run,
                    complete_after: start,
                    ..Default::default()
                }
            });
        }
        let mut changes = futures::stream::select_all(streams);
        while let Some(change) = changes.next().await {
            let change = CachedChange::from(change?);
            let cache = &self.kinds[change.path.kind().plural];
            cache.update(|buffer| buffer.push(Arc::new(change)));
        }
        Err(StoreError::Unavailable("the store ended the watch".into()).into())
    }

    /// The changes of `kind` after revision `after`, if the cache holds every one of them:
    /// then the changes that follow, until the client goes or falls behind. `None` when
    /// the cache does not reach back to `after`.
    pub fn watch(
        &self,
        kind: &'static KindInfo,
        after: Revision,
    ) -> Option<impl Stream<Item = Result<Arc<CachedChange>, RegistryError>> + Send + use<>> {
        let cache = self.kinds.get(kind.plural)?.clone();
        // Subscribed before the first read, so that no append goes unnoticed.
        let appended = cache.appended.subscribe();
        let (run, next) = {
            let buffer = cache.read();
            if buffer.run == 0 || after < buffer.complete_after {
                return None;
            }
            let held = buffer.changes.partition_point(|c| c.revision <= after);
            (buffer.run, buffer.first + held as u64)
        };
        let reader = Reader {
            cache,
            appended,
            run,
            next,
            ready: VecDeque::new(),
            ended: false,
        };
        let changes = futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        });
        // Changes at or before `after` that reached the cache after the watch began.
        Some(changes.filter(move |item| {
            futures::future::ready(item.as_ref().map_or(true, |c| c.revision > after))
        }))
    }
}

impl KindCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Buffer> {
        self.buffer.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the buffer, then wakes its watchers.
    fn update(&self, change: impl FnOnce(&mut Buffer)) {
        change(&mut self.buffer.write().unwrap_or_else(|e| e.into_inner()));
        self.appended.send_modify(|n| *n += 1);
    }
}

/// One watcher's place in its kind's buffer.
struct Reader {
    cache: Arc<KindCache>,
    appended: tokio::sync::watch::Receiver<u64>,
    run: u64,
    /// The position of the next change to hand out.
    next: u64,
    ready: VecDeque<Arc<CachedChange>>,
    ended: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Arc<CachedChange>, RegistryError>> {
        loop {
            if let Some(change) = self.ready.pop_front() {
                return Some(Ok(change));
            }
            if self.ended {
                return None;
            }
            match self.cache.read().from(self.run, self.next) {
                Some(changes) if !changes.is_empty() => {
                    self.next += changes.len() as u64;
                    self.ready = changes.into();
                    continue;
                }
                Some(_) => {}
                None => {
                    self.ended = true;
                    // The client lists again, as after a compaction.
                    return Some(Err(StoreError::Compacted {
                        requested: 0,
                        compacted: 0,
                    }
                    .into()));
                }
            }
            if self.appended.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_types::kinds::PROJECT;

    fn change(revision: Revision) -> Arc<CachedChange> {
        let path = ResourcePath::from_names(
            &PROJECT,
            &["acme".into(), "eng".into(), format!("p{revision}")],
        )
        .unwrap();
        let mut object = RawObject {
            api_version: "dialtone.dev/v1".into(),
            kind: "Project".into(),
            metadata: Default::default(),
            spec: Default::default(),
            status: Default::default(),
        };
        object.metadata.name = format!("p{revision}");
        object.metadata.resource_version = revision.to_string();
        Arc::new(CachedChange::from(Change {
            kind: ChangeKind::Added,
            path,
            object,
            revision,
        }))
    }

    #[test]
    fn a_full_buffer_forgets_its_oldest_changes_and_says_how_far_back_it_reaches() {
        let mut buffer = Buffer {
            run: 1,
            complete_after: 10,
            ..Default::default()
        };
        for revision in 11..11 + CAPACITY as Revision {
            buffer.push(change(revision));
        }
        assert_eq!(buffer.complete_after, 10, "nothing evicted yet");
        assert_eq!(buffer.from(1, 0).unwrap().len(), CAPACITY);
        buffer.push(change(11 + CAPACITY as Revision));
        assert_eq!(buffer.complete_after, 11, "revision 11 is gone");
        assert_eq!(buffer.first, 1);
        assert!(
            buffer.from(1, 0).is_none(),
            "a watcher at the evicted change is behind"
        );
        let rest = buffer.from(1, CAPACITY as u64).unwrap();
        assert_eq!(
            rest.iter().map(|c| c.revision).collect::<Vec<_>>(),
            [11 + CAPACITY as Revision]
        );
        assert!(
            buffer.from(2, CAPACITY as u64).is_none(),
            "another run's position"
        );
    }

    #[tokio::test]
    async fn a_watcher_gets_each_later_change_and_is_ended_once_it_falls_behind() {
        let cache = WatchCache::new();
        let projects = &cache.kinds[PROJECT.plural];
        let append = |revision| projects.update(|buffer| buffer.push(change(revision)));
        assert!(
            cache.watch(&PROJECT, 0).is_none(),
            "not following the store yet"
        );
        projects.update(|buffer| {
            *buffer = Buffer {
                run: 1,
                complete_after: 10,
                ..Default::default()
            }
        });
        for revision in 11..=13 {
            append(revision);
        }
        assert!(
            cache.watch(&PROJECT, 9).is_none(),
            "revision 10's changes are not held"
        );
        let mut watch = Box::pin(cache.watch(&PROJECT, 11).expect("held"));
        let mut next = async || watch.next().await.unwrap().map(|c| c.revision);
        assert_eq!(next().await.unwrap(), 12);
        append(14);
        assert_eq!(next().await.unwrap(), 13);
        assert_eq!(next().await.unwrap(), 14);
        // The watcher reads nothing while more changes go by than the buffer holds.
        for revision in 15..17 + CAPACITY as Revision {
            append(revision);
        }
        let ended = loop {
            match next().await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(ended, RegistryError::Store(StoreError::Compacted { .. })),
            "{ended:?}"
        );
        assert!(watch.next().await.is_none());
    }

    #[test]
    fn a_change_is_encoded_once_as_its_watch_line() {
        let change = change(7);
        let line = change.line();
        assert!(
            line.starts_with(br#"{"type":"ADDED","object":{"#),
            "{line:?}"
        );
        assert!(line.ends_with(b"\n"));
        // The same bytes, not an equal copy: encoded once for every watcher.
        assert_eq!(change.line().as_ptr(), line.as_ptr());
    }
}
