//! The `sim` cloud's own API under `/v1/sim`, for operators and tests: what it holds,
//! failure injection and quotas. It acts on the whole simulated cloud, so the server lets
//! only platform admins reach it.

use std::collections::HashMap;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use dialtone_cloud::{Change, CloudError, IngressRule, Provider};
use dialtone_server::error::HttpResult;
use dialtone_server::resources::{check_query, success, to_json};
use dialtone_sim::{FaultSpec, InstanceFault, Quotas, Sim};
use dialtone_types::{ApiError, Reason};
use serde::de::DeserializeOwned;

/// The routes, relative to `/v1/sim`.
pub fn routes(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/resources", get(list_resources))
        .route("/resources/{id}/changes", post(change_resource))
        .route("/lifetimes", get(list_lifetimes))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/instances/{id}/{fault}", post(break_instance))
        .route("/regions/{region}/quotas", get(get_quotas).put(set_quotas))
        .route("/accounts", get(list_accounts).post(create_account))
        .route("/accounts/{account}", get(get_account))
        .route("/accounts/{account}/vpcs", post(create_customer_vpc))
        .route("/accounts/{account}/peerings/{id}", delete(delete_peering))
        .route(
            "/accounts/{account}/peerings/{id}/{answer}",
            post(answer_peering),
        )
        .with_state(sim)
}

fn decode<T: DeserializeOwned + schemars::JsonSchema + 'static>(body: &[u8]) -> HttpResult<T> {
    dialtone_types::validation::decode_strict(body).map_err(|e| ApiError::invalid(e).into())
}

/// A VPC in a customer's account.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CustomerVpc {
    region: String,
    /// Its range: a network of /16 to /28.
    cidr: String,
}

fn cloud_error(e: CloudError) -> ApiError {
    match e {
        CloudError::NotFound { id } => ApiError::not_found(id),
        CloudError::Invalid { message } => ApiError::new(Reason::BadRequest, message),
        other => ApiError::new(Reason::ServiceUnavailable, other.to_string()),
    }
}

/// `GET /v1/sim/resources?region=&tag=key=value`: every resource, or those matching.
async fn list_resources(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &["region", "tag"])?;
    let tag = match query.get("tag") {
        None => None,
        Some(tag) => Some(tag.split_once('=').ok_or_else(|| {
            ApiError::new(
                Reason::BadRequest,
                format!("tag must be key=value, not `{tag}`"),
            )
        })?),
    };
    let items: Vec<_> = sim
        .resources()
        .into_iter()
        .filter(|r| query.get("region").is_none_or(|region| &r.region == region))
        .filter(|r| tag.is_none_or(|(k, v)| r.tags.get(k).is_some_and(|t| t == v)))
        .collect();
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

/// `GET /v1/sim/lifetimes?region=`: every instance's lifetime the sim still reports (those
/// that ended within a week), as its usage report gives them: what metering is checked
/// against.
async fn list_lifetimes(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &["region"])?;
    let mut items = Vec::new();
    for region in sim.regions() {
        if query.get("region").is_some_and(|r| r != region.name) {
            continue;
        }
        items.extend(
            sim.lifetimes(region.name, jiff::Timestamp::UNIX_EPOCH)
                .await
                .map_err(cloud_error)?,
        );
    }
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

/// A change made to a resource outside Dialtone, as a person at the cloud's console would
/// make it: drift for the control plane to find.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsoleChange {
    /// `allowIngress` or `revokeIngress` (a security group), `removeRoute` (a route table),
    /// `removeTag` (any resource).
    change: String,
    /// The rule's TCP port; none for every protocol and port.
    #[serde(default)]
    port: Option<u16>,
    /// The rule's source range.
    #[serde(default)]
    source: Option<String>,
    /// The route's destination range.
    #[serde(default)]
    destination: Option<String>,
    /// The tag's key.
    #[serde(default)]
    key: Option<String>,
}

impl ConsoleChange {
    fn to_change(&self) -> Result<Change, String> {
        let range = |field: &str, value: &Option<String>| -> Result<ipnet::Ipv4Net, String> {
            let value = value.as_deref().ok_or(format!("`{field}` is required"))?;
            value.parse().map_err(|_| {
                format!("`{field}` must be an IPv4 CIDR such as 10.0.0.0/16, not `{value}`")
            })
        };
        let rule = || -> Result<IngressRule, String> {
            let source = range("source", &self.source)?;
            Ok(match self.port {
                Some(port) => IngressRule::tcp(port, source),
                None => IngressRule::all(source),
            })
        };
        match self.change.as_str() {
            "allowIngress" => Ok(Change::AllowIngress(rule()?)),
            "revokeIngress" => Ok(Change::RevokeIngress(rule()?)),
            "removeRoute" => Ok(Change::RemoveRoute {
                destination: range("destination", &self.destination)?,
            }),
            "removeTag" => Ok(Change::RemoveTags(vec![
                self.key.clone().ok_or("`key` is required")?,
            ])),
            other => Err(format!(
                "unknown change `{other}`; valid changes: allowIngress, revokeIngress, removeRoute, removeTag"
            )),
        }
    }
}

/// `POST /v1/sim/resources/{id}/changes`: changes a resource as someone outside Dialtone
/// would.
async fn change_resource(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult<Response> {
    let change: ConsoleChange = decode(&body)?;
    let change = change
        .to_change()
        .map_err(|message| ApiError::new(Reason::BadRequest, message))?;
    let found = |id: &str| {
        sim.resource(id)
            .ok_or_else(|| ApiError::not_found(format!("resource {id}")))
    };
    let region = found(&id)?.region;
    sim.modify(&region, &id, change)
        .await
        .map_err(cloud_error)?;
    let changed = found(&id)?;
    Ok(to_json(StatusCode::OK, &changed))
}

async fn list_faults(State(sim): State<Arc<Sim>>) -> HttpResult<Response> {
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({ "items": sim.faults() }),
    ))
}

