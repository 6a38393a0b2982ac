//! An instance's user data: a cloud-config that installs a pinned upstream Kubernetes from
//! pkgs.k8s.io with containerd, lays out the cluster's PKI (control plane), and runs
//! `kubeadm init` or `join`, all rendered from the node's [`NodeBootstrap`] and its
//! cluster's secrets. The same inputs always render the same bytes, so that a repeated
//! launch is the same launch.
//!
//! - **Control plane**: stacked etcd (kubeadm's default), the API server behind the
//!   cluster's load balancer (`controlPlaneEndpoint`), audit logging, Secrets encrypted
//!   with the cluster's key, Pod Security admission at the plan's level by default, and
//!   anonymous requests refused except on the health endpoints and the `cluster-info` that
//!   joining nodes read. Users' tokens (`dialtone cluster credentials`) are checked by
//!   Dialtone's token review webhook. Every control-plane node gets the same CAs and
//!   service-account key, so that any one of them can be replaced by a node that joins.
//! - **Network**: Cilium in place of kube-proxy, installed by the first control-plane
//!   node with the plan's pod range.
//! - **Joining** retries until the first control-plane node answers: the controller
//!   launches every node of a new cluster at once.

use dialtone_cloud::{BootstrapRole, EvictionThresholds, NodeBootstrap, SecretsEncryption};
use serde_json::{Value, json};

use crate::secrets::ClusterSecrets;

/// Cilium's release.
const CILIUM_VERSION: &str = "1.18.2";
const CILIUM_CLI_VERSION: &str = "v0.18.7";

const API_PORT: u16 = 6443;
const KUBEADM_CONFIG: &str = "/etc/dialtone/kubeadm.yaml";
const AUDIT_POLICY: &str = "/etc/kubernetes/audit-policy.yaml";
const AUDIT_LOG_DIR: &str = "/var/log/kubernetes/audit";
const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/encryption-config.yaml";
const ADMISSION_CONFIG: &str = "/etc/kubernetes/admission.yaml";
const AUTHENTICATION_CONFIG: &str = "/etc/kubernetes/authentication.yaml";
const TOKEN_WEBHOOK_CONFIG: &str = "/etc/kubernetes/dialtone-token-webhook.yaml";

/// Where a cluster's API server asks Dialtone who holds a token (`dialtone cluster
/// credentials` mints them): the server's URL (`https://host:port`) and its CA.
#[derive(Clone, Debug)]
pub struct TokenWebhook {
    pub server_url: String,
    pub ca_pem: String,
}

impl TokenWebhook {
    /// The kubeconfig-shaped file `--authentication-token-webhook-config-file` reads.
    fn config(&self, cluster_uid: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        yaml(&json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "dialtone", "cluster": {
                "server": format!("{}/v1/authentication/clusters/{cluster_uid}/tokenreviews", self.server_url),
                "certificate-authority-data": ca,
            }}],
            "users": [{"name": "kube-apiserver", "user": {}}],
            "contexts": [{"name": "dialtone", "context": {"cluster": "dialtone", "user": "kube-apiserver"}}],
            "current-context": "dialtone",
        }))
    }
}

/// The patch release a node installs and the minor whose package repository has it:
/// `1.35.2` → (`1.35.2`, `1.35`). The version catalogue picks the patch.
pub fn kubernetes_release(version: &str) -> Option<(&str, &str)> {
    let mut parts = version.split('.');
    let valid = parts.next() == Some("1")
        && parts.next().is_some_and(|m| m.parse::<u32>().is_ok())
        && parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
        && parts.next().is_none();
    let minor_end = version.rfind('.')?;
    valid.then(|| (version, &version[..minor_end]))
}

fn yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).expect("JSON values are YAML")
}

fn file(path: &str, permissions: &str, content: impl Into<String>) -> Value {
    json!({"path": path, "permissions": permissions, "owner": "root:root", "content": content.into()})
}

fn args(pairs: &[(&str, String)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    )
}

