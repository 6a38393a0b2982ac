//! What tells the control plane that a settled cluster changed inside, so that it looks
//! again then rather than on a timer: watches of what its passes read there (pods, for
//! right-sizing, as Karpenter watches its cluster's pods; Services, for their load
//! balancers; namespaces, for the Pod Security labels the plan owns). Nodes are not watched:
//! their instances are the cloud's, whose feed tells of them. The audit policy is put back at
//! the resync: a watch of `kube-system`'s config maps would put a policy deleted and created
//! again back between the two, before an operator's replacement arrives.
//!
//! Each watch is a stream of the cluster's one HTTP/2 connection ([`crate::build`]), so
//! following a cluster costs three streams, not three connections.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

/// How long a watch runs before the server ends it and it is resumed where it stopped:
/// half an hour, upstream's `--min-request-timeout`.
const WATCH_SECONDS: u32 = 1800;

/// Calls `changed` whenever something a pass reads in the cluster is added, changed or
/// removed, until dropped. Each watch starts from the collection's current version (what is
/// already there is what the pass that started following just read), resumes from the last
/// version it saw, and starts again from the current one, calling `changed`, when that is
/// gone (410) or the watch failed: it may have missed a change. Failures back off from
/// 100 ms doubling to 30 s. Each watch takes the cluster's client anew from `clients` when it
/// starts, so that a cluster whose endpoint or credential changed is followed there.
pub async fn follow(clients: Arc<crate::Clients>, uid: String, changed: impl Fn() + Send + Sync) {
    let (clients, uid, changed) = (&*clients, uid.as_str(), &changed);
    futures::join!(
        follow_one(clients, uid, Api::<Pod>::all, changed),
        follow_one(clients, uid, Api::<Service>::all, changed),
        follow_one(clients, uid, Api::<Namespace>::all, changed),
    );
}

async fn follow_one<K>(
    clients: &crate::Clients,
    uid: &str,
    api: impl Fn(kube::Client) -> Api<K>,
    changed: &(impl Fn() + Send + Sync),
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut version: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let Ok(client) = clients.client(uid) else {
            // Its API is not up: a change now is the cloud's, whose feed tells of it.
            tokio::time::sleep(Duration::from_secs(30)).await;
            continue;
        };
        let api = api(client);
        let from = match &version {
            Some(from) => from.clone(),
            None => match api.list_metadata(&ListParams::default().limit(1)).await {
                Ok(list) => list.metadata.resource_version.unwrap_or_default(),
                Err(_) => String::new(),
            },
        };
        let started = std::time::Instant::now();
        let mut ended_well = false;
        if !from.is_empty()
            && let Ok(stream) = api
                .watch(&WatchParams::default().timeout(WATCH_SECONDS), &from)
                .await
        {
            version = Some(from);
            let mut stream = std::pin::pin!(stream);
            ended_well = true;
            while let Some(event) = stream.next().await {
                let object = match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => {
                        o
                    }
                    Ok(WatchEvent::Bookmark(_)) => continue,
                    // Gone (410): the version is too old.
                    Ok(WatchEvent::Error(_)) | Err(_) => {
                        ended_well = false;
                        break;
                    }
                };
                failures = 0;
                if let Some(seen) = kube::ResourceExt::resource_version(&object) {
                    version = Some(seen);
                }
                changed();
            }
        }
        // A watch the server ends at its timeout is resumed at once; one ended within a
        // second is a failure, so that a server that ends every watch is not spun on.
        if ended_well && started.elapsed() >= Duration::from_secs(1) {
            continue;
        }
        if !ended_well && version.take().is_some() {
            // Whatever happened between the last event and now is unknown.
            changed();
        }
        failures = failures.saturating_add(1);
        let delay = Duration::from_millis(100).saturating_mul(1 << failures.min(9));
        tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
    }
}
