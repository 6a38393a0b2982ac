//! From a request to a concrete plan.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_cloud::performance::class_of;
use dialtone_cloud::{Arch, InstanceCatalog, InstanceType, Region};
use ipnet::Ipv4Net;
use serde::Serialize;

use dialtone_types::Cluster;
use dialtone_types::cluster::{
    ClusterPlan, ClusterType, ControlPlanePlan, NetworkPlan, NodeSlot, Subnet, WorkerPlan,
};

use crate::decisions::{DECISIONS, Decision, Rule};
use crate::network::AddressPlan;

/// Supported Kubernetes minors, oldest first; new clusters default to the last.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.32", "1.33", "1.34"];

/// What the planner reads of a cluster's spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRequest {
    /// The cluster's name, which places it in a zone and names its resources.
    pub name: String,
    /// Developer or production: which column of the decision table applies.
    pub cluster_type: ClusterType,
    /// The region it runs in, which must be in the catalogue.
    pub region: String,
    /// A supported minor (`1.34`), or `None` for the newest.
    pub kubernetes_version: Option<String>,
    /// The fewest workers, if the spec bounds them; the type's default otherwise.
    pub min_nodes: Option<u32>,
    /// The most workers, if the spec bounds them; the type's default otherwise.
    pub max_nodes: Option<u32>,
    /// Only these instance families, if any are given.
    pub allowed_families: Vec<String>,
    /// Never these instance families.
    pub excluded_families: Vec<String>,
}

impl ClusterRequest {
    /// What the planner reads of a cluster's spec, for a type already parsed from it.
    pub fn from_spec(name: &str, cluster_type: ClusterType, spec: &Cluster) -> Self {
        ClusterRequest {
            name: name.to_string(),
            cluster_type,
            region: spec.region.clone(),
            kubernetes_version: Some(spec.kubernetes_version.clone()).filter(|v| !v.is_empty()),
            min_nodes: spec.min_nodes,
            max_nodes: spec.max_nodes,
            allowed_families: spec.allowed_families.clone(),
            excluded_families: spec.excluded_families.clone(),
        }
    }
}

/// The facts around a request.
pub struct PlanContext<'a> {
    /// The instance types on offer, with their zones and prices.
    pub catalog: &'a InstanceCatalog,
    /// The org's address space and what is taken of it.
    pub address_plan: &'a AddressPlan,
    /// The VPC the cluster already has (when it is planned again after a spec change), or
    /// the one the project's developer clusters share in the region; `None` allocates a new
    /// one from the address plan.
    pub existing_vpc: Option<Ipv4Net>,
    /// The instance families the cluster's workers use now: a cluster keeps them (those
    /// still allowed) until its next version upgrade, when it moves to the best ones.
    pub kept_families: Option<&'a [String]>,
}

/// The families a cluster planned as `current` keeps when planned again at
/// `kubernetes_version`: its own, unless the version changes (an upgrade moves them).
pub fn kept_families<'a>(
    current: Option<&'a ClusterPlan>,
    kubernetes_version: &str,
) -> Option<&'a [String]> {
    current
        .filter(|p| p.kubernetes_version == kubernetes_version)
        .map(|p| p.workers.families.as_slice())
}

/// One family per node pool (class and architecture): the one with the lowest price per
/// unit of performance among `types`, sorted by name.
fn node_pool_families<'a>(types: impl Iterator<Item = &'a InstanceType>) -> Vec<String> {
    let mut best: BTreeMap<(&str, Option<Arch>), (f64, &str)> = BTreeMap::new();
    for t in types {
        let pool = (class_of(&t.family), t.archs.first().copied());
        let score = (t.usd_per_performance(), t.family.as_str());
        match best.get(&pool) {
            Some(current)
                if current
                    .0
                    .total_cmp(&score.0)
                    .then(current.1.cmp(score.1))
                    .is_le() => {}
            _ => {
                best.insert(pool, score);
            }
        }
    }
    let families: BTreeSet<&str> = best.values().map(|(_, f)| *f).collect();
    families.into_iter().map(str::to_string).collect()
}

/// The fixed value of a decision for a type. What the plan builds reads the table, so that
/// a row is the one place its decision changes.
fn fixed(key: &str, cluster_type: ClusterType) -> crate::decisions::Value {
    match Decision::find(key).map(|d| d.rule(cluster_type)) {
        Some(Rule::Fixed(value)) => value,
        _ => unreachable!("{key} is a fixed decision of the table"),
    }
}

fn fixed_int(key: &str, cluster_type: ClusterType) -> i64 {
    match fixed(key, cluster_type) {
        crate::decisions::Value::Int(n) => n,
        other => unreachable!("{key} is a number, not {other}"),
    }
}

fn fixed_text(key: &str, cluster_type: ClusterType) -> &'static str {
    match fixed(key, cluster_type) {
        crate::decisions::Value::Text(text) => text,
        other => unreachable!("{key} is a text, not {other}"),
    }
}

/// One thing wrong with a request, naming the spec field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The spec field at fault, as the API spells it (`kubernetesVersion`).
    pub field: &'static str,
    /// What is wrong with it and what is accepted instead.
    pub message: String,
}

