//! Right-sizing a Ready cluster, one pass at a time, from what its Kubernetes API says
//! (the decisions themselves are `dialtone-sizing`'s pure functions):
//!
//! 1. **Drain** the workers an earlier decision disrupted (Dialtone's taint is on the node,
//!    so a restarted server picks up where it stopped): once every worker slot is a Ready
//!    node, evict their pods through `pods/eviction` (a budget may refuse; the next pass
//!    tries again), and drop the slot of a node left with nothing to move; the lifecycle
//!    then terminates its instance.
//! 2. **Scale up** for pods the scheduler could not place: new worker slots of the types
//!    and zones the plan chooses, which the lifecycle launches.
//! 3. Otherwise **consolidate**: remove or replace workers whose pods fit more cheaply
//!    elsewhere, at most the disruption budget at a time, never a node younger than the
//!    stabilization window or whose pods a budget protects. A replaced node is tainted at
//!    once (nothing new lands on it) and drained once its replacements are Ready. Workers
//!    of an older Kubernetes version than the cluster's go first, whatever it costs: that
//!    is how an upgrade reaches them, and how they move to the families it chose.
//!
//! Each decision is recorded in the cluster's status, with the nodes chosen, their cost,
//! a lower bound for the same pods and the time taken, and as an event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dialtone_cloud::{Arch, InstanceCatalog, volumes};
use dialtone_kube::KubeError;
use dialtone_kube::workload::{self, Evicted, NodeView, PodView, Workload};
use dialtone_sizing::consolidate::{self, Action, RunningNode, RunningPod, Unneeded};
use dialtone_sizing::decision::{self, Decision};
use dialtone_sizing::{CostModel, ExistingNode, NodeType, PodGroup, Resources, Snapshot};
use dialtone_types::cluster::{
    ClusterNode, ClusterPlan, ClusterStatus, ConsolidationPolicy, NodeRole, SizingDecision,
    SizingStatus,
};
use jiff::Timestamp;

use crate::cluster::{record_event, set_condition};
use dialtone_types::{ClusterCondition, ConditionStatus};

mod rules;
use rules::{PodRules, PodSet, Rules};

const DECISIONS_KEPT: usize = 10;

/// How right-sizing paces its disruptions.
#[derive(Clone, Debug)]
pub struct SizingOptions {
    /// How long one second of the plan's delays lasts (less on a sim that runs faster
    /// than real time): a node must have run the plan's `autoscaling.scaleDownDelaySeconds`
    /// of them before consolidation may remove it.
    pub second: Duration,
    /// The share of the workers disrupted at a time, in percent (at least one node).
    pub budget_percent: usize,
    /// The share of a node's price a replacement must save.
    pub min_saving: f64,
}

/// The index in a worker's name, `worker-12` → 12.
pub(crate) fn worker_index(name: &str) -> Option<u32> {
    name.strip_prefix("worker-")?.parse().ok()
}

/// How the cluster counts nodes (docs/sizing.md): burstable types at their baseline unless
/// it allows bursting, less what its daemon sets run on every worker, at the instance's
/// price plus its root volume's.
fn cost_model(plan: &ClusterPlan, observed: &Workload) -> CostModel {
    let workers = &plan.settings.workers;
    CostModel {
        allow_burstable: plan.workers.allow_burstable,
        daemonsets: daemon_overhead(observed),
        per_node_usd_per_hour: volumes::usd_per_hour(workers.disk_type, workers.root_disk_gib),
    }
}

/// The instance types a cluster's workers may use, as nodes offer them.
fn node_types(plan: &ClusterPlan, catalog: &InstanceCatalog, model: &CostModel) -> Vec<NodeType> {
    let allowed = catalog
        .iter()
        .filter(|t| plan.workers.families.contains(&t.family))
        .cloned();
    dialtone_sizing::node_types(allowed, &plan.workers.zones, model)
}

