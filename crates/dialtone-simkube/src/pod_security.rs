//! Pod Security Admission, as upstream's `PodSecurity` admission plugin enforces the Pod
//! Security Standards: a pod created in a namespace is checked against the level its
//! `pod-security.kubernetes.io/enforce` label names, or the cluster's default (the plan's
//! `security.podSecurityLevel`, from the control plane's bootstrap); `kube-system` is
//! exempt, as Dialtone's admission configuration makes it. Every baseline and restricted
//! control is checked but the Windows, AppArmor annotation and SELinux ones, and each
//! violation is worded as upstream words it.

use dialtone_cloud::PodSecurityLevel;
use serde_json::Value;

/// The label a namespace names its enforced level with.
pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// Namespaces the cluster's admission configuration exempts.
const EXEMPT: &[&str] = &["kube-system"];

/// Capabilities baseline allows containers to add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls baseline allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The level a namespace enforces: its label's, or `default`; `None` for an exempt one.
pub fn level_of(
    namespace: &str,
    labels: &Value,
    default: PodSecurityLevel,
) -> Option<PodSecurityLevel> {
    if EXEMPT.contains(&namespace) {
        return None;
    }
    Some(
        labels[ENFORCE]
            .as_str()
            .and_then(|l| {
                PodSecurityLevel::ALL
                    .iter()
                    .copied()
                    .find(|p| p.as_str() == l)
            })
            .unwrap_or(default),
    )
}

/// Why `pod` may not be created at `level`, as the API server refuses it; `None` when it
/// may.
pub fn refusal(level: PodSecurityLevel, pod: &Value) -> Option<String> {
    let violations = violations(level, &pod["spec"]);
    if violations.is_empty() {
        return None;
    }
    Some(format!(
        "pods \"{}\" is forbidden: violates PodSecurity \"{}:latest\": {}",
        pod["metadata"]["name"].as_str().unwrap_or(""),
        level.as_str(),
        violations.join(", ")
    ))
}

