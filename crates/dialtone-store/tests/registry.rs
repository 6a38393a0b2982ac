//! The object layer's semantics, as the API relies on them: what create, update, delete,
//! list and watch do to the tree, and what access control reads of it. Run over the
//! embedded store; the store conformance suite covers the backends themselves.

use std::sync::Arc;
use std::time::Duration;

use dialtone_store::registry::{
    AccessChange, AccessRecord, CHILDREN_FINALIZER, ChangeKind, Deletion, ListOptions, Registry,
    RegistryError, collection_prefix, object_key, path_of_key,
};
use dialtone_store::{
    EmbeddedStore, KeyRange, RangeResult, Revision, Store, Txn, TxnOutcome, WatchStream,
};
use dialtone_types::kinds::{FOLDER, GROUP, ORG, PROJECT};
use dialtone_types::policy::PolicyBinding;
use dialtone_types::{Folder, Group, Kind, LabelSelector, Object, Org, Project, ResourcePath};
use futures::{Stream, StreamExt};
use jiff::Timestamp;

/// The registry's clock, fixed so that timestamps can be compared.
fn noon() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().unwrap()
}

struct Fixture {
    registry: Registry,
    /// The store under the registry, for writes that race the registry's own.
    racing: Arc<Racing>,
    _dir: tempfile::TempDir,
}

/// A store through which another writer can slip a transaction in just before the
/// registry's next write of a given key: the interleaving of two servers, made certain.
struct Racing {
    inner: Arc<dyn Store>,
    armed: std::sync::Mutex<Option<(Vec<u8>, Txn)>>,
}

impl Racing {
    /// Applies `txn` just before the next transaction that changes `key`.
    fn before_next_write_of(&self, key: &str, txn: Txn) {
        *self.armed.lock().unwrap() = Some((key.as_bytes().to_vec(), txn));
    }

    fn armed(&self) -> bool {
        self.armed.lock().unwrap().is_some()
    }
}

#[async_trait::async_trait]
impl Store for Racing {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: usize,
    ) -> dialtone_store::Result<RangeResult> {
        self.inner.range(range, at, limit).await
    }

    async fn txn(&self, txn: Txn) -> dialtone_store::Result<TxnOutcome> {
        let interfering = {
            let mut armed = self.armed.lock().unwrap();
            match &*armed {
                Some((key, _)) if txn.ops.iter().any(|op| op.key() == key.as_slice()) => {
                    armed.take().map(|(_, other)| other)
                }
                _ => None,
            }
        };
        if let Some(other) = interfering {
            self.inner.txn(other).await?;
        }
        self.inner.txn(txn).await
    }

    async fn watch(&self, range: KeyRange, from: Revision) -> dialtone_store::Result<WatchStream> {
        self.inner.watch(range, from).await
    }

    async fn compact(&self, revision: Revision) -> dialtone_store::Result<()> {
        self.inner.compact(revision).await
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let racing = Arc::new(Racing {
        inner: Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap()),
        armed: Default::default(),
    });
    Fixture {
        registry: Registry::new(racing.clone(), "eu-west-1", noon),
        racing,
        _dir: dir,
    }
}

fn acme() -> ResourcePath {
    ResourcePath::org("acme")
}

fn folder(org: &ResourcePath, name: &str) -> ResourcePath {
    org.child(&FOLDER, name)
}

/// Creates the org `name`.
async fn new_org(registry: &Registry, name: &str) -> Object<Org> {
    registry
        .create(None, Object::new(name, Org::default()))
        .await
        .unwrap()
}

/// Creates a `K` named `name` under `parent`, with a default spec.
async fn new_child<K: Kind>(
    registry: &Registry,
    parent: &ResourcePath,
    name: impl Into<String>,
) -> Object<K, K::Status> {
    registry
        .create(Some(parent), Object::new(name, K::default()))
        .await
        .unwrap()
}

/// Makes `finalizer` the only finalizer of the `K` at `path`, which then waits for it to
/// be removed before it goes.
async fn hold<K: Kind>(registry: &Registry, path: &ResourcePath, finalizer: &str) {
    let mut object = registry.get::<K>(path).await.unwrap();
    object.metadata.finalizers = vec![finalizer.into()];
    registry.update(path, object).await.unwrap();
}

/// acme, acme/eng, acme/eng/web: an org, a folder and a project.
async fn tree(registry: &Registry) -> (ResourcePath, ResourcePath, ResourcePath) {
    let org = acme();
    new_org(registry, "acme").await;
    let eng = folder(&org, "eng");
    new_child::<Folder>(registry, &org, "eng").await;
    let web = eng.child(&PROJECT, "web");
    new_child::<Project>(registry, &eng, "web").await;
    (org, eng, web)
}

