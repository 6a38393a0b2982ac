//! From a request to a concrete plan.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_cloud::performance::class_of;
use dialtone_cloud::{Arch, InstanceCatalog, InstanceType, Region};
use ipnet::Ipv4Net;
use serde::Serialize;

use dialtone_types::cluster::{
    ClusterPlan, ClusterType, ControlPlanePlan, MaintenanceWindow, NetworkPlan, NodeSlot,
    ReleaseChannel, Subnet, WorkerPlan,
};
use dialtone_types::settings::VpcTenancy;
use dialtone_types::{Cluster, ClusterSettings};

use crate::decisions::{DECISIONS, Rule};
use crate::network::AddressPlan;
use crate::versions::{Catalogue, minor_of};

/// What the planner reads of a cluster's spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRequest {
    /// The cluster's name, which places it in a zone and names its resources.
    pub name: String,
    /// Developer or production: which column of the decision table applies.
    pub cluster_type: ClusterType,
    /// The region it runs in, which must be in the catalogue.
    pub region: String,
    /// A minor (`1.35`), or `None` for the newest of the built-in catalogue; the API
    /// checks it against the catalogue and the channel, and names one, before planning.
    pub kubernetes_version: Option<String>,
    /// The release channel, if the spec names one; the type's otherwise.
    pub release_channel: Option<ReleaseChannel>,
    /// The maintenance window, if the spec sets one; the type's otherwise.
    pub maintenance_window: Option<MaintenanceWindow>,
    /// The fewest workers, if the spec bounds them; the type's default otherwise.
    pub min_nodes: Option<u32>,
    /// The most workers, if the spec bounds them; the type's default otherwise.
    pub max_nodes: Option<u32>,
    /// Only these instance families, if any are given.
    pub allowed_families: Vec<String>,
    /// Never these instance families.
    pub excluded_families: Vec<String>,
    /// The architectures for pods that name none; amd64 when empty.
    pub architectures: Vec<Arch>,
    /// Whether burstable types count at their full vCPUs.
    pub allow_burstable: bool,
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
            architectures: spec.architectures.clone(),
            allow_burstable: spec.allow_burstable,
            release_channel: spec.release_channel,
            maintenance_window: spec.maintenance.as_ref().and_then(|m| m.window.clone()),
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

/// Plans `request` with its type's built-in settings, or says everything that is wrong
/// with it.
pub fn plan(request: &ClusterRequest, context: &PlanContext<'_>) -> Result<ClusterPlan, PlanError> {
    plan_with_settings(request, ClusterSettings::of(request.cluster_type), context)
}

