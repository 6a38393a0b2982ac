//! Authentication by bearer token, and the authorization hook.
//!
//! Tokens look like `dt_<id>_<secret>`: the id is public and names the stored record, the
//! secret is 256 random bits of which only a SHA-256 hash is stored. A hash of a secret with
//! that much entropy cannot be reversed or guessed, so a fast hash is the right one.
//!
//! A token names the uids of its identity and org, as a Kubernetes ServiceAccount token
//! names its account's: it authenticates only while that very identity exists and is not
//! being deleted, so deleting an identity or an org revokes all it holds, and re-creating
//! the name revives nothing.
//!
//! Every authorization decision goes through one [`Authorizer`]; handlers never check
//! access themselves. The access policies of the tree decide (`crate::access`).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use dialtone_store::records::StoredToken;
use dialtone_store::registry::Registry;
use dialtone_types::auth::{NewToken, TokenInfo};
use dialtone_types::{ApiError, Identity, KindInfo, Object, Reason, ResourcePath};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::App;
use crate::error::HttpError;

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub org: String,
    pub identity: String,
    pub org_uid: String,
    pub identity_uid: String,
    pub platform_admin: bool,
}

impl Principal {
    pub fn actor(&self) -> String {
        format!("{}@{}", self.identity, self.org)
    }

