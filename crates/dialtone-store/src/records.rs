//! Records kept beside the objects: API tokens, the audit log, and what is kept of a
//! deleted org.
//!
//! Keys: `/tokens/{id}`; `/log/{org uid}/{time}-{request id}` for audit records;
//! `/retired/{org uid}` for each deleted org whose records are kept. Records are filed by
//! the org's uid, never its name, so that an org re-created under a deleted one's name
//! starts with none of them.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use dialtone_types::auth::{AuditRecord, RetiredOrg, TokenInfo};
use dialtone_types::kinds::{IDENTITY, ORG};
use dialtone_types::{Identity, Object, Org, ResourcePath};

use crate::registry::{Page, Position, Registry, RegistryError, Result};
use crate::{KeyRange, KeyValue, StoreError, Txn, TxnOutcome};

/// A stored API token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredToken {
    /// What listings show of it.
    pub info: TokenInfo,
    /// Hex SHA-256 of the secret; the secret itself is never stored.
    pub secret_sha256: String,
}

/// How long the records of a deleted org are kept, for platform admins only.
pub const RETENTION: SignedDuration = SignedDuration::from_hours(90 * 24);

/// The most operations one transaction carries (etcd allows 128).
const TXN_OPS: usize = 100;

const TOKENS: &str = "/tokens/";

fn token_key(id: &str) -> String {
    format!("{TOKENS}{id}")
}

/// The id of the token stored under `key`, if that is a token's key.
pub fn token_id_of_key(key: &[u8]) -> Option<String> {
    key.strip_prefix(TOKENS.as_bytes())
        .map(|id| String::from_utf8_lossy(id).into_owned())
}

fn log_prefix(org_uid: &str) -> String {
    format!("/log/{org_uid}/")
}

pub(crate) fn retired_key(org_uid: &str) -> String {
    format!("/retired/{org_uid}")
}

tokio::task_local! {
    static PENDING_AUDIT: std::sync::Arc<PendingAudit>;
}

/// A request's audit record, to be written in the transaction of the request's own change,
/// so that no change is stored without its record, and the request costs one commit.
/// The registry's create and update carry it (see [`PendingAudit::scope`]); a request that
/// changes nothing through them, or fails, has its record appended after its answer.
pub struct PendingAudit {
    org_uid: String,
    record: AuditRecord,
    /// The status the written record says, once a change carried it.
    written: std::sync::Mutex<Option<u16>>,
}

impl PendingAudit {
    /// `record`, filed under the org with uid `org_uid`; its status and outcome are set
    /// when a change carries it.
    pub fn new(org_uid: String, record: AuditRecord) -> std::sync::Arc<PendingAudit> {
        std::sync::Arc::new(PendingAudit {
            org_uid,
            record,
            written: Default::default(),
        })
    }

    /// Runs `work` (the request's handler) with this record pending: the first change it
    /// commits through the registry writes the record too.
    pub async fn scope<F: std::future::Future>(self: std::sync::Arc<Self>, work: F) -> F::Output {
        PENDING_AUDIT.scope(self, work).await
    }

