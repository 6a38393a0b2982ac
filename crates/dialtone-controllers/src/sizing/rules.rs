//! What a pod's scheduling rules mean for right-sizing, read as the sim's scheduler (and
//! upstream's) reads them, so that the nodes right-sizing adds are nodes the scheduler then
//! uses (docs/sizing.md):
//!
//! - **nodeSelector and required node affinity**, over the labels a new worker will carry
//!   (architecture, zone, region, OS), give the pod's [`Placement`]; over an existing
//!   worker's labels, whether it may join it;
//! - a **taint** of an existing worker it does not tolerate, and a worker whose pods its
//!   **anti-affinity** repels (or whose pods' anti-affinity repels it), make a node it
//!   avoids;
//! - anti-affinity by hostname among pods that repel each other allows one of them per
//!   node, and a **topology spread** by hostname `maxSkew` per node: a [`PerNode`] rule;
//! - anti-affinity by zone allows one per zone, and a spread by zone shares the pods out
//!   over the zones ([`ZoneRule`]): the pods' group is split into one group per zone.
//!
//! Rules over other topology keys, and anti-affinity between pending pods of different
//! groups, are left to the scheduler.

use std::collections::{BTreeMap, BTreeSet};

use dialtone_cloud::Arch;
use dialtone_kube::workload::{NodeView, PodView, Workload, selects};
use dialtone_sizing::{PerNode, Placement, PodGroup, zones};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";
const ARCH: &str = "kubernetes.io/arch";

/// Labels a new worker gets only once it runs: no plan can promise a value for them.
const LABELS_OF_A_RUNNING_NODE: &[&str] = &[
    HOSTNAME,
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "dialtone.dev/instance-id",
];

/// Pods a rule counts: in its namespaces, by its label selector.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PodSet {
    namespaces: Vec<String>,
    selector: LabelSelector,
}

impl PodSet {
    /// The set's name in [`PerNode::set`].
    pub(super) fn name(&self) -> String {
        format!(
            "{}/{}",
            self.namespaces.join(","),
            serde_json::to_string(&self.selector).unwrap_or_default()
        )
    }

    pub(super) fn contains(&self, pod: &PodView) -> bool {
        self.namespaces.contains(&pod.namespace) && selects(&self.selector, &pod.labels)
    }
}

/// How pods of a set share the zones.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ZoneRule {
    /// Anti-affinity by zone: one pod of the set per zone.
    OnePerZone(PodSet),
    /// A topology spread by zone, `maxSkew` apart at most.
    Spread(PodSet),
}

impl ZoneRule {
    fn set(&self) -> &PodSet {
        match self {
            ZoneRule::OnePerZone(set) | ZoneRule::Spread(set) => set,
        }
    }
}

/// What right-sizing takes of one pod's rules.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PodRules {
    pub placement: Placement,
    /// The per-node rule, with the pods it counts.
    pub per_node: Option<(PerNode, PodSet)>,
    /// Existing workers (slot names) it may not join.
    pub avoids: BTreeSet<String>,
    pub zone_rule: Option<ZoneRule>,
}

/// A cluster's workers and pods, as the rules of pending pods read them.
pub(super) struct Rules<'a> {
    observed: &'a Workload,
    /// The pods that have anti-affinity terms (most have none).
    repelling: Vec<&'a PodView>,
    /// The workers right-sizing may place pods on: slot name and node.
    workers: Vec<(&'a str, &'a NodeView)>,
    architectures: &'a [Arch],
    zones: &'a [String],
    /// Every architecture in every zone, with the labels a new worker there carries.
    new_workers: Vec<(Arch, &'a String, BTreeMap<String, String>)>,
}

impl<'a> Rules<'a> {
    pub(super) fn new(
        observed: &'a Workload,
        workers: Vec<(&'a str, &'a NodeView)>,
        architectures: &'a [Arch],
        zones: &'a [String],
        region: &'a str,
    ) -> Self {
        Rules {
            observed,
            repelling: observed
                .pods
                .iter()
                .filter(|p| !p.anti_affinity.is_empty())
                .collect(),
            workers,
            architectures,
            zones,
            new_workers: Arch::ALL
                .iter()
                .flat_map(|&arch| zones.iter().map(move |zone| (arch, zone)))
                .map(|(arch, zone)| (arch, zone, new_worker_labels(arch, zone, region)))
                .collect(),
        }
    }
}