fn host_file(name: &str, path: &str, read_only: bool) -> Value {
    json!({"name": name, "hostPath": path, "mountPath": path, "readOnly": read_only,
           "pathType": if read_only { "File" } else { "DirectoryOrCreate" }})
}

/// The kubelet's `evictionHard`, as it spells its signals.
fn eviction_hard(thresholds: &EvictionThresholds) -> serde_json::Value {
    let mut signals = serde_json::Map::new();
    signals.insert(
        "memory.available".into(),
        format!("{}Mi", thresholds.memory_available_mib).into(),
    );
    if let Some(percent) = thresholds.nodefs_available_percent {
        signals.insert("nodefs.available".into(), format!("{percent}%").into());
    }
    signals.into()
}

/// kubeadm's configuration for the node: `init` for the first control-plane node, `join`
/// for the others and for workers.
fn kubeadm_config(
    boot: &NodeBootstrap,
    secrets: &ClusterSecrets,
    webhook: Option<&TokenWebhook>,
    patch: &str,
) -> Result<String, String> {
    let endpoint = format!("{}:{API_PORT}", boot.api_endpoint);
    let token = &secrets.tokens.bootstrap_token;
    let kubelet = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "maxPods": boot.max_pods_per_node,
        "systemReserved": {
            "cpu": format!("{}m", boot.system_reserved.cpu_millis),
            "memory": format!("{}Mi", boot.system_reserved.memory_mib),
        },
        "evictionHard": eviction_hard(&boot.eviction_hard),
    });
    let node_registration = json!({"criSocket": "unix:///run/containerd/containerd.sock"});
    let mut documents = Vec::new();
    match boot.role {
        BootstrapRole::InitControlPlane => {
            documents.push(json!({
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "InitConfiguration",
                "bootstrapTokens": [{
                    "token": token,
                    "ttl": "24h0m0s",
                    "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                    "usages": ["signing", "authentication"],
                }],
                "nodeRegistration": node_registration,
                // Cilium replaces kube-proxy.
                "skipPhases": ["addon/kube-proxy"],
            }));
            let mut api_args = vec![
                ("authentication-config", AUTHENTICATION_CONFIG.to_string()),
                (
                    "admission-control-config-file",
                    ADMISSION_CONFIG.to_string(),
                ),
                ("audit-policy-file", AUDIT_POLICY.to_string()),
                ("audit-log-path", format!("{AUDIT_LOG_DIR}/audit.log")),
                (
                    "audit-log-maxage",
                    boot.audit_log_retention_days.to_string(),
                ),
                ("audit-log-maxbackup", "10".to_string()),
                ("audit-log-maxsize", "100".to_string()),
                ("profiling", "false".to_string()),
            ];
            let mut volumes = vec![
                host_file("authentication", AUTHENTICATION_CONFIG, true),
                host_file("admission", ADMISSION_CONFIG, true),
                host_file("audit-policy", AUDIT_POLICY, true),
                host_file("audit-log", AUDIT_LOG_DIR, false),
            ];
            if boot.secrets_encryption == SecretsEncryption::Aescbc {
                api_args.push(("encryption-provider-config", ENCRYPTION_CONFIG.to_string()));
                volumes.push(host_file("encryption", ENCRYPTION_CONFIG, true));
            }
            if webhook.is_some() {
                api_args.extend([
                    (
                        "authentication-token-webhook-config-file",
                        TOKEN_WEBHOOK_CONFIG.to_string(),
                    ),
                    ("authentication-token-webhook-version", "v1".to_string()),
                    // A revoked credential stops working within this.
                    ("authentication-token-webhook-cache-ttl", "10s".to_string()),
                ]);
                volumes.push(host_file("token-webhook", TOKEN_WEBHOOK_CONFIG, true));
            }
            documents.push(json!({
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "ClusterConfiguration",
                "clusterName": boot.cluster_uid,
                "kubernetesVersion": format!("v{patch}"),
                "controlPlaneEndpoint": endpoint,
                "encryptionAlgorithm": "ECDSA-P256",
                "networking": {
                    "podSubnet": boot.pod_cidr.to_string(),
                    "serviceSubnet": boot.service_cidr.to_string(),
                },
                "apiServer": {
                    "certSANs": [boot.api_endpoint],
                    "extraArgs": args(&api_args),
                    "extraVolumes": volumes,
                },
                "etcd": {"local": {"extraArgs": args(&[(
                    "quota-backend-bytes",
                    (u64::from(boot.etcd_quota_backend_gib) << 30).to_string(),
                )])}},
            }));
        }
        BootstrapRole::JoinControlPlane | BootstrapRole::Worker => {
            let mut join = json!({
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "JoinConfiguration",
                "discovery": {"bootstrapToken": {
                    "apiServerEndpoint": endpoint,
                    "token": token,
                    "caCertHashes": [secrets.ca.public_key_pin()?],
                }},
                "nodeRegistration": node_registration,
            });
            if boot.role == BootstrapRole::JoinControlPlane {
                join["controlPlane"] = json!({});
            }
            documents.push(join);
        }
    }
    documents.push(kubelet);
    Ok(documents.iter().map(yaml).collect::<Vec<_>>().join("---\n"))
}