fn labelled<S: Default>(mut object: Object<S>, key: &str, value: &str) -> Object<S> {
    object.metadata.labels.insert(key.into(), value.into());
    object
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("no event within 5 s")
        .expect("the stream ended")
}

#[tokio::test]
async fn create_sets_every_server_field_and_refuses_a_taken_name() {
    let f = fixture();
    let mut asked = labelled(Object::new("acme", Org::default()), "tier", "gold");
    asked.metadata.uid = "chosen-by-client".into();
    asked.metadata.generation = 7;
    asked.metadata.home_region = "elsewhere".into();
    let created = f.registry.create(None, asked).await.unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.name, "acme");
    assert_ne!(meta.uid, "chosen-by-client");
    assert_eq!(meta.uid.len(), 36, "a uuid: {}", meta.uid);
    assert_eq!(meta.generation, 1);
    assert_eq!(meta.home_region, "eu-west-1");
    assert_eq!(f.registry.region(), "eu-west-1");
    assert_eq!(meta.creation_timestamp, Some(noon()));
    assert_eq!(meta.deletion_timestamp, None);
    assert_eq!(meta.parent, "");
    assert_eq!(meta.labels["tier"], "gold");
    assert!(meta.resource_version.parse::<i64>().unwrap() > 0);
    assert_eq!(created.kind, "Org");
    assert_eq!(created.api_version, "dialtone.dev/v1");

    let read = f.registry.get::<Org>(&acme()).await.unwrap();
    assert_eq!(read, created, "what create returns is what get reads");
    assert_eq!(
        f.registry.get_raw(&acme()).await.unwrap().metadata.uid,
        meta.uid
    );

    let again = f
        .registry
        .create(None, Object::new("acme", Org::default()))
        .await;
    assert!(
        matches!(again, Err(RegistryError::AlreadyExists(ref p)) if p == "orgs/acme"),
        "{again:?}"
    );
    assert_eq!(
        f.registry.get::<Org>(&acme()).await.unwrap().metadata.uid,
        meta.uid
    );

    let eng = new_child::<Folder>(&f.registry, &acme(), "eng").await;
    assert_eq!(eng.metadata.parent, "orgs/acme");
    assert!(f.registry.exists(&folder(&acme(), "eng")).await.unwrap());
    assert!(!f.registry.exists(&folder(&acme(), "ops")).await.unwrap());
}