/// What the daemon sets take of a new worker, read from the cluster: the most that their
/// pods request on any worker (a daemon set that selects only some nodes counts as if it
/// ran everywhere, so that a new node never has less room than planned).
fn daemon_overhead(observed: &Workload) -> Resources {
    observed
        .nodes
        .iter()
        .filter(|n| !n.control_plane)
        .map(|node| {
            observed
                .pods
                .iter()
                .filter(|p| is_daemon(p) && p.node.as_deref() == Some(node.name.as_str()))
                .fold(Resources::default(), |sum, p| sum.add(&requests(p)))
        })
        .fold(Resources::default(), |most, node| Resources {
            millicores: most.millicores.max(node.millicores),
            memory_mib: most.memory_mib.max(node.memory_mib),
            pods: most.pods.max(node.pods),
        })
}

fn requests(pod: &PodView) -> Resources {
    Resources {
        millicores: pod.millicores,
        memory_mib: pod.memory_mib,
        pods: 1,
    }
}

pub(crate) fn is_daemon(pod: &PodView) -> bool {
    pod.controller.as_deref() == Some("DaemonSet")
}

fn new_slot(status: &mut ClusterStatus, instance_type: &str, zone: &str) -> ClusterNode {
    let sizing = status.sizing.get_or_insert_with(SizingStatus::default);
    let name = format!("worker-{}", sizing.next_worker);
    sizing.next_worker += 1;
    let node = ClusterNode {
        name,
        role: NodeRole::Worker,
        zone: zone.to_string(),
        instance_type: instance_type.to_string(),
        instance_id: String::new(),
        state: dialtone_types::NodeState::Absent,
        attempt: 0,
        kubernetes_version: String::new(),
        launch_backoff: None,
        unhealthy: None,
        last_repair: None,
    };
    status.nodes.push(node.clone());
    node
}

fn record_decision(status: &mut ClusterStatus, decision: SizingDecision, warning: bool) {
    record_event(
        status,
        decision.time,
        warning,
        &decision.action,
        decision.message.clone(),
    );
    let sizing = status.sizing.get_or_insert_with(SizingStatus::default);
    sizing.decisions.push(decision);
    if sizing.decisions.len() > DECISIONS_KEPT {
        sizing.decisions.remove(0);
    }
}

fn usd(value: f64) -> String {
    format!("${value:.4}/h")
}

/// Keeps `status.sizing.usdPerHour` and the next worker number current.
pub(crate) fn account(status: &mut ClusterStatus, catalog: &InstanceCatalog) {
    let workers = status.nodes.iter().filter(|n| n.role == NodeRole::Worker);
    let cost = workers.clone().fold(0.0, |sum, n| {
        sum + catalog
            .get(&n.instance_type)
            .map_or(0.0, |t| t.usd_per_hour)
    });
    let next = workers
        .filter_map(|n| worker_index(&n.name))
        .max()
        .map_or(0, |i| i + 1);
    let sizing = status.sizing.get_or_insert_with(SizingStatus::default);
    sizing.usd_per_hour = (cost * 10_000.0).round() / 10_000.0;
    sizing.next_worker = sizing.next_worker.max(next);
}

/// What a right-sizing pass works with beside the cluster itself.
#[derive(Clone, Copy)]
pub(crate) struct Sizer<'a> {
    pub catalog: &'a InstanceCatalog,
    pub options: &'a SizingOptions,
    pub memory: &'a SizingMemory,
    /// The cluster's uid, what `memory` knows it by.
    pub cluster: &'a str,
    /// What a consolidation move must be worth (the cluster's `spec.consolidation`).
    pub policy: ConsolidationPolicy,
}

/// What right-sizing remembers of each cluster between passes, in memory (a restarted
/// server starts afresh, which only delays consolidation):
///
/// - the last input on which consolidation found nothing to do. Consolidation is a pure
///   function of its input, so a health check of a cluster whose nodes, pods, budgets and
///   plan are as they were (a node's age counts once it passes the stabilization window)
///   does not search again, as Karpenter does not while its cluster state is unchanged;
/// - since when each node has been unneeded, for the balanced policy, which removes a node
///   only once it has stayed unneeded for the stabilization window.
#[derive(Default)]
pub(crate) struct SizingMemory(std::sync::Mutex<std::collections::HashMap<String, Remembered>>);

#[derive(Default)]
struct Remembered {
    unchanged: Option<u64>,
    unneeded: Unneeded,
}