/// Plans `request` with `settings` for its type's decisions: every value the plan builds
/// from comes from them, so that a changed setting changes what gets built.
pub fn plan_with_settings(
    request: &ClusterRequest,
    settings: ClusterSettings,
    context: &PlanContext<'_>,
) -> Result<ClusterPlan, PlanError> {
    let cluster_type = request.cluster_type;
    let mut settings = settings;
    if let Some(channel) = request.release_channel {
        settings.upgrade.channel = channel;
    }
    if let Some(window) = &request.maintenance_window {
        settings.maintenance.window = window.clone();
    }
    let s = &settings;
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
    let version = match &request.kubernetes_version {
        Some(version) => version.clone(),
        None => Catalogue::built_in()
            .minors
            .last()
            .map(|m| m.minor.clone())
            .unwrap_or_default(),
    };
    if minor_of(&version).is_none() {
        problem(
            "spec.kubernetesVersion",
            format!("`{version}` is not a Kubernetes minor such as 1.35"),
        );
    }
    let (min_bound, max_bound) = (s.workers.min_nodes, s.workers.max_nodes);
    let min_nodes = request.min_nodes.unwrap_or(min_bound.default);
    let max_nodes = request
        .max_nodes
        .unwrap_or(max_bound.default.max(min_nodes));
    if min_nodes < min_bound.limit {
        problem(
            "spec.minNodes",
            format!(
                "a {cluster_type} cluster needs at least {} workers",
                min_bound.limit
            ),
        );
    }
    if max_nodes > max_bound.limit {
        problem(
            "spec.maxNodes",
            format!(
                "a {cluster_type} cluster has at most {} workers",
                max_bound.limit
            ),
        );
    }
    if min_nodes > max_nodes {
        problem(
            "spec.maxNodes",
            format!("maxNodes ({max_nodes}) is below minNodes ({min_nodes})"),
        );
    }
    // Enough zones for the control plane and for the workers; each takes the first of them.
    let zone_count = s.control_plane.zones.max(s.workers.zones).max(1) as usize;
    let control_plane_nodes = s.control_plane.nodes as usize;
    // Only zones that offer the control plane's instance type can host it.
    let cp_type = s
        .control_plane
        .instance_type_for(max_nodes)
        .unwrap_or_default();
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

    let worker_zones: Vec<String> = zones
        .iter()
        .take(s.workers.zones.max(1) as usize)
        .cloned()
        .collect();

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
            && !t.accelerated()
            && !t.bare_metal
            && (s.workers.instance_families.burstable || !t.burstable)
            && (request.allowed_families.is_empty() || request.allowed_families.contains(&t.family))
            && !request.excluded_families.contains(&t.family)
            && offered_in(t, &worker_zones)
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
    let architectures = if request.architectures.is_empty() {
        vec![Arch::X86_64]
    } else {
        request.architectures.clone()
    };
    let initial_rule = s.workers.initial_instance_type;
    let initial_type = context
        .catalog
        .iter()
        .filter(eligible)
        .filter(|t| families.contains(&t.family))
        .filter(|t| t.archs.first().is_some_and(|a| architectures.contains(a)))
        .filter(|t| {
            // A burstable type counts at its baseline unless the cluster allows bursting.
            let share = if request.allow_burstable {
                1.0
            } else {
                t.sustained_cpu_share()
            };
            t.vcpus as f64 * share >= initial_rule.min_vcpus as f64
                && t.memory_mib >= u64::from(initial_rule.min_memory_gib) * 1024
        })
        .min_by(|a, b| {
            a.usd_per_hour
                .total_cmp(&b.usd_per_hour)
                .then_with(|| a.name.cmp(&b.name))
        });
    if initial_type.is_none() && !worker_zones.is_empty() {
        problem(
            "spec.allowedFamilies",
            format!(
                "no instance type of the allowed families and architectures ({}) has the {} sustained vCPUs and {} GiB of a {cluster_type} worker in {}",
                architectures
                    .iter()
                    .map(|a| a.label())
                    .collect::<Vec<_>>()
                    .join(", "),
                initial_rule.min_vcpus,
                initial_rule.min_memory_gib,
                worker_zones.join(", ")
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
                zone: zones[i % (s.control_plane.zones.max(1) as usize).min(zones.len())].clone(),
                instance_type: cp_type.to_string(),
            })
            .collect(),
        root_disk_gib: s.control_plane.root_disk_gib,
    };
    let initial = (0..min_nodes as usize)
        .map(|i| NodeSlot {
            zone: worker_zones[i % worker_zones.len()].clone(),
            instance_type: initial_type.name.clone(),
        })
        .collect();
    let max_pods = initial_type.max_pods.min(s.workers.max_pods_per_node);
    let network = NetworkPlan {
        vpc_cidr,
        shared_vpc: s.network.vpc == VpcTenancy::Shared,
        subnets,
        pod_cidr: s.network.pod_cidr,
        service_cidr: s.network.service_cidr,
        api_allowed_cidrs: vec![context.address_plan.pool],
    };
    let workers = WorkerPlan {
        min_nodes,
        max_nodes,
        zones: worker_zones,
        families,
        initial,
        max_pods_per_node: max_pods,
        initial_instance_type: initial_type.name.clone(),
        node_image: dialtone_cloud::node_image(&version),
        architectures,
        allow_burstable: request.allow_burstable,
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
            "network.apiAllowedCidrs" => network
                .api_allowed_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "workers.minNodes" => min_nodes.to_string(),
            "workers.maxNodes" => max_nodes.to_string(),
            "workers.maxPodsPerNode" => max_pods.to_string(),
            "workers.instanceFamilies" => workers.families.join(","),
            "workers.initialInstanceType" => initial_type.name.clone(),
            "workers.nodeImage" => workers.node_image.clone(),
            "kubernetes.version" => version.clone(),
            other => unreachable!("no computation for {other}"),
        }
    };
    let decisions = DECISIONS
        .iter()
        .map(|d| {
            let value = match d.rule_in(s) {
                Rule::Fixed(value) => value,
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
        settings,
    })
}
