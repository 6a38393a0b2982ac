//! Validating admission webhooks, called as kube-apiserver calls them: for every
//! ValidatingWebhookConfiguration whose rules and selectors match the request, a POST of an
//! `admission.k8s.io/v1` AdmissionReview over HTTPS (trusting the webhook's `caBundle`),
//! within `timeoutSeconds` (default 10); a denial becomes the request's error, and a webhook
//! that cannot be reached fails the request or is ignored as its `failurePolicy` says. A
//! destination the [`Egress`] guard refuses counts as one that cannot be reached, and is
//! logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use crate::egress::{Destination, Egress};
use crate::rbac::UserInfo;
use crate::resources::ResourceType;
use crate::selectors::label_selector_matches;
use crate::status::{KubeError, KubeResult};
use crate::store::{ObjectKey, Objects};

/// Makes the HTTPS calls, to the destinations `egress` allows; one per server.
#[derive(Clone, Default)]
pub struct Caller {
    pub egress: Egress,
    /// Clients by what configures them, so that calls reuse their connections (a TLS
    /// handshake per call cost a write about ten times its time), as kube-apiserver keeps
    /// one client per webhook configuration.
    clients: Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>,
}

/// What a client is built from: the pinned destination, the trusted CAs and the timeout.
type ClientKey = (Option<(String, Vec<SocketAddr>)>, Option<String>, Duration);

/// Clients kept at most; past it the cache starts afresh.
const CLIENTS_KEPT: usize = 256;

impl Caller {
    /// A caller of the destinations `egress` allows.
    pub fn new(egress: Egress) -> Self {
        Caller {
            egress,
            clients: Arc::default(),
        }
    }

    fn client(
        &self,
        destination: &Destination,
        ca_bundle: Option<&str>,
        timeout: Duration,
    ) -> Result<reqwest::Client, String> {
        let key = (
            destination.pinned.clone(),
            ca_bundle.map(str::to_string),
            timeout,
        );
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect would lead past the destination check.
            .redirect(reqwest::redirect::Policy::none());
        if let Some((host, addrs)) = &destination.pinned {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        if let Some(bundle) = ca_bundle {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(bundle)
                .map_err(|e| format!("caBundle is not base64: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        if clients.len() >= CLIENTS_KEPT {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn listed(values: &Value, wanted: &str) -> bool {
    values
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v == "*" || v == wanted)
}

fn rule_matches(rule: &Value, r: &ResourceType, operation: &str) -> bool {
    let scope = rule["scope"].as_str().unwrap_or("*");
    listed(&rule["operations"], operation)
        && listed(&rule["apiGroups"], &r.group)
        && listed(&rule["apiVersions"], &r.version)
        && listed(&rule["resources"], &r.plural)
        && match scope {
            "Namespaced" => r.namespaced,
            "Cluster" => !r.namespaced,
            _ => true,
        }
}

#[allow(clippy::too_many_arguments)]
pub async fn validate(
    caller: &Caller,
    objects: &Objects,
    user: &UserInfo,
    r: &ResourceType,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
) -> KubeResult<()> {
    // Webhook configurations never pass through webhooks, so a broken one can be removed.
    if r.group == "admissionregistration.k8s.io" || r.is_review() {
        return Ok(());
    }
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
    let namespace_labels = if r.plural == "namespaces" {
        object["metadata"]["labels"].clone()
    } else {
        objects
            .get(&ObjectKey {
                resource: "namespaces".into(),
                namespace: String::new(),
                name: namespace.to_string(),
            })
            .map(|ns| ns["metadata"]["labels"].clone())
            .unwrap_or(Value::Null)
    };
    let (configurations, _) = objects.list("validatingwebhookconfigurations", None);
    for configuration in configurations {
        for webhook in configuration["webhooks"].as_array().into_iter().flatten() {
            let applies = webhook["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| rule_matches(rule, r, operation))
                && (!r.namespaced && r.plural != "namespaces"
                    || webhook["namespaceSelector"].is_null()
                    || label_selector_matches(&webhook["namespaceSelector"], &namespace_labels))
                // Upstream matches the selector against the old object or the new one, so
                // that removing a label cannot slip past the webhook it selects.
                && (webhook["objectSelector"].is_null()
                    || std::iter::once(object).chain(old).any(|o| {
                        label_selector_matches(&webhook["objectSelector"], &o["metadata"]["labels"])
                    }));
            if applies {
                call(caller, webhook, user, r, operation, object, old).await?;
            }
        }
    }
    Ok(())
}

async fn call(
    caller: &Caller,
    webhook: &Value,
    user: &UserInfo,
    r: &ResourceType,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
) -> KubeResult<()> {
    let name = webhook["name"].as_str().unwrap_or("");
    let fail_open = webhook["failurePolicy"].as_str() == Some("Ignore");
    let timeout = Duration::from_secs(
        webhook["timeoutSeconds"]
            .as_u64()
            .unwrap_or(10)
            .clamp(1, 30),
    );
    let uid = uuid::Uuid::new_v4().to_string();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": &r.group, "version": &r.version, "kind": r.kind},
            "resource": {"group": &r.group, "version": &r.version, "resource": r.plural},
            "requestKind": {"group": &r.group, "version": &r.version, "kind": r.kind},
            "requestResource": {"group": &r.group, "version": &r.version, "resource": r.plural},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": user.name, "groups": user.groups},
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
        },
    });
    let outcome: Result<Value, String> = async {
        let url = webhook["clientConfig"]["url"].as_str().ok_or(
            "the webhook has no clientConfig.url (services are not served by sim clusters)",
        )?;
        let destination = caller.egress.check(url).await.inspect_err(|why| {
            tracing::warn!(webhook = name, %why, "refused a webhook's destination");
        })?;
        let client = caller.client(
            &destination,
            webhook["clientConfig"]["caBundle"].as_str(),
            timeout,
        )?;
        let response = client
            .post(destination.url)
            .json(&review)
            .send()
            .await
            .map_err(|e| format!("failed to call webhook: Post \"{url}\": {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "received status {} from the webhook",
                response.status()
            ));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| format!("the webhook's answer is not an AdmissionReview: {e}"))?;
        if answer["response"]["uid"] != json!(uid) {
            return Err("the webhook answered with the wrong uid".into());
        }
        Ok(answer)
    }
    .await;
    let answer = match outcome {
        Ok(answer) => answer,
        Err(_) if fail_open => return Ok(()),
        Err(e) => {
            return Err(KubeError::internal(format!(
                "failed calling webhook \"{name}\": {e}"
            )));
        }
    };
    let response = &answer["response"];
    if response["allowed"] == true {
        return Ok(());
    }
    let status = &response["status"];
    let code = status["code"]
        .as_u64()
        .and_then(|c| StatusCode::from_u16(c as u16).ok())
        .filter(|c| c.as_u16() >= 400)
        .unwrap_or(StatusCode::BAD_REQUEST);
    let message = status["message"].as_str().unwrap_or("without explanation");
    Err(KubeError::new(
        code,
        if code == StatusCode::FORBIDDEN {
            "Forbidden"
        } else {
            "BadRequest"
        },
        format!("admission webhook \"{name}\" denied the request: {message}"),
    ))
}