    /// The status of the record a change carried, if one did.
    pub fn written(&self) -> Option<u16> {
        *self.written.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The write of this task's pending audit record, as a change answered with `status`
/// records it, if there is one not yet written.
pub(crate) fn pending_audit(
    status: u16,
    now: Timestamp,
) -> Option<(std::sync::Arc<PendingAudit>, String, Vec<u8>)> {
    let pending = PENDING_AUDIT.try_with(|p| p.clone()).ok()?;
    if pending.written().is_some() {
        return None;
    }
    let record = AuditRecord {
        time: now,
        status,
        outcome: "success".to_string(),
        ..pending.record.clone()
    };
    let key = audit_key(&pending.org_uid, &record);
    let value = encode_record(&record).ok()?;
    Some((pending, key, value))
}

/// Says that the pending record was committed, with `status`.
pub(crate) fn audit_committed(pending: Option<std::sync::Arc<PendingAudit>>, status: u16) {
    if let Some(pending) = pending {
        *pending.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }
}

fn audit_key(org_uid: &str, record: &AuditRecord) -> String {
    format!(
        "{}{:020}-{}",
        log_prefix(org_uid),
        record.time.as_nanosecond(),
        record.request_id
    )
}

/// Decodes a stored record, naming its key if it is corrupt.
pub(crate) fn decode_record<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Result<T> {
    serde_json::from_slice(&kv.value).map_err(|e| {
        StoreError::Internal(format!(
            "corrupt record at {}: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
        .into()
    })
}

pub(crate) fn encode_record<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| StoreError::Internal(e.to_string()).into())
}

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired tokens, and tokens whose identity is gone from a live org.
    pub tokens: usize,
    /// Deleted orgs whose retention ended, with all their records.
    pub orgs: usize,
}

impl Registry {
    /// The uid of the identity at `path` and of its org, if both exist and neither is being
    /// deleted.
    pub async fn live_identity(
        &self,
        path: &ResourcePath,
    ) -> Result<Option<(Object<Identity>, String)>> {
        let org = ResourcePath::org(path.org_name());
        let (identity, org) = match (
            self.get::<Identity>(path).await,
            self.get::<Org>(&org).await,
        ) {
            (Ok(identity), Ok(org)) => (identity, org),
            (Err(RegistryError::NotFound(_)), _) | (_, Err(RegistryError::NotFound(_))) => {
                return Ok(None);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let deleting = identity.metadata.deletion_timestamp.is_some()
            || org.metadata.deletion_timestamp.is_some();
        Ok((!deleting).then_some((identity, org.metadata.uid)))
    }

    /// The uid of the org `name`, if it exists.
    pub async fn org_uid(&self, name: &str) -> Result<Option<String>> {
        match self.get::<Org>(&ResourcePath::org(name)).await {
            Ok(org) => Ok(Some(org.metadata.uid)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // Tokens.

    /// Stores a new token; `AlreadyExists` if its id is taken.
    pub async fn put_token(&self, token: &StoredToken) -> Result<()> {
        let key = token_key(&token.info.id);
        let txn = Txn::default()
            .when(key.clone(), 0)
            .put(key, encode_record(token)?);
        match self.store().txn(txn).await? {
            TxnOutcome::Committed { .. } => Ok(()),
            TxnOutcome::Conflict => Err(RegistryError::AlreadyExists(format!(
                "token {}",
                token.info.id
            ))),
        }
    }

    /// The token with id `id`, whatever its state (the caller checks expiry and owner).
    pub async fn get_token(&self, id: &str) -> Result<Option<StoredToken>> {
        match self.store().get(token_key(id).as_bytes()).await? {
            Some(kv) => decode_record(&kv).map(Some),
            None => Ok(None),
        }
    }

    async fn all_tokens(&self) -> Result<Vec<(KeyValue, StoredToken)>> {
        let all = self
            .store()
            .range(&KeyRange::prefix("/tokens/"), None, 0)
            .await?;
        all.kvs
            .into_iter()
            .map(|kv| decode_record(&kv).map(|token| (kv, token)))
            .collect()
    }

    /// The tokens of the org with uid `org_uid` whose identities (by uid) still exist: a
    /// deleted identity's tokens authenticate no more and are not listed.
    pub async fn list_tokens(&self, org: &ResourcePath, org_uid: &str) -> Result<Vec<TokenInfo>> {
        let holders: std::collections::HashSet<String> = self
            .list_under::<Identity>(org)
            .await?
            .into_iter()
            .map(|identity| identity.metadata.uid)
            .collect();
        Ok(self
            .all_tokens()
            .await?
            .into_iter()
            .map(|(_, token)| token.info)
            .filter(|info| info.org_uid == org_uid && holders.contains(&info.identity_uid))
            .collect())
    }

    /// The tokens of a deleted org, kept with its other records.
    pub async fn retired_tokens(&self, org_uid: &str) -> Result<Vec<TokenInfo>> {
        Ok(self
            .all_tokens()
            .await?
            .into_iter()
            .map(|(_, token)| token.info)
            .filter(|info| info.org_uid == org_uid)
            .collect())
    }

    /// Deletes the token `id` if it belongs to the org with uid `org_uid`; true if it did.
    pub async fn delete_token(&self, org_uid: &str, id: &str) -> Result<bool> {
        let key = token_key(id);
        let Some(kv) = self.store().get(key.as_bytes()).await? else {
            return Ok(false);
        };
        let token: StoredToken = decode_record(&kv)?;
        if token.info.org_uid != org_uid {
            return Ok(false);
        }
        let txn = Txn::default()
            .when(key.clone(), kv.mod_revision)
            .delete(key);
        Ok(matches!(
            self.store().txn(txn).await?,
            TxnOutcome::Committed { .. }
        ))
    }

    // The audit log.

    /// Appends `record` to the audit log of the org with uid `org_uid`.
    pub async fn append_audit(&self, org_uid: &str, record: &AuditRecord) -> Result<()> {
        self.store()
            .txn(Txn::default().put(audit_key(org_uid, record), encode_record(record)?))
            .await?;
        Ok(())
    }

    /// The audit records of the org with uid `org_uid`, oldest first, up to `limit` (0:
    /// all) from `resume`.
    pub async fn list_audit(
        &self,
        org_uid: &str,
        limit: usize,
        resume: Option<&Position>,
    ) -> Result<Page<AuditRecord>> {
        let range = KeyRange::prefix(log_prefix(org_uid));
        let start = match resume {
            None => range.start.clone(),
            Some(position) if range.contains(&position.start) => position.start.clone(),
            Some(_) => {
                return Err(RegistryError::BadRequest(
                    "the continue token belongs to another list".into(),
                ));
            }
        };
        let result = self
            .store()
            .range(&range.starting_at(start), None, limit)
            .await?;
        let items = result
            .kvs
            .iter()
            .map(decode_record)
            .collect::<Result<Vec<_>>>()?;
        let next = result.more.then(|| {
            let mut start = result
                .kvs
                .last()
                .map(|kv| kv.key.clone())
                .unwrap_or_default();
            start.push(0);
            Position {
                revision: None,
                start,
            }
        });
        Ok(Page {
            items,
            revision: result.revision,
            next,
        })
    }

    // Deleted orgs.

    /// The deleted orgs whose records are kept, oldest deletion first.
    pub async fn retired_orgs(&self) -> Result<Vec<RetiredOrg>> {
        let all = self
            .store()
            .range(&KeyRange::prefix("/retired/"), None, 0)
            .await?;
        let mut orgs: Vec<RetiredOrg> = all.kvs.iter().map(decode_record).collect::<Result<_>>()?;
        orgs.sort_by_key(|org| org.deleted_at);
        Ok(orgs)
    }

    /// Removes expired tokens, tokens whose identity is gone from a live org, and every
    /// record of an org deleted more than [`RETENTION`] before `now`.
    pub async fn sweep_records(&self, now: Timestamp) -> Result<Swept> {
        let live_orgs: std::collections::HashSet<String> = self
            .list_raw(&ORG, None, &Default::default(), &|_| true)
            .await?
            .items
            .into_iter()
            .map(|org| org.metadata.uid)
            .collect();
        let identities: std::collections::HashSet<String> = self
            .store()
            .range(
                &KeyRange::prefix(crate::registry::collection_prefix(&IDENTITY, None)),
                None,
                0,
            )
            .await?
            .kvs
            .iter()
            .map(|kv| decode_record::<Object<Identity>>(kv).map(|identity| identity.metadata.uid))
            .collect::<Result<_>>()?;
        let cutoff = now.checked_sub(RETENTION).unwrap_or(now);
        let ended: Vec<RetiredOrg> = self
            .retired_orgs()
            .await?
            .into_iter()
            .filter(|org| org.deleted_at < cutoff)
            .collect();
        let ended_uids: std::collections::HashSet<&str> =
            ended.iter().map(|org| org.uid.as_str()).collect();
        let mut doomed = Vec::new();
        for (kv, token) in self.all_tokens().await? {
            let info = &token.info;
            let orphan =
                live_orgs.contains(&info.org_uid) && !identities.contains(&info.identity_uid);
            if info.expires_at <= now || orphan || ended_uids.contains(info.org_uid.as_str()) {
                doomed.push(kv.key);
            }
        }
        let swept_tokens = doomed.len();
        for org in &ended {
            let log = self
                .store()
                .range(&KeyRange::prefix(log_prefix(&org.uid)), None, 0)
                .await?;
            doomed.extend(log.kvs.into_iter().map(|kv| kv.key));
            doomed.push(retired_key(&org.uid).into_bytes());
        }
        for keys in doomed.chunks(TXN_OPS) {
            let txn = keys
                .iter()
                .fold(Txn::default(), |txn, key| txn.delete(key.clone()));
            self.store().txn(txn).await?;
        }
        Ok(Swept {
            tokens: swept_tokens,
            orgs: ended.len(),
        })
    }

    /// Files records of the layout before uids (tokens naming an org and identity by name
    /// only, audit records under `/audit/{org name}/`) under the uids of the org and identity
    /// of that name, when they exist, and drops them otherwise. Runs at every start; a store
    /// holding no such records costs two empty range reads.
    pub async fn bind_records_to_uids(&self) -> Result<usize> {
        let mut moved = 0;
        for (kv, mut token) in self.all_tokens().await? {
            if !token.info.identity_uid.is_empty() {
                continue;
            }
            let path = ResourcePath::org(&token.info.org).child(&IDENTITY, &token.info.identity);
            let txn = Txn::default().when(kv.key.clone(), kv.mod_revision);
            let txn = match self.live_identity(&path).await? {
                Some((identity, org_uid)) => {
                    token.info.identity_uid = identity.metadata.uid;
                    token.info.org_uid = org_uid;
                    txn.put(kv.key, encode_record(&token)?)
                }
                None => txn.delete(kv.key),
            };
            self.store().txn(txn).await?;
            moved += 1;
        }
        let legacy = self
            .store()
            .range(&KeyRange::prefix("/audit/"), None, 0)
            .await?;
        for kv in legacy.kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let mut parts = key.trim_start_matches("/audit/").splitn(2, '/');
            let (org, entry) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let txn = Txn::default()
                .when(kv.key.clone(), kv.mod_revision)
                .delete(kv.key);
            let txn = match self.org_uid(org).await? {
                Some(uid) => txn.put(format!("{}{entry}", log_prefix(&uid)), kv.value),
                None => txn,
            };
            self.store().txn(txn).await?;
            moved += 1;
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dialtone_types::{Identity, Object, Org, ResourcePath};

    use super::*;
    use crate::{EmbeddedStore, Store};

    #[test]
    fn a_token_key_names_its_token_and_no_other_key_does() {
        assert_eq!(
            token_id_of_key(token_key("abc").as_bytes()),
            Some("abc".into())
        );
        assert_eq!(token_id_of_key(b"/log/uid/1-r"), None);
        assert_eq!(token_id_of_key(b"/o/orgs/acme"), None);
    }

    fn token(id: &str, org_uid: &str, identity_uid: &str, expires_at: Timestamp) -> StoredToken {
        StoredToken {
            info: TokenInfo {
                id: id.into(),
                org: "acme".into(),
                identity: "ops".into(),
                org_uid: org_uid.into(),
                identity_uid: identity_uid.into(),
                description: String::new(),
                created_at: Timestamp::UNIX_EPOCH,
                expires_at,
                cluster: String::new(),
                cluster_uid: String::new(),
            },
            secret_sha256: String::new(),
        }
    }

    async fn org_with_ops(registry: &Registry) -> (String, String) {
        let org = registry
            .create(None, Object::new("acme", Org::default()))
            .await
            .unwrap();
        let ops = registry
            .create(
                Some(&ResourcePath::org("acme")),
                Object::new("ops", Identity::default()),
            )
            .await
            .unwrap();
        (org.metadata.uid, ops.metadata.uid)
    }

    #[tokio::test]
    async fn a_deleted_org_s_records_stay_with_its_uid_until_their_retention_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let registry = Registry::new(store, "us-east-1", Timestamp::now);
        let now = Timestamp::now();
        let later = now.checked_add(SignedDuration::from_hours(24)).unwrap();
        let (old_org, old_ops) = org_with_ops(&registry).await;
        registry
            .put_token(&token("a", &old_org, &old_ops, later))
            .await
            .unwrap();
        let record = AuditRecord {
            time: now,
            actor: "ops@acme".into(),
            method: "POST".into(),
            path: "/v1/orgs/acme/folders".into(),
            status: 201,
            outcome: "success".into(),
            request_id: "r1".into(),
        };
        registry.append_audit(&old_org, &record).await.unwrap();
        registry
            .delete(&ResourcePath::org("acme"), true)
            .await
            .unwrap();
        let (new_org, new_ops) = org_with_ops(&registry).await;
        registry
            .put_token(&token("b", &new_org, &new_ops, later))
            .await
            .unwrap();
        // An expired token of the live org, and one of an identity that is gone.
        registry
            .put_token(&token("c", &new_org, &new_ops, now))
            .await
            .unwrap();
        registry
            .put_token(&token("d", &new_org, "gone", later))
            .await
            .unwrap();

        let acme = ResourcePath::org("acme");
        let ids = |tokens: Vec<TokenInfo>| tokens.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(registry.list_tokens(&acme, &new_org).await.unwrap()),
            ["b", "c"]
        );
        assert!(
            registry
                .list_audit(&new_org, 0, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let retired = registry.retired_orgs().await.unwrap();
        assert_eq!(
            (retired[0].uid.as_str(), retired[0].name.as_str()),
            (old_org.as_str(), "acme")
        );
        assert_eq!(ids(registry.retired_tokens(&old_org).await.unwrap()), ["a"]);

        // A sweep takes expired and orphaned tokens at once, the old org's records only
        // once its retention has ended.
        let swept = registry.sweep_records(now).await.unwrap();
        assert_eq!(swept, Swept { tokens: 2, orgs: 0 });
        // The expired one and the orphan went; the live identity's stays.
        assert!(registry.get_token("b").await.unwrap().is_some());
        for gone in ["c", "d"] {
            assert!(registry.get_token(gone).await.unwrap().is_none(), "{gone}");
        }
        assert_eq!(
            registry.list_audit(&old_org, 0, None).await.unwrap().items,
            [record]
        );
        let after_retention = now
            .checked_add(RETENTION)
            .unwrap()
            .checked_add(SignedDuration::from_hours(1))
            .unwrap();
        let swept = registry.sweep_records(after_retention).await.unwrap();
        assert_eq!(
            swept,
            Swept { tokens: 2, orgs: 1 },
            "a and b have expired by then"
        );
        assert!(registry.retired_orgs().await.unwrap().is_empty());
        assert!(
            registry
                .list_audit(&old_org, 0, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }

    async fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        (dir, Registry::new(store, "us-east-1", Timestamp::now))
    }

    fn audit(request_id: &str) -> AuditRecord {
        AuditRecord {
            time: Timestamp::now(),
            actor: "ops@acme".into(),
            method: "POST".into(),
            path: "/v1/orgs/acme/folders".into(),
            status: 201,
            outcome: "success".into(),
            request_id: request_id.into(),
        }
    }

    #[tokio::test]
    async fn a_request_s_change_and_its_audit_record_are_one_commit() {
        let (_dir, registry) = registry().await;
        let (org, _) = org_with_ops(&registry).await;
        let acme = ResourcePath::org("acme");
        let eng = acme.child(&dialtone_types::kinds::IDENTITY, "eng");
        let records = || async { registry.list_audit(&org, 0, None).await.unwrap() };
        let pending = PendingAudit::new(org.clone(), audit("r1"));
        let created = pending
            .clone()
            .scope(registry.create(Some(&acme), Object::new("eng", Identity::default())))
            .await
            .unwrap();
        assert_eq!(pending.written(), Some(201));
        let page = records().await;
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].status, 201);
        // The record and the object are one revision: no change without its record.
        assert_eq!(page.revision.to_string(), created.metadata.resource_version);

        // Only the request's first change carries it.
        let again = PendingAudit::new(org.clone(), audit("r2"));
        let two_updates = async {
            for label in ["team", "tier"] {
                let mut object: Object<Identity> = registry.get(&eng).await.unwrap();
                object.metadata.labels.insert(label.into(), "x".into());
                registry.update(&eng, object).await.unwrap();
            }
        };
        again.clone().scope(two_updates).await;
        assert_eq!(again.written(), Some(200));
        assert_eq!(records().await.items.len(), 2);

        // A refused change writes no record: the middleware records the refusal instead.
        let refused = PendingAudit::new(org.clone(), audit("r3"));
        let duplicate = refused
            .clone()
            .scope(registry.create(Some(&acme), Object::new("eng", Identity::default())))
            .await;
        assert!(matches!(duplicate, Err(RegistryError::AlreadyExists(_))));
        assert_eq!(refused.written(), None);
        assert_eq!(records().await.items.len(), 2);
    }

    #[tokio::test]
    async fn a_deleted_org_s_records_are_kept_ninety_days() {
        let (_dir, registry) = registry().await;
        let (org, _) = org_with_ops(&registry).await;
        registry.append_audit(&org, &audit("r1")).await.unwrap();
        registry
            .delete(&ResourcePath::org("acme"), true)
            .await
            .unwrap();
        let days = |n: i64| {
            Timestamp::now()
                .checked_add(SignedDuration::from_hours(24 * n))
                .unwrap()
        };
        assert_eq!(registry.sweep_records(days(89)).await.unwrap().orgs, 0);
        assert_eq!(
            registry
                .list_audit(&org, 0, None)
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(registry.sweep_records(days(91)).await.unwrap().orgs, 1);
        assert!(
            registry
                .list_audit(&org, 0, None)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_token_is_deleted_only_through_its_own_org() {
        let (_dir, registry) = registry().await;
        let (org, ops) = org_with_ops(&registry).await;
        let later = Timestamp::now()
            .checked_add(SignedDuration::from_hours(1))
            .unwrap();
        registry
            .put_token(&token("a", &org, &ops, later))
            .await
            .unwrap();
        assert!(!registry.delete_token("another-org", "a").await.unwrap());
        assert!(registry.get_token("a").await.unwrap().is_some(), "kept");
        assert!(registry.delete_token(&org, "a").await.unwrap());
        assert!(registry.get_token("a").await.unwrap().is_none(), "gone");
        assert!(
            !registry.delete_token(&org, "a").await.unwrap(),
            "gone already"
        );
    }

    #[tokio::test]
    async fn an_identity_being_deleted_holds_nothing_live() {
        let (_dir, registry) = registry().await;
        org_with_ops(&registry).await;
        let org = ResourcePath::org("acme");
        let mut held = Object::new("held", Identity::default());
        held.metadata.finalizers.push("example.com/hold".into());
        registry.create(Some(&org), held).await.unwrap();
        let path = org.child(&IDENTITY, "held");
        assert!(registry.live_identity(&path).await.unwrap().is_some());
        registry.delete(&path, false).await.unwrap();
        assert!(
            registry.live_identity(&path).await.unwrap().is_none(),
            "marked for deletion, its org alive"
        );
    }

    #[tokio::test]
    async fn the_audit_log_pages_in_order_and_refuses_another_log_s_position() {
        let (_dir, registry) = registry().await;
        let (org, _) = org_with_ops(&registry).await;
        for i in 0..5 {
            registry
                .append_audit(&org, &audit(&format!("r{i}")))
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut resume = None;
        loop {
            let page = registry.list_audit(&org, 2, resume.as_ref()).await.unwrap();
            seen.extend(page.items.into_iter().map(|r| r.request_id));
            match page.next {
                Some(next) => resume = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["r0", "r1", "r2", "r3", "r4"]);
        let first = registry.list_audit(&org, 2, None).await.unwrap();
        let elsewhere = registry
            .list_audit("another-org", 2, first.next.as_ref())
            .await;
        assert!(
            matches!(elsewhere, Err(RegistryError::BadRequest(_))),
            "{elsewhere:?}"
        );
    }

    #[tokio::test]
    async fn records_of_the_layout_before_uids_are_filed_under_them() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let registry = Registry::new(store.clone(), "us-east-1", Timestamp::now);
        let (org, ops) = org_with_ops(&registry).await;
        let later = Timestamp::now()
            .checked_add(SignedDuration::from_hours(1))
            .unwrap();
        registry
            .put_token(&token("a", "", "", later))
            .await
            .unwrap();
        store
            .txn(Txn::default().put("/audit/acme/0001-r1", b"{}".to_vec()))
            .await
            .unwrap();
        store
            .txn(Txn::default().put("/audit/gone/0001-r2", b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(registry.bind_records_to_uids().await.unwrap(), 3);
        let bound = registry.get_token("a").await.unwrap().unwrap();
        assert_eq!(
            (bound.info.org_uid, bound.info.identity_uid),
            (org.clone(), ops)
        );
        let moved = store
            .get(format!("/log/{org}/0001-r1").as_bytes())
            .await
            .unwrap();
        assert!(moved.is_some());
        let legacy = store
            .range(&KeyRange::prefix("/audit/"), None, 0)
            .await
            .unwrap();
        assert!(legacy.kvs.is_empty());
        assert_eq!(registry.bind_records_to_uids().await.unwrap(), 0);
    }
}