/// Every problem of a request that cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError(pub Vec<Problem>);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for PlanError {}

struct Bounds {
    min_default: u32,
    min_floor: u32,
    max_default: u32,
    max_ceiling: u32,
}

fn bounds(cluster_type: ClusterType) -> Bounds {
    match cluster_type {
        ClusterType::Developer => Bounds {
            min_default: 1,
            min_floor: 1,
            max_default: 10,
            max_ceiling: 50,
        },
        ClusterType::Production => Bounds {
            min_default: 3,
            min_floor: 3,
            max_default: 100,
            max_ceiling: 1000,
        },
    }
}

fn control_plane_instance(cluster_type: ClusterType, max_workers: u32) -> &'static str {
    match cluster_type {
        ClusterType::Developer if max_workers <= 10 => "t3.medium",
        ClusterType::Developer => "t3.large",
        ClusterType::Production if max_workers <= 10 => "m7i.large",
        ClusterType::Production if max_workers <= 100 => "m7i.xlarge",
        ClusterType::Production if max_workers <= 500 => "m7i.2xlarge",
        ClusterType::Production => "m7i.4xlarge",
    }
}

/// A stable spread of developer clusters over a region's zones, by name (FNV-1a).
fn zone_index(name: &str, zones: usize) -> usize {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % zones as u64) as usize
}

fn offered_in(instance: &InstanceType, zones: &[String]) -> bool {
    zones.iter().all(|z| {
        z.chars()
            .last()
            .is_some_and(|s| instance.zone_suffixes.contains(&s))
    })
}

