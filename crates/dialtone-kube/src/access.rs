//! Access inside a cluster: the namespaces of the tree, the RBAC objects Dialtone's
//! projection manages, and the drift guard, a validating webhook that refuses changes to
//! managed RBAC by anyone but Dialtone.

use std::collections::BTreeSet;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use dialtone_policy::projection::{Changes, Desired, Key, Managed, ObjectKind};

use crate::{KubeError, MANAGED_BY};

/// The label Pod Security Admission reads a namespace's enforced level from.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// The name of the drift guard's webhook configuration in every cluster.
pub const GUARD_NAME: &str = "dialtone-rbac-guard";

/// The ConfigMap (in `kube-system`) whose presence says the cluster's RBAC has been
/// projected at least once: a cluster is not Ready for its users before.
pub const PROJECTED_MARKER: &str = "dialtone-access";

/// Records that the cluster holds its projected RBAC.
pub async fn mark_projected(client: &kube::Client) -> Result<(), KubeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let marker = ConfigMap {
        metadata: managed_meta(PROJECTED_MARKER),
        ..Default::default()
    };
    ignore(
        409,
        api.create(&PostParams::default(), &marker).await.map(drop),
    )
}

/// Whether the cluster's RBAC has been projected at least once.
pub async fn projected(client: &kube::Client) -> Result<bool, KubeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    Ok(api.get_opt(PROJECTED_MARKER).await?.is_some())
}

/// Where the drift guard answers: Dialtone's own endpoint and the CA that signed it.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardEndpoint {
    pub url: String,
    pub ca_pem: String,
}

fn managed() -> ListParams {
    ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1))
}

fn managed_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()),
        ..Default::default()
    }
}

fn ignore(status: u16, result: Result<(), kube::Error>) -> Result<(), KubeError> {
    match result {
        Err(kube::Error::Api(e)) if e.code == status => Ok(()),
        other => other.map_err(Into::into),
    }
}

/// Registers (or corrects) the drift guard: every create, update or delete of an RBAC
/// object goes to `endpoint` first, and fails if it cannot be asked. The guard refuses
/// changes by anyone but Dialtone to objects labelled as Dialtone's or named with its
/// `dialtone:` prefix.
pub async fn ensure_guard(
    client: &kube::Client,
    endpoint: &GuardEndpoint,
) -> Result<(), KubeError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let wanted = ValidatingWebhookConfiguration {
        metadata: managed_meta(GUARD_NAME),
        webhooks: Some(vec![ValidatingWebhook {
            name: "rbac-guard.dialtone.dev".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            timeout_seconds: Some(5),
            client_config: WebhookClientConfig {
                url: Some(endpoint.url.clone()),
                ca_bundle: Some(ByteString(endpoint.ca_pem.as_bytes().to_vec())),
                service: None,
            },
            // No object selector: a name Dialtone will use must be guarded before anything
            // holds it, and a label selector cannot see names.
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into(), "DELETE".into()]),
                resources: Some(vec![
                    "clusterroles".into(),
                    "clusterrolebindings".into(),
                    "roles".into(),
                    "rolebindings".into(),
                ]),
                scope: Some("*".into()),
            }]),
            ..Default::default()
        }]),
    };
    match api.get_opt(GUARD_NAME).await? {
        None => ignore(
            409,
            api.create(&PostParams::default(), &wanted).await.map(drop),
        ),
        Some(current) if current.webhooks == wanted.webhooks => Ok(()),
        Some(current) => {
            let mut replacement = wanted;
            replacement.metadata.resource_version = current.metadata.resource_version;
            api.replace(GUARD_NAME, &PostParams::default(), &replacement)
                .await?;
            Ok(())
        }
    }
}

/// Makes the cluster's Dialtone namespaces exactly `wanted`: creates the missing ones and
/// deletes those Dialtone created that the tree no longer holds. A namespace that exists
/// but was not created by Dialtone is left as it is.
pub async fn sync_namespaces(
    client: &kube::Client,
    wanted: &BTreeSet<String>,
    pod_security: &str,
) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let existing = api.list(&ListParams::default()).await?;
    let mut present = BTreeSet::new();
    for namespace in &existing.items {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let ours = namespace
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1));
        if ours && !wanted.contains(&name) && namespace.metadata.deletion_timestamp.is_none() {
            ignore(
                404,
                api.delete(&name, &DeleteParams::default()).await.map(drop),
            )?;
        }
        present.insert(name);
    }
    for name in wanted.difference(&present) {
        let mut metadata = managed_meta(name);
        metadata
            .labels
            .get_or_insert_default()
            .insert(POD_SECURITY_ENFORCE.to_string(), pod_security.to_string());
        let namespace = Namespace {
            metadata,
            ..Default::default()
        };
        ignore(
            409,
            api.create(&PostParams::default(), &namespace)
                .await
                .map(drop),
        )?;
    }
    Ok(())
}

/// Sets the Pod Security level of every namespace Dialtone manages back to `level` where
/// it was changed or removed: each namespace put back, with the level it had.
pub async fn restore_pod_security(
    client: &kube::Client,
    level: &str,
) -> Result<Vec<(String, Option<String>)>, KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut restored = Vec::new();
    for namespace in api.list(&managed()).await?.items {
        let labels = namespace.metadata.labels.unwrap_or_default();
        let had = labels.get(POD_SECURITY_ENFORCE);
        if had.map(String::as_str) == Some(level) || namespace.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let name = namespace.metadata.name.unwrap_or_default();
        let patch = serde_json::json!({"metadata": {"labels": {POD_SECURITY_ENFORCE: level}}});
        api.patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
        restored.push((name, had.cloned()));
    }
    Ok(restored)
}