/// Every container of the pod, with its name.
fn containers(spec: &Value) -> impl Iterator<Item = (&str, &Value)> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten())
        .map(|c| (c["name"].as_str().unwrap_or(""), c))
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` or `containers "a", "b"`.
fn subjects(names: &[&str]) -> String {
    match names.len() {
        1 => format!("container {}", quoted(names)),
        _ => format!("containers {}", quoted(names)),
    }
}

/// The controls `spec` breaks at `level`, in upstream's words and order.
fn violations(level: PodSecurityLevel, spec: &Value) -> Vec<String> {
    if level == PodSecurityLevel::Privileged {
        return Vec::new();
    }
    let mut found = Vec::new();
    let pod_context = &spec["securityContext"];
    let names_where = |check: &dyn Fn(&Value) -> bool| -> Vec<&str> {
        containers(spec)
            .filter(|(_, c)| check(c))
            .map(|(n, _)| n)
            .collect()
    };

    // Baseline.
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    if !host.is_empty() {
        found.push(format!("host namespaces ({})", host.join(", ")));
    }
    let privileged = names_where(&|c| c["securityContext"]["privileged"] == true);
    if !privileged.is_empty() {
        found.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            subjects(&privileged)
        ));
    }
    let mut added: Vec<String> = Vec::new();
    let mut adders: Vec<&str> = Vec::new();
    for (name, c) in containers(spec) {
        for cap in c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !BASELINE_CAPABILITIES.contains(&cap) {
                if !adders.contains(&name) {
                    adders.push(name);
                }
                if !added.iter().any(|a| a == cap) {
                    added.push(cap.to_string());
                }
            }
        }
    }
    if !adders.is_empty() {
        let caps: Vec<&str> = added.iter().map(String::as_str).collect();
        found.push(format!(
            "non-default capabilities ({} must not include {} in securityContext.capabilities.add)",
            subjects(&adders),
            quoted(&caps)
        ));
    }
    let volumes: Vec<&Value> = spec["volumes"].as_array().into_iter().flatten().collect();
    let host_paths: Vec<&str> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .filter_map(|v| v["name"].as_str())
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        found.push(format!("hostPath volumes ({noun} {})", quoted(&host_paths)));
    }
    let mut ports: Vec<String> = Vec::new();
    let mut port_users: Vec<&str> = Vec::new();
    for (name, c) in containers(spec) {
        for port in c["ports"].as_array().into_iter().flatten() {
            if let Some(p) = port["hostPort"].as_i64().filter(|p| *p != 0) {
                if !port_users.contains(&name) {
                    port_users.push(name);
                }
                ports.push(p.to_string());
            }
        }
    }
    if !port_users.is_empty() {
        found.push(format!(
            "hostPort ({} uses hostPort {})",
            subjects(&port_users),
            ports.join(", ")
        ));
    }
    let unmasked = names_where(&|c| c["securityContext"]["procMount"] == "Unmasked");
    if !unmasked.is_empty() {
        found.push(format!(
            "procMount ({} must not set securityContext.procMount to \"Unmasked\")",
            subjects(&unmasked)
        ));
    }
    let unconfined = |context: &Value| context["seccompProfile"]["type"] == "Unconfined";
    let unconfined_containers = names_where(&|c| unconfined(&c["securityContext"]));
    if unconfined(pod_context) || !unconfined_containers.is_empty() {
        let who = if unconfined(pod_context) {
            "pod".to_string()
        } else {
            subjects(&unconfined_containers)
        };
        found.push(format!(
            "seccompProfile ({who} must not set securityContext.seccompProfile.type to \"Unconfined\")"
        ));
    }
    let sysctls: Vec<&str> = pod_context["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|name| !SAFE_SYSCTLS.contains(name))
        .collect();
    if !sysctls.is_empty() {
        found.push(format!("forbidden sysctls ({})", sysctls.join(", ")));
    }
    if level == PodSecurityLevel::Baseline {
        return found;
    }

    // Restricted.
    let restricted_volumes: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            let kind = v.as_object()?.keys().find(|k| *k != "name")?.as_str();
            (!RESTRICTED_VOLUMES.contains(&kind) && kind != "hostPath").then(|| {
                format!(
                    "volume \"{}\" uses restricted volume type \"{kind}\"",
                    v["name"].as_str().unwrap_or("")
                )
            })
        })
        .collect();
    if !restricted_volumes.is_empty() {
        found.push(format!(
            "restricted volume types ({})",
            restricted_volumes.join(", ")
        ));
    }
    let escalating = names_where(&|c| c["securityContext"]["allowPrivilegeEscalation"] != false);
    if !escalating.is_empty() {
        found.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            subjects(&escalating)
        ));
    }
    let mut unrestricted = Vec::new();
    for (name, c) in containers(spec) {
        let capabilities = &c["securityContext"]["capabilities"];
        let drops_all = capabilities["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        let adds_more = capabilities["add"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"));
        if !drops_all || adds_more {
            unrestricted.push(name);
        }
    }
    if !unrestricted.is_empty() {
        found.push(format!(
            "unrestricted capabilities ({} must set securityContext.capabilities.drop=[\"ALL\"])",
            subjects(&unrestricted)
        ));
    }
    let pod_non_root = pod_context["runAsNonRoot"] == true;
    let rooted = names_where(&|c| {
        let own = &c["securityContext"]["runAsNonRoot"];
        own == false || (own.is_null() && !pod_non_root)
    });
    if pod_context["runAsNonRoot"] == false || !rooted.is_empty() {
        found.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            subjects(&rooted)
        ));
    }
    let root_user = names_where(&|c| c["securityContext"]["runAsUser"] == 0);
    if pod_context["runAsUser"] == 0 || !root_user.is_empty() {
        found.push(format!(
            "runAsUser=0 (pod or {} must not set runAsUser=0)",
            subjects(&root_user)
        ));
    }
    let confined = |context: &Value| {
        matches!(
            context["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let unset = names_where(&|c| {
        let own = &c["securityContext"]["seccompProfile"]["type"];
        if own.is_null() {
            !confined(pod_context)
        } else {
            !confined(&c["securityContext"])
        }
    });
    if !unset.is_empty() && !unconfined(pod_context) && unconfined_containers.is_empty() {
        found.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            subjects(&unset)
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn a_plain_pod_is_baseline_but_not_restricted() {
        let plain = pod(json!({"containers": [{"name": "web", "image": "nginx"}]}));
        assert_eq!(refusal(PodSecurityLevel::Baseline, &plain), None);
        let refused = refusal(PodSecurityLevel::Restricted, &plain).unwrap();
        assert_eq!(
            refused,
            "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"web\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"web\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"web\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"web\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn a_hardened_pod_is_restricted() {
        let hardened = pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "web", "image": "nginx", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            }}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        }));
        assert_eq!(refusal(PodSecurityLevel::Restricted, &hardened), None);
    }

    #[test]
    fn host_access_is_not_baseline() {
        let host = pod(json!({
            "hostNetwork": true,
            "containers": [{"name": "agent", "image": "x",
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}},
                "ports": [{"containerPort": 80, "hostPort": 80}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        }));
        let refused = refusal(PodSecurityLevel::Baseline, &host).unwrap();
        for expected in [
            "host namespaces (hostNetwork=true)",
            "privileged (container \"agent\" must not set securityContext.privileged=true)",
            "non-default capabilities (container \"agent\" must not include \"NET_ADMIN\"",
            "hostPath volumes (volume \"root\")",
            "hostPort (container \"agent\" uses hostPort 80)",
        ] {
            assert!(refused.contains(expected), "{expected}: {refused}");
        }
        assert_eq!(refusal(PodSecurityLevel::Privileged, &host), None);
    }

    #[test]
    fn namespaces_name_their_level_and_kube_system_is_exempt() {
        let labels = json!({ENFORCE: "privileged"});
        assert_eq!(
            level_of("web", &labels, PodSecurityLevel::Restricted),
            Some(PodSecurityLevel::Privileged)
        );
        assert_eq!(
            level_of("web", &json!({}), PodSecurityLevel::Restricted),
            Some(PodSecurityLevel::Restricted)
        );
        assert_eq!(
            level_of("kube-system", &json!({}), PodSecurityLevel::Restricted),
            None
        );
    }
}
