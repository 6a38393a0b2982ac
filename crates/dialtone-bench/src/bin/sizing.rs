//! `sizing`: right-sizing decisions on workload files. For each workload it prints the hourly
//! cost of Dialtone's plan and of three baselines (the Karpenter-style one on every allowed
//! type, the same on Karpenter's recommended NodePool, first-fit decreasing), the best
//! proven lower bound (the resource bound or the pattern bound), their ratios, and the
//! decision latency (p50/p99 over repeated runs on one core).
//!
//! `cargo run --release -p dialtone-bench --bin sizing` runs every file in
//! `crates/dialtone-bench/workloads/`; `… --bin sizing -- generate` writes those files again
//! from their generators (deterministic seeds); `… --bin sizing -- replay` replays a day of a
//! varying workload and prints actions and cost hour by hour.
//!
//! A workload file is JSON:
//! `{"catalog": {"filter": "general-purpose"} | {"types": ["m7i.large", …]},
//!   "daemonsets": {"millicores", "memoryMib", "pods"}, "zones": [...], "spreadZones": bool,
//!   "maxNewNodes": n, "existing": [{"instanceType", "zone", "free": {…}, "count"}],
//!   "pods": [{"name", "requests": {"millicores", "memoryMib", "pods": 1}, "placement":
//!   {"arch", "zones"}, "count", "perNode": {"set", "most"}}]}`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use dialtone_cloud::{Arch, InstanceCatalog, InstanceType};
use dialtone_sizing::consolidate::{PodOrders, Policy, RunningPod};
use dialtone_sizing::decision::decide;
use dialtone_sizing::patterns::pattern_bound;
use dialtone_sizing::simulation::SimCluster;
use dialtone_sizing::{
    CostModel, ExistingNode, PerNode, Placement, Plan, PodGroup, Resources, Snapshot, bound, ffd,
    karpenter, node_types,
};
use dialtone_types::settings::DiskType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Right-sizing decisions against a Karpenter-style baseline and a lower bound")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Workload files (default: every file in crates/dialtone-bench/workloads).
    files: Vec<PathBuf>,
    /// Decisions timed per workload.
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Also print the nodes each plan adds.
    #[arg(long)]
    explain: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the shipped workload files from their generators.
    Generate {
        #[arg(long, default_value = "crates/dialtone-bench/workloads")]
        out: PathBuf,
    },
    /// Replays a day of a varying workload on a cluster in miniature, a decision every
    /// `step-minutes`, and prints actions and cost hour by hour.
    Replay {
        #[arg(long, default_value_t = 24)]
        hours: u64,
        #[arg(long, default_value_t = 1)]
        step_minutes: u64,
        /// Hours at the end during which the workload holds still.
        #[arg(long, default_value_t = 3)]
        steady_hours: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum CatalogChoice {
    /// `general-purpose`: current-generation types without GPUs or other accelerators,
    /// not bare metal.
    Filter(String),
    Types(Vec<String>),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExistingGroup {
    instance_type: String,
    zone: String,
    free: Resources,
    count: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Workload {
    description: String,
    catalog: CatalogChoice,
    daemonsets: Resources,
    zones: Vec<String>,
    spread_zones: bool,
    max_new_nodes: usize,
    existing: Vec<ExistingGroup>,
    pods: Vec<PodGroup>,
    /// The architectures for pods that name none, as a cluster's spec says them.
    #[serde(default = "amd64")]
    architectures: Vec<Arch>,
    /// Whether burstable types count at their full vCPUs.
    #[serde(default)]
    allow_burstable: bool,
    /// What a node costs beside its instance; a developer worker's root volume when absent.
    #[serde(default = "root_volume")]
    per_node_usd_per_hour: f64,
}

fn amd64() -> Vec<Arch> {
    vec![Arch::X86_64]
}

/// A developer worker's root volume: 50 GiB of gp3.
fn root_volume() -> f64 {
    dialtone_cloud::volumes::usd_per_hour(DiskType::Gp3, 50)
}

/// The cost model clusters get by default: amd64 for pods that name no architecture,
/// burstable types at their baseline, every node's root volume counted.
fn default_model() -> CostModel {
    CostModel {
        allow_burstable: false,
        daemonsets: Resources::default(),
        per_node_usd_per_hour: root_volume(),
    }
}

fn general_purpose(t: &InstanceType) -> bool {
    t.current_generation && !t.accelerated() && !t.bare_metal
}

impl Workload {
    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let catalog = InstanceCatalog::builtin();
        let chosen: Vec<InstanceType> = match &self.catalog {
            CatalogChoice::Filter(f) if f == "general-purpose" => catalog
                .iter()
                .filter(|t| general_purpose(t))
                .cloned()
                .collect(),
            CatalogChoice::Filter(other) => {
                bail!("unknown catalogue filter {other:?}; the filter is general-purpose")
            }
            CatalogChoice::Types(names) => names
                .iter()
                .map(|n| {
                    catalog
                        .get(n)
                        .cloned()
                        .with_context(|| format!("no instance type {n:?} in the catalogue"))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let model = CostModel {
            allow_burstable: self.allow_burstable,
            daemonsets: self.daemonsets,
            per_node_usd_per_hour: self.per_node_usd_per_hour,
        };
        let types = node_types(chosen, &self.zones, &model);
        if types.is_empty() {
            bail!(
                "no instance type is left after the catalogue filter, the zones and the daemonsets"
            );
        }
        let mut existing = Vec::new();
        for group in &self.existing {
            let t = catalog.get(&group.instance_type).with_context(|| {
                format!("existing nodes of unknown type {:?}", group.instance_type)
            })?;
            for i in 0..group.count {
                existing.push(ExistingNode {
                    name: format!("{}-{}-{i}", group.instance_type, group.zone),
                    instance_type: group.instance_type.clone(),
                    arch: *t.archs.first().unwrap_or(&Arch::X86_64),
                    zone: group.zone.clone(),
                    free: group.free,
                    sets: Default::default(),
                });
            }
        }
        for pod in &self.pods {
            if pod.requests.pods != 1 {
                bail!(
                    "pod group {:?}: requests.pods must be 1 (one slot per pod)",
                    pod.name
                );
            }
        }
        let mut pending = self.pods.clone();
        if let [only] = self.architectures[..] {
            for group in pending.iter_mut().filter(|g| g.placement.arch.is_none()) {
                group.placement.arch = Some(only);
            }
        }
        Ok(Snapshot {
            pending,
            existing,
            types,
            zones: self.zones.clone(),
            spread_zones: self.spread_zones,
            max_new_nodes: self.max_new_nodes,
        })
    }
}

/// How long the benchmark lets column generation run per workload before it settles for
/// Farley's bound.
const PATTERN_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// What a decision may spend on packing patterns, as the controller's does.
const DECISION_BUDGET: std::time::Duration = std::time::Duration::from_millis(20);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(files: &[PathBuf], runs: usize, explain: bool) -> anyhow::Result<()> {
    println!(
        "{:<30} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "workload",
        "pods",
        "dialtone",
        "karpenter",
        "k-pool",
        "ffd",
        "bound",
        "d/bound",
        "k/bound",
        "kp/bnd",
        "ffd/bnd",
        "p50 ms",
        "p99 ms"
    );
    let mut ratios = Vec::new();
    let mut beaten = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
        let workload: Workload = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a workload file", file.display()))?;
        let snapshot = workload
            .snapshot()
            .with_context(|| format!("{}", file.display()))?;
        let mut times = Vec::new();
        let mut decided = None;
        for _ in 0..runs {
            let start = Instant::now();
            decided = Some(decide(&snapshot, DECISION_BUDGET));
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let decided = decided.context("at least one run")?;
        let plan = decided.plan;
        times.sort_by(f64::total_cmp);
        let baselines = [
            ("karpenter", karpenter::plan(&snapshot)),
            (
                "karpenter, recommended NodePool",
                karpenter::plan(&karpenter::recommended_node_pool(&snapshot)),
            ),
            ("first-fit decreasing", ffd::plan(&snapshot)),
        ];
        let resources = bound::lower_bound(&snapshot);
        let started = Instant::now();
        let patterns = pattern_bound(&snapshot, &plan, started + PATTERN_BUDGET);
        let pattern_s = started.elapsed().as_secs_f64();
        let bound = patterns
            .as_ref()
            .map_or(resources, |p| p.usd_per_hour.max(resources))
            .max(decided.bound);
        let pods: u32 = snapshot.pending.iter().map(|g| g.count).sum();
        let d = plan.usd_per_hour();
        let ratio = |cost: f64| if bound > 0.0 { cost / bound } else { 1.0 };
        let unplaced =
            |p: &dialtone_sizing::Plan| p.unplaceable.iter().map(|u| u.count).sum::<u32>();
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        println!(
            "{:<30} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.1} {:>7.1}",
            name,
            pods,
            d,
            baselines[0].1.usd_per_hour(),
            baselines[1].1.usd_per_hour(),
            baselines[2].1.usd_per_hour(),
            bound,
            ratio(d),
            ratio(baselines[0].1.usd_per_hour()),
            ratio(baselines[1].1.usd_per_hour()),
            ratio(baselines[2].1.usd_per_hour()),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
        );
        println!(
            "    bound: resources {resources:.2}, decision's {:.2} by {}, patterns {} ({pattern_s:.1} s)",
            decided.bound,
            decided.bound_kind,
            match &patterns {
                Some(p) => format!(
                    "{:.2}, {} after {} rounds and {} patterns",
                    p.usd_per_hour,
                    if p.converged {
                        "converged"
                    } else {
                        "stopped (Farley's bound)"
                    },
                    p.rounds,
                    p.patterns
                ),
                None => "none: the plan leaves pods pending".into(),
            }
        );
        for (label, baseline) in &baselines {
            if unplaced(baseline) > unplaced(&plan) {
                println!("    {label} leaves {} pods pending", unplaced(baseline));
            } else if baseline.usd_per_hour() < d - 1e-9 {
                println!("    {label} costs less than Dialtone");
                beaten.push(format!("{name} by {label}"));
            }
        }
        if unplaced(&plan) > 0 {
            println!("    dialtone leaves {} pods pending", unplaced(&plan));
        }
        if explain {
            println!("    dialtone:  {}", plan.summary());
            for (label, baseline) in &baselines {
                println!("    {label}: {}", baseline.summary());
            }
        }
        if bound > 0.0 {
            ratios.push(d / bound);
        }
    }
    ratios.sort_by(f64::total_cmp);
    if !ratios.is_empty() {
        println!(
            "median Dialtone / best bound: {:.3}; worst: {:.3} ({} workloads, {} types in the general-purpose catalogue)",
            percentile(&ratios, 0.5),
            ratios[ratios.len() - 1],
            ratios.len(),
            InstanceCatalog::builtin()
                .iter()
                .filter(|t| general_purpose(t))
                .count()
        );
    }
    if beaten.is_empty() {
        println!("Dialtone costs no more than any baseline on every workload");
    } else {
        println!("Dialtone is beaten on: {}", beaten.join(", "));
    }
    Ok(())
}

// --- Generators -------------------------------------------------------------------------

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn group(name: String, millicores: u64, memory_mib: u64, count: u32) -> PodGroup {
    PodGroup {
        name,
        requests: Resources {
            millicores,
            memory_mib,
            pods: 1,
        },
        placement: Placement::default(),
        count,
        per_node: None,
        avoids: Default::default(),
    }
}

/// Pods drawn one by one from the distributions given, merged by shape.
fn sample(rng: &mut StdRng, count: u32, cpu: &[u64], memory: &[u64]) -> Vec<PodGroup> {
    let mut shapes: std::collections::BTreeMap<(u64, u64), u32> = Default::default();
    for _ in 0..count {
        let c = cpu[rng.random_range(0..cpu.len())];
        let m = memory[rng.random_range(0..memory.len())];
        *shapes.entry((c, m)).or_default() += 1;
    }
    shapes
        .into_iter()
        .map(|((c, m), n)| group(format!("{c}m-{m}Mi"), c, m, n))
        .collect()
}

/// 2,000 nodes a cluster already runs, with some room left on each.
fn existing_fleet(rng: &mut StdRng) -> Vec<ExistingGroup> {
    let mut groups = Vec::new();
    for (t, share) in [
        ("m7i.xlarge", 800),
        ("c7i.2xlarge", 500),
        ("r7i.xlarge", 400),
        ("m7g.2xlarge", 300),
    ] {
        for zone in ZONES {
            let per_zone = share / 3 + u32::from(zone == ZONES[0]) * (share % 3);
            // A few room profiles per type: from nearly full to a quarter free.
            for (i, part) in [
                per_zone / 2,
                per_zone / 4,
                per_zone - per_zone / 2 - per_zone / 4,
            ]
            .into_iter()
            .enumerate()
            {
                let millicores = [150, 400, 900][i] + rng.random_range(0..50);
                let memory_mib = [256, 1024, 3072][i] + rng.random_range(0..128);
                groups.push(ExistingGroup {
                    instance_type: t.into(),
                    zone: zone.into(),
                    free: Resources {
                        millicores,
                        memory_mib,
                        pods: [2, 6, 12][i],
                    },
                    count: part,
                });
            }
        }
    }
    groups
}

fn generate(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let light_daemonsets = Resources {
        millicores: 150,
        memory_mib: 300,
        pods: 3,
    };
    let mut workloads: Vec<(&str, String, Resources, Vec<PodGroup>)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(1);
    // Karpenter's scheduling benchmark draws CPU and memory independently from these
    // (makeGenericPods); a fifth of its pods spread over zones, pinned here to each zone.
    let mut diverse = sample(
        &mut rng,
        8_000,
        &[100, 250, 500, 1000, 1500],
        &[100, 256, 512, 1024, 2048, 4096],
    );
    for zone in ZONES {
        for mut g in sample(
            &mut rng,
            667,
            &[100, 250, 500, 1000, 1500],
            &[100, 256, 512, 1024, 2048, 4096],
        ) {
            g.name = format!("{}-{zone}", g.name);
            g.placement.zones = vec![zone.into()];
            diverse.push(g);
        }
    }
    workloads.push((
        "karpenter-diverse",
        "Karpenter's diverse-pods distribution, 10,000 pods".into(),
        light_daemonsets,
        diverse,
    ));
    // 50 deployment shapes, 10,000 pods: requests as teams set them, counts skewed.
    let mut deployments = Vec::new();
    let cpus = [100, 200, 250, 500, 750, 1000, 1500, 2000, 4000];
    let gib_per_cpu = [1, 2, 4, 8];
    let weights: Vec<f64> = (1..=50).map(|i| 1.0 / i as f64).collect();
    let total: f64 = weights.iter().sum();
    for (i, w) in weights.iter().enumerate() {
        let cpu = cpus[rng.random_range(0..cpus.len())];
        let memory = cpu * gib_per_cpu[rng.random_range(0..gib_per_cpu.len())] * 1024 / 1000;
        let mut d = group(
            format!("deploy-{i}"),
            cpu,
            memory.max(64),
            ((w / total) * 10_000.0).round().max(1.0) as u32,
        );
        if i % 10 == 3 {
            d.placement.arch = Some(Arch::Arm64);
        }
        deployments.push(d);
    }
    workloads.push((
        "deployments-50",
        "50 deployment shapes, about 10,000 pods, a tenth arm64-only".into(),
        light_daemonsets,
        deployments,
    ));
    workloads.push((
        "memory-heavy",
        "10,000 pods of 250m–1 CPU with 4–16 GiB".into(),
        light_daemonsets,
        sample(
            &mut rng,
            10_000,
            &[250, 500, 1000],
            &[4096, 8192, 12288, 16384],
        ),
    ));
    workloads.push((
        "cpu-heavy",
        "10,000 pods of 2–8 CPU with 0.5–2 GiB".into(),
        light_daemonsets,
        sample(&mut rng, 10_000, &[2000, 4000, 8000], &[512, 1024, 2048]),
    ));
    workloads.push((
        "bimodal",
        "5,000 tiny and 5,000 large pods".into(),
        light_daemonsets,
        vec![
            group("tiny".into(), 100, 128, 5_000),
            group("large".into(), 8_000, 32_768, 5_000),
        ],
    ));
    workloads.push((
        "tiny-max-pods",
        "10,000 pods of 10m / 16 MiB: max pods per node binds".into(),
        light_daemonsets,
        vec![group("tiny".into(), 10, 16, 10_000)],
    ));
    workloads.push((
        "heavy-daemonsets",
        "Karpenter's distribution under 1 CPU / 2 GiB / 6 pods of daemonsets per node".into(),
        Resources {
            millicores: 1000,
            memory_mib: 2048,
            pods: 6,
        },
        sample(
            &mut rng,
            10_000,
            &[100, 250, 500, 1000, 1500],
            &[100, 256, 512, 1024, 2048, 4096],
        ),
    ));
    workloads.push((
        "kept-apart",
        "40 deployment shapes, about 10,000 pods; a third one per node (anti-affinity by host), a third at most two per node (spread by host)".into(),
        light_daemonsets,
        kept_apart(),
    ));
    for (name, description, daemonsets, pods) in workloads {
        for with_existing in [false, true] {
            let workload = Workload {
                description: if with_existing {
                    format!("{description}; 2,000 existing nodes with room left")
                } else {
                    description.clone()
                },
                catalog: CatalogChoice::Filter("general-purpose".into()),
                daemonsets,
                zones: ZONES.iter().map(|z| z.to_string()).collect(),
                spread_zones: false,
                max_new_nodes: 5_000,
                existing: if with_existing {
                    existing_fleet(&mut rng)
                } else {
                    Vec::new()
                },
                pods: pods.clone(),
                architectures: amd64(),
                allow_burstable: false,
                per_node_usd_per_hour: root_volume(),
            };
            let file = out.join(format!(
                "{name}{}.json",
                if with_existing { "-2000-nodes" } else { "" }
            ));
            std::fs::write(&file, serde_json::to_string_pretty(&workload)?)?;
            println!("wrote {}", file.display());
        }
    }
    Ok(())
}

/// Deployments whose pods keep apart: one a node, at most two a node, or free; drawn from
/// a generator of its own, so that adding it left the other files as they were.
fn kept_apart() -> Vec<PodGroup> {
    let mut rng = StdRng::seed_from_u64(2);
    let cpus = [100, 250, 500, 1000, 2000];
    let gib_per_cpu = [1, 2, 4];
    let weights: Vec<f64> = (1..=40).map(|i| 1.0 / (i as f64).sqrt()).collect();
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let cpu = cpus[rng.random_range(0..cpus.len())];
            let memory = cpu * gib_per_cpu[rng.random_range(0..gib_per_cpu.len())] * 1024 / 1000;
            let name = format!("deploy-{i}");
            let mut d = group(
                name.clone(),
                cpu,
                memory.max(64),
                ((w / total) * 10_000.0).round().max(1.0) as u32,
            );
            d.per_node = match i % 3 {
                0 => Some(PerNode { set: name, most: 1 }),
                1 => Some(PerNode { set: name, most: 2 }),
                _ => None,
            };
            d
        })
        .collect()
}

/// One deployment of the replay: its pods, and replicas that follow the day.
struct Deployment {
    pod: RunningPod,
    base: f64,
    amplitude: f64,
    peak_hour: f64,
}

impl Deployment {
    fn replicas(&self, hour: f64, rng: &mut StdRng) -> usize {
        let phase = (hour - self.peak_hour) / 24.0 * std::f64::consts::TAU;
        let noise = rng.random_range(0.95..1.05);
        (self.base * (1.0 + self.amplitude * phase.cos()) * noise)
            .round()
            .max(0.0) as usize
    }
}

/// A day of about 50 deployments whose replicas rise and fall with the day (peaks spread
/// over the afternoon, ±5 % noise a step), on a developer-sized catalogue in one zone: the
/// cluster as Dialtone's controller runs it (scale-up, consolidation disrupting a tenth of
/// the nodes at a time, a five-minute stabilization window) against the Karpenter-style baseline
/// (provisioning, and removal of empty nodes only).
fn replay(hours: u64, step_minutes: u64, steady_hours: u64, seed: u64) -> anyhow::Result<()> {
    let zones = vec!["us-east-1a".to_string()];
    let catalog = InstanceCatalog::builtin()
        .iter()
        .filter(|t| general_purpose(t))
        .cloned();
    let types = node_types(catalog, &zones, &default_model());
    let mut rng = StdRng::seed_from_u64(seed);
    let deployments: Vec<Deployment> = (0..50)
        .map(|_| Deployment {
            pod: RunningPod {
                requests: Resources {
                    millicores: [100, 250, 500, 1000, 2000][rng.random_range(0..5)],
                    memory_mib: [128, 256, 512, 1024, 2048, 4096][rng.random_range(0..6)],
                    pods: 1,
                },
                placement: Placement::default(),
                per_node: None,
                avoids: Default::default(),
            },
            base: rng.random_range(2.0..30.0),
            amplitude: rng.random_range(0.2..0.9),
            peak_hour: rng.random_range(12.0..18.0),
        })
        .collect();
    let steps_per_hour = (60 / step_minutes).max(1);
    // Dialtone's controller (balanced consolidation, a five-minute stabilization window)
    // against Karpenter's provisioning with its two consolidation policies, the default
    // WhenEmptyOrUnderutilized taking any saving (its replacements packed as Dialtone packs
    // them, which only makes it cheaper) and WhenEmpty.
    let stabilization = (5 / step_minutes).max(1);
    let cluster = |planner: fn(&Snapshot) -> Plan, policy, orders| {
        let mut sim = SimCluster::new(types.clone(), zones.clone(), 1_000);
        sim.stabilization = stabilization;
        sim.planner = planner;
        sim.policy = policy;
        sim.orders = orders;
        sim
    };
    let mut clusters = [
        (
            "dialtone (balanced)",
            cluster(dialtone_sizing::plan, Policy::Balanced, PodOrders::Either),
        ),
        (
            "karpenter (underutilized)",
            // Karpenter checks a move with its scheduling simulation, pods biggest first.
            cluster(karpenter::plan, Policy::Aggressive, PodOrders::BiggestFirst),
        ),
        (
            "karpenter (empty)",
            cluster(karpenter::plan, Policy::WhenEmpty, PodOrders::BiggestFirst),
        ),
    ];
    let mut current = vec![0usize; deployments.len()];
    println!(
        "{:>4}  {:>5}  {:>5}  {:>10}  {:>7}  {:>7}  {:>10}  {:>7}  {:>10}  {:>10}  {:>6}",
        "hour",
        "pods",
        "nodes",
        "dialtone",
        "actions",
        "evicted",
        "k-underut",
        "evicted",
        "k-empty",
        "bound",
        "ratio"
    );
    let mut usd = [0.0f64; 3];
    let mut evicted = [0usize; 3];
    let mut bound_usd = 0.0;
    let mut actions_per_hour = Vec::new();
    let mut steady_actions = 0;
    for hour in 0..hours + steady_hours {
        let mut actions = 0;
        let mut hour_evicted = [0usize; 3];
        for step in 0..steps_per_hour {
            let steady = hour >= hours;
            if !steady {
                let time = hour as f64 + step as f64 / steps_per_hour as f64;
                for (i, d) in deployments.iter().enumerate() {
                    let want = d.replicas(time, &mut rng);
                    for (_, sim) in clusters.iter_mut() {
                        if want > current[i] {
                            sim.add_pods(&d.pod, want - current[i]);
                        } else {
                            sim.remove_pods(&d.pod, current[i] - want);
                        }
                    }
                    current[i] = want;
                }
            }
            for (c, (_, sim)) in clusters.iter_mut().enumerate() {
                // Karpenter's default disruption budget: a tenth of the nodes at a time.
                sim.budget = (sim.nodes.len() / 10).max(1);
                let done = sim.step();
                hour_evicted[c] += done.evicted;
                if !steady {
                    evicted[c] += done.evicted;
                }
                if c == 0 {
                    actions += done.actions();
                    if steady {
                        steady_actions += done.actions();
                    }
                }
                usd[c] += sim.usd_per_hour() / steps_per_hour as f64;
            }
        }
        let dialtone = &clusters[0].1;
        // The bound for the hour's last pods, placed from scratch.
        let mut everything = SimCluster::new(types.clone(), zones.clone(), 1_000);
        for node in &dialtone.nodes {
            for pod in &node.pods {
                everything.add_pods(pod, 1);
            }
        }
        let (snapshot, _) = everything.scale_up_plan();
        let bound = bound::lower_bound(&snapshot);
        bound_usd += bound;
        actions_per_hour.push(actions);
        println!(
            "{:>4}  {:>5}  {:>5}  {:>8.2}/h  {:>7}  {:>7}  {:>8.2}/h  {:>7}  {:>8.2}/h  {:>8.2}/h  {:>6.2}",
            hour,
            dialtone.running_pods() + dialtone.pending.len(),
            dialtone.nodes.len(),
            dialtone.usd_per_hour(),
            actions,
            hour_evicted[0],
            clusters[1].1.usd_per_hour(),
            hour_evicted[1],
            clusters[2].1.usd_per_hour(),
            bound,
            dialtone.usd_per_hour() / bound.max(1e-9),
        );
    }
    println!();
    let per_day = 24.0 / hours.max(1) as f64;
    for (c, (name, _)) in clusters.iter().enumerate() {
        println!(
            "{name:<26} ${:>8.2} over {hours} h ({:.2}× Dialtone's), {:.0} evictions a day",
            usd[c],
            usd[c] / usd[0].max(1e-9),
            evicted[c] as f64 * per_day
        );
    }
    let moving = &actions_per_hour[..hours as usize];
    println!(
        "sum of hourly bounds ${bound_usd:.2}; Dialtone's actions per hour: mean {:.1}, most {}; while the workload held still for {steady_hours} h: {steady_actions}",
        moving.iter().sum::<usize>() as f64 / moving.len().max(1) as f64,
        moving.iter().max().unwrap_or(&0)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Command::Generate { out }) => generate(out),
        Some(Command::Replay {
            hours,
            step_minutes,
            steady_hours,
            seed,
        }) => replay(*hours, (*step_minutes).max(1), *steady_hours, *seed),
        None => {
            let files = if args.files.is_empty() {
                let dir = Path::new("crates/dialtone-bench/workloads");
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .with_context(|| {
                        format!(
                            "{}: run from the repository root, or name files",
                            dir.display()
                        )
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "json"))
                    .collect();
                files.sort();
                files
            } else {
                args.files.clone()
            };
            run(&files, args.runs.max(1), args.explain)
        }
    }
}
