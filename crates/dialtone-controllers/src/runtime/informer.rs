//! An informer: every object of one kind in memory, kept current by [`reflect`], shared by
//! every reader in the server. Readers get the cache ([`Informer::get`], [`Informer::paths`])
//! and handlers are told of each change as it is applied, with the object before and after,
//! so that a controller queues only what changed in a way it cares about.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dialtone_store::Revision;
use dialtone_store::registry::{
    Change, ChangeKind, ListOptions, RawObject, Registry, RegistryError,
};
use dialtone_types::{KindInfo, ResourcePath};
use futures::StreamExt;
use tokio::sync::watch;

use super::reflector::{Changes, Event, ListWatch, list_until_listed, reflect};

/// Every object of one kind, listed then watched.
pub struct KindSource {
    pub registry: Registry,
    pub kind: &'static KindInfo,
}

/// Where a listed object lives.
pub fn path_of(kind: &'static KindInfo, raw: &RawObject) -> Option<ResourcePath> {
    if raw.metadata.parent.is_empty() {
        return Some(ResourcePath::org(raw.metadata.name.clone()))
            .filter(|p| std::ptr::eq(p.kind(), kind));
    }
    Some(
        ResourcePath::parse(&raw.metadata.parent)
            .ok()?
            .child(kind, raw.metadata.name.clone()),
    )
}

impl ListWatch for KindSource {
    type Item = RawObject;
    type Change = Change;

    fn describe(&self) -> &'static str {
        self.kind.plural
    }

    async fn list(&self) -> Result<(Vec<RawObject>, Revision), RegistryError> {
        let page = self
            .registry
            .list_raw(self.kind, None, &ListOptions::default(), &|_| true)
            .await?;
        Ok((page.items, page.revision))
    }

    async fn watch(&self, after: Revision) -> Result<Changes<Change>, RegistryError> {
        let changes = self.registry.watch(self.kind, None, after).await?;
        Ok(changes
            .map(|change| {
                let change = change?;
                Ok((change.revision, change))
            })
            .boxed())
    }
}

/// What a handler is told.
pub enum Notice<'a> {
    /// The cache was listed afresh (at start, or after a watch ended): anything may have
    /// changed. Every object now held, and the revision they were listed at.
    Listed(&'a [(ResourcePath, Arc<RawObject>)], Revision),
    Applied {
        path: &'a ResourcePath,
        old: Option<&'a RawObject>,
        new: &'a RawObject,
    },
    Deleted {
        path: &'a ResourcePath,
        old: &'a RawObject,
    },
}

type Handler = Box<dyn Fn(&Notice) + Send + Sync>;

pub struct Informer {
    source: KindSource,
    cache: RwLock<HashMap<ResourcePath, Arc<RawObject>>>,
    applied: watch::Sender<Revision>,
    handlers: RwLock<Vec<Handler>>,
}

impl Informer {
    /// Lists the kind once, so that the cache is whole before anyone reads it;
    /// [`Informer::follow`] keeps it current.
    pub async fn load(
        registry: &Registry,
        kind: &'static KindInfo,
    ) -> Result<Arc<Self>, RegistryError> {
        let informer = Informer {
            source: KindSource {
                registry: registry.clone(),
                kind,
            },
            cache: RwLock::default(),
            applied: watch::channel(0).0,
            handlers: RwLock::default(),
        };
        let (items, revision) = informer.source.list().await?;
        informer.replace(items, revision);
        Ok(Arc::new(informer))
    }

    /// Tells `handler` of every change from now on. Handlers run on the informer's task, so
    /// they must be quick (queue a key, update an index).
    pub fn subscribe(&self, handler: impl Fn(&Notice) + Send + Sync + 'static) {
        self.handlers
            .write()
            .expect("informer handlers")
            .push(Box::new(handler));
    }

    /// Follows the store for as long as it runs: a supervised task. Run 0 goes on from the
    /// load; a restarted run lists again, since the run before may have died mid-change.
    pub async fn follow(self: Arc<Self>, run: u32) {
        let resume = if run == 0 {
            Some(self.revision())
        } else {
            let (items, revision) = list_until_listed(&self.source).await;
            self.replace(items, revision);
            Some(revision)
        };
        reflect(&self.source, resume, |event| match event {
            Event::Listed(items, revision) => self.replace(items, revision),
            Event::Changed(change, revision) => self.apply(change, revision),
        })
        .await
    }

    fn replace(&self, items: Vec<RawObject>, revision: Revision) {
        let listed: Vec<(ResourcePath, Arc<RawObject>)> = items
            .into_iter()
            .filter_map(|raw| Some((path_of(self.source.kind, &raw)?, Arc::new(raw))))
            .collect();
        *self.cache.write().expect("informer cache") = listed.iter().cloned().collect();
        for handler in self.handlers.read().expect("informer handlers").iter() {
            handler(&Notice::Listed(&listed, revision));
        }
        self.applied.send_replace(revision);
    }

    fn apply(&self, change: Change, revision: Revision) {
        let new = Arc::new(change.object);
        let old = {
            let mut cache = self.cache.write().expect("informer cache");
            match change.kind {
                ChangeKind::Deleted => cache.remove(&change.path),
                _ => cache.insert(change.path.clone(), new.clone()),
            }
        };
        let notice = match change.kind {
            ChangeKind::Deleted => Notice::Deleted {
                path: &change.path,
                old: old.as_deref().unwrap_or(&new),
            },
            _ => Notice::Applied {
                path: &change.path,
                old: old.as_deref(),
                new: &new,
            },
        };
        for handler in self.handlers.read().expect("informer handlers").iter() {
            handler(&notice);
        }
        self.applied.send_replace(revision);
    }

    /// The object at `path` as last seen.
    pub fn get(&self, path: &ResourcePath) -> Option<Arc<RawObject>> {
        self.cache
            .read()
            .expect("informer cache")
            .get(path)
            .cloned()
    }

    /// Every object's path.
    pub fn paths(&self) -> Vec<ResourcePath> {
        self.cache
            .read()
            .expect("informer cache")
            .keys()
            .cloned()
            .collect()
    }

    /// Every object with its path, for readers that look at all of them (an index built
    /// from the cache, metrics).
    pub fn snapshot(&self) -> Vec<(ResourcePath, Arc<RawObject>)> {
        self.cache
            .read()
            .expect("informer cache")
            .iter()
            .map(|(path, object)| (path.clone(), object.clone()))
            .collect()
    }

    /// Waits until the cache reflects `revision` or later, for at most `patience`; whether
    /// it does.
    pub async fn caught_up(&self, revision: Revision, patience: std::time::Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(patience, applied.wait_for(|at| *at >= revision))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// The revision the cache reflects.
    pub fn revision(&self) -> Revision {
        *self.applied.borrow()
    }
}