/// The labels a new worker of `arch` in `zone` carries before it runs.
fn new_worker_labels(arch: Arch, zone: &str, region: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/os", "linux"),
        (ARCH, arch.label()),
        ("beta.kubernetes.io/arch", arch.label()),
        ("topology.kubernetes.io/region", region),
        (ZONE, zone),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Rules<'_> {
    /// What right-sizing takes of the pod's rules; `Err` says why no new worker can run it.
    pub(super) fn of(&self, pod: &PodView) -> Result<PodRules, String> {
        let placement = self.placement(pod)?;
        let mut per_node: Option<(PerNode, PodSet)> = None;
        let mut zone_rule = None;
        let mut tighten = |most: u32, set: PodSet| {
            if per_node.as_ref().is_none_or(|(rule, _)| most < rule.most) {
                per_node = Some((
                    PerNode {
                        set: set.name(),
                        most,
                    },
                    set,
                ));
            }
        };
        for term in &pod.anti_affinity {
            let Some(set) = term_set(pod, term) else {
                continue;
            };
            if !set.contains(pod) {
                continue;
            }
            match term.topology_key.as_str() {
                HOSTNAME => tighten(1, set),
                ZONE => zone_rule = Some(ZoneRule::OnePerZone(set)),
                _ => {}
            }
        }
        for constraint in &pod.spread {
            let set = PodSet {
                namespaces: vec![pod.namespace.clone()],
                selector: constraint.label_selector.clone().unwrap_or_default(),
            };
            if constraint.label_selector.is_none() || !set.contains(pod) {
                continue;
            }
            let most = u32::try_from(constraint.max_skew.max(1)).unwrap_or(1);
            match constraint.topology_key.as_str() {
                HOSTNAME => tighten(most, set),
                ZONE if zone_rule.is_none() => zone_rule = Some(ZoneRule::Spread(set)),
                _ => {}
            }
        }
        Ok(PodRules {
            placement,
            per_node,
            avoids: self.avoided(pod),
            zone_rule,
        })
    }

    /// Where new workers for the pod may be: the architectures and zones whose new workers'
    /// labels its nodeSelector and node affinity allow. Pods that name no architecture go
    /// only to the cluster's.
    fn placement(&self, pod: &PodView) -> Result<Placement, String> {
        let keys = pod.node_selector.keys().chain(
            pod.node_affinity
                .iter()
                .flat_map(|t| t.match_expressions.iter().flatten())
                .map(|r| &r.key),
        );
        let mut names_arch = false;
        for key in keys {
            if LABELS_OF_A_RUNNING_NODE.contains(&key.as_str()) {
                return Err(format!(
                    "its node selection names {key}, a label a new worker gets only once it runs; right-sizing plans by architecture and zone"
                ));
            }
            names_arch |= key == ARCH || key == "beta.kubernetes.io/arch";
        }
        if pod
            .node_affinity
            .iter()
            .any(|t| t.match_fields.as_ref().is_some_and(|f| !f.is_empty()))
        {
            return Err(
                "its node affinity names nodes by field, which no new worker can match".into(),
            );
        }
        let archs: &[Arch] = if names_arch {
            &Arch::ALL
        } else {
            self.architectures
        };
        let allowed: Vec<(Arch, &String)> = self
            .new_workers
            .iter()
            .filter(|(arch, _, labels)| archs.contains(arch) && pod.allows_node("", labels))
            .map(|(arch, zone, _)| (*arch, *zone))
            .collect();
        let arch_set: BTreeSet<Arch> = allowed.iter().map(|(a, _)| *a).collect();
        let zone_set: BTreeSet<&String> = allowed.iter().map(|(_, z)| *z).collect();
        if allowed.is_empty() {
            return Err(format!(
                "its nodeSelector and node affinity match no new worker ({} in {})",
                archs
                    .iter()
                    .map(|a| a.label())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.zones.join(", ")
            ));
        }
        if allowed.len() != arch_set.len() * zone_set.len() {
            return Err(
                "its node affinity allows some pairs of architecture and zone and not others; right-sizing plans for a set of architectures in a set of zones".into(),
            );
        }
        Ok(Placement {
            arch: match arch_set.len() {
                1 => arch_set.first().copied(),
                _ => None,
            },
            zones: if zone_set.len() == self.zones.len() {
                Vec::new()
            } else {
                zone_set.into_iter().cloned().collect()
            },
        })
    }

    /// The existing workers the pod may not join: its node selection or a taint rules
    /// them out, or anti-affinity, its own or a running pod's, keeps them apart.
    fn avoided(&self, pod: &PodView) -> BTreeSet<String> {
        // Per topology key, the domains the pod may not join: from its own terms, over every
        // running pod; from running pods' terms, over the few that have any.
        let mut barred: BTreeSet<(&str, &str)> = BTreeSet::new();
        let others: Vec<&PodView> = if pod.anti_affinity.is_empty() {
            self.repelling.clone()
        } else {
            self.observed.pods.iter().collect()
        };
        for other in others {
            let Some(on) = other.node.as_deref() else {
                continue;
            };
            if other.namespace == pod.namespace && other.name == pod.name {
                continue;
            }
            let Some(node) = self.observed.nodes.iter().find(|n| n.name == on) else {
                continue;
            };
            let terms = pod
                .anti_affinity
                .iter()
                .filter(|t| term_set(pod, t).is_some_and(|s| s.contains(other)))
                .chain(
                    other
                        .anti_affinity
                        .iter()
                        .filter(|t| term_set(other, t).is_some_and(|s| s.contains(pod))),
                );
            for term in terms {
                if let Some(domain) = node.labels.get(&term.topology_key) {
                    barred.insert((term.topology_key.as_str(), domain.as_str()));
                }
            }
        }
        self.workers
            .iter()
            .filter(|(_, node)| {
                !pod.allows_node(&node.name, &node.labels)
                    || !pod.tolerates(&node.taints)
                    || !barred.is_empty()
                        && node
                            .labels
                            .iter()
                            .any(|(k, v)| barred.contains(&(k.as_str(), v.as_str())))
            })
            .map(|(slot, _)| slot.to_string())
            .collect()
    }

    /// How many pods of `set` each existing worker runs, by slot name.
    pub(super) fn count_on_workers(&self, set: &PodSet) -> BTreeMap<String, u32> {
        self.workers
            .iter()
            .map(|(slot, node)| {
                let count = self
                    .observed
                    .pods
                    .iter()
                    .filter(|p| p.node.as_deref() == Some(node.name.as_str()) && set.contains(p))
                    .count();
                (slot.to_string(), count as u32)
            })
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// The group split by its zone rule into one group per zone, sharing its pods out as
    /// the scheduler will place them, and the pods no zone may take, with why.
    pub(super) fn over_zones(
        &self,
        group: PodGroup,
        rule: &ZoneRule,
    ) -> (Vec<PodGroup>, Option<(u32, String)>) {
        let allowed: Vec<String> = if group.placement.zones.is_empty() {
            self.zones.to_vec()
        } else {
            group.placement.zones.clone()
        };
        // Pods of the set by zone, on any node (the scheduler counts them all).
        let mut running: BTreeMap<String, u32> = BTreeMap::new();
        for pod in self.observed.pods.iter().filter(|p| rule.set().contains(p)) {
            let zone = pod
                .node
                .as_deref()
                .and_then(|on| self.observed.nodes.iter().find(|n| n.name == on))
                .and_then(|n| n.labels.get(ZONE));
            if let Some(zone) = zone {
                *running.entry(zone.clone()).or_default() += 1;
            }
        }
        let most = matches!(rule, ZoneRule::OnePerZone(_)).then_some(1);
        let (shares, left) = zones::share(group.count, &running, &allowed, most);
        let groups = shares
            .into_iter()
            .map(|(zone, count)| PodGroup {
                name: format!("{} in {zone}", group.name),
                placement: Placement {
                    zones: vec![zone],
                    ..group.placement.clone()
                },
                count,
                ..group.clone()
            })
            .collect();
        let refused = (left > 0).then(|| {
            (
                left,
                format!(
                    "its anti-affinity by zone allows one pod per zone, and the {} zone(s) it may use each run one",
                    allowed.len()
                ),
            )
        });
        (groups, refused)
    }
}

/// The pods an anti-affinity term of `pod` counts, if it can select any.
fn term_set(pod: &PodView, term: &k8s_openapi::api::core::v1::PodAffinityTerm) -> Option<PodSet> {
    let namespaces = match term.namespaces.as_deref() {
        Some(listed) if !listed.is_empty() => listed.to_vec(),
        // A namespace selector needs namespaces' labels: left to the scheduler.
        _ if term.namespace_selector.is_some() => return None,
        _ => vec![pod.namespace.clone()],
    };
    Some(PodSet {
        namespaces,
        selector: term.label_selector.clone()?,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, Taint, Toleration,
        TopologySpreadConstraint,
    };

    use super::*;

    const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

    fn node(name: &str, zone: &str) -> NodeView {
        NodeView {
            name: name.into(),
            instance_id: format!("i-{name}"),
            ready: true,
            control_plane: false,
            disrupted: false,
            millicores: 4000,
            memory_mib: 8192,
            pods: 58,
            created: None,
            labels: [
                (HOSTNAME, name),
                (ZONE, zone),
                (ARCH, "amd64"),
                ("kubernetes.io/os", "linux"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            taints: Vec::new(),
        }
    }

    fn pod(name: &str, app: &str, on: Option<&str>) -> PodView {
        PodView {
            namespace: "shop".into(),
            name: name.into(),
            node: on.map(str::to_string),
            unschedulable: on.is_none(),
            millicores: 100,
            memory_mib: 128,
            node_selector: BTreeMap::new(),
            node_affinity: Vec::new(),
            tolerations: Vec::new(),
            anti_affinity: Vec::new(),
            spread: Vec::new(),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            controller: Some("ReplicaSet".into()),
            finished: false,
        }
    }

    fn app(app: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ..LabelSelector::default()
        }
    }

    fn away_from(app_name: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(app(app_name)),
            topology_key: key.into(),
            ..PodAffinityTerm::default()
        }
    }

    fn spread(app_name: &str, key: &str, max_skew: i32) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            label_selector: Some(app(app_name)),
            topology_key: key.into(),
            max_skew,
            when_unsatisfiable: "DoNotSchedule".into(),
            ..TopologySpreadConstraint::default()
        }
    }

    fn zones() -> Vec<String> {
        ZONES.map(String::from).to_vec()
    }

    fn rules<'a>(observed: &'a Workload, zones: &'a [String]) -> Rules<'a> {
        let workers = observed
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        Rules::new(observed, workers, &[Arch::X86_64], zones, "us-east-1")
    }

    fn term(key: &str, operator: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        }
    }

    #[test]
    fn node_affinity_becomes_the_architectures_and_zones_of_new_workers() {
        let observed = Workload::default();
        let zones = zones();
        let rules = rules(&observed, &zones);
        let mut p = pod("web-0", "web", None);
        p.node_affinity = vec![term(ZONE, "In", &["us-east-1a", "us-east-1c"])];
        let placement = rules.of(&p).unwrap().placement;
        assert_eq!(placement.arch, Some(Arch::X86_64));
        assert_eq!(placement.zones, ["us-east-1a", "us-east-1c"]);
        // Naming arm64 opens it, whatever the cluster's architectures.
        p.node_affinity = vec![term(ARCH, "In", &["arm64"])];
        assert_eq!(rules.of(&p).unwrap().placement.arch, Some(Arch::Arm64));
        // Every zone is no constraint.
        p.node_affinity = vec![term(ZONE, "NotIn", &["us-east-1d"])];
        assert!(rules.of(&p).unwrap().placement.zones.is_empty());
        // Labels no new worker has, or has only once it runs, are refused with the reason.
        p.node_affinity = vec![term("pool", "In", &["gpu"])];
        assert!(rules.of(&p).unwrap_err().contains("match no new worker"));
        p.node_affinity = vec![term(
            "node.kubernetes.io/instance-type",
            "In",
            &["m7i.large"],
        )];
        assert!(rules.of(&p).unwrap_err().contains("only once it runs"));
        // Terms ORed into pairs that are no product cannot be planned as one placement.
        p.node_affinity = vec![
            NodeSelectorTerm {
                match_expressions: Some(
                    [
                        term(ARCH, "In", &["arm64"]),
                        term(ZONE, "In", &["us-east-1a"]),
                    ]
                    .into_iter()
                    .flat_map(|t| t.match_expressions.unwrap())
                    .collect(),
                ),
                match_fields: None,
            },
            term(ZONE, "In", &["us-east-1b"]),
        ];
        assert!(rules.of(&p).unwrap_err().contains("some pairs"));
    }

    #[test]
    fn taints_and_anti_affinity_keep_pods_off_workers() {
        let mut tainted = node("w1", ZONES[0]);
        tainted.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }];
        let observed = Workload {
            nodes: vec![tainted, node("w2", ZONES[0]), node("w3", ZONES[1])],
            pods: vec![pod("web-0", "web", Some("w2"))],
            budgets: Vec::new(),
        };
        let zones = zones();
        let rules = rules(&observed, &zones);
        let plain = pod("api-0", "api", None);
        assert_eq!(
            rules.of(&plain).unwrap().avoids,
            BTreeSet::from(["w1".into()])
        );
        let mut tolerant = plain.clone();
        tolerant.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }];
        assert!(rules.of(&tolerant).unwrap().avoids.is_empty());
        // Anti-affinity by host keeps it off web-0's node, by zone off its zone.
        let mut apart = tolerant.clone();
        apart.anti_affinity = vec![away_from("web", HOSTNAME)];
        assert_eq!(
            rules.of(&apart).unwrap().avoids,
            BTreeSet::from(["w2".into()])
        );
        apart.anti_affinity = vec![away_from("web", ZONE)];
        assert_eq!(
            rules.of(&apart).unwrap().avoids,
            BTreeSet::from(["w1".into(), "w2".into()])
        );
        // A running pod's anti-affinity repels the pods it selects.
        let mut observed = observed.clone();
        observed.pods[0].anti_affinity = vec![away_from("api", HOSTNAME)];
        let rules = super::tests::rules(&observed, &zones);
        assert_eq!(
            rules.of(&tolerant).unwrap().avoids,
            BTreeSet::from(["w2".into()])
        );
    }

    #[test]
    fn rules_among_a_set_limit_pods_per_node_and_per_zone() {
        let observed = Workload {
            nodes: vec![node("w1", ZONES[0]), node("w2", ZONES[1])],
            pods: vec![
                pod("web-0", "web", Some("w1")),
                pod("web-1", "web", Some("w1")),
                pod("web-2", "web", Some("w2")),
            ],
            budgets: Vec::new(),
        };
        let zones = zones();
        let rules = rules(&observed, &zones);
        let mut p = pod("web-3", "web", None);
        p.anti_affinity = vec![away_from("web", HOSTNAME)];
        p.spread = vec![spread("web", HOSTNAME, 2)];
        let of = rules.of(&p).unwrap();
        let (rule, set) = of.per_node.unwrap();
        assert_eq!(rule.most, 1);
        assert_eq!(
            rules.count_on_workers(&set),
            BTreeMap::from([("w1".into(), 2), ("w2".into(), 1)])
        );
        // A spread by zone shares 4 new pods out so that the zones end level (a runs 2,
        // b 1, c none).
        p.anti_affinity.clear();
        p.spread = vec![spread("web", ZONE, 1)];
        let of = rules.of(&p).unwrap();
        let group = PodGroup {
            name: "shop/web".into(),
            requests: dialtone_sizing::Resources::default(),
            placement: of.placement.clone(),
            count: 4,
            per_node: None,
            avoids: BTreeSet::new(),
        };
        let (split, left) = rules.over_zones(group.clone(), of.zone_rule.as_ref().unwrap());
        let shares: Vec<(Vec<String>, u32)> = split
            .iter()
            .map(|g| (g.placement.zones.clone(), g.count))
            .collect();
        assert_eq!(
            shares,
            [
                (vec![ZONES[0].to_string()], 1),
                (vec![ZONES[1].to_string()], 1),
                (vec![ZONES[2].to_string()], 2)
            ]
        );
        assert_eq!(left, None);
        // Anti-affinity by zone: one per zone, and only c is free.
        p.spread.clear();
        p.anti_affinity = vec![away_from("web", ZONE)];
        let of = rules.of(&p).unwrap();
        let (split, left) = rules.over_zones(group, of.zone_rule.as_ref().unwrap());
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].placement.zones, [ZONES[2]]);
        assert_eq!(left.map(|(n, _)| n), Some(3));
    }
}