impl SizingMemory {
    fn holds(&self, key: &str, input: u64) -> bool {
        self.lock().get(key).and_then(|r| r.unchanged) == Some(input)
    }

    fn remember(&self, key: &str, input: u64) {
        self.lock().entry(key.to_string()).or_default().unchanged = Some(input);
    }

    /// [`Unneeded::ripe`] for the cluster.
    fn ripe(
        &self,
        key: &str,
        proposed: Vec<Action>,
        nodes: &[RunningNode],
        now: Timestamp,
        patience: Duration,
        budget: usize,
    ) -> Vec<Action> {
        let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
        self.lock()
            .entry(key.to_string())
            .or_default()
            .unneeded
            .ripe(
                proposed,
                nodes,
                millis,
                u64::try_from(patience.as_millis()).unwrap_or(u64::MAX),
                budget,
            )
    }

    /// Forgets a cluster that is gone.
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Remembered>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A hash of `value`'s debug form: enough to tell an input from the last one.
fn fingerprint(value: &impl std::fmt::Debug) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{value:?}").hash(&mut hasher);
    hasher.finish()
}

/// One right-sizing pass over a Ready cluster. Returns whether work is under way (look
/// again soon).
pub(crate) async fn pass(
    client: &dialtone_kube::Client,
    sizer: Sizer<'_>,
    nodes: Vec<NodeView>,
    plan: &ClusterPlan,
    status: &mut ClusterStatus,
    now: Timestamp,
) -> Result<bool, KubeError> {
    let catalog = sizer.catalog;
    let observed = workload::observe(client, nodes).await?;
    let workers: Vec<&ClusterNode> = status
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Worker)
        .collect();
    let all_ready = workers
        .iter()
        .all(|w| node_of(&observed, w).is_some_and(|n| n.ready));
    let draining: Vec<(String, String)> = workers
        .iter()
        .filter_map(|w| {
            let node = node_of(&observed, w).filter(|n| n.disrupted)?;
            Some((w.name.clone(), node.name.clone()))
        })
        .collect();
    if !draining.is_empty() {
        if all_ready {
            drain(client, &observed, &draining, status, now).await?;
        }
        efficiency(
            status,
            now,
            false,
            "Consolidating",
            format!("draining {} worker(s) a decision removed", draining.len()),
        );
        return Ok(true);
    }
    let autoscaling = &plan.settings.autoscaling;
    if autoscaling.enabled && scale_up(&observed, plan, catalog, status, now) {
        efficiency(
            status,
            now,
            false,
            "ScalingUp",
            "pods wait for the workers just added".into(),
        );
        return Ok(true);
    }
    // While pods wait for a node, nothing is taken away.
    let waiting = observed.pods.iter().filter(|p| p.node.is_none()).count();
    if waiting > 0 {
        efficiency(
            status,
            now,
            false,
            "PodsWaiting",
            format!(
                "{waiting} pod(s) wait, and no worker the plan allows can take them now (see the PodsUnplaceable event)"
            ),
        );
        return Ok(false);
    }
    let consolidated = consolidate(client, sizer, &observed, plan, status, now).await?;
    let (holds, reason, message) = match consolidated {
        Consolidated::Moved(n) => (
            false,
            "Consolidating",
            format!("{n} cheaper move(s) decided now (see the decisions)"),
        ),
        Consolidated::Waiting(n) => (
            false,
            "Consolidating",
            format!(
                "{n} cheaper move(s) wait for their nodes to stay unneeded through the stabilization window"
            ),
        ),
        Consolidated::Nothing => (
            true,
            "NothingCheaper",
            format!(
                "nothing cheaper holds the pods under the {} consolidation policy",
                sizer.policy.name()
            ),
        ),
    };
    efficiency(status, now, holds, reason, message);
    Ok(matches!(consolidated, Consolidated::Moved(_)))
}

/// What consolidation found in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consolidated {
    /// Moves decided now.
    Moved(usize),
    /// Moves that wait for their nodes to stay unneeded longer.
    Waiting(usize),
    Nothing,
}