#[tokio::test]
async fn create_refuses_a_bad_name_a_missing_parent_and_a_parent_being_deleted() {
    let f = fixture();
    let bad = f
        .registry
        .create(None, Object::new("Not_A_Label", Org::default()))
        .await;
    let Err(RegistryError::Invalid(errors)) = bad else {
        panic!("{bad:?}")
    };
    assert!(
        errors.0.iter().any(|e| e.field == "metadata.name"),
        "{errors:?}"
    );
    assert!(
        !f.registry
            .exists(&ResourcePath::org("Not_A_Label"))
            .await
            .unwrap()
    );

    let orphan = f
        .registry
        .create(Some(&acme()), Object::new("eng", Folder::default()))
        .await;
    assert!(
        matches!(orphan, Err(RegistryError::NotFound(ref p)) if p == "parent orgs/acme"),
        "{orphan:?}"
    );

    new_org(&f.registry, "acme").await;
    let mut held = Object::new("held", Folder::default());
    held.metadata.finalizers = vec!["example.com/hold".into()];
    f.registry.create(Some(&acme()), held).await.unwrap();
    let held = folder(&acme(), "held");
    assert!(matches!(
        f.registry.delete(&held, false).await,
        Ok(Deletion::Pending(_))
    ));
    let under = f
        .registry
        .create(Some(&held), Object::new("web", Project::default()))
        .await;
    assert!(
        matches!(under, Err(RegistryError::Conflict(ref m)) if m.contains("being deleted")),
        "{under:?}"
    );
    assert!(
        !f.registry
            .exists(&held.child(&PROJECT, "web"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_update_bumps_the_generation_only_when_the_spec_changes() {
    let f = fixture();
    let created = new_org(&f.registry, "acme").await;

    let mut relabelled = labelled(created.clone(), "team", "core");
    relabelled
        .metadata
        .annotations
        .insert("note".into(), "hi".into());
    let relabelled = f
        .registry
        .update(&acme(), relabelled)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(relabelled.metadata.generation, 1);
    assert_eq!(relabelled.metadata.labels["team"], "core");
    assert_eq!(relabelled.metadata.annotations["note"], "hi");
    assert!(
        relabelled.metadata.resource_version.parse::<i64>().unwrap()
            > created.metadata.resource_version.parse::<i64>().unwrap()
    );

    let mut respecced = relabelled.clone();
    respecced.spec.description = "the whole company".into();
    // Server-managed fields sent back changed are ignored.
    respecced.metadata.uid = "other".into();
    respecced.metadata.generation = 40;
    let respecced = f
        .registry
        .update(&acme(), respecced)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(respecced.metadata.generation, 2);
    assert_eq!(respecced.metadata.uid, created.metadata.uid);
    assert_eq!(respecced.spec.description, "the whole company");

    let read = f.registry.get::<Org>(&acme()).await.unwrap();
    assert_eq!(read, respecced, "what update returns is what get reads");
}

#[tokio::test]
async fn an_update_from_a_stale_read_or_of_the_name_changes_nothing() {
    let f = fixture();
    let created = new_org(&f.registry, "acme").await;
    let mut first = created.clone();
    first.spec.description = "first".into();
    f.registry.update(&acme(), first).await.unwrap();

    let mut stale = created.clone();
    stale.spec.description = "stale".into();
    let refused = f.registry.update(&acme(), stale).await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(ref m)) if m.contains("stale resourceVersion")),
        "{refused:?}"
    );

    let mut unversioned = created.clone();
    unversioned.metadata.resource_version.clear();
    unversioned.spec.description = "last writer".into();
    f.registry.update(&acme(), unversioned).await.unwrap();

    let mut garbled = f.registry.get::<Org>(&acme()).await.unwrap();
    garbled.metadata.resource_version = "yesterday".into();
    let refused = f.registry.update(&acme(), garbled).await;
    let Err(RegistryError::Invalid(errors)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(errors.0[0].field, "metadata.resourceVersion");

    let mut renamed = f.registry.get::<Org>(&acme()).await.unwrap();
    renamed.metadata.name = "other".into();
    let refused = f.registry.update(&acme(), renamed).await;
    let Err(RegistryError::Invalid(errors)) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(errors.0[0].field, "metadata.name");

    let now = f.registry.get::<Org>(&acme()).await.unwrap();
    assert_eq!(now.spec.description, "last writer");
    assert_eq!(now.metadata.generation, 3);

    let missing = f
        .registry
        .update(
            &ResourcePath::org("nobody"),
            Object::new("nobody", Org::default()),
        )
        .await;
    assert!(
        matches!(missing, Err(RegistryError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_status_update_changes_the_status_only() {
    let f = fixture();
    let created = new_org(&f.registry, "acme").await;
    let mut reported = created.clone();
    reported.status.observed_generation = 1;
    reported.spec.description = "not through the status".into();
    reported.metadata.labels.insert("nor".into(), "this".into());
    let written = f.registry.update_status(&acme(), reported).await.unwrap();
    assert_eq!(written.status.observed_generation, 1);
    assert_eq!(written.spec.description, "");
    assert!(written.metadata.labels.is_empty());
    assert_eq!(written.metadata.generation, 1);
    assert_ne!(
        written.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(f.registry.get::<Org>(&acme()).await.unwrap(), written);

    let mut stale = created;
    stale.status.observed_generation = 9;
    let refused = f.registry.update_status(&acme(), stale).await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(
        f.registry
            .get::<Org>(&acme())
            .await
            .unwrap()
            .status
            .observed_generation,
        1
    );
}

#[tokio::test]
async fn a_node_with_children_is_deleted_only_with_cascade() {
    let f = fixture();
    let (org, eng, web) = tree(&f.registry).await;
    let refused = f.registry.delete(&eng, false).await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(ref m)) if m.contains("has children")),
        "{refused:?}"
    );
    let kept = f.registry.get::<Folder>(&eng).await.unwrap();
    assert_eq!(
        kept.metadata.deletion_timestamp, None,
        "a refused delete marks nothing"
    );
    assert!(f.registry.exists(&web).await.unwrap());

    assert!(matches!(
        f.registry.delete(&web, false).await,
        Ok(Deletion::Deleted)
    ));
    assert!(matches!(
        f.registry.get::<Project>(&web).await,
        Err(RegistryError::NotFound(_))
    ));
    assert!(matches!(
        f.registry.delete(&eng, false).await,
        Ok(Deletion::Deleted)
    ));

    let (_, eng, web) = (
        org.clone(),
        folder(&org, "eng"),
        folder(&org, "eng").child(&PROJECT, "web"),
    );
    new_child::<Folder>(&f.registry, &org, "eng").await;
    new_child::<Project>(&f.registry, &eng, "web").await;
    assert!(matches!(
        f.registry.delete(&org, true).await,
        Ok(Deletion::Deleted)
    ));
    for gone in [&org, &eng, &web] {
        assert!(!f.registry.exists(gone).await.unwrap(), "{gone} remains");
    }
    let missing = f.registry.delete(&org, true).await;
    assert!(
        matches!(missing, Err(RegistryError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn finalizers_hold_a_node_and_its_ancestors_until_they_are_removed() {
    let f = fixture();
    let (org, eng, web) = tree(&f.registry).await;
    hold::<Project>(&f.registry, &web, "example.com/backup").await;

    let Ok(Deletion::Pending(pending)) = f.registry.delete(&org, true).await else {
        panic!("the org should wait for its project")
    };
    assert_eq!(pending.metadata.deletion_timestamp, Some(noon()));
    assert_eq!(
        pending.metadata.finalizers,
        vec![CHILDREN_FINALIZER.to_string()]
    );
    let project = f.registry.get::<Project>(&web).await.unwrap();
    assert_eq!(project.metadata.deletion_timestamp, Some(noon()));
    assert_eq!(
        project.metadata.generation, 2,
        "marking for deletion is a change of the spec's fate"
    );
    let folder = f.registry.get::<Folder>(&eng).await.unwrap();
    assert_eq!(
        folder.metadata.finalizers,
        vec![CHILDREN_FINALIZER.to_string()]
    );

    let (mut deleting, _) = f.registry.deleting().await.unwrap();
    deleting.sort_by_key(|p| p.to_string());
    assert_eq!(deleting, vec![org.clone(), eng.clone(), web.clone()]);

    // Nothing new under a node being deleted, and no new finalizer on it.
    let mut added = project.clone();
    added.metadata.finalizers.push("example.com/late".into());
    let refused = f.registry.update(&web, added).await;
    assert!(
        matches!(refused, Err(RegistryError::Invalid(_))),
        "{refused:?}"
    );
    // Other changes are still taken, the finalizers it has kept.
    let relabelled = labelled(project, "state", "draining");
    let project = f.registry.update(&web, relabelled).await.unwrap().unwrap();
    assert_eq!(project.metadata.labels["state"], "draining");

    // The org's finish waits for its folder, which waits for the project.
    assert!(matches!(
        f.registry.finish_deletion(&org).await,
        Ok(Deletion::Pending(_))
    ));
    let mut released = project;
    released.metadata.finalizers.clear();
    assert_eq!(
        f.registry.update(&web, released).await.unwrap(),
        None,
        "the last finalizer removed, it is gone"
    );
    assert!(!f.registry.exists(&web).await.unwrap());
    assert!(matches!(
        f.registry.finish_deletion(&eng).await,
        Ok(Deletion::Deleted)
    ));
    assert!(matches!(
        f.registry.finish_deletion(&org).await,
        Ok(Deletion::Deleted)
    ));
    assert!(!f.registry.exists(&org).await.unwrap());
    assert!(f.registry.deleting().await.unwrap().0.is_empty());
}

#[tokio::test]
async fn finishing_leaves_other_finalizers_and_nodes_not_being_deleted_alone() {
    let f = fixture();
    let (org, eng, web) = tree(&f.registry).await;
    assert!(matches!(
        f.registry.finish_deletion(&eng).await,
        Ok(Deletion::Pending(_))
    ));
    assert_eq!(
        f.registry
            .get::<Folder>(&eng)
            .await
            .unwrap()
            .metadata
            .deletion_timestamp,
        None
    );

    hold::<Folder>(&f.registry, &eng, "example.com/audit").await;
    hold::<Project>(&f.registry, &web, "example.com/backup").await;
    let store = f.registry.store().clone();
    let before = store.revision().await.unwrap();
    assert!(matches!(
        f.registry.delete(&web, true).await,
        Ok(Deletion::Pending(_))
    ));
    assert_eq!(
        store.revision().await.unwrap(),
        before + 1,
        "a leaf held by a finalizer is marked in one write: its watchers see one change"
    );
    assert!(matches!(
        f.registry.delete(&eng, true).await,
        Ok(Deletion::Pending(_))
    ));
    assert_eq!(
        f.registry
            .get::<Folder>(&eng)
            .await
            .unwrap()
            .metadata
            .finalizers,
        ["example.com/audit", CHILDREN_FINALIZER],
        "its own finalizer kept, and the children's added"
    );

    let mut project = f.registry.get::<Project>(&web).await.unwrap();
    project.metadata.finalizers.clear();
    f.registry.update(&web, project).await.unwrap();
    let Ok(Deletion::Pending(folder)) = f.registry.finish_deletion(&eng).await else {
        panic!("the folder's own finalizer still holds it")
    };
    assert_eq!(
        folder.metadata.finalizers,
        vec!["example.com/audit".to_string()]
    );
    assert_eq!(
        f.registry
            .get::<Folder>(&eng)
            .await
            .unwrap()
            .metadata
            .finalizers,
        vec!["example.com/audit".to_string()],
        "the children finalizer is dropped in the store too"
    );
    assert!(matches!(
        f.registry.finish_deletion(&eng).await,
        Ok(Deletion::Pending(_))
    ));
    assert!(f.registry.exists(&org).await.unwrap());
}

#[tokio::test]
async fn a_deleted_org_is_retired_with_its_uid_and_time() {
    let f = fixture();
    let org = new_org(&f.registry, "acme").await;
    new_org(&f.registry, "zeta").await;
    f.registry.delete(&acme(), false).await.unwrap();
    let retired = f.registry.retired_orgs().await.unwrap();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(retired[0].uid, org.metadata.uid);
    assert_eq!(retired[0].name, "acme");
    assert_eq!(retired[0].deleted_at, noon());
}

#[tokio::test]
async fn lists_page_at_one_revision_and_keep_to_their_collection() {
    let f = fixture();
    let (org, _, _) = tree(&f.registry).await;
    // "engineering" shares a prefix with "eng": its children must not list under "eng".
    let eng2 = folder(&org, "engineering");
    new_child::<Folder>(&f.registry, &org, "engineering").await;
    new_child::<Project>(&f.registry, &eng2, "api").await;
    for name in ["a", "b", "c", "d", "e"] {
        let object = labelled(
            Object::new(name, Folder::default()),
            "even",
            if "bd".contains(name) { "yes" } else { "no" },
        );
        f.registry.create(Some(&org), object).await.unwrap();
    }
    let everyone = |_: &ResourcePath| true;
    let eng = folder(&org, "eng");
    let projects = f
        .registry
        .list_raw(&PROJECT, Some(&eng), &ListOptions::default(), &everyone)
        .await
        .unwrap();
    let names: Vec<_> = projects
        .items
        .iter()
        .map(|o| o.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["web"]);
    assert!(projects.next.is_none());

    let first = f
        .registry
        .list_raw(
            &FOLDER,
            Some(&org),
            &ListOptions {
                limit: 3,
                ..Default::default()
            },
            &everyone,
        )
        .await
        .unwrap();
    let names: Vec<_> = first
        .items
        .iter()
        .map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let next = first.next.clone().expect("more folders follow");
    assert_eq!(next.revision, Some(first.revision));

    // A folder created after the first page is not in the listing's later pages.
    new_child::<Folder>(&f.registry, &org, "f").await;
    let rest = f
        .registry
        .list_raw(
            &FOLDER,
            Some(&org),
            &ListOptions {
                limit: 3,
                resume: Some(next),
                ..Default::default()
            },
            &everyone,
        )
        .await
        .unwrap();
    let names: Vec<_> = rest.items.iter().map(|o| o.metadata.name.clone()).collect();
    assert_eq!(names, ["d", "e", "eng"]);
    assert_eq!(rest.revision, first.revision);
    let last = f
        .registry
        .list_raw(
            &FOLDER,
            Some(&org),
            &ListOptions {
                limit: 3,
                resume: rest.next,
                ..Default::default()
            },
            &everyone,
        )
        .await
        .unwrap();
    let names: Vec<_> = last.items.iter().map(|o| o.metadata.name.clone()).collect();
    assert_eq!(names, ["engineering"]);
    assert!(last.next.is_none());

    let even = f
        .registry
        .list_raw(
            &FOLDER,
            Some(&org),
            &ListOptions {
                selector: LabelSelector::parse("even=yes").unwrap(),
                ..Default::default()
            },
            &everyone,
        )
        .await
        .unwrap();
    let names: Vec<_> = even.items.iter().map(|o| o.metadata.name.clone()).collect();
    assert_eq!(names, ["b", "d"]);

    let orgs = f
        .registry
        .list_raw(&ORG, None, &ListOptions::default(), &everyone)
        .await
        .unwrap();
    assert_eq!(orgs.items.len(), 1);

    let under = f.registry.list_under::<Project>(&org).await.unwrap();
    let mut names: Vec<_> = under.iter().map(|o| o.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["api", "web"]);
    let under_eng = f.registry.list_under::<Project>(&eng).await.unwrap();
    assert_eq!(under_eng.len(), 1, "{under_eng:?}");
}

#[tokio::test]
async fn a_list_shows_only_what_the_caller_may_see_and_never_resumes_at_a_hidden_key() {
    let f = fixture();
    let org = acme();
    new_org(&f.registry, "acme").await;
    for i in 0..150 {
        f.registry
            .create(
                Some(&org),
                Object::new(format!("f{i:03}"), Folder::default()),
            )
            .await
            .unwrap();
    }
    // Only every tenth folder is visible: pages must gather them across store chunks.
    let visible = |p: &ResourcePath| p.name().ends_with('0');
    let mut shown = Vec::new();
    let mut resume = None;
    let mut pages = 0;
    loop {
        let page = f
            .registry
            .list_raw(
                &FOLDER,
                Some(&org),
                &ListOptions {
                    limit: 4,
                    resume,
                    ..Default::default()
                },
                &visible,
            )
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 4);
        shown.extend(page.items.iter().map(|o| o.metadata.name.clone()));
        if let Some(next) = &page.next {
            let key = String::from_utf8(next.start.clone()).unwrap();
            let last = page.items.last().unwrap();
            assert!(
                key.starts_with(&object_key(&folder(&org, &last.metadata.name))),
                "resumes just after the last shown: {key}"
            );
        }
        match page.next {
            Some(next) => resume = Some(next),
            None => break,
        }
    }
    let expected: Vec<_> = (0..150).step_by(10).map(|i| format!("f{i:03}")).collect();
    assert_eq!(shown, expected);
    assert_eq!(pages, 4);

    // Longer than one read from the store: each folder once, in order.
    let everyone = f
        .registry
        .list_raw(&FOLDER, Some(&org), &ListOptions::default(), &|_| true)
        .await
        .unwrap();
    let names: Vec<_> = everyone
        .items
        .iter()
        .map(|o| o.metadata.name.clone())
        .collect();
    let expected: Vec<_> = (0..150).map(|i| format!("f{i:03}")).collect();
    assert_eq!(names, expected);

    let foreign = f
        .registry
        .list_raw(&FOLDER, Some(&org), &ListOptions::default(), &visible)
        .await
        .unwrap();
    let projects_token = dialtone_store::registry::Position {
        revision: Some(foreign.revision),
        start: b"/o/projects/acme/".to_vec(),
    };
    let refused = f
        .registry
        .list_raw(
            &FOLDER,
            Some(&org),
            &ListOptions {
                resume: Some(projects_token),
                ..Default::default()
            },
            &visible,
        )
        .await;
    assert!(
        matches!(refused, Err(RegistryError::BadRequest(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_watch_sees_each_change_of_its_collection_in_order() {
    let f = fixture();
    let org = acme();
    new_org(&f.registry, "acme").await;
    // The watch starts after this folder's creation: it is not shown.
    let seen = new_child::<Folder>(&f.registry, &org, "seen").await;
    let after: i64 = seen.metadata.resource_version.parse().unwrap();
    let mut folders = Box::pin(f.registry.watch(&FOLDER, Some(&org), after).await.unwrap());

    let eng = new_child::<Folder>(&f.registry, &org, "eng").await;
    // Another org's folders are another collection.
    let zeta = ResourcePath::org("zeta");
    new_org(&f.registry, "zeta").await;
    new_child::<Folder>(&f.registry, &zeta, "eng").await;
    let mut changed = eng.clone();
    changed.spec.description = "engineering".into();
    let changed = f
        .registry
        .update(&folder(&org, "eng"), changed)
        .await
        .unwrap()
        .unwrap();
    f.registry
        .delete(&folder(&org, "eng"), false)
        .await
        .unwrap();
    let deleted_at = f
        .registry
        .store()
        .range(&dialtone_store::KeyRange::prefix("/"), None, 1)
        .await
        .unwrap()
        .revision;

    let added = next(&mut folders).await.unwrap();
    assert_eq!(added.kind, ChangeKind::Added);
    assert_eq!(added.path, folder(&org, "eng"));
    assert_eq!(added.object.metadata.uid, eng.metadata.uid);
    assert_eq!(added.revision.to_string(), eng.metadata.resource_version);
    assert_eq!(
        added.object.metadata.resource_version,
        eng.metadata.resource_version
    );

    let modified = next(&mut folders).await.unwrap();
    assert_eq!(modified.kind, ChangeKind::Modified);
    assert_eq!(modified.object.spec["description"], "engineering");
    assert_eq!(
        modified.revision.to_string(),
        changed.metadata.resource_version
    );

    let removed = next(&mut folders).await.unwrap();
    assert_eq!(removed.kind, ChangeKind::Deleted);
    assert_eq!(
        removed.object.spec["description"], "engineering",
        "a deletion shows the object as it was"
    );
    assert_eq!(removed.revision, deleted_at);
    assert_eq!(
        removed.object.metadata.resource_version,
        deleted_at.to_string()
    );
}

fn binding(role: &str, subject: &str) -> PolicyBinding {
    PolicyBinding {
        role: role.into(),
        subjects: vec![subject.into()],
    }
}

#[tokio::test]
async fn a_policy_changes_only_from_its_current_etag_and_dies_with_its_node() {
    let f = fixture();
    let (org, eng, _) = tree(&f.registry).await;
    let (bindings, empty_etag) = f.registry.get_policy(&eng).await.unwrap();
    assert!(bindings.is_empty());

    let viewers = vec![binding("folder.view", "user:ann")];
    let etag = f
        .registry
        .set_policy(&eng, &viewers, &empty_etag)
        .await
        .unwrap();
    assert_ne!(etag, empty_etag);
    assert_eq!(
        f.registry.get_policy(&eng).await.unwrap(),
        (viewers.clone(), etag.clone())
    );

    let refused = f
        .registry
        .set_policy(&eng, &[binding("folder.admin", "user:eve")], &empty_etag)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(ref m)) if m.contains("stale etag")),
        "{refused:?}"
    );
    assert_eq!(f.registry.get_policy(&eng).await.unwrap().0, viewers);

    // A node's status changing does not make its policy's etag stale.
    let mut folder_object = f.registry.get::<Folder>(&eng).await.unwrap();
    folder_object.status.observed_generation = 1;
    f.registry.update_status(&eng, folder_object).await.unwrap();
    let admins = vec![binding("folder.admin", "group:ops")];
    let etag = f.registry.set_policy(&eng, &admins, &etag).await.unwrap();
    // An empty etag is an unconditional write.
    f.registry.set_policy(&eng, &viewers, "").await.unwrap();
    let refused = f.registry.set_policy(&eng, &admins, &etag).await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(_))),
        "{refused:?}"
    );

    f.registry.delete(&eng, true).await.unwrap();
    let gone = f.registry.get_policy(&eng).await;
    assert!(matches!(gone, Err(RegistryError::NotFound(_))), "{gone:?}");
    new_child::<Folder>(&f.registry, &org, "eng").await;
    let (bindings, reborn_etag) = f.registry.get_policy(&eng).await.unwrap();
    assert!(
        bindings.is_empty(),
        "a re-created node starts with no policy: {bindings:?}"
    );
    assert_ne!(
        reborn_etag, empty_etag,
        "the old node's etag never matches the new node's policy"
    );
    let refused = f.registry.set_policy(&eng, &admins, &empty_etag).await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_node_being_deleted_keeps_its_policy_unchanged() {
    let f = fixture();
    let (_, eng, web) = tree(&f.registry).await;
    hold::<Project>(&f.registry, &web, "example.com/backup").await;
    f.registry.delete(&eng, true).await.unwrap();
    let refused = f
        .registry
        .set_policy(&eng, &[binding("folder.view", "user:ann")], "")
        .await;
    assert!(
        matches!(refused, Err(RegistryError::Conflict(ref m)) if m.contains("being deleted")),
        "{refused:?}"
    );
    assert!(f.registry.get_policy(&eng).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn access_records_list_parents_first_and_policies_last() {
    let f = fixture();
    let (org, eng, web) = tree(&f.registry).await;
    let mut ops = Object::new("ops", Group::default());
    ops.spec.members = vec!["ann".into(), "bob".into()];
    f.registry.create(Some(&org), ops).await.unwrap();
    f.registry
        .set_policy(&web, &[binding("project.view", "group:ops")], "")
        .await
        .unwrap();

    let (records, revision) = f.registry.access_records().await.unwrap();
    assert!(revision > 0);
    let depth = |r: &AccessRecord| match r {
        AccessRecord::Object(p) | AccessRecord::Group { path: p, .. } => Some(p.kind().depth()),
        AccessRecord::Policy { .. } => None,
    };
    let depths: Vec<_> = records.iter().map(depth).collect();
    let objects = depths.iter().filter(|d| d.is_some()).count();
    assert!(
        depths[..objects].windows(2).all(|w| w[0] <= w[1]),
        "parents before children: {records:?}"
    );
    assert!(
        depths[objects..].iter().all(Option::is_none),
        "policies after every node: {records:?}"
    );
    for node in [&org, &eng, &web] {
        assert!(
            records.contains(&AccessRecord::Object(node.clone())),
            "{node} missing: {records:?}"
        );
    }
    assert!(records.contains(&AccessRecord::Group {
        path: org.child(&GROUP, "ops"),
        members: vec!["ann".into(), "bob".into()]
    }));
    assert!(records.contains(&AccessRecord::Policy {
        node: web.clone(),
        bindings: vec![binding("project.view", "group:ops")]
    }));
    assert_eq!(records.len(), 5, "{records:?}");
}

#[tokio::test]
async fn the_access_watch_reports_what_access_control_reads_and_nothing_else() {
    let f = fixture();
    new_org(&f.registry, "zeta").await;
    // The watch starts after the records read: zeta's creation is not shown again.
    let (_, start) = f.registry.access_records().await.unwrap();
    let mut changes = Box::pin(f.registry.watch_access(start).await.unwrap());
    let org = acme();

    let created = new_org(&f.registry, "acme").await;
    let (revision, change) = next(&mut changes).await.unwrap();
    assert_eq!(revision.to_string(), created.metadata.resource_version);
    assert_eq!(
        change,
        Some(AccessChange::Put(AccessRecord::Object(org.clone())))
    );

    let mut relabelled = labelled(created, "a", "b");
    relabelled = f.registry.update(&org, relabelled).await.unwrap().unwrap();
    let (revision, change) = next(&mut changes).await.unwrap();
    assert_eq!(revision.to_string(), relabelled.metadata.resource_version);
    assert_eq!(
        change, None,
        "a changed org is the same node to access control"
    );

    let ops = org.child(&GROUP, "ops");
    let group = new_child::<Group>(&f.registry, &org, "ops").await;
    assert_eq!(
        next(&mut changes).await.unwrap().1,
        Some(AccessChange::Put(AccessRecord::Group {
            path: ops.clone(),
            members: vec![]
        }))
    );
    // The same transaction rewrote the org's children marker, which access control ignores.
    let (marker_revision, marker) = next(&mut changes).await.unwrap();
    assert_eq!(
        (marker_revision.to_string(), marker),
        (group.metadata.resource_version.clone(), None)
    );
    let mut joined = group;
    joined.spec.members = vec!["ann".into()];
    f.registry.update(&ops, joined).await.unwrap();
    let members = AccessRecord::Group {
        path: ops.clone(),
        members: vec!["ann".into()],
    };
    assert_eq!(
        next(&mut changes).await.unwrap().1,
        Some(AccessChange::Put(members.clone()))
    );

    f.registry
        .set_policy(&org, &[binding("org.view", "group:ops")], "")
        .await
        .unwrap();
    let policy = AccessRecord::Policy {
        node: org.clone(),
        bindings: vec![binding("org.view", "group:ops")],
    };
    assert_eq!(
        next(&mut changes).await.unwrap().1,
        Some(AccessChange::Put(policy))
    );

    // A key outside objects and policies still moves the watch's revision.
    let written = f
        .registry
        .store()
        .txn(Txn::default().put("/t/unrelated", b"x".to_vec()))
        .await
        .unwrap();
    let (revision, change) = next(&mut changes).await.unwrap();
    assert_eq!(change, None);
    assert!(matches!(written, TxnOutcome::Committed { revision: r } if r == revision));

    f.registry.delete(&ops, false).await.unwrap();
    assert_eq!(
        next(&mut changes).await.unwrap().1,
        Some(AccessChange::Removed(members))
    );
}

#[test]
fn keys_and_paths_map_one_to_one() {
    let web = folder(&acme(), "eng").child(&PROJECT, "web");
    let key = object_key(&web);
    assert_eq!(key, "/o/projects/acme/eng/web");
    assert_eq!(path_of_key(key.as_bytes()), Some(web.clone()));
    assert_eq!(path_of_key(b"/p/o/projects/acme/eng/web"), None);
    assert_eq!(path_of_key(b"/o/widgets/acme"), None);
    assert_eq!(
        path_of_key(b"/o/projects/acme"),
        None,
        "a project has three names"
    );
    assert!(key.starts_with(&collection_prefix(&PROJECT, Some(&folder(&acme(), "eng")))));
    assert!(!key.starts_with(&collection_prefix(&PROJECT, Some(&folder(&acme(), "en")))));
    assert_eq!(collection_prefix(&ORG, None), "/o/orgs/");
}

#[test]
fn a_request_body_names_what_is_wrong_with_it() {
    let parsed = Registry::decode_body::<Folder>(
        br#"{"metadata":{"name":"eng"},"spec":{"displayName":"Eng"}}"#,
    )
    .unwrap();
    assert_eq!(parsed.spec.display_name, "Eng");

    let not_json = Registry::decode_body::<Folder>(b"{not json");
    assert!(
        matches!(not_json, Err(RegistryError::BadRequest(_))),
        "{not_json:?}"
    );

    for (body, field) in [
        (r#"{"kind":"Org","metadata":{"name":"eng"}}"#, "kind"),
        (
            r#"{"apiVersion":"v1","metadata":{"name":"eng"}}"#,
            "apiVersion",
        ),
        (
            r#"{"metadata":{"name":"eng"},"spec":{"colour":"red"}}"#,
            "spec.colour",
        ),
    ] {
        let refused = Registry::decode_body::<Folder>(body.as_bytes());
        let Err(RegistryError::Invalid(errors)) = refused else {
            panic!("{body}: {refused:?}")
        };
        assert!(
            errors.0.iter().any(|e| e.field == field),
            "{body}: {errors:?}"
        );
    }
}

#[tokio::test]
async fn a_delete_that_finds_its_node_removed_by_another_has_its_work_done() {
    let f = fixture();
    let (_, eng, _) = tree(&f.registry).await;
    let other = folder(&acme(), "ops");
    new_child::<Folder>(&f.registry, &acme(), "ops").await;
    // Another server removes the folder between this delete's read and its removal.
    let key = object_key(&other);
    f.racing
        .before_next_write_of(&key, Txn::default().delete(key.clone()));
    assert!(matches!(
        f.registry.delete(&other, false).await,
        Ok(Deletion::Deleted)
    ));
    assert!(!f.racing.armed());
    assert!(f.registry.exists(&eng).await.unwrap());
}
