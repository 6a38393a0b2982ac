//! What wakes a controller whose keys are objects' paths: its informer's changes to what it
//! acts on, and the cloud's feed about the resources an object owns.

use dialtone_cloud::tags::TAG_OWNER;
use dialtone_cloud::{Provider, ResourceChange};
use dialtone_types::{KindInfo, ObjectMeta, ResourcePath};

use super::informer::{Informer, Notice};
use super::queue::WorkQueue;

/// What of an object's metadata wakes its controller when it changes: its spec (by
/// generation), a delete, its finalizers; not its status, which the controller writes.
fn wakes(meta: &ObjectMeta) -> (i64, bool, Vec<String>) {
    (
        meta.generation,
        meta.deletion_timestamp.is_some(),
        meta.finalizers.clone(),
    )
}

/// Queues every object the informer lists, each one whose spec, deletion or finalizers
/// change, and each one removed. A status write (the controller's own) wakes nothing, so
/// the waits a pass asks for are the waits it gets.
pub fn on_spec_changes(informer: &Informer, queue: WorkQueue<ResourcePath>) {
    informer.subscribe(move |notice| match notice {
        Notice::Listed(all, _) => {
            for (path, _) in all.iter() {
                queue.add(path.clone());
            }
        }
        Notice::Applied { path, old, new } => {
            if old.is_none_or(|old| wakes(&old.metadata) != wakes(&new.metadata)) {
                queue.add((*path).clone());
            }
        }
        Notice::Deleted { path, .. } => queue.add((*path).clone()),
    });
}

/// The object of `kind` that owns a changed resource, by its `dialtone.dev/owner` tag.
fn owner(change: &ResourceChange, kind: &'static KindInfo) -> Option<ResourcePath> {
    change
        .tags
        .get(TAG_OWNER)
        .and_then(|owner| ResourcePath::parse(owner).ok())
        .filter(|path| std::ptr::eq(path.kind(), kind))
}

/// Queues the owner of every resource the provider's feed says changed, when the owner is
/// an object of `kind`; nothing on a cloud without a feed. Whether the cloud has one.
pub fn on_cloud_changes(
    provider: &dyn Provider,
    queue: WorkQueue<ResourcePath>,
    kind: &'static KindInfo,
) -> bool {
    provider.subscribe(Box::new(move |change| {
        if let Some(path) = owner(change, kind) {
            queue.add(path);
        }
    }))
}

/// Queues the objects `informer` holds under the owner of every resource the provider's feed
/// says changed, when the owner is an object of `parent`: a cluster's route table changed
/// wakes the cluster's connections, which route through it.
pub fn on_cloud_changes_under(
    provider: &dyn Provider,
    queue: WorkQueue<ResourcePath>,
    informer: std::sync::Arc<Informer>,
    parent: &'static KindInfo,
) {
    provider.subscribe(Box::new(move |change| {
        let Some(owner) = owner(change, parent) else {
            return;
        };
        for path in informer.paths() {
            if path.parent().as_ref() == Some(&owner) {
                queue.add(path);
            }
        }
    }));
}
