//! What a pod holds of its node, as metering reads it from the cluster's API: its requests
//! from the time a kubelet started it (`status.startTime`) to its end (the last container
//! finished in a terminal phase, or its deletion).

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

use crate::{KubeError, quantity};

/// A pod's requests and life, as far as its object tells them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodUsage {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Thousandths of a vCPU it requests.
    pub millicpu: u64,
    /// MiB of memory it requests, rounded up.
    pub memory_mib: u64,
    /// When a kubelet started it; `None` while none has.
    pub started: Option<Timestamp>,
    /// When it stopped holding its requests, once it has.
    pub ended: Option<Timestamp>,
}

fn requested(containers: &[Container], key: &str) -> f64 {
    containers
        .iter()
        .map(|c| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r: &BTreeMap<String, Quantity>| r.get(key))
                .and_then(|q| quantity::parse(&q.0))
                .unwrap_or(0.0)
        })
        .sum()
}

fn largest(containers: &[Container], key: &str) -> f64 {
    containers
        .iter()
        .map(|c| requested(std::slice::from_ref(c), key))
        .fold(0.0, f64::max)
}

/// What the pod requests of its node, in milli-vCPUs and MiB (rounded up): its containers'
/// requests summed, or its largest init container's if that is more, as the scheduler
/// counts them.
pub fn pod_requests(pod: &Pod) -> (u64, u64) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let effective = |key| requested(&spec.containers, key).max(largest(init, key));
    let millicpu = (effective("cpu") * 1000.0).ceil() as u64;
    let memory_mib = (effective("memory") / (1024.0 * 1024.0)).ceil() as u64;
    (millicpu, memory_mib)
}

/// The pod's usage as its object tells it; `deleted_at` when the object is the last state of
/// a deleted pod, seen then (its `deletionTimestamp` says when, if it has one).
pub fn pod_usage(pod: &Pod, deleted_at: Option<Timestamp>) -> PodUsage {
    let (millicpu, memory_mib) = pod_requests(pod);
    let status = pod.status.as_ref();
    let terminal = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let finished = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let deletion = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0);
    let ended = match (terminal, deleted_at) {
        (true, _) => finished.or(deletion).or(deleted_at),
        (false, Some(seen)) => Some(deletion.map_or(seen, |d| d.min(seen))),
        (false, None) => None,
    };
    PodUsage {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        millicpu,
        memory_mib,
        started: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
        ended,
    }
}

/// Every pod of the cluster, and the resourceVersion to watch from.
pub async fn list_pods(client: &kube::Client) -> Result<(Vec<Pod>, String), KubeError> {
    let list = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let version = list.metadata.resource_version.unwrap_or_default();
    Ok((list.items, version))
}

/// What happened to a pod, as a watch tells it.
#[derive(Debug)]
pub enum PodChange {
    /// Added or changed: its state now.
    Applied(Box<Pod>),
    /// Deleted: its last state.
    Deleted(Box<Pod>),
}

/// Why a watch of pods stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The API no longer keeps the changes after that version: list again.
    #[error("the cluster's API no longer keeps changes that old")]
    Expired,
    #[error(transparent)]
    Kube(#[from] KubeError),
}

/// The pods' changes after `version`, each with the version it brought, for up to
/// `timeout_seconds`.
pub async fn watch_pods(
    client: &kube::Client,
    version: &str,
    timeout_seconds: u32,
) -> Result<impl Stream<Item = Result<(PodChange, String), WatchError>>, WatchError> {
    let params = WatchParams::default().timeout(timeout_seconds);
    let expired = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 410);
    let stream = match Api::<Pod>::all(client.clone())
        .watch(&params, version)
        .await
    {
        Ok(stream) => stream,
        Err(e) if expired(&e) => return Err(WatchError::Expired),
        Err(e) => return Err(KubeError::Api(e).into()),
    };
    Ok(stream.filter_map(move |event| async move {
        let version = |pod: &Pod| pod.metadata.resource_version.clone().unwrap_or_default();
        match event {
            Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod)) => {
                let v = version(&pod);
                Some(Ok((PodChange::Applied(Box::new(pod)), v)))
            }
            Ok(WatchEvent::Deleted(pod)) => {
                let v = version(&pod);
                Some(Ok((PodChange::Deleted(Box::new(pod)), v)))
            }
            Ok(WatchEvent::Bookmark(_)) => None,
            Ok(WatchEvent::Error(status)) if status.code == 410 => Some(Err(WatchError::Expired)),
            Ok(WatchEvent::Error(status)) => Some(Err(KubeError::Config(format!(
                "the watch of pods failed: {}",
                status.message
            ))
            .into())),
            Err(e) if expired(&e) => Some(Err(WatchError::Expired)),
            Err(e) => Some(Err(KubeError::Api(e).into())),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    #[test]
    fn requests_sum_containers_or_take_the_largest_init_container() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "100Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "0.5", "memory": "1000000"}}},
                ],
                "initContainers": [
                    {"name": "i", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}},
                ],
            },
        }));
        // cpu: the init container's 2 exceeds 0.75; memory: 100 MiB + 0.95 MiB rounds up.
        assert_eq!(pod_requests(&p), (2000, 101));
    }

    #[test]
    fn a_pod_ends_when_its_containers_finish_or_it_is_deleted() {
        let started = "2026-12-07T10:00:00Z";
        let running = pod(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "startTime": started},
        }));
        let usage = pod_usage(&running, None);
        assert_eq!(usage.started, Some(started.parse().unwrap()));
        assert_eq!(usage.ended, None);
        let seen: Timestamp = "2026-12-07T10:05:00Z".parse().unwrap();
        assert_eq!(pod_usage(&running, Some(seen)).ended, Some(seen));

        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-12-07T10:01:00Z".parse().unwrap(),
            ));
        assert_eq!(
            pod_usage(&deleting, Some(seen)).ended,
            Some("2026-12-07T10:01:00Z".parse().unwrap()),
            "a deletion stamped in the object is when it ended"
        );

        let done = pod(json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "u"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Succeeded", "startTime": started, "containerStatuses": [
                {"name": "a", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-12-07T10:02:00Z"}}},
                {"name": "b", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-12-07T10:03:00Z"}}},
            ]},
        }));
        assert_eq!(
            pod_usage(&done, None).ended,
            Some("2026-12-07T10:03:00Z".parse().unwrap()),
            "a finished pod ended with its last container"
        );
    }
}
