//! `GET /v1/clustertypes[/{type}]`: the decision table of each Smart Cluster type, as the
//! planner applies it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_planner::{ClusterSettings, ClusterType, DECISIONS, Enforcement};
use dialtone_types::cluster_types::{ClusterTypeInfo, DecisionInfo};
use dialtone_types::{ApiError, List, ListMeta};

use crate::error::HttpResult;
use crate::resources::to_json;

fn info(cluster_type: ClusterType) -> ClusterTypeInfo {
    let settings = ClusterSettings::of(cluster_type);
    let enforced = DECISIONS.iter().filter(|d| d.is_enforced()).count();
    ClusterTypeInfo {
        name: cluster_type.name().into(),
        description: cluster_type.description().into(),
        decisions: DECISIONS
            .iter()
            .map(|d| DecisionInfo {
                key: d.key.into(),
                value: d.rule_in(&settings).to_string(),
                enforces: match d.enforcement {
                    Enforcement::Enforced(what) => Some(what.into()),
                    Enforcement::Advisory => None,
                },
                reason: d.reason.into(),
            })
            .collect(),
        enforced,
        advisory: DECISIONS.len() - enforced,
    }
}

pub async fn list_cluster_types() -> Response {
    let list = List::new(
        "ClusterType",
        ListMeta::default(),
        ClusterType::ALL.into_iter().map(info).collect::<Vec<_>>(),
    );
    to_json(StatusCode::OK, &list)
}

pub async fn get_cluster_type(Path(name): Path<String>) -> HttpResult<Response> {
    let cluster_type = ClusterType::parse(&name)
        .map_err(|message| ApiError::new(dialtone_types::Reason::NotFound, message))?;
    Ok(to_json(StatusCode::OK, &info(cluster_type)))
}
