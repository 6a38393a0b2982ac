//! What the load-balancer controller reads of a cluster's Services and writes back, as a
//! cloud-controller-manager's service controller does: the Services of `type:
//! LoadBalancer` (and those its finalizer still holds), their finalizer, and the address
//! in `status.loadBalancer.ingress`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::KubeError;

/// The finalizer that keeps a Service until its load balancer is gone (upstream's).
pub const CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

/// Who the Service's events are from, as upstream's cloud-controller-manager says.
const SERVICE_CONTROLLER: &str = "service-controller";

/// A port of a Service and the node port that reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    /// 0 until the cluster has allocated one.
    pub node_port: u16,
}

/// A Service that wants a load balancer, or whose load balancer must go.
#[derive(Clone, Debug, PartialEq)]
pub struct BalancedService {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `type: LoadBalancer` and not being deleted: its load balancer should exist.
    pub wanted: bool,
    /// Holds [`CLEANUP_FINALIZER`].
    pub held: bool,
    pub ports: Vec<ServicePort>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.loadBalancerSourceRanges`.
    pub source_ranges: Vec<String>,
    /// The hostnames and addresses `status.loadBalancer.ingress` names now.
    pub ingress: Vec<String>,
}

/// The Services of `type: LoadBalancer`, and those the finalizer still holds.
pub async fn balanced(client: &kube::Client) -> Result<Vec<BalancedService>, KubeError> {
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(services
        .items
        .into_iter()
        .filter_map(|s| {
            let meta = s.metadata;
            let spec = s.spec.unwrap_or_default();
            let load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
            let held = meta
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == CLEANUP_FINALIZER);
            if !load_balancer && !held {
                return None;
            }
            let ingress = s
                .status
                .and_then(|st| st.load_balancer)
                .and_then(|lb| lb.ingress)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.hostname.or(i.ip))
                .collect();
            Some(BalancedService {
                namespace: meta.namespace.unwrap_or_default(),
                name: meta.name.unwrap_or_default(),
                uid: meta.uid.unwrap_or_default(),
                wanted: load_balancer && meta.deletion_timestamp.is_none(),
                held,
                ports: spec
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| ServicePort {
                        name: p.name.unwrap_or_default(),
                        port: u16::try_from(p.port).unwrap_or(0),
                        node_port: p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
                    })
                    .collect(),
                annotations: meta.annotations.unwrap_or_default(),
                source_ranges: spec.load_balancer_source_ranges.unwrap_or_default(),
                ingress,
            })
        })
        .collect())
}

/// Adds the finalizer, so that the Service stays until its load balancer is gone.
pub async fn hold(client: &kube::Client, service: &BalancedService) -> Result<(), KubeError> {
    let api: Api<Service> = Api::namespaced(client.clone(), &service.namespace);
    let current = api.get(&service.name).await?;
    let mut finalizers = current.metadata.finalizers.unwrap_or_default();
    if finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(());
    }
    finalizers.push(CLEANUP_FINALIZER.into());
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": current.metadata.resource_version,
    }});
    api.patch(
        &service.name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the load balancer's address into the Service's status (none: clears it).
pub async fn set_ingress(
    client: &kube::Client,
    service: &BalancedService,
    hostname: Option<&str>,
) -> Result<(), KubeError> {
    let api: Api<Service> = Api::namespaced(client.clone(), &service.namespace);
    let ingress = match hostname {
        Some(hostname) => json!([{"hostname": hostname}]),
        None => json!([]),
    };
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(
        &service.name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// An event about the Service, from the service controller, as `kubectl describe
/// service` shows them.
pub async fn event(
    client: &kube::Client,
    service: &BalancedService,
    kind: &str,
    reason: &str,
    message: &str,
) -> Result<(), KubeError> {
    let api: Api<Event> = Api::namespaced(client.clone(), &service.namespace);
    let now = Time(jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", service.name)),
            namespace: Some(service.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some(service.name.clone()),
            namespace: Some(service.namespace.clone()),
            uid: Some(service.uid.clone()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(kind.into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(SERVICE_CONTROLLER.into()),
            host: None,
        }),
        reporting_component: Some(SERVICE_CONTROLLER.into()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &event).await?;
    Ok(())
}

/// Takes the finalizer away once the load balancer is gone, letting a deleted Service go.
pub async fn release(client: &kube::Client, service: &BalancedService) -> Result<(), KubeError> {
    let api: Api<Service> = Api::namespaced(client.clone(), &service.namespace);
    let current = match api.get(&service.name).await {
        Ok(current) => current,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let finalizers: Vec<String> = current
        .metadata
        .finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != CLEANUP_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": current.metadata.resource_version,
    }});
    match api
        .patch(
            &service.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