/// The RBAC objects Dialtone manages in the cluster, as the projection describes them.
pub async fn managed_rbac(client: &kube::Client) -> Result<Vec<Desired>, KubeError> {
    let mut found = Vec::new();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for o in roles.list(&managed()).await?.items {
        found.extend(Desired::from_object(&Managed::ClusterRole(o)));
    }
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for o in cluster_bindings.list(&managed()).await?.items {
        found.extend(Desired::from_object(&Managed::ClusterRoleBinding(o)));
    }
    let bindings: Api<RoleBinding> = Api::all(client.clone());
    for o in bindings.list(&managed()).await?.items {
        found.extend(Desired::from_object(&Managed::RoleBinding(o)));
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Creates `object`. A name Dialtone's projection uses belongs to Dialtone: an object
/// found holding it that Dialtone did not make (one created before the drift guard, say) is
/// replaced, and reported in the returned flag.
async fn create(client: &kube::Client, object: &Desired) -> Result<bool, KubeError> {
    match create_once(client, object).await {
        Err(KubeError::Api(kube::Error::Api(e))) if e.code == 409 => {
            delete(client, &object.key).await?;
            create_once(client, object).await?;
            Ok(true)
        }
        other => other.map(|()| false),
    }
}

async fn create_once(client: &kube::Client, object: &Desired) -> Result<(), KubeError> {
    let params = PostParams::default();
    let result = match object.to_object() {
        Managed::ClusterRole(o) => Api::all(client.clone()).create(&params, &o).await.map(drop),
        Managed::ClusterRoleBinding(o) => {
            Api::all(client.clone()).create(&params, &o).await.map(drop)
        }
        Managed::RoleBinding(o) => Api::namespaced(client.clone(), &object.key.namespace)
            .create(&params, &o)
            .await
            .map(drop),
    };
    result.map_err(Into::into)
}

async fn replace(client: &kube::Client, object: &Desired) -> Result<(), KubeError> {
    let params = PostParams::default();
    let name = &object.key.name;
    match object.to_object() {
        Managed::ClusterRole(o) => Api::all(client.clone())
            .replace(name, &params, &o)
            .await
            .map(drop)?,
        Managed::ClusterRoleBinding(o) => Api::all(client.clone())
            .replace(name, &params, &o)
            .await
            .map(drop)?,
        Managed::RoleBinding(o) => Api::namespaced(client.clone(), &object.key.namespace)
            .replace(name, &params, &o)
            .await
            .map(drop)?,
    };
    Ok(())
}

async fn delete(client: &kube::Client, key: &Key) -> Result<(), KubeError> {
    let params = DeleteParams::default();
    let result = match key.kind {
        ObjectKind::ClusterRole => Api::<ClusterRole>::all(client.clone())
            .delete(&key.name, &params)
            .await
            .map(drop),
        ObjectKind::ClusterRoleBinding => Api::<ClusterRoleBinding>::all(client.clone())
            .delete(&key.name, &params)
            .await
            .map(drop),
        ObjectKind::RoleBinding => Api::<RoleBinding>::namespaced(client.clone(), &key.namespace)
            .delete(&key.name, &params)
            .await
            .map(drop),
    };
    ignore(404, result)
}

/// Applies `changes` in their order: creations, updates, replacements (a roleRef cannot
/// change, so the old object goes and the new one comes), deletions last. Returns the
/// objects Dialtone did not make that held names it needed, which it replaced.
pub async fn apply(client: &kube::Client, changes: &Changes) -> Result<Vec<Key>, KubeError> {
    let mut usurpers = Vec::new();
    for object in &changes.create {
        if create(client, object).await? {
            usurpers.push(object.key.clone());
        }
    }
    for object in &changes.update {
        replace(client, object).await?;
    }
    for object in &changes.replace {
        delete(client, &object.key).await?;
        if create(client, object).await? {
            usurpers.push(object.key.clone());
        }
    }
    for key in &changes.delete {
        delete(client, key).await?;
    }
    Ok(usurpers)
}

/// What a cluster's API server was seen to do with a pod its Pod Security level forbids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodSecurityProbe {
    /// It refused it.
    Enforced,
    /// It admitted it: why that falls short.
    NotEnforced(String),
    /// Nothing to try: `default` names a level of its own, or the level forbids nothing.
    Unobservable,
}

/// Whether the cluster's API server enforces the Pod Security `level` where no namespace
/// says otherwise: a pod that level forbids (a privileged container) is created in
/// `default` as a server-side dry run, which runs admission and stores nothing.
pub async fn probe_pod_security(
    client: &kube::Client,
    level: &str,
) -> Result<PodSecurityProbe, KubeError> {
    use k8s_openapi::api::core::v1::Pod;

    if level == "privileged" {
        return Ok(PodSecurityProbe::Unobservable);
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let default = namespaces.get_opt("default").await?;
    let labelled = default
        .as_ref()
        .and_then(|n| n.metadata.labels.as_ref())
        .is_some_and(|l| l.contains_key(POD_SECURITY_ENFORCE));
    if default.is_none() || labelled {
        return Ok(PodSecurityProbe::Unobservable);
    }
    let probe: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dialtone-pod-security-probe"},
        "spec": {"containers": [{
            "name": "probe",
            "image": "registry.k8s.io/pause:3.10",
            "securityContext": {"privileged": true},
        }]},
    }))
    .map_err(|e| KubeError::Config(e.to_string()))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match pods.create(&dry_run, &probe).await {
        Ok(_) => Ok(PodSecurityProbe::NotEnforced(format!(
            "the API server admits a privileged pod in namespace default (tried as a dry run), which the plan's `{level}` Pod Security level forbids"
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("PodSecurity") => {
            Ok(PodSecurityProbe::Enforced)
        }
        Err(e) => Err(e.into()),
    }
}