/// Sets `SizeEfficient`: whether right-sizing has nothing left to do.
fn efficiency(
    status: &mut ClusterStatus,
    now: Timestamp,
    holds: bool,
    reason: &str,
    message: String,
) {
    let state = if holds {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    set_condition(
        &mut status.conditions,
        ClusterCondition::SizeEfficient,
        state,
        reason,
        message,
        now,
    );
}

/// The node a worker slot's instance registered as.
fn node_of<'a>(observed: &'a Workload, slot: &ClusterNode) -> Option<&'a NodeView> {
    observed
        .nodes
        .iter()
        .find(|n| !slot.instance_id.is_empty() && n.instance_id == slot.instance_id)
}

/// Drains the disrupted workers, (slot, node name) pairs.
async fn drain(
    client: &dialtone_kube::Client,
    observed: &Workload,
    draining: &[(String, String)],
    status: &mut ClusterStatus,
    now: Timestamp,
) -> Result<(), KubeError> {
    for (slot, node) in draining {
        let pods: Vec<&PodView> = observed
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(node) && !is_daemon(p))
            .collect();
        if pods.is_empty() {
            status.nodes.retain(|n| n.name != *slot);
            record_event(
                status,
                now,
                false,
                "NodeRemoved",
                format!("{slot} ({node}) is drained; terminating its instance"),
            );
            continue;
        }
        evict(client, &pods, status, now, &format!("draining {slot}")).await?;
    }
    Ok(())
}

/// Evicts `pods` through `pods/eviction`; each one a budget refuses for now is an event
/// that says what the eviction was for (`doing`), and is tried again on a later pass.
pub(crate) async fn evict(
    client: &dialtone_kube::Client,
    pods: &[&PodView],
    status: &mut ClusterStatus,
    now: Timestamp,
    doing: &str,
) -> Result<(), KubeError> {
    for pod in pods {
        if let Evicted::Refused(message) =
            workload::evict(client, &pod.namespace, &pod.name).await?
        {
            record_event(
                status,
                now,
                false,
                "EvictionRefused",
                format!(
                    "{doing}: {}/{}: {message}; trying again",
                    pod.namespace, pod.name
                ),
            );
        }
    }
    Ok(())
}