async fn add_fault(State(sim): State<Arc<Sim>>, body: Bytes) -> HttpResult<Response> {
    let spec: FaultSpec = decode(&body)?;
    let fault = sim
        .add_fault(spec)
        .await
        .map_err(|message| ApiError::new(Reason::BadRequest, message))?;
    Ok(to_json(StatusCode::CREATED, &fault))
}

async fn remove_fault(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> HttpResult<Response> {
    let removed = sim
        .remove_faults(Some(&id))
        .await
        .map_err(|message| ApiError::new(Reason::ServiceUnavailable, message))?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("fault {id}")).into());
    }
    Ok(success(format!("fault {id} removed")))
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> HttpResult<Response> {
    let removed = sim
        .remove_faults(None)
        .await
        .map_err(|message| ApiError::new(Reason::ServiceUnavailable, message))?;
    Ok(success(format!("{removed} fault(s) removed")))
}

/// `POST /v1/sim/instances/{id}/kill`: the instance dies, as if its host failed;
/// `…/hang`: it keeps running but stops answering; `…/recover`: a hung one answers again.
async fn break_instance(
    State(sim): State<Arc<Sim>>,
    Path((id, fault)): Path<(String, String)>,
) -> HttpResult<Response> {
    let fault = match fault.as_str() {
        "kill" => InstanceFault::Kill,
        "hang" => InstanceFault::Hang,
        "recover" => InstanceFault::Recover,
        other => {
            return Err(ApiError::new(
                Reason::NotFound,
                format!("no instance operation `{other}`; valid operations: kill, hang, recover"),
            )
            .into());
        }
    };
    let changed = sim.break_instance(&id, fault).await.map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &changed))
}

async fn get_quotas(
    State(sim): State<Arc<Sim>>,
    Path(region): Path<String>,
) -> HttpResult<Response> {
    let quotas = sim.quotas(&region).map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &quotas))
}

async fn set_quotas(
    State(sim): State<Arc<Sim>>,
    Path(region): Path<String>,
    body: Bytes,
) -> HttpResult<Response> {
    let quotas: Quotas = decode(&body)?;
    sim.set_quotas(&region, quotas.clone())
        .await
        .map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &quotas))
}

/// `POST /v1/sim/accounts`: a customer's account, with a new id.
async fn create_account(State(sim): State<Arc<Sim>>) -> HttpResult<Response> {
    let account = sim.create_account().await.map_err(cloud_error)?;
    Ok(to_json(StatusCode::CREATED, &account))
}

async fn list_accounts(State(sim): State<Arc<Sim>>) -> HttpResult<Response> {
    let items: Vec<_> = sim
        .accounts()
        .iter()
        .filter_map(|id| sim.account(id))
        .collect();
    Ok(to_json(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
}

fn account_of(sim: &Sim, account: &str) -> HttpResult<dialtone_sim::Account> {
    sim.account(account)
        .ok_or_else(|| ApiError::not_found(format!("account {account}")).into())
}

async fn get_account(
    State(sim): State<Arc<Sim>>,
    Path(account): Path<String>,
) -> HttpResult<Response> {
    Ok(to_json(StatusCode::OK, &account_of(&sim, &account)?))
}

/// `POST /v1/sim/accounts/{account}/vpcs`: a VPC the customer owns, to peer with.
async fn create_customer_vpc(
    State(sim): State<Arc<Sim>>,
    Path(account): Path<String>,
    body: Bytes,
) -> HttpResult<Response> {
    let request: CustomerVpc = decode(&body)?;
    let cidr = request.cidr.parse().map_err(|_| {
        ApiError::new(
            Reason::BadRequest,
            format!(
                "`{}` is not an IPv4 CIDR such as 192.168.0.0/16",
                request.cidr
            ),
        )
    })?;
    let vpc = sim
        .create_customer_vpc(&account, &request.region, cidr)
        .await
        .map_err(cloud_error)?;
    Ok(to_json(StatusCode::CREATED, &vpc))
}

/// `POST /v1/sim/accounts/{account}/peerings/{id}/accept` (or `reject`): the customer's
/// answer to a peering request, as `aws ec2 accept-vpc-peering-connection` gives it.
async fn answer_peering(
    State(sim): State<Arc<Sim>>,
    Path((account, id, answer)): Path<(String, String, String)>,
) -> HttpResult<Response> {
    let accept = match answer.as_str() {
        "accept" => true,
        "reject" => false,
        other => {
            return Err(ApiError::not_found(format!(
                "`{other}`: a peering is answered with accept or reject"
            ))
            .into());
        }
    };
    account_of(&sim, &account)?;
    let answered = sim
        .answer_peering(&account, &id, accept)
        .await
        .map_err(cloud_error)?;
    Ok(to_json(StatusCode::OK, &answered))
}

/// `DELETE /v1/sim/accounts/{account}/peerings/{id}`: the customer deletes an active
/// peering with one of its VPCs.
async fn delete_peering(
    State(sim): State<Arc<Sim>>,
    Path((account, id)): Path<(String, String)>,
) -> HttpResult<Response> {
    account_of(&sim, &account)?;
    sim.delete_peering_as_customer(&account, &id)
        .await
        .map_err(cloud_error)?;
    Ok(success(format!(
        "peering {id} deleted by account {account}"
    )))
}