fn control_plane_files(
    boot: &NodeBootstrap,
    secrets: &ClusterSecrets,
    webhook: Option<&TokenWebhook>,
) -> Vec<Value> {
    let pki = "/etc/kubernetes/pki";
    let mut files = vec![
        file(&format!("{pki}/ca.crt"), "0644", &secrets.ca.cert_pem),
        file(&format!("{pki}/ca.key"), "0600", &secrets.ca.key_pem),
        file(
            &format!("{pki}/front-proxy-ca.crt"),
            "0644",
            &secrets.front_proxy_ca.cert_pem,
        ),
        file(
            &format!("{pki}/front-proxy-ca.key"),
            "0600",
            &secrets.front_proxy_ca.key_pem,
        ),
        file(
            &format!("{pki}/etcd/ca.crt"),
            "0644",
            &secrets.etcd_ca.cert_pem,
        ),
        file(
            &format!("{pki}/etcd/ca.key"),
            "0600",
            &secrets.etcd_ca.key_pem,
        ),
        file(
            &format!("{pki}/sa.key"),
            "0600",
            &secrets.service_account_key_pem,
        ),
        file(
            &format!("{pki}/sa.pub"),
            "0644",
            &secrets.service_account_public_pem,
        ),
        file(
            AUDIT_POLICY,
            "0600",
            dialtone_cloud::bootstrap::audit_policy(boot.audit).to_yaml(),
        ),
        file(
            ADMISSION_CONFIG,
            "0600",
            yaml(&json!({
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [{
                    "name": "PodSecurity",
                    "configuration": {
                        "apiVersion": "pod-security.admission.config.k8s.io/v1",
                        "kind": "PodSecurityConfiguration",
                        "defaults": {
                            "enforce": boot.pod_security.as_str(), "enforce-version": "latest",
                            "audit": boot.pod_security.as_str(), "audit-version": "latest",
                            "warn": boot.pod_security.as_str(), "warn-version": "latest",
                        },
                        "exemptions": {"namespaces": ["kube-system"]},
                    },
                }],
            })),
        ),
        file(
            AUTHENTICATION_CONFIG,
            "0600",
            yaml(&json!({
                "apiVersion": "apiserver.config.k8s.io/v1beta1",
                "kind": "AuthenticationConfiguration",
                "anonymous": match boot.anonymous_auth {
                    true => json!({"enabled": true}),
                    // Only where kubelets' probes and joining nodes need them.
                    false => json!({"enabled": true, "conditions": [
                        {"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"},
                        {"path": "/api/v1/namespaces/kube-public/configmaps/cluster-info"},
                    ]}),
                },
            })),
        ),
    ];
    if let Some(webhook) = webhook {
        files.push(file(
            TOKEN_WEBHOOK_CONFIG,
            "0600",
            webhook.config(&boot.cluster_uid),
        ));
    }
    if boot.secrets_encryption == SecretsEncryption::Aescbc {
        files.push(file(
            ENCRYPTION_CONFIG,
            "0600",
            yaml(&json!({
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "EncryptionConfiguration",
                "resources": [{
                    "resources": ["secrets"],
                    "providers": [
                        {"aescbc": {"keys": [{"name": "dialtone-1", "secret": secrets.tokens.encryption_key}]}},
                        {"identity": {}},
                    ],
                }],
            })),
        ));
    }
    files
}

