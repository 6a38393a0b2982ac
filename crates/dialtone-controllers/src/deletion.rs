//! Finishes cascading deletions: a node marked as being deleted waits for its children, held
//! by finalizers, to go; when the last one goes, this controller removes the node.

use std::time::Duration;

use dialtone_store::registry::{Deletion, Registry, RegistryError, path_of_key};
use dialtone_store::{EventKind, KeyRange};
use dialtone_types::ResourcePath;
use futures::StreamExt;

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
    if object.metadata.deletion_timestamp.is_none() {
        return Ok(None);
    }
    // By uid: the object read above may be gone, and another made under its name, by now.
    match registry.delete_uid(path, &object.metadata.uid).await {
        Err(RegistryError::NotFound(_)) => Ok(None),
        other => other.map(Some),
    }
}

async fn resync(registry: &Registry) {
    match registry.deleting().await {
        Ok(paths) => {
            for path in paths {
                if let Err(e) = reconcile_deletion(registry, &path).await {
                    tracing::warn!(object = %path, error = %e, "deletion not finished yet");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list objects being deleted"),
    }
}

/// Runs until the store stops: on every removed object, looks at its parent; every
/// `resync`, looks at every object being deleted.
pub async fn run_deletion_controller(registry: Registry, resync_every: Duration) {
    loop {
        resync(&registry).await;
        let from = match registry.store().revision().await {
            Ok(r) => r + 1,
            Err(e) => {
                tracing::warn!(error = %e, "deletion controller cannot reach the store");
                tokio::time::sleep(resync_every).await;
                continue;
            }
        };
        let mut events = match registry.store().watch(KeyRange::prefix("/o/"), from).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "deletion controller cannot watch the store");
                tokio::time::sleep(resync_every).await;
                continue;
            }
        };
        let deadline = tokio::time::sleep(resync_every);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                event = events.next() => match event {
                    Some(Ok(event)) if event.kind == EventKind::Delete => {
                        if let Some(parent) = path_of_key(&event.kv.key).and_then(|p| p.parent())
                            && let Err(e) = reconcile_deletion(&registry, &parent).await {
                                tracing::warn!(object = %parent, error = %e, "deletion not finished yet");
                            }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { tracing::warn!(error = %e, "deletion controller watch ended"); break; }
                    None => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