    pub fn identity_path(&self) -> ResourcePath {
        ResourcePath::org(&self.org).child(&dialtone_types::kinds::IDENTITY, &self.identity)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Create,
    Get,
    List,
    Watch,
    Update,
    UpdateStatus,
    Delete,
}

/// What a request touches.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One object.
    Object(&'a ResourcePath),
    /// The objects of `kind` under `parent` (every org when `parent` is `None`).
    Collection {
        kind: &'static KindInfo,
        parent: Option<&'a ResourcePath>,
    },
    /// Something of an object other than the object itself.
    Part(&'a ResourcePath, Part),
    /// The org as a tenant: whether the caller belongs to it (the audit log's placement).
    Tenant(&'a ResourcePath),
    /// Installation-wide powers: making platform admins, reading server metrics.
    Platform,
}

/// What a [`Target::Part`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A tree node's access policy, and explanations and previews of it.
    Policy,
    /// Kubernetes credentials for a cluster.
    Credentials,
    /// An identity's API tokens.
    Tokens,
    /// An org's audit log.
    Audit,
    /// The usage and cost of a node and everything under it.
    Billing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403, with a message saying what is missing.
    Forbid(String),
    /// 404, exactly as if the target did not exist.
    Hide,
}

/// The one place that decides who may do what.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, principal: &Principal, verb: Verb, target: Target<'_>) -> Decision;
}

/// Turns a decision into the error a client sees. `missing` is the message a missing
/// target gets, so that a hidden one gets the very same.
pub fn enforce(decision: Decision, missing: impl std::fmt::Display) -> Result<(), HttpError> {
    match decision {
        Decision::Allow => Ok(()),
        Decision::Forbid(message) => Err(ApiError::new(Reason::Forbidden, message).into()),
        Decision::Hide => Err(ApiError::not_found(missing).into()),
    }
}

/// Lets only a platform admin on: `enforce` of the authorizer's decision on the platform.
pub fn enforce_platform(
    app: &App,
    principal: &Principal,
    verb: Verb,
    missing: impl std::fmt::Display,
) -> Result<(), HttpError> {
    enforce(
        app.authorizer.authorize(principal, verb, Target::Platform),
        missing,
    )
}

const DEFAULT_TTL: SignedDuration = SignedDuration::from_hours(90 * 24);
const MAX_TTL_SECONDS: u64 = 400 * 24 * 3600;

pub(crate) fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Mints a token for the identity at `holder` and stores its hash; 404 if there is no such
/// identity.
pub async fn mint_token(
    registry: &Registry,
    holder: &ResourcePath,
    description: &str,
    ttl_seconds: Option<u64>,
    cluster: Option<(&str, &str)>,
    now: Timestamp,
) -> Result<NewToken, HttpError> {
    let ttl = match ttl_seconds {
        None => DEFAULT_TTL,
        Some(s) if (60..=MAX_TTL_SECONDS).contains(&s) => SignedDuration::from_secs(s as i64),
        Some(s) => {
            return Err(ApiError::new(
                Reason::BadRequest,
                format!("ttlSeconds {s} is out of range: use 60 to {MAX_TTL_SECONDS}"),
            )
            .into());
        }
    };
    let Some((identity, org_uid)) = registry.live_identity(holder).await? else {
        return Err(ApiError::not_found(holder).into());
    };
    let (mut id_bytes, mut secret_bytes) = ([0u8; 8], [0u8; 32]);
    {
        // The thread-local generator must not be held across an await.
        let mut rng = rand::rng();
        rng.fill_bytes(&mut id_bytes);
        rng.fill_bytes(&mut secret_bytes);
    }
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    let info = TokenInfo {
        id: id.clone(),
        org: holder.org_name().to_string(),
        identity: holder.name().to_string(),
        org_uid,
        identity_uid: identity.metadata.uid,
        description: description.to_string(),
        created_at: now,
        expires_at: now
            .checked_add(ttl)
            .map_err(|_| ApiError::new(Reason::BadRequest, "ttl too large"))?,
        cluster: cluster
            .map(|(path, _)| path.to_string())
            .unwrap_or_default(),
        cluster_uid: cluster.map(|(_, uid)| uid.to_string()).unwrap_or_default(),
    };
    registry
        .put_token(&StoredToken {
            info: info.clone(),
            secret_sha256: hash_secret(&secret),
        })
        .await?;
    Ok(NewToken {
        token: format!("dt_{id}_{secret}"),
        info,
    })
}

fn unauthorized(message: &str) -> HttpError {
    ApiError::new(Reason::Unauthorized, message).into()
}

/// The id and secret of a well-formed token.
pub(crate) fn token_parts(token: &str) -> Option<(&str, &str)> {
    token
        .strip_prefix("dt_")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, _)| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A token that authenticates: its secret matches, it has not expired, and the identity it
/// was minted for, by uid, exists and is not being deleted.
pub struct LiveToken {
    pub token: StoredToken,
    pub identity: Object<Identity>,
}

/// The live token a bearer token names, if any.
pub async fn verify_token(
    registry: &Registry,
    token: &str,
    now: Timestamp,
) -> Result<Option<LiveToken>, HttpError> {
    let Some((id, secret)) = token_parts(token) else {
        return Ok(None);
    };
    let Some(stored) = registry.get_token(id).await? else {
        return Ok(None);
    };
    // Comparing hashes of a 256-bit secret leaks nothing useful through timing.
    if stored.secret_sha256 != hash_secret(secret) || stored.info.expires_at <= now {
        return Ok(None);
    }
    let holder = ResourcePath::org(&stored.info.org)
        .child(&dialtone_types::kinds::IDENTITY, &stored.info.identity);
    let Some((identity, org_uid)) = registry.live_identity(&holder).await? else {
        return Ok(None);
    };
    let same = identity.metadata.uid == stored.info.identity_uid && org_uid == stored.info.org_uid;
    Ok(same.then_some(LiveToken {
        token: stored,
        identity,
    }))
}

/// Resolves a bearer token to a principal.
pub async fn authenticate(app: &App, header_value: Option<&str>) -> Result<Principal, HttpError> {
    let header_value = header_value
        .ok_or_else(|| unauthorized("missing bearer token: send `Authorization: Bearer dt_…`"))?;
    let token = header_value
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if token_parts(token).is_none() {
        return Err(unauthorized("malformed token"));
    }
    let invalid = || unauthorized("invalid, expired or revoked token");
    let live = app
        .tokens
        .verify(&app.registry, token, (app.clock)())
        .await?
        .ok_or_else(invalid)?;
    let LiveToken { token, identity } = &*live;
    // A cluster credential opens its cluster, not Dialtone's API.
    if !token.info.cluster_uid.is_empty() {
        return Err(invalid());
    }
    Ok(Principal {
        org: token.info.org.clone(),
        identity: token.info.identity.clone(),
        org_uid: token.info.org_uid.clone(),
        identity_uid: token.info.identity_uid.clone(),
        platform_admin: identity.spec.platform_admin,
    })
}

/// Middleware: every request but the health checks carries a valid token.
pub async fn require_authentication(
    State(app): State<App>,
    mut request: Request,
    next: Next,
) -> Response {
    let header_value = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match authenticate(&app, header_value.as_deref()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}
