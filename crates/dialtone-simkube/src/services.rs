//! Services, as a cluster's API server and its endpoint-slice controller keep them: a cluster
//! IP from the range the control plane was booted with, node ports from 30000–32767,
//! headless and ExternalName Services, the `kubernetes` and `kube-dns` Services every
//! kubeadm cluster holds, and one EndpointSlice per Service with a selector, following its
//! pods (ready or not, as upstream lists them). Upstream splits a Service's endpoints into
//! slices of 100; one slice per Service serves the same clients.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use crate::cluster::{ClusterApi, ClusterNetwork, key, stamp_new};
use crate::resources::by_plural;

/// The ports NodePort and LoadBalancer Services get, as upstream's default range.
const NODE_PORTS: std::ops::RangeInclusive<u64> = 30000..=32767;

/// The range a cluster whose control plane's user data is not known uses: kubeadm's default.
const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// The label naming the Service an EndpointSlice is for.
const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming what manages an EndpointSlice.
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";

fn service_cidr(cluster: &ClusterApi) -> Ipv4Net {
    cluster.network().map_or_else(
        || DEFAULT_SERVICE_CIDR.parse().expect("a valid range"),
        |n| n.service_cidr,
    )
}

/// The `n`th address of a range: `.1` is the API server's Service, `.10` DNS.
fn nth(range: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(range.network()) + n)
}