/// The script the node runs once, as root, at first boot.
fn bootstrap_script(boot: &NodeBootstrap, (patch, minor): (&str, &str)) -> String {
    let package = format!("{patch}-1.1");
    let mut script = format!(
        r#"#!/bin/sh
# Installs Kubernetes {patch} and makes this machine a node of cluster {uid}.
set -eu
modprobe overlay
modprobe br_netfilter
sysctl --system
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends containerd curl gpg ca-certificates
mkdir -p /etc/apt/keyrings /etc/containerd
curl -fsSL https://pkgs.k8s.io/core:/stable:/v{minor}/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes.gpg
echo 'deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/v{minor}/deb/ /' >/etc/apt/sources.list.d/kubernetes.list
apt-get update -q
apt-get install -y -q --no-install-recommends kubelet={package} kubeadm={package} kubectl={package}
apt-mark hold kubelet kubeadm kubectl
containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' >/etc/containerd/config.toml
systemctl restart containerd
systemctl enable kubelet
"#,
        uid = boot.cluster_uid,
    );
    match boot.role {
        BootstrapRole::InitControlPlane => script.push_str(&format!(
            r#"kubeadm init --config {KUBEADM_CONFIG}
export KUBECONFIG=/etc/kubernetes/admin.conf
arch=$(dpkg --print-architecture)
curl -fsSL "https://github.com/cilium/cilium-cli/releases/download/{CILIUM_CLI_VERSION}/cilium-linux-$arch.tar.gz" | tar -xz -C /usr/local/bin cilium
cilium install --version {CILIUM_VERSION} --set kubeProxyReplacement=true --set k8sServiceHost={host} --set k8sServicePort={API_PORT} --set ipam.mode=cluster-pool --set ipam.operator.clusterPoolIPv4PodCIDRList={pods}
"#,
            host = boot.api_endpoint,
            pods = boot.pod_cidr,
        )),
        // The first control-plane node may not answer yet: try again until it does.
        BootstrapRole::JoinControlPlane | BootstrapRole::Worker => script.push_str(&format!(
            r#"until kubeadm join --config {KUBEADM_CONFIG}; do
  kubeadm reset --force
  sleep 20
done
"#
        )),
    }
    script
}

/// The user data of an instance: `#cloud-config`, then the configuration.
pub fn render(
    boot: &NodeBootstrap,
    secrets: &ClusterSecrets,
    webhook: Option<&TokenWebhook>,
) -> Result<String, String> {
    let release = kubernetes_release(&boot.kubernetes_version).ok_or_else(|| {
        format!(
            "`{}` is not a patch release such as 1.35.2, which nodes install",
            boot.kubernetes_version
        )
    })?;
    let patch = release.0;
    let mut files = vec![
        file(
            "/etc/modules-load.d/kubernetes.conf",
            "0644",
            "overlay\nbr_netfilter\n",
        ),
        file(
            "/etc/sysctl.d/90-kubernetes.conf",
            "0644",
            "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n",
        ),
        file(
            KUBEADM_CONFIG,
            "0600",
            kubeadm_config(boot, secrets, webhook, patch)?,
        ),
        file(
            "/etc/dialtone/bootstrap.sh",
            "0700",
            bootstrap_script(boot, release),
        ),
    ];
    if boot.role != BootstrapRole::Worker {
        files.extend(control_plane_files(boot, secrets, webhook));
    }
    let config = json!({
        "write_files": files,
        "runcmd": [["/bin/sh", "/etc/dialtone/bootstrap.sh"]],
    });
    Ok(format!("#cloud-config\n{}", yaml(&config)))
}