/// Plans `request`, or says everything that is wrong with it.
pub fn plan(request: &ClusterRequest, context: &PlanContext<'_>) -> Result<ClusterPlan, PlanError> {
    let cluster_type = request.cluster_type;
    let mut problems = Vec::new();
    let mut problem =
        |field: &'static str, message: String| problems.push(Problem { field, message });

    let region = Region::find(&request.region);
    if region.is_none() {
        problem(
            "spec.region",
            format!(
                "unknown region `{}`; valid regions: {}",
                request.region,
                Region::names().join(", ")
            ),
        );
    }
    let version = request
        .kubernetes_version
        .clone()
        .unwrap_or_else(|| SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1].to_string());
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        problem(
            "spec.kubernetesVersion",
            format!(
                "unsupported version `{version}`; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        );
    }
    let b = bounds(cluster_type);
    let min_nodes = request.min_nodes.unwrap_or(b.min_default);
    let max_nodes = request.max_nodes.unwrap_or(b.max_default.max(min_nodes));
    if min_nodes < b.min_floor {
        problem(
            "spec.minNodes",
            format!(
                "a {cluster_type} cluster needs at least {} workers",
                b.min_floor
            ),
        );
    }
    if max_nodes > b.max_ceiling {
        problem(
            "spec.maxNodes",
            format!(
                "a {cluster_type} cluster has at most {} workers",
                b.max_ceiling
            ),
        );
    }
    if min_nodes > max_nodes {
        problem(
            "spec.maxNodes",
            format!("maxNodes ({max_nodes}) is below minNodes ({min_nodes})"),
        );
    }
    let zone_count = fixed_int("controlPlane.zones", cluster_type) as usize;
    let control_plane_nodes = fixed_int("controlPlane.nodes", cluster_type) as usize;
    // Only zones that offer the control plane's instance type can host it.
    let cp_type = control_plane_instance(cluster_type, max_nodes);
    let cp_offered = |zone: &String| {
        context
            .catalog
            .get(cp_type)
            .is_some_and(|t| offered_in(t, std::slice::from_ref(zone)))
    };
    let zones: Vec<String> = match region {
        Some(r) => {
            let usable: Vec<String> = r.zones().into_iter().filter(cp_offered).collect();
            if usable.len() < zone_count {
                problem(
                    "spec.region",
                    format!(
                        "{} has {} zones offering {cp_type}; a {cluster_type} cluster needs {zone_count}",
                        r.name,
                        usable.len()
                    ),
                );
                Vec::new()
            } else if zone_count > 1 {
                usable.into_iter().take(zone_count).collect()
            } else {
                vec![usable[zone_index(&request.name, usable.len())].clone()]
            }
        }
        None => Vec::new(),
    };

    // Instance families right-sizing may use.
    let known: BTreeSet<&str> = context.catalog.iter().map(|t| t.family.as_str()).collect();
    for (field, families) in [
        ("spec.allowedFamilies", &request.allowed_families),
        ("spec.excludedFamilies", &request.excluded_families),
    ] {
        for family in families.iter().filter(|f| !known.contains(f.as_str())) {
            problem(field, format!("unknown instance family `{family}`"));
        }
    }
    let eligible = |t: &&InstanceType| {
        t.current_generation
            && t.gpus == 0
            && !t.bare_metal
            && (cluster_type == ClusterType::Developer || !t.burstable)
            && (request.allowed_families.is_empty() || request.allowed_families.contains(&t.family))
            && !request.excluded_families.contains(&t.family)
            && offered_in(t, &zones)
    };
    let eligible_families: BTreeSet<&str> = context
        .catalog
        .iter()
        .filter(eligible)
        .map(|t| t.family.as_str())
        .collect();
    let kept: Vec<String> = context
        .kept_families
        .unwrap_or_default()
        .iter()
        .filter(|f| eligible_families.contains(f.as_str()))
        .cloned()
        .collect();
    let families = if kept.is_empty() {
        node_pool_families(context.catalog.iter().filter(eligible))
    } else {
        kept
    };
    let min_memory_mib = if cluster_type == ClusterType::Production {
        8192
    } else {
        4096
    };
    let initial_type = context
        .catalog
        .iter()
        .filter(eligible)
        .filter(|t| families.contains(&t.family))
        .filter(|t| t.vcpus >= 2 && t.memory_mib >= min_memory_mib)
        .min_by(|a, b| {
            a.usd_per_hour
                .total_cmp(&b.usd_per_hour)
                .then_with(|| a.name.cmp(&b.name))
        });
    if initial_type.is_none() && !zones.is_empty() {
        problem(
            "spec.allowedFamilies",
            format!(
                "no instance type of the allowed families fits a {cluster_type} worker in {}",
                zones.join(", ")
            ),
        );
    }

    // Network.
    let vpc_cidr = context
        .existing_vpc
        .or_else(|| context.address_plan.next_free(16));
    if vpc_cidr.is_none() {
        problem(
            "org.addressPlan",
            format!(
                "the address plan {} has no free /16 left",
                context.address_plan.pool
            ),
        );
    }

    if !problems.is_empty() {
        return Err(PlanError(problems));
    }
    let (vpc_cidr, initial_type) = (vpc_cidr.expect("checked"), initial_type.expect("checked"));
    let subnet_of_zone = |zone: &String| {
        let region = region.expect("checked");
        let index = region
            .zones()
            .iter()
            .position(|z| z == zone)
            .expect("a zone of the region");
        vpc_cidr
            .subnets(20)
            .expect("a /16 holds /20s")
            .nth(index)
            .expect("at most 16 zones")
    };
    let subnets = zones
        .iter()
        .map(|z| Subnet {
            zone: z.clone(),
            cidr: subnet_of_zone(z),
        })
        .collect();
    let control_plane = ControlPlanePlan {
        nodes: (0..control_plane_nodes)
            .map(|i| NodeSlot {
                zone: zones[i % zones.len()].clone(),
                instance_type: cp_type.to_string(),
            })
            .collect(),
        root_disk_gib: fixed_int("controlPlane.rootDiskGiB", cluster_type) as u32,
    };
    let initial = (0..min_nodes as usize)
        .map(|i| NodeSlot {
            zone: zones[i % zones.len()].clone(),
            instance_type: initial_type.name.clone(),
        })
        .collect();
    let max_pods = initial_type.max_pods.min(110);
    let fixed_cidr = |key: &str| {
        fixed_text(key, cluster_type)
            .parse::<Ipv4Net>()
            .expect("the table holds a valid CIDR")
    };
    let (pod_cidr, service_cidr) = (
        fixed_cidr("network.podCidr"),
        fixed_cidr("network.serviceCidr"),
    );
    let network = NetworkPlan {
        vpc_cidr,
        shared_vpc: fixed_text("network.vpc", cluster_type) != "dedicated",
        subnets,
        pod_cidr,
        service_cidr,
    };
    let workers = WorkerPlan {
        min_nodes,
        max_nodes,
        zones: zones.clone(),
        families,
        initial,
        max_pods_per_node: max_pods,
    };

    // The concrete value of every decision, for users and for the record.
    let computed = |key: &str| -> String {
        match key {
            "controlPlane.instanceType" => cp_type.to_string(),
            "controlPlane.apiServerReplicas" => control_plane.nodes.len().to_string(),
            "network.vpcCidr" => vpc_cidr.to_string(),
            "network.subnets" => network
                .subnets
                .iter()
                .map(|s| format!("{}={}", s.zone, s.cidr))
                .collect::<Vec<_>>()
                .join(","),
            "network.apiAllowedCidrs" => context.address_plan.pool.to_string(),
            "workers.minNodes" => min_nodes.to_string(),
            "workers.maxNodes" => max_nodes.to_string(),
            "workers.maxPodsPerNode" => max_pods.to_string(),
            "workers.instanceFamilies" => workers.families.join(","),
            "workers.initialInstanceType" => initial_type.name.clone(),
            "workers.nodeImage" => dialtone_cloud::node_image(&version),
            "kubernetes.version" => version.clone(),
            other => unreachable!("no computation for {other}"),
        }
    };
    let decisions = DECISIONS
        .iter()
        .map(|d| {
            let value = match d.rule(cluster_type) {
                Rule::Fixed(v) => v.to_string(),
                Rule::Computed(_) => computed(d.key),
            };
            (d.key.to_string(), value)
        })
        .collect();
    Ok(ClusterPlan {
        cluster_type,
        region: request.region.clone(),
        kubernetes_version: version,
        control_plane,
        network,
        workers,
        decisions,
    })
}