/// Adds workers for the pods the scheduler could not place. Returns whether it did.
fn scale_up(
    observed: &Workload,
    plan: &ClusterPlan,
    catalog: &InstanceCatalog,
    status: &mut ClusterStatus,
    now: Timestamp,
) -> bool {
    let waiting: Vec<&PodView> = observed
        .pods
        .iter()
        .filter(|p| p.node.is_none() && p.unschedulable)
        .collect();
    if waiting.is_empty() {
        return false;
    }
    let started = Instant::now();
    let model = cost_model(plan, observed);
    let schedulable = schedulable_workers(observed, status, catalog, &model);
    let rules = rules_of(observed, plan, &schedulable);
    // Pods alike in requests and rules form a group; a zone rule then splits it by zone.
    let mut alike: Vec<(PodGroup, PodRules)> = Vec::new();
    let mut refused: BTreeMap<String, (u32, String)> = BTreeMap::new();
    let mut refuse = |reason: String, count: u32, example: String| {
        let entry = refused.entry(reason).or_insert((0, example));
        entry.0 += count;
    };
    for pod in &waiting {
        let pod_rules = match rules.of(pod) {
            Ok(r) => r,
            Err(reason) => {
                refuse(reason, 1, format!("{}/{}", pod.namespace, pod.name));
                continue;
            }
        };
        let requests = requests(pod);
        match alike
            .iter_mut()
            .find(|(g, r)| g.requests == requests && *r == pod_rules)
        {
            Some((g, _)) => g.count += 1,
            None => alike.push((
                PodGroup {
                    name: format!("{}/{}", pod.namespace, pod.name),
                    requests,
                    placement: pod_rules.placement.clone(),
                    count: 1,
                    per_node: pod_rules.per_node.as_ref().map(|(rule, _)| rule.clone()),
                    avoids: pod_rules.avoids.clone(),
                },
                pod_rules,
            )),
        }
    }
    // Groups that share a set share its tightest limit.
    let mut tightest: BTreeMap<String, u32> = BTreeMap::new();
    for rule in alike.iter().filter_map(|(g, _)| g.per_node.as_ref()) {
        let most = tightest.entry(rule.set.clone()).or_insert(rule.most);
        *most = (*most).min(rule.most);
    }
    for rule in alike.iter_mut().filter_map(|(g, _)| g.per_node.as_mut()) {
        rule.most = tightest[&rule.set];
    }
    let mut groups: Vec<PodGroup> = Vec::new();
    for (group, pod_rules) in &alike {
        let Some(zone_rule) = &pod_rules.zone_rule else {
            groups.push(group.clone());
            continue;
        };
        let (split, left) = rules.over_zones(group.clone(), zone_rule);
        groups.extend(split);
        if let Some((count, reason)) = left {
            refuse(reason, count, group.name.clone());
        }
    }
    let types = node_types(plan, catalog, &model);
    let workers = status
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Worker)
        .count();
    // Pods of each per-node set that every worker runs.
    let per_node_sets: Vec<&PodSet> = alike
        .iter()
        .filter_map(|(_, r)| r.per_node.as_ref().map(|(_, set)| set))
        .collect();
    let mut existing: Vec<ExistingNode> = schedulable.iter().map(Worker::existing).collect();
    for set in per_node_sets {
        for (slot, count) in rules.count_on_workers(set) {
            if let Some(node) = existing.iter_mut().find(|n| n.name == slot) {
                node.sets.insert(set.name(), count);
            }
        }
    }
    let snapshot = Snapshot {
        pending: groups,
        existing,
        types,
        zones: plan.workers.zones.clone(),
        spread_zones: plan.workers.zones.len() > 1,
        max_new_nodes: (plan.workers.max_nodes as usize).saturating_sub(workers),
    };
    let Decision {
        plan: decided,
        bound,
        bound_kind,
    } = decision::decide(&snapshot, PATTERN_BUDGET);
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    for unplaceable in &decided.unplaceable {
        let group = &snapshot.pending[unplaceable.group];
        refuse(
            format!(
                "({}m CPU, {} MiB) {}",
                group.requests.millicores, group.requests.memory_mib, unplaceable.reason
            ),
            unplaceable.count,
            group.name.clone(),
        );
    }
    if !refused.is_empty() {
        let message = refused
            .iter()
            .map(|(reason, (count, example))| format!("{count} pod(s) like {example}: {reason}"))
            .collect::<Vec<_>>()
            .join("; ");
        record_event(status, now, true, "PodsUnplaceable", message);
    }
    if decided.new_nodes.is_empty() {
        return false;
    }
    let added: Vec<ClusterNode> = decided
        .new_nodes
        .iter()
        .map(|n| new_slot(status, &n.instance_type, &n.zone))
        .collect();
    let cost = decided.usd_per_hour();
    let pods: u32 = snapshot.pending.iter().map(|g| g.count).sum();
    let ratio = if bound > 0.0 { cost / bound } else { 1.0 };
    record_decision(
        status,
        SizingDecision {
            time: now,
            action: "ScaleUp".into(),
            pods,
            message: format!(
                "{pods} pod(s) waiting: adding {} for {}; lower bound {} by {bound_kind} ({ratio:.2}×); each node less its daemon sets' {}m CPU and {} MiB{}; decided in {millis:.1} ms",
                decided.summary(),
                usd(cost),
                usd(bound),
                model.daemonsets.millicores,
                model.daemonsets.memory_mib,
                if model.allow_burstable {
                    ", burstable types at their full vCPUs"
                } else {
                    ""
                },
            ),
            added,
            removed: Vec::new(),
            usd_per_hour: cost,
            lower_bound_usd_per_hour: Some(bound),
            saves_usd_per_hour: None,
            millis,
        },
        false,
    );
    true
}

/// How pending pods' rules read the cluster and its schedulable workers.
fn rules_of<'a>(
    observed: &'a Workload,
    plan: &'a ClusterPlan,
    workers: &'a [Worker<'a>],
) -> Rules<'a> {
    Rules::new(
        observed,
        workers
            .iter()
            .map(|w| (w.slot.name.as_str(), w.node))
            .collect(),
        &plan.workers.architectures,
        &plan.workers.zones,
        &plan.region,
    )
}

/// How long a scale-up spends on packing patterns, for a cheaper plan and a tighter bound,
/// before it settles for what it has.
const PATTERN_BUDGET: Duration = Duration::from_millis(20);

