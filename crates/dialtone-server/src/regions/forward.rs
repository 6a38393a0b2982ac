//! Writes go to their home region: the public listener forwards a write homed in another
//! region there, and the region listener makes a forwarded write only if this is its home.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{ApiError, Reason, ResourcePath};

use super::{FORWARD_TIMEOUT, LAG_HEADER, Regions, SERVED_BY_HEADER};
use crate::App;
use crate::audit::is_mutating;
use crate::error::with_causes;

/// Headers of one connection, not of the request: never passed on.
const HOP_BY_HOP: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Where a write belongs.
enum Home {
    Here,
    Peer(String),
}

/// The object a write under `/v1/` is about, and whether it creates a cluster.
fn written(path: &str) -> Option<(ResourcePath, bool)> {
    let rest = path.strip_prefix("/v1/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut pairs = 0;
    while pairs * 2 + 1 < parts.len()
        && dialtone_types::kinds::KindInfo::by_plural(parts[pairs * 2]).is_some()
    {
        pairs += 1;
    }
    if pairs == 0 {
        return None;
    }
    let node = ResourcePath::parse(&parts[..pairs * 2].join("/")).ok()?;
    let creates_cluster = parts.len() == pairs * 2 + 1 && parts[pairs * 2] == CLUSTER.plural;
    Some((node, creates_cluster))
}

impl Regions {
    /// The region that must make a write to `path` (with `body`, for a cluster's create).
    async fn home_of_write(
        &self,
        app: &App,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<Home, ApiError> {
        let Some((node, creates_cluster)) = written(path) else {
            return Ok(Home::Here);
        };
        // Asking what a policy would allow changes nothing; a credential is a token, which
        // its org's home mints.
        if path.ends_with("/whatif") {
            return Ok(Home::Here);
        }
        let credential = path.ends_with("/credentials");
        let cluster = node.up_to(&CLUSTER).filter(|_| !credential);
        let org = ResourcePath::org(node.org_name());
        let home = if creates_cluster && *method == Method::POST {
            let spec: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            match spec["spec"]["region"].as_str() {
                Some(region) => Some(self.home_of_cluster(region)?),
                None => None,
            }
        } else {
            let owner = cluster.unwrap_or(org);
            match app.registry.get_raw(&owner).await {
                Ok(object) => Some(object.metadata.home_region),
                Err(_) => None,
            }
        };
        Ok(match home {
            Some(home) if home != self.region && self.peers.contains_key(&home) => Home::Peer(home),
            _ => Home::Here,
        })
    }

    /// Sends the request on to `home` and hands back its answer, or says why it cannot.
    async fn forward(
        &self,
        home: &str,
        parts: &axum::http::request::Parts,
        body: bytes::Bytes,
    ) -> Response {
        let peer = &self.peers[home];
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut request = peer
            .http
            .request(parts.method.clone(), format!("{}{path}", peer.url))
            .timeout(FORWARD_TIMEOUT)
            .body(body);
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => {
                let mut response = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    if !HOP_BY_HOP.contains(&name.as_str()) {
                        response = response.header(name, value);
                    }
                }
                response = response.header(SERVED_BY_HEADER, home);
                match answer.bytes().await {
                    Ok(bytes) => response
                        .body(Body::from(bytes))
                        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()),
                    Err(e) => self.unanswered(home, &with_causes(&e)),
                }
            }
            Err(e) if e.is_connect() => self.unreachable(home, &with_causes(&e)),
            Err(e) => self.unanswered(home, &with_causes(&e)),
        }
    }

    /// 503 too, but saying that the write reached its home, which did not answer: it may
    /// have been made.
    fn unanswered(&self, home: &str, why: &str) -> Response {
        tracing::info!(region = %home, error = %why, "a forwarded write got no answer");
        refusal(ApiError::new(
            Reason::ServiceUnavailable,
            format!(
                "this object's home region {home} took the write but did not answer ({why}); it may have been made: read the object back before retrying"
            ),
        ))
    }

    /// 503, naming the home region and when it was last heard from.
    fn unreachable(&self, home: &str, why: &str) -> Response {
        tracing::info!(region = %home, error = %why, "cannot forward a write");
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        let last = match seen.get(home) {
            Some(applied) => format!(
                "last heard from at {} ({:.0} s ago)",
                applied.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                self.lag_of(applied)
            ),
            None => "never heard from".to_string(),
        };
        refusal(ApiError::new(
            Reason::ServiceUnavailable,
            format!(
                "this object's home region {home} cannot be reached ({last}); its objects are read here from what was last replicated, and writes to them wait until {home} is back"
            ),
        ))
    }
}

/// A request as the regions see it.
enum Routed {
    /// To be served here: a read, or a write homed here.
    Here(Request),
    /// A write homed in another region, its body read.
    Elsewhere {
        home: String,
        parts: axum::http::request::Parts,
        body: bytes::Bytes,
    },
}

impl Routed {
    /// Where `request` belongs; an answer of its own when it cannot tell (a body too large,
    /// a cluster in a region no region serves).
    async fn of(app: &App, request: Request) -> Result<Routed, Response> {
        if !is_mutating(request.method()) || !request.uri().path().starts_with("/v1/orgs") {
            return Ok(Routed::Here(request));
        }
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await else {
            return Err(refusal(ApiError::new(
                Reason::RequestEntityTooLarge,
                format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
            )));
        };
        let home = app
            .regions
            .home_of_write(app, &parts.method, parts.uri.path(), &body)
            .await
            .map_err(refusal)?;
        Ok(match home {
            Home::Here => Routed::Here(Request::from_parts(parts, Body::from(body))),
            Home::Peer(home) => Routed::Elsewhere { home, parts, body },
        })
    }
}

fn refusal(error: ApiError) -> Response {
    crate::error::HttpError(error).into_response()
}

/// Middleware of the public API: a write to an object homed in another region goes there;
/// every answer says how stale each peer's objects are here.
pub async fn forward_writes(State(app): State<App>, request: Request, next: Next) -> Response {
    let regions = app.regions.clone();
    if regions.peers.is_empty() {
        return next.run(request).await;
    }
    let lag = regions.lag_header();
    let mut response = match Routed::of(&app, request).await {
        Err(refused) => return refused,
        Ok(Routed::Here(request)) => next.run(request).await,
        Ok(Routed::Elsewhere { home, parts, body }) => regions.forward(&home, &parts, body).await,
    };
    if let Some(lag) = lag {
        response
            .headers_mut()
            .insert(HeaderName::from_static(LAG_HEADER), lag);
    }
    response
}

/// Middleware of the region listener: a forwarded write is made here only if this is its
/// home, so that two regions never both think the other is.
pub async fn refuse_misdirected(State(app): State<App>, request: Request, next: Next) -> Response {
    match Routed::of(&app, request).await {
        Err(refused) => refused,
        Ok(Routed::Here(request)) => next.run(request).await,
        Ok(Routed::Elsewhere { home, .. }) => refusal(ApiError::new(
            Reason::ServiceUnavailable,
            format!(
                "{} is not this object's home region ({home} is, as {} last heard); retry",
                app.regions.region, app.regions.region
            ),
        )),
    }
}