/// What upstream fills in for a Service the request leaves out.
pub fn defaults(service: &mut Value) {
    let spec = &mut service["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    let kind = spec["type"].as_str().unwrap_or("").to_string();
    if kind != "ExternalName" {
        if spec["sessionAffinity"].is_null() {
            spec["sessionAffinity"] = json!("None");
        }
        if spec["internalTrafficPolicy"].is_null() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        if spec["ipFamilies"].is_null() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer")
        && spec["externalTrafficPolicy"].is_null()
    {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    for port in spec["ports"].as_array_mut().into_iter().flatten() {
        if port["protocol"].is_null() || port["protocol"] == "" {
            port["protocol"] = json!("TCP");
        }
        // Zero is Go's unset, and kubectl's typed clients send it: the port's own number,
        // and a node port the server chooses.
        if port["targetPort"].is_null() || port["targetPort"] == 0 || port["targetPort"] == "" {
            port["targetPort"] = port["port"].clone();
        }
        if port["nodePort"] == 0 {
            port.as_object_mut().map(|p| p.remove("nodePort"));
        }
    }
    if service["status"].is_null() {
        service["status"] = json!({"loadBalancer": {}});
    }
}

/// The cluster IPs and node ports every other Service holds.
fn taken(cluster: &ClusterApi, this: &Value) -> (BTreeSet<String>, BTreeSet<u64>) {
    let uid = &this["metadata"]["uid"];
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for service in cluster.objects.list("services", None).0 {
        if service["metadata"]["uid"] == *uid {
            continue;
        }
        if let Some(ip) = service["spec"]["clusterIP"].as_str() {
            ips.insert(ip.to_string());
        }
        for port in service["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(node_port) = port["nodePort"].as_u64() {
                ports.insert(node_port);
            }
        }
    }
    (ips, ports)
}

/// Checks a Service and gives it its addresses (a kept one keeps them): every problem is
/// a cause, in upstream's words. Run under the cluster's allocation lock.
pub fn admit(
    cluster: &ClusterApi,
    service: &mut Value,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
) {
    let (taken_ips, taken_ports) = taken(cluster, service);
    let range = service_cidr(cluster);
    let spec = &mut service["spec"];
    let kind = spec["type"].as_str().unwrap_or("").to_string();
    if !TYPES.contains(&kind.as_str()) {
        causes.push((
            "spec.type".into(),
            format!(
                "Unsupported value: \"{kind}\": supported values: {}",
                TYPES.map(|t| format!("\"{t}\"")).join(", ")
            ),
        ));
    }
    let exposed = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
    let ports_given = spec["ports"].as_array().is_some_and(|p| !p.is_empty());
    let headless = spec["clusterIP"] == "None";
    if kind == "ExternalName" {
        if spec["externalName"].as_str().is_none_or(str::is_empty) {
            causes.push(("spec.externalName".into(), "Required value".into()));
        }
    } else if !ports_given && !headless {
        causes.push(("spec.ports".into(), "Required value".into()));
    }
    let count = spec["ports"].as_array().map_or(0, Vec::len);
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    for (i, port) in spec["ports"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = |name: &str| format!("spec.ports[{i}].{name}");
        let name = port["name"].as_str().unwrap_or("").to_string();
        if count > 1 && name.is_empty() {
            causes.push((field("name"), "Required value".into()));
        } else if !name.is_empty() && !names.insert(name.clone()) {
            causes.push((field("name"), format!("Duplicate value: \"{name}\"")));
        }
        match port["port"].as_u64() {
            Some(1..=65535) => {}
            _ => causes.push((
                field("port"),
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    port["port"]
                ),
            )),
        }
        let protocol = port["protocol"].as_str().unwrap_or("");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            causes.push((
                field("protocol"),
                format!(
                    "Unsupported value: \"{protocol}\": supported values: \"SCTP\", \"TCP\", \"UDP\""
                ),
            ));
        }
        match &port["targetPort"] {
            Value::Number(n) if matches!(n.as_u64(), Some(1..=65535)) => {}
            Value::String(s) if !s.is_empty() && s.len() <= 15 => {}
            other => causes.push((
                field("targetPort"),
                format!("Invalid value: {other}: must be between 1 and 65535, inclusive, or a port name of at most 15 characters"),
            )),
        }
        match port["nodePort"].as_u64() {
            Some(_) if !exposed => causes.push((
                field("nodePort"),
                format!("Forbidden: may not be used when `type` is '{kind}'"),
            )),
            Some(n) if !NODE_PORTS.contains(&n) => causes.push((
                field("nodePort"),
                format!(
                    "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                ),
            )),
            Some(n) if taken_ports.contains(&n) || !node_ports.insert(n) => causes.push((
                field("nodePort"),
                format!("Invalid value: {n}: provided port is already allocated"),
            )),
            Some(_) => {}
            None if exposed => {
                // A port kept across an update keeps its node port.
                let kept = old_ports
                    .iter()
                    .find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"])
                    .and_then(|o| o["nodePort"].as_u64());
                let free = kept.or_else(|| {
                    NODE_PORTS.clone().find(|n| !taken_ports.contains(n) && !node_ports.contains(n))
                });
                match free {
                    Some(n) => {
                        node_ports.insert(n);
                        port["nodePort"] = json!(n);
                    }
                    None => causes.push((
                        field("nodePort"),
                        "Internal error: no node port is free in 30000-32767".into(),
                    )),
                }
            }
            None => {}
        }
    }
    for (label, value) in spec["selector"].as_object().into_iter().flatten() {
        let valid = value.as_str().is_some_and(|v| {
            v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
        if !valid {
            causes.push((
                format!("spec.selector.{label}"),
                format!("Invalid value: {value}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
    }
    if kind == "ExternalName" {
        return;
    }
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .unwrap_or("");
    let asked = spec["clusterIP"].as_str().unwrap_or("").to_string();
    let ip = match (old_ip, asked.as_str()) {
        ("", "") => next_free(range, &taken_ips),
        ("", "None") if kind != "ClusterIP" => {
            causes.push((
                "spec.clusterIP".into(),
                format!("Invalid value: \"None\": may not be set to 'None' for {kind} services"),
            ));
            return;
        }
        ("", "None") => Some("None".to_string()),
        ("", asked) => match asked.parse::<Ipv4Addr>() {
            Ok(ip) if !range.contains(&ip) => {
                causes.push((
                    "spec.clusterIP".into(),
                    format!("Invalid value: \"{asked}\": provided IP is not in the valid range. The range of valid IPs is {range}"),
                ));
                return;
            }
            Ok(_) if taken_ips.contains(asked) => {
                causes.push((
                    "spec.clusterIP".into(),
                    format!("Invalid value: \"{asked}\": provided IP is already allocated"),
                ));
                return;
            }
            Ok(_) => Some(asked.to_string()),
            Err(_) => {
                causes.push((
                    "spec.clusterIP".into(),
                    format!("Invalid value: \"{asked}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                ));
                return;
            }
        },
        // Kept as it was; asking for another is refused, as upstream's field is immutable.
        (old_ip, "") => Some(old_ip.to_string()),
        (old_ip, asked) if old_ip == asked => Some(asked.to_string()),
        (_, asked) => {
            causes.push((
                "spec.clusterIPs[0]".into(),
                format!("Invalid value: [\"{asked}\"]: may not change once set"),
            ));
            return;
        }
    };
    match ip {
        Some(ip) => {
            spec["clusterIPs"] = json!([ip]);
            spec["clusterIP"] = json!(ip);
        }
        None => causes.push((
            "spec.clusterIP".into(),
            format!("Internal error: no IP is free in {range}"),
        )),
    }
}

/// The lowest free address above the ones kubeadm keeps (`.1` the API, `.10` DNS).
fn next_free(range: Ipv4Net, taken: &BTreeSet<String>) -> Option<String> {
    (11..range.hosts().count() as u32)
        .map(|n| nth(range, n).to_string())
        .find(|ip| !taken.contains(ip))
}

/// The Services every kubeadm cluster holds: `default/kubernetes` (the API server, at the
/// range's first address) and `kube-system/kube-dns` (at its tenth), with the API server's
/// EndpointSlice at the control-plane nodes.
pub fn ensure_cluster_services(
    cluster: &ClusterApi,
    network: ClusterNetwork,
    api_servers: &[String],
) {
    let services = by_plural("services");
    let range = network.service_cidr;
    let seeded = [
        (
            "default",
            "kubernetes",
            json!({"component": "apiserver", "provider": "kubernetes"}),
            json!({"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
            nth(range, 1),
        ),
        (
            "kube-system",
            "kube-dns",
            json!({"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}),
            json!({"selector": {"k8s-app": "kube-dns"}, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ]}),
            nth(range, 10),
        ),
    ];
    for (namespace, name, labels, mut spec, ip) in seeded {
        if cluster
            .objects
            .get(&key("services", namespace, name))
            .is_some()
        {
            continue;
        }
        spec["clusterIP"] = json!(ip.to_string());
        let mut service = json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec,
        });
        defaults(&mut service);
        spec_ips(&mut service);
        let _ = cluster.objects.create(
            key("services", namespace, name),
            stamp_new(service, services, namespace),
        );
    }
    let slice = json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {SERVICE_NAME: "kubernetes", MANAGED_BY: "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": api_servers.iter().map(|address| json!({
            "addresses": [address], "conditions": {"ready": true, "serving": true, "terminating": false},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    });
    put_slice(cluster, "default", "kubernetes", slice);
}

fn spec_ips(service: &mut Value) {
    let ip = service["spec"]["clusterIP"].clone();
    service["spec"]["clusterIPs"] = json!([ip]);
}

/// Stores `slice` unless it is already as wanted.
fn put_slice(cluster: &ClusterApi, namespace: &str, name: &str, mut slice: Value) {
    let k = key("endpointslices", namespace, name);
    match cluster.objects.get(&k) {
        Some(current) => {
            let same = ["endpoints", "ports", "addressType"]
                .iter()
                .all(|f| current[*f] == slice[*f]);
            if !same {
                let mut next = (*current).clone();
                for f in ["endpoints", "ports", "addressType"] {
                    next[f] = slice[f].take();
                }
                let _ = cluster.objects.update(&k, next);
            }
        }
        None => {
            let r = by_plural("endpointslices");
            let _ = cluster.objects.create(k, stamp_new(slice, r, namespace));
        }
    }
}

/// The port a Service's port reaches on `pod`: its number, or the container port its
/// name names.
fn target_port(port: &Value, pod: &Value) -> Option<u64> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_u64(),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64()),
        _ => port["port"].as_u64(),
    }
}

/// The endpoint-slice controller's pass: each Service with a selector gets one slice of
/// its pods that have an address, and slices whose Service is gone go.
pub fn sync_endpoint_slices(cluster: &ClusterApi) {
    let services = cluster.objects.list("services", None).0;
    let mut wanted = BTreeSet::new();
    for service in &services {
        let selector = &service["spec"]["selector"];
        if selector.as_object().is_none_or(|s| s.is_empty())
            || service["spec"]["type"] == "ExternalName"
        {
            continue;
        }
        let ns = service["metadata"]["namespace"].as_str().unwrap_or("");
        let name = service["metadata"]["name"].as_str().unwrap_or("");
        let pods: Vec<_> = cluster
            .objects
            .list("pods", Some(ns))
            .0
            .into_iter()
            .filter(|p| p["status"]["podIP"].is_string())
            .filter(|p| {
                selector
                    .as_object()
                    .into_iter()
                    .flatten()
                    .all(|(k, v)| p["metadata"]["labels"][k] == *v)
            })
            .collect();
        let service_ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|pod| {
                let ready = crate::workloads::condition_holds(pod, "Ready");
                json!({
                    "addresses": [pod["status"]["podIP"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "nodeName": pod["spec"]["nodeName"],
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
                })
            })
            .collect();
        // As upstream: a slice without endpoints has no ports either.
        let ports: Vec<Value> = match pods.first() {
            None => Vec::new(),
            Some(pod) => service_ports
                .iter()
                .map(|port| {
                    let number = target_port(port, pod).or_else(|| port["targetPort"].as_u64());
                    json!({"name": port["name"].as_str().unwrap_or(""), "port": number, "protocol": port["protocol"]})
                })
                .collect(),
        };
        let slice_name = format!("{name}-{}", short_uid(service));
        wanted.insert((ns.to_string(), slice_name.clone()));
        let slice = json!({
            "metadata": {
                "name": slice_name, "namespace": ns,
                "labels": {SERVICE_NAME: name, MANAGED_BY: CONTROLLER},
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Service", "name": name,
                    "uid": service["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        put_slice(cluster, ns, &slice_name, slice);
    }
    for slice in cluster.objects.list("endpointslices", None).0 {
        let labels = &slice["metadata"]["labels"];
        let ns = slice["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = slice["metadata"]["name"].as_str().unwrap_or("").to_string();
        if labels[MANAGED_BY] == CONTROLLER
            && name != "kubernetes"
            && !wanted.contains(&(ns.clone(), name.clone()))
        {
            let _ = cluster.objects.delete(&key("endpointslices", &ns, &name));
        }
    }
}

/// Five characters of the Service's uid: its slice's stable suffix.
fn short_uid(service: &Value) -> String {
    service["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(5)
        .collect()
}
