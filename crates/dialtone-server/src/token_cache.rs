//! Verified tokens, kept in memory so that a request costs no store read to authenticate.
//!
//! An entry is what [`auth::verify_token`] found: the stored token and the live identity
//! holding it. Each request still checks its secret against the entry's hash and the
//! token's expiry. Entries are dropped when what they were verified from changes:
//! - on this server at once: revoking a token forgets it, and writing an identity or an org
//!   (deleting it, or changing whether it is a platform admin) forgets every entry;
//! - on every server through one watch of the store: a change to a token forgets it, a
//!   change to any identity or org forgets every entry, and a watch that ends (the store
//!   restarted, history compacted) forgets every entry, since changes may have been missed.
//!
//! So a token revoked through another server stops working here within the watch's delay,
//! milliseconds on one etcd cluster. An entry is also re-verified after [`MAX_AGE`], as a
//! bound on any change the watch could not see. A verification that began before a change
//! never stores its result: every change bumps a generation that an insert must match.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dialtone_controllers::runtime::reflector::{Changes, Event, ListWatch, reflect};
use dialtone_store::records::token_id_of_key;
use dialtone_store::registry::{Registry, RegistryError, collection_prefix};
use dialtone_store::{KeyRange, Revision};
use dialtone_types::kinds::{IDENTITY, ORG};
use futures::StreamExt;
use jiff::Timestamp;

use crate::auth::{self, LiveToken};
use crate::error::HttpError;

/// How long an entry is trusted without a change seen.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// Entries kept at most; past it the cache starts afresh.
const CAPACITY: usize = 100_000;

struct Entry {
    live: Arc<LiveToken>,
    verified_at: Instant,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every forget.
    generation: u64,
}

#[derive(Default)]
pub struct VerifiedTokens {
    inner: Mutex<Inner>,
}

impl VerifiedTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live token a bearer token names, if any: from memory when verified before and
    /// nothing it depends on changed since, from the store otherwise.
    pub async fn verify(
        &self,
        registry: &Registry,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<Arc<LiveToken>>, HttpError> {
        let Some((id, secret)) = auth::token_parts(token) else {
            return Ok(None);
        };
        let generation = {
            let inner = self.lock();
            if let Some(entry) = inner.entries.get(id)
                && entry.verified_at.elapsed() < MAX_AGE
            {
                let live = &entry.live;
                let valid = live.token.secret_sha256 == auth::hash_secret(secret)
                    && live.token.info.expires_at > now;
                return Ok(valid.then(|| live.clone()));
            }
            inner.generation
        };
        let Some(live) = auth::verify_token(registry, token, now).await? else {
            return Ok(None);
        };
        let live = Arc::new(live);
        let mut inner = self.lock();
        if inner.generation == generation {
            if inner.entries.len() >= CAPACITY {
                inner.entries.clear();
            }
            inner.entries.insert(
                id.to_string(),
                Entry {
                    live: live.clone(),
                    verified_at: Instant::now(),
                },
            );
        }
        Ok(Some(live))
    }

    /// Forgets the token `id`.
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(id);
    }

    /// Forgets every token.
    pub fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    /// Follows the store's changes for as long as it runs: a supervised task.
    pub async fn follow(self: Arc<Self>, registry: Registry) {
        reflect(&Invalidations(registry), None, |event| match event {
            Event::Listed(..) | Event::Changed(Some(Invalidation::All), _) => self.forget_all(),
            Event::Changed(Some(Invalidation::Token(id)), _) => self.forget(&id),
            Event::Changed(None, _) => {}
        })
        .await
    }
}

/// What a change in the store makes the cache forget.
enum Invalidation {
    Token(String),
    All,
}

/// The store's changes to tokens, identities and orgs. Its "list" is empty: there is
/// nothing to load, only a revision to watch from.
struct Invalidations(Registry);

impl ListWatch for Invalidations {
    type Item = ();
    type Change = Option<Invalidation>;

    fn describe(&self) -> &'static str {
        "verified tokens"
    }

    async fn list(&self) -> Result<(Vec<()>, Revision), RegistryError> {
        Ok((Vec::new(), self.0.store().revision().await?))
    }

    async fn watch(&self, after: Revision) -> Result<Changes<Self::Change>, RegistryError> {
        let events = self
            .0
            .store()
            .watch(KeyRange::prefix("/"), after + 1)
            .await?;
        let identities = collection_prefix(&IDENTITY, None);
        let orgs = collection_prefix(&ORG, None);
        Ok(events
            .map(move |event| {
                let event = event?;
                let key = event.kv.key.as_slice();
                let invalidation = if let Some(id) = token_id_of_key(key) {
                    Some(Invalidation::Token(id))
                } else if key.starts_with(identities.as_bytes()) || key.starts_with(orgs.as_bytes())
                {
                    Some(Invalidation::All)
                } else {
                    None
                };
                Ok((event.kv.mod_revision, invalidation))
            })
            .boxed())
    }
}