/// A Ready, schedulable worker: its slot, its node and the pods on it.
struct Worker<'a> {
    slot: &'a ClusterNode,
    node: &'a NodeView,
    arch: Arch,
    allocatable: Resources,
    pods: Vec<&'a PodView>,
}

impl Worker<'_> {
    fn used(&self, which: impl Fn(&PodView) -> bool) -> Resources {
        self.pods
            .iter()
            .filter(|p| which(p))
            .fold(Resources::default(), |sum, p| sum.add(&requests(p)))
    }

    /// The worker as room for pending pods.
    fn existing(&self) -> ExistingNode {
        ExistingNode {
            name: self.slot.name.clone(),
            instance_type: self.slot.instance_type.clone(),
            arch: self.arch,
            zone: self.slot.zone.clone(),
            free: self.allocatable.saturating_sub(&self.used(|_| true)),
            sets: Default::default(),
        }
    }
}

/// The Ready, schedulable workers, each offering what the cost model says its type
/// sustains (a burstable node's kubelet offers its full vCPUs).
fn schedulable_workers<'a>(
    observed: &'a Workload,
    status: &'a ClusterStatus,
    catalog: &InstanceCatalog,
    model: &CostModel,
) -> Vec<Worker<'a>> {
    status
        .nodes
        .iter()
        .filter(|n| n.role == NodeRole::Worker)
        .filter_map(|slot| {
            let node = node_of(observed, slot).filter(|n| n.ready && !n.disrupted)?;
            let instance_type = catalog.get(&slot.instance_type)?;
            let (sustained, _, _) = instance_type.sustained_allocatable(model.allow_burstable);
            Some(Worker {
                slot,
                node,
                arch: instance_type.archs.first().copied()?,
                allocatable: Resources {
                    millicores: node.millicores.min(sustained),
                    memory_mib: node.memory_mib,
                    pods: node.pods,
                },
                pods: observed
                    .pods
                    .iter()
                    .filter(|p| p.node.as_deref() == Some(&node.name))
                    .collect(),
            })
        })
        .collect()
}

/// The Kubernetes release the cluster's nodes are to run.
fn release_of(plan: &ClusterPlan, status: &ClusterStatus) -> String {
    status
        .version
        .as_ref()
        .map_or_else(|| plan.kubernetes_version.clone(), |v| v.release.clone())
}

fn worker_version(status: &ClusterStatus, name: &str) -> String {
    status
        .nodes
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.kubernetes_version.clone())
        .unwrap_or_default()
}

