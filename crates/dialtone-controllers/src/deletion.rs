//! Finishes cascading deletions: a node marked as being deleted waits for its children, held
//! by finalizers, to go; when the last one goes, this controller removes the node.

use std::sync::Arc;
use std::time::Duration;

use dialtone_store::registry::{Deletion, Registry, RegistryError, path_of_key};
use dialtone_store::{EventKind, KeyRange, Revision};
use dialtone_types::ResourcePath;
use futures::StreamExt;

use crate::runtime::controller::Controller;
use crate::runtime::reflector::{Changes, Event, ListWatch, reflect};
use crate::runtime::{Next, Reconciler, Supervisor};

/// Drives the deletion of `path` one step further, if deletion was asked for; leaves every
/// other object alone. Idempotent: re-running the cascading delete marks nothing twice and
/// deletes only what is left under the node.
pub async fn reconcile_deletion(
    registry: &Registry,
    path: &ResourcePath,
) -> Result<Option<Deletion>, RegistryError> {
    let object = match registry.get_raw(path).await {
        Ok(object) => object,
        Err(RegistryError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if object.metadata.deletion_timestamp.is_none() || !registry.homed_here(&object.metadata) {
        return Ok(None);
    }
    // By uid: the object read above may be gone, and another made under its name, by now.
    match registry.delete_uid(path, &object.metadata.uid).await {
        Err(RegistryError::NotFound(_)) => Ok(None),
        other => other.map(Some),
    }
}

/// The objects being deleted, then the parent of every object removed.
struct Removals(Registry);

impl ListWatch for Removals {
    type Item = ResourcePath;
    /// The parent of an object that went.
    type Change = Option<ResourcePath>;

    fn describe(&self) -> &'static str {
        "objects being deleted"
    }

    async fn list(&self) -> Result<(Vec<ResourcePath>, Revision), RegistryError> {
        self.0.deleting().await
    }

    async fn watch(&self, after: Revision) -> Result<Changes<Self::Change>, RegistryError> {
        let events = self
            .0
            .store()
            .watch(KeyRange::prefix("/o/"), after + 1)
            .await?;
        Ok(events
            .map(|event| {
                let event = event?;
                let parent = (event.kind == EventKind::Delete)
                    .then(|| path_of_key(&event.kv.key).and_then(|p| p.parent()))
                    .flatten();
                Ok((event.kv.mod_revision, parent))
            })
            .boxed())
    }
}

/// Finishes deletions, one object at a time.
struct Deletions(Registry);

impl Reconciler for Deletions {
    type Key = ResourcePath;
    type Error = RegistryError;

    /// A deletion still waiting for its children is looked at again when one goes.
    async fn reconcile(&self, path: &ResourcePath) -> Result<Next, RegistryError> {
        reconcile_deletion(&self.0, path).await.map(|_| Next::Done)
    }
}

/// Runs the deletion controller under `supervisor`: on every removed object it looks at the
/// object's parent, and at every object being deleted when it lists (at start, after a
/// watch ends, and every `resync`).
pub fn spawn_deletion_controller(
    supervisor: &Arc<Supervisor>,
    registry: Registry,
    resync: Duration,
) {
    let controller = Controller::new(
        Arc::new(Deletions(registry.clone())),
        4,
        supervisor.controllers().controller("deletion"),
    );
    supervisor.spawn_leading("deletion", {
        let controller = controller.clone();
        move |_| controller.clone().run()
    });
    supervisor.spawn("deletion-triggers", {
        let controller = controller.clone();
        let source = Arc::new(Removals(registry.clone()));
        move |_| {
            let (controller, source) = (controller.clone(), source.clone());
            async move {
                reflect(&*source, None, |event| match event {
                    Event::Listed(paths, _) => {
                        paths.into_iter().for_each(|p| controller.queue().add(p))
                    }
                    Event::Changed(Some(parent), _) => controller.queue().add(parent),
                    Event::Changed(None, _) => {}
                })
                .await
            }
        }
    });
    supervisor.spawn_leading("deletion-resync", move |_| {
        let registry = registry.clone();
        controller.clone().resync(resync, move || {
            let registry = registry.clone();
            async move {
                match registry.deleting().await {
                    Ok((paths, _)) => paths,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list objects being deleted");
                        Vec::new()
                    }
                }
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use dialtone_store::EmbeddedStore;
    use dialtone_types::kinds::{FOLDER, PROJECT};
    use dialtone_types::{Folder, Object, Org, Project};

    use super::*;

    async fn tree() -> (tempfile::TempDir, Registry, ResourcePath, ResourcePath) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let registry = Registry::new(store, "local", jiff::Timestamp::now);
        registry
            .create(None, Object::new("acme", Org::default()))
            .await
            .unwrap();
        let org = ResourcePath::org("acme");
        registry
            .create(Some(&org), Object::new("eng", Folder::default()))
            .await
            .unwrap();
        let folder = org.child(&FOLDER, "eng");
        let mut project = Object::new("web", Project::default());
        project
            .metadata
            .finalizers
            .push("example.com/cleanup".into());
        registry.create(Some(&folder), project).await.unwrap();
        (dir, registry, org, folder)
    }

    #[tokio::test]
    async fn live_objects_are_left_alone() {
        let (_dir, registry, org, folder) = tree().await;
        assert!(reconcile_deletion(&registry, &org).await.unwrap().is_none());
        assert!(
            reconcile_deletion(&registry, &folder)
                .await
                .unwrap()
                .is_none()
        );
        for path in [&org, &folder] {
            let object = registry.get_raw(path).await.unwrap();
            assert!(
                object.metadata.deletion_timestamp.is_none(),
                "{path} was marked for deletion"
            );
        }
    }

    #[tokio::test]
    async fn a_cascade_waits_for_finalizers_then_finishes() {
        let (_dir, registry, org, folder) = tree().await;
        let project = folder.child(&PROJECT, "web");
        assert!(matches!(
            registry.delete(&folder, true).await.unwrap(),
            Deletion::Pending(_)
        ));
        assert!(
            registry
                .get_raw(&project)
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
        );
        // The finalizer's owner finishes its cleanup and lets go.
        let mut held: Object<Project> = registry.get(&project).await.unwrap();
        held.metadata.finalizers.clear();
        assert!(
            registry.update(&project, held).await.unwrap().is_none(),
            "removing the last finalizer deletes it"
        );
        assert!(matches!(
            reconcile_deletion(&registry, &folder).await.unwrap(),
            Some(Deletion::Deleted)
        ));
        assert!(!registry.exists(&folder).await.unwrap());
        assert!(
            registry.exists(&org).await.unwrap(),
            "the parent of a deleted node stays"
        );
    }
}
