//! `GET /v1/clustertypes[/{type}]`: the decision table of each Smart Cluster type, as the
//! planner applies it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_planner::{ClusterType, DECISIONS};
use dialtone_types::cluster_types::{ClusterTypeInfo, DecisionInfo};
use dialtone_types::{ApiError, List, ListMeta};

use crate::error::HttpResult;
use crate::resources::to_json;

fn info(cluster_type: ClusterType) -> ClusterTypeInfo {
    ClusterTypeInfo {
        name: cluster_type.name().into(),
        description: cluster_type.description().into(),
        decisions: DECISIONS
            .iter()
            .map(|d| DecisionInfo {
                key: d.key.into(),
                value: d.rule(cluster_type).to_string(),
                reason: d.reason.into(),
            })
            .collect(),
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