async fn consolidate(
    client: &dialtone_kube::Client,
    sizer: Sizer<'_>,
    observed: &Workload,
    plan: &ClusterPlan,
    status: &mut ClusterStatus,
    now: Timestamp,
) -> Result<Consolidated, KubeError> {
    let Sizer {
        catalog,
        options,
        memory,
        cluster: key,
        policy,
    } = sizer;
    let started = Instant::now();
    let autoscaling = &plan.settings.autoscaling;
    // Off, consolidation still replaces the nodes an upgrade left on an older version.
    let consolidating = autoscaling.enabled && autoscaling.consolidation;
    let stabilization = options.second * autoscaling.scale_down_delay_seconds;
    let model = cost_model(plan, observed);
    let release = release_of(plan, status);
    let workers = schedulable_workers(observed, status, catalog, &model);
    let rules = rules_of(observed, plan, &workers);
    let nodes: Vec<RunningNode> = workers
        .iter()
        .map(|worker| {
            let movable: Vec<&PodView> = worker
                .pods
                .iter()
                .copied()
                .filter(|p| !is_daemon(p))
                .collect();
            // Where each pod may move. A pod with a zone rule stays in its zone, where the
            // rule counted it.
            let moves: Vec<Result<RunningPod, String>> = movable
                .iter()
                .map(|p| {
                    let mut r = rules.of(p)?;
                    if r.zone_rule.is_some() {
                        r.placement.zones = vec![worker.slot.zone.clone()];
                    }
                    Ok(RunningPod {
                        requests: requests(p),
                        placement: r.placement,
                        per_node: r.per_node.map(|(rule, _)| rule),
                        avoids: r.avoids,
                    })
                })
                .collect();
            let outdated = !worker.slot.kubernetes_version.is_empty()
                && worker.slot.kubernetes_version != release;
            // An upgrade does not wait for a node to settle; budgets it does respect.
            let young = !outdated && !workload::older_than(worker.node, now, stabilization);
            let keep = if !outdated && !consolidating {
                Some("consolidation is off (autoscaling)".to_string())
            } else if young {
                Some("it joined within the stabilization window".to_string())
            } else if let Some(pod) = movable.iter().find(|p| p.controller.is_none()) {
                Some(format!(
                    "{}/{} has no controller to recreate it",
                    pod.namespace, pod.name
                ))
            } else if let Some((pod, Err(why))) =
                movable.iter().zip(&moves).find(|(_, m)| m.is_err())
            {
                Some(format!("{}/{} cannot move: {why}", pod.namespace, pod.name))
            } else {
                movable.iter().find_map(|pod| {
                    observed
                        .budgets
                        .iter()
                        .find(|b| b.covers(pod) && b.disruptions_allowed <= 0)
                        .map(|b| {
                            format!(
                                "disruption budget {}/{} allows no eviction",
                                b.namespace, b.name
                            )
                        })
                })
            };
            RunningNode {
                name: worker.slot.name.clone(),
                instance_type: worker.slot.instance_type.clone(),
                arch: worker.arch,
                zone: worker.slot.zone.clone(),
                usd_per_hour: catalog
                    .get(&worker.slot.instance_type)
                    .map_or(0.0, |t| model.node_price(t)),
                room: worker.allocatable.saturating_sub(&worker.used(is_daemon)),
                pods: moves.into_iter().flatten().collect(),
                keep,
                draining: false,
                outdated,
            }
        })
        .collect();
    // The cluster's names of the nodes, for the disruptions.
    let node_names: Vec<String> = workers.iter().map(|w| w.node.name.clone()).collect();
    let budget = (nodes.len() * options.budget_percent / 100).max(1);
    let input = fingerprint(&(
        &nodes,
        &plan.workers,
        budget,
        options.min_saving.to_bits(),
        policy,
    ));
    if memory.holds(key, input) {
        return Ok(Consolidated::Nothing);
    }
    let types = node_types(plan, catalog, &model);
    // A policy that waits weighs every move each pass, and takes those that waited.
    let proposed = consolidate::consolidate(&consolidate::Cluster {
        nodes: &nodes,
        types: &types,
        zones: &plan.workers.zones,
        spread_zones: plan.workers.zones.len() > 1,
        min_nodes: plan.workers.min_nodes as usize,
        max_nodes: plan.workers.max_nodes as usize,
        budget: if policy.waits() {
            budget * consolidate::PROPOSED_PER_DISRUPTION
        } else {
            budget
        },
        min_saving: options.min_saving,
        policy,
        orders: consolidate::PodOrders::Either,
    });
    if proposed.is_empty() {
        memory.remember(key, input);
    }
    let patience = if policy.waits() {
        stabilization
    } else {
        Duration::ZERO
    };
    let candidates = proposed.len();
    let actions = memory.ripe(key, proposed, &nodes, now, patience, budget);
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    for action in &actions {
        let removed_names = action.nodes();
        let mut removed: Vec<&RunningNode> = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if removed_names.contains(&node.name.as_str()) {
                workload::mark_disrupted(client, &node_names[i]).await?;
                removed.push(node);
            }
        }
        let verb = match action {
            Action::Delete { .. } => "Delete",
            Action::Replace { .. } => "Replace",
            Action::Merge { .. } => "Merge",
            Action::Upgrade { .. } => "Upgrade",
        };
        let with = action.new_nodes();
        let added: Vec<ClusterNode> = with
            .iter()
            .map(|n| new_slot(status, &n.instance_type, &n.zone))
            .collect();
        let cost = with.iter().fold(0.0, |s, n| s + n.usd_per_hour);
        let described: Vec<String> = removed
            .iter()
            .map(|node| {
                let why = match action {
                    Action::Upgrade { .. } => format!(
                        "it runs Kubernetes {}, the cluster {}",
                        worker_version(status, &node.name),
                        release_of(plan, status)
                    ),
                    _ => format!("{:.0} % used", node.utilization() * 100.0),
                };
                format!(
                    "{} ({}, {}, {why})",
                    node.name,
                    node.instance_type,
                    usd(node.usd_per_hour)
                )
            })
            .collect();
        let (is, its, it) = match removed.len() {
            1 => ("is", "its", "it"),
            _ => ("are", "their", "them"),
        };
        let instead = if added.is_empty() {
            format!("{its} pods fit on the other nodes")
        } else {
            let names: Vec<String> = added
                .iter()
                .map(|n| format!("{} ({}, {})", n.name, n.instance_type, n.zone))
                .collect();
            format!("replacing {it} with {} for {}", names.join(", "), usd(cost))
        };
        record_decision(
            status,
            SizingDecision {
                time: now,
                action: verb.into(),
                pods: removed.iter().map(|n| n.pods.len() as u32).sum(),
                message: format!(
                    "{} {is} removed: {instead}; {}, by {} consolidation; decided in {millis:.1} ms",
                    described.join(", "),
                    match action.saves_usd_per_hour() {
                        saves if saves < 0.0 => format!("costs {} more", usd(-saves)),
                        saves => format!("saves {}", usd(saves)),
                    },
                    policy.name(),
                ),
                added,
                removed: removed.iter().map(|n| n.name.clone()).collect(),
                usd_per_hour: cost,
                lower_bound_usd_per_hour: None,
                saves_usd_per_hour: Some(action.saves_usd_per_hour()),
                millis,
            },
            false,
        );
    }
    Ok(match (candidates, actions.len()) {
        (0, _) => Consolidated::Nothing,
        (n, 0) => Consolidated::Waiting(n),
        (_, moved) => Consolidated::Moved(moved),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, control_plane: bool) -> NodeView {
        NodeView {
            name: name.into(),
            instance_id: format!("i-{name}"),
            ready: true,
            control_plane,
            disrupted: false,
            millicores: 2000,
            memory_mib: 4096,
            pods: 110,
            created: None,
            labels: Default::default(),
            taints: Vec::new(),
        }
    }

    fn pod(name: &str, node: &str, controller: &str, millicores: u64, memory_mib: u64) -> PodView {
        PodView {
            namespace: "kube-system".into(),
            name: name.into(),
            node: Some(node.into()),
            unschedulable: false,
            millicores,
            memory_mib,
            node_selector: BTreeMap::new(),
            labels: BTreeMap::new(),
            controller: Some(controller.into()),
            finished: false,
            node_affinity: Vec::new(),
            tolerations: Vec::new(),
            anti_affinity: Vec::new(),
            spread: Vec::new(),
        }
    }

    #[test]
    fn new_workers_are_planned_less_the_daemon_sets_the_cluster_runs() {
        let observed = Workload {
            nodes: vec![node("cp", true), node("w1", false), node("w2", false)],
            pods: vec![
                // The control plane's daemons do not land on workers.
                pod("cp-agent", "cp", "DaemonSet", 900, 900),
                pod("agent-1", "w1", "DaemonSet", 100, 128),
                pod("logs-1", "w1", "DaemonSet", 50, 256),
                pod("agent-2", "w2", "DaemonSet", 100, 128),
                pod("web", "w2", "ReplicaSet", 500, 512),
            ],
            budgets: Vec::new(),
        };
        assert_eq!(
            daemon_overhead(&observed),
            Resources {
                millicores: 150,
                memory_mib: 384,
                pods: 2,
            }
        );
        // A new m6i.large has that much less room for pods.
        let catalog = InstanceCatalog::builtin();
        let large = || catalog.iter().filter(|t| t.name == "m6i.large").cloned();
        let zones = ["us-east-1a".to_string()];
        let bare = &dialtone_sizing::node_types(large(), &zones, &CostModel::default())[0];
        let model = CostModel {
            daemonsets: daemon_overhead(&observed),
            ..CostModel::default()
        };
        let planned = &dialtone_sizing::node_types(large(), &zones, &model)[0];
        assert_eq!(planned.room.millicores, bare.room.millicores - 150);
        assert_eq!(planned.room.memory_mib, bare.room.memory_mib - 384);
    }
}
