//! The cloud a server runs against. The binary builds one from `--provider`; the server and
//! the controllers know it only through [`Provider`] and [`ClusterAccess`], never which cloud
//! it is.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dialtone_cloud::Provider;
use dialtone_controllers::{LifecycleOptions, Supervisor};
use dialtone_kube::{Authenticator, ClusterAccess};
use dialtone_types::{ApiError, Reason};
use futures::future::BoxFuture;

use crate::App;
use crate::auth::{Principal, Verb, enforce_platform};
use crate::error::HttpResult;

/// A cloud, the way to its clusters' Kubernetes APIs, and what else only it offers.
pub struct Backend {
    /// Where clusters' instances, networks and load balancers are made.
    pub provider: Arc<dyn Provider>,
    /// How Dialtone reaches each cluster's Kubernetes API.
    pub clusters: Arc<dyn ClusterAccess>,
    /// The lifecycle's waits, suited to how fast this cloud answers.
    pub lifecycle: LifecycleOptions,
    /// Routes only this backend serves, under `/v1/{provider name}` (the sim's failure
    /// injection):
    /// authenticated by the server and reached only by platform admins.
    pub operator_routes: Option<Router>,
}

/// What the server hands a backend being built, once it listens.
pub struct BackendContext {
    /// Checks the tokens users show a cluster's API.
    pub authenticator: Arc<dyn Authenticator>,
    /// Supervises the backend's background tasks.
    pub tasks: Arc<Supervisor>,
    /// Where the server listens: clusters' webhooks may call only its guard there.
    pub server_addr: SocketAddr,
    /// The drift guard's webhook, which clusters must be allowed to call.
    pub guard_url: String,
    /// Where clusters reach the server (`https://host:port`): its drift guard and its
    /// token reviews (`/v1/authentication/clusters/{uid}/tokenreviews`).
    pub server_url: String,
    /// The CA that signed the server's certificate.
    pub server_ca_pem: String,
}

/// Builds the backend once the server knows what it is given; called once by `start`.
pub type BuildBackend =
    Box<dyn FnOnce(BackendContext) -> BoxFuture<'static, anyhow::Result<Backend>> + Send>;

/// Lets only platform admins through to a backend's operator routes.
pub(crate) async fn require_platform_admin(
    State(app): State<App>,
    request: Request,
    next: Next,
) -> HttpResult<Response> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| ApiError::new(Reason::Unauthorized, "a bearer token is required"))?;
    let verb = match *request.method() {
        axum::http::Method::GET => Verb::List,
        axum::http::Method::POST => Verb::Create,
        axum::http::Method::DELETE => Verb::Delete,
        _ => Verb::Update,
    };
    enforce_platform(&app, principal, verb, request.uri().path())?;
    Ok(next.run(request).await)
}
