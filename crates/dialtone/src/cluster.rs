//! `dialtone cluster …` and `dialtone sim …`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use dialtone_client::{Client, ClientError, Context};
use dialtone_types::kinds::CLUSTER;
use dialtone_types::{Reason, ResourcePath};
use serde_json::{Value, json};

use crate::cli::{
    AccountCommand, ClusterCommand, ClusterCreateArgs, FaultCommand, ListArgs, NounCommand,
    ObjectArgs, Output, PeeringCommand, SimCommand, VpcCommand,
};
use crate::exec_credential;
use crate::kubeconfig::Auth;
use crate::output::{age, labels, print_table, print_value};
use crate::tree::{self, api_path, resolve};

const WAIT_POLL: Duration = Duration::from_millis(500);

fn labels_of(args: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut labels = serde_json::Map::new();
    for label in args {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label `{label}` must be key=value"))?;
        labels.insert(k.to_string(), json!(v));
    }
    Ok(labels)
}

fn create_body(args: &ClusterCreateArgs) -> anyhow::Result<Value> {
    let mut spec = json!({"type": args.cluster_type, "region": args.region});
    if let Some(v) = &args.kubernetes_version {
        spec["kubernetesVersion"] = json!(v);
    }
    if let Some(n) = args.min_nodes {
        spec["minNodes"] = json!(n);
    }
    if let Some(n) = args.max_nodes {
        spec["maxNodes"] = json!(n);
    }
    if !args.allowed_families.is_empty() {
        spec["allowedFamilies"] = json!(args.allowed_families);
    }
    if !args.excluded_families.is_empty() {
        spec["excludedFamilies"] = json!(args.excluded_families);
    }
    if !args.architectures.is_empty() {
        spec["architectures"] = json!(args.architectures);
    }
    if let Some(on) = args.allow_burstable {
        spec["allowBurstable"] = json!(on);
    }
    if let Some(policy) = &args.consolidation {
        spec["consolidation"] = json!(policy);
    }
    if let Some(on) = args.deletion_protection {
        spec["deletionProtection"] = json!(on);
    }
    if let Some(channel) = &args.upgrades.release_channel {
        spec["releaseChannel"] = json!(channel);
    }
    if let Some(maintenance) = maintenance(
        &args.upgrades.maintenance_window,
        &args.upgrades.maintenance_exclusions,
        false,
    )? {
        spec["maintenance"] = maintenance;
    }
    let name = args.name.rsplit('/').next().unwrap_or_default();
    Ok(json!({
        "apiVersion": dialtone_types::API_VERSION,
        "kind": "Cluster",
        "metadata": {"name": name, "labels": labels_of(&args.labels)?},
        "spec": spec,
    }))
}

/// The spec's `maintenance` from `--maintenance-window` and `--maintenance-exclusion`
/// (`clear`: with no exclusions), if either is given.
fn maintenance(
    window: &Option<String>,
    exclusions: &[String],
    clear: bool,
) -> anyhow::Result<Option<Value>> {
    let mut maintenance = serde_json::Map::new();
    if let Some(window) = window {
        let parts: Vec<&str> = window.split(',').map(str::trim).collect();
        let [day, start, hours] = parts[..] else {
            bail!(
                "--maintenance-window `{window}` must be DAY,HH:MM,HOURS, such as saturday,02:00,4h"
            );
        };
        let hours: u32 = hours
            .trim_end_matches('h')
            .parse()
            .with_context(|| format!("--maintenance-window: `{hours}` is not a number of hours"))?;
        maintenance.insert(
            "window".into(),
            json!({"day": day.to_lowercase(), "start": start, "hours": hours}),
        );
    }
    if !exclusions.is_empty() || clear {
        let mut list = Vec::new();
        for exclusion in exclusions {
            let parts: Vec<&str> = exclusion.split(',').map(str::trim).collect();
            let [name, start, end] = parts[..] else {
                bail!(
                    "--maintenance-exclusion `{exclusion}` must be NAME,START,END, such as freeze,2026-12-20,2027-01-04"
                );
            };
            let time = |text: &str| -> anyhow::Result<String> {
                if let Ok(t) = text.parse::<jiff::Timestamp>() {
                    return Ok(t.to_string());
                }
                let day: jiff::civil::Date = text.parse().with_context(|| {
                    format!("--maintenance-exclusion: `{text}` is neither a date (2026-12-20) nor an RFC 3339 time")
                })?;
                Ok(format!("{day}T00:00:00Z"))
            };
            list.push(json!({"name": name, "start": time(start)?, "end": time(end)?}));
        }
        maintenance.insert("exclusions".into(), json!(list));
    }
    Ok((!maintenance.is_empty()).then_some(Value::Object(maintenance)))
}

pub(crate) fn condition<'a>(cluster: &'a Value, type_: &str) -> Option<&'a Value> {
    cluster["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(cluster: &Value, type_: &str) -> bool {
    condition(cluster, type_).is_some_and(|c| c["status"] == "True")
}

pub(crate) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// `4/4` running nodes.
fn nodes_summary(cluster: &Value) -> String {
    let nodes = cluster["status"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let running = nodes.iter().filter(|n| n["state"] == "running").count();
    format!("{running}/{}", nodes.len())
}

/// How long `--wait` may take: each step it reports is stamped with the time.
pub(crate) struct Waiting {
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
    last: String,
}

impl Waiting {
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        Waiting {
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            timeout,
            last: String::new(),
        }
    }

    /// Prints a step once, with the time it was seen.
    pub(crate) fn step(&mut self, phase: &str, step: String) {
        if !step.is_empty() && step != self.last {
            let now = jiff::Timestamp::now().strftime("%H:%M:%SZ");
            eprintln!("  {now}  {phase}  {step}");
            self.last = step;
        }
    }

    /// Sleeps until the next poll, or fails once the timeout has passed.
    pub(crate) async fn poll(&self, what: &str) -> anyhow::Result<()> {
        if let (Some(deadline), Some(timeout)) = (self.deadline, self.timeout)
            && tokio::time::Instant::now() + WAIT_POLL > deadline
        {
            bail!(
                "timed out after {}s waiting for {what}; it goes on without waiting (see its `describe`)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
        Ok(())
    }
}

/// Polls until the cluster is Ready at its current generation, printing each new step;
/// fails when the cluster has Failed, cannot be planned, or the timeout passes.
async fn wait_ready(
    client: &Client,
    path: &ResourcePath,
    timeout: Option<Duration>,
) -> anyhow::Result<Value> {
    let mut waiting = Waiting::new(timeout);
    loop {
        let cluster: Value = client.get(&api_path(path), &[]).await?;
        let generation = cluster["metadata"]["generation"].as_i64();
        let observed = cluster["status"]["observedGeneration"].as_i64();
        let ready = condition(&cluster, "Ready");
        let step = ready
            .map(|c| format!("{}: {}", text(&c["reason"]), text(&c["message"])))
            .unwrap_or_default();
        waiting.step(text(&cluster["status"]["phase"]), step);
        if generation == observed && is_true(&cluster, "Ready") && !is_true(&cluster, "Degraded") {
            return Ok(cluster);
        }
        if ready.is_some_and(|c| c["reason"] == "InvalidSpec") {
            bail!("the cluster cannot be planned: {}", waiting.last);
        }
        if generation == observed && cluster["status"]["phase"] == "Failed" {
            bail!(
                "cluster {path} has failed: {}",
                ready.map_or("", |c| text(&c["message"]))
            );
        }
        waiting.poll(&format!("cluster {path} to be Ready")).await?;
    }
}

async fn wait_gone(
    client: &Client,
    path: &ResourcePath,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let mut waiting = Waiting::new(timeout);
    loop {
        match client.get::<Value>(&api_path(path), &[]).await {
            Ok(cluster) => {
                let step = condition(&cluster, "Deleting")
                    .map(|c| format!("{}: {}", text(&c["reason"]), text(&c["message"])))
                    .unwrap_or_default();
                waiting.step("Deleting", step);
            }
            Err(ClientError::Api(e)) if e.reason == Reason::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        waiting
            .poll(&format!("cluster {path} to be deleted"))
            .await?;
    }
}

const HEADERS: [&str; 9] = [
    "NAME", "TYPE", "REGION", "VERSION", "PHASE", "HEALTH", "NODES", "ENDPOINT", "AGE",
];

fn row(cluster: &Value) -> Vec<String> {
    vec![
        text(&cluster["metadata"]["name"]).to_string(),
        text(&cluster["spec"]["type"]).to_string(),
        text(&cluster["spec"]["region"]).to_string(),
        // The patch release the nodes run, once chosen; the minor asked for until then.
        match text(&cluster["status"]["version"]["release"]) {
            "" => text(&cluster["spec"]["kubernetesVersion"]),
            release => release,
        }
        .to_string(),
        text(&cluster["status"]["phase"]).to_string(),
        text(&cluster["status"]["health"]).to_string(),
        nodes_summary(cluster),
        text(&cluster["status"]["endpoint"]).to_string(),
        age(&cluster["metadata"]["creationTimestamp"]),
    ]
}

pub async fn run(
    command: ClusterCommand,
    client: &Client,
    context: &Context,
    config_path: &std::path::Path,
    output: Output,
) -> anyhow::Result<()> {
    let placement = match &command {
        ClusterCommand::Create(args) => Some(&args.placement),
        ClusterCommand::Get(args) | ClusterCommand::Describe(args) => Some(&args.placement),
        ClusterCommand::List(args) => Some(&args.placement),
        ClusterCommand::Update(args) => Some(&args.object.placement),
        ClusterCommand::Delete { object, .. } | ClusterCommand::Credentials { object, .. } => {
            Some(&object.placement)
        }
        ClusterCommand::Token { .. } => None,
    };
    if let Some(placement) = placement {
        tree::check_placement(&CLUSTER, placement)?;
    }
    match command {
        ClusterCommand::Create(args) => {
            let path = resolve(&CLUSTER, &args.name, &args.placement, context)?;
            let body = create_body(&args)?;
            let collection = tree::collection_path(&CLUSTER, path.parent().as_ref());
            let mut created: Value = client.post(&collection, &body).await?;
            if output.is_table() {
                let plan = &created["status"]["plan"];
                println!(
                    "cluster {path} created: {} in {}, Kubernetes {}, {} control-plane node(s), network {}",
                    text(&created["spec"]["type"]),
                    text(&created["spec"]["region"]),
                    text(&created["spec"]["kubernetesVersion"]),
                    plan["controlPlane"]["nodes"].as_array().map_or(0, Vec::len),
                    text(&plan["network"]["vpcCidr"]),
                );
            }
            if args.wait {
                created = wait_ready(client, &path, args.timeout).await?;
                if output.is_table() {
                    println!(
                        "cluster {path} is Ready: {} nodes running, API at {}",
                        nodes_summary(&created),
                        text(&created["status"]["endpoint"])
                    );
                }
            }
            if !output.is_table() {
                print_value(output, &created)?;
            }
        }
        ClusterCommand::Get(ObjectArgs { name, placement }) => {
            let path = resolve(&CLUSTER, &name, &placement, context)?;
            let cluster: Value = client.get(&api_path(&path), &[]).await?;
            match output {
                Output::Table => print_table(&HEADERS, &[row(&cluster)]),
                Output::Wide => {
                    let (headers, rows) = crate::output::wide(
                        HEADERS.to_vec(),
                        vec![row(&cluster)],
                        std::slice::from_ref(&cluster),
                    );
                    print_table(&headers, &rows);
                }
                _ => print_value(output, &cluster)?,
            }
        }
        ClusterCommand::List(args)
            if args.watch || !matches!(output, Output::Table | Output::Wide) =>
        {
            tree::run(&CLUSTER, NounCommand::List(args), client, context, output).await?;
        }
        ClusterCommand::List(args) => list(args, client, context, output).await?,
        ClusterCommand::Describe(ObjectArgs { name, placement }) => {
            let path = resolve(&CLUSTER, &name, &placement, context)?;
            let cluster: Value = client.get(&api_path(&path), &[]).await?;
            match output {
                Output::Table => {
                    let cost = month_cost(client, &path).await;
                    describe(&path, &cluster, cost)
                }
                _ => print_value(output, &cluster)?,
            }
        }
        ClusterCommand::Update(args) => {
            let path = resolve(&CLUSTER, &args.object.name, &args.object.placement, context)?;
            if args.min_nodes.is_none()
                && args.max_nodes.is_none()
                && args.kubernetes_version.is_none()
                && args.allowed_families.is_empty()
                && args.excluded_families.is_empty()
                && args.architectures.is_empty()
                && args.allow_burstable.is_none()
                && args.consolidation.is_none()
                && args.deletion_protection.is_none()
                && args.upgrades.release_channel.is_none()
                && args.upgrades.maintenance_window.is_none()
                && args.upgrades.maintenance_exclusions.is_empty()
                && !args.clear_maintenance_exclusions
            {
                bail!(
                    "nothing to change: pass --min-nodes, --max-nodes, --kubernetes-version, --allow-family, --exclude-family, --arch, --allow-burstable, --consolidation, --deletion-protection, --release-channel, --maintenance-window, --maintenance-exclusion or --clear-maintenance-exclusions"
                );
            }
            // A merge patch of the fields asked for: the controller writes the status all
            // the time, so a read-then-replace would meet 409s.
            let mut spec = serde_json::Map::new();
            if let Some(v) = &args.kubernetes_version {
                spec.insert("kubernetesVersion".into(), json!(v));
            }
            if !args.allowed_families.is_empty() {
                spec.insert("allowedFamilies".into(), json!(args.allowed_families));
            }
            if !args.excluded_families.is_empty() {
                spec.insert("excludedFamilies".into(), json!(args.excluded_families));
            }
            if !args.architectures.is_empty() {
                spec.insert("architectures".into(), json!(args.architectures));
            }
            if let Some(on) = args.allow_burstable {
                spec.insert("allowBurstable".into(), json!(on));
            }
            if let Some(policy) = &args.consolidation {
                spec.insert("consolidation".into(), json!(policy));
            }
            if let Some(n) = args.min_nodes {
                spec.insert("minNodes".into(), json!(n));
            }
            if let Some(n) = args.max_nodes {
                spec.insert("maxNodes".into(), json!(n));
            }
            if let Some(on) = args.deletion_protection {
                spec.insert("deletionProtection".into(), json!(on));
            }
            if let Some(channel) = &args.upgrades.release_channel {
                spec.insert("releaseChannel".into(), json!(channel));
            }
            if let Some(maintenance) = maintenance(
                &args.upgrades.maintenance_window,
                &args.upgrades.maintenance_exclusions,
                args.clear_maintenance_exclusions,
            )? {
                spec.insert("maintenance".into(), maintenance);
            }
            let mut updated: Value = client
                .merge_patch(&api_path(&path), &json!({ "spec": spec }))
                .await?;
            if args.wait {
                updated = wait_ready(client, &path, args.timeout).await?;
            }
            match output {
                Output::Table => println!(
                    "cluster {path} updated: Kubernetes {}, {}–{} workers ({} nodes running), deletion protection {}",
                    updated["spec"]["kubernetesVersion"].as_str().unwrap_or(""),
                    updated["spec"]["minNodes"],
                    updated["spec"]["maxNodes"],
                    nodes_summary(&updated),
                    if updated["spec"]["deletionProtection"] == true {
                        "on"
                    } else {
                        "off"
                    }
                ),
                _ => print_value(output, &updated)?,
            }
        }
        ClusterCommand::Credentials {
            object,
            kubeconfig,
            static_token,
            ttl,
        } => {
            let path = resolve(&CLUSTER, &object.name, &object.placement, context)?;
            let default_ttl = if static_token {
                Duration::from_secs(12 * 3600)
            } else {
                exec_credential::DEFAULT_TTL
            };
            let ttl = ttl.unwrap_or(default_ttl);
            let credentials = exec_credential::mint(client, &api_path(&path), ttl).await?;
            let cluster = path.names().collect::<Vec<_>>().join("/");
            let auth = if static_token {
                Auth::Token(text(&credentials["token"]).to_string())
            } else {
                // The credential just minted is the plugin's first.
                exec_credential::remember(context, &cluster, &credentials)?;
                let mut args = vec!["cluster".to_string(), "token".into(), cluster.clone()];
                if ttl != exec_credential::DEFAULT_TTL {
                    args.extend(["--ttl".to_string(), format!("{}s", ttl.as_secs())]);
                }
                Auth::Exec {
                    command: std::env::current_exe()
                        .context("cannot find the dialtone binary for the exec plugin")?
                        .display()
                        .to_string(),
                    args,
                    env: vec![
                        ("DIALTONE_CONFIG".into(), config_path.display().to_string()),
                        ("DIALTONE_CONTEXT".into(), context.name.clone()),
                    ],
                }
            };
            let file = kubeconfig.unwrap_or_else(default_kubeconfig);
            let context_name = format!("dialtone_{}", path.names().collect::<Vec<_>>().join("_"));
            crate::kubeconfig::merge(&file, &context_name, &credentials, &auth)?;
            let lasts = if static_token {
                format!("its credential expires {}", text(&credentials["expiresAt"]))
            } else {
                "credentials renew through `dialtone cluster token`".to_string()
            };
            match output {
                Output::Table => println!(
                    "kubeconfig context {context_name} written to {} (current context; {lasts})\ntry: kubectl get nodes",
                    file.display(),
                ),
                _ => print_value(
                    output,
                    &json!({
                        "context": context_name,
                        "kubeconfig": file,
                        "expiresAt": credentials["expiresAt"],
                        "tokenId": credentials["tokenId"],
                        "static": static_token,
                    }),
                )?,
            }
        }
        ClusterCommand::Token { cluster, ttl } => {
            let path = ResourcePath::tree_node(&cluster)
                .ok()
                .filter(|p| p.kind().plural == CLUSTER.plural)
                .with_context(|| {
                    format!("`{cluster}` is not a cluster's full path, org/folder/project/cluster")
                })?;
            let credential = exec_credential::exec_credential(
                client,
                context,
                &cluster,
                &api_path(&path),
                ttl.unwrap_or(exec_credential::DEFAULT_TTL),
            )
            .await?;
            println!("{}", serde_json::to_string(&credential)?);
        }
        ClusterCommand::Delete {
            object,
            wait,
            timeout,
            yes,
            cascade,
        } => {
            let path = resolve(&CLUSTER, &object.name, &object.placement, context)?;
            if !yes {
                confirm(&format!(
                    "Delete cluster {path} and everything it has in the cloud?"
                ))?;
            }
            let query = match cascade {
                true => vec![("cascade", "true".to_string())],
                false => vec![],
            };
            let (code, body) = client.delete(&api_path(&path), &query).await?;
            if wait {
                wait_gone(client, &path, timeout).await?;
            }
            match (output, code, wait) {
                (Output::Table, _, true) => {
                    println!("cluster {path} deleted, and everything it had in the cloud")
                }
                (Output::Table, 202, false) => println!(
                    "cluster {path} is being deleted; its cloud resources go first (see `dialtone cluster describe`)"
                ),
                (Output::Table, _, false) => println!("cluster {path} deleted"),
                _ => print_value(output, &body)?,
            }
        }
    }
    Ok(())
}

/// Asks on the terminal; without one, refuses, since nobody could have said yes.
fn confirm(question: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("{question} Not without confirmation: pass --yes to delete without being asked");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("nothing deleted")
    }
}

async fn list(
    args: ListArgs,
    client: &Client,
    context: &Context,
    output: Output,
) -> anyhow::Result<()> {
    if args.all {
        let items = tree::list_everywhere(&CLUSTER, &args, client, context).await?;
        if items.is_empty() {
            eprintln!("no clusters found");
            return Ok(());
        }
        let rows = items.iter().map(row).collect();
        let (headers, rows) = tree::with_parents(HEADERS.to_vec(), rows, &items);
        let (headers, rows) = match output {
            Output::Wide => crate::output::wide(headers, rows, &items),
            _ => (headers, rows),
        };
        print_table(&headers, &rows);
        return Ok(());
    }
    let project = match &args.parent {
        Some(p) => resolve(&dialtone_types::kinds::PROJECT, p, &args.placement, context)?,
        None => resolve(
            &dialtone_types::kinds::PROJECT,
            &tree::default_for(&dialtone_types::kinds::PROJECT, &args.placement, context)?,
            &args.placement,
            context,
        )?,
    };
    let mut query = Vec::new();
    if let Some(s) = &args.selector {
        query.push(("labelSelector", s.clone()));
    }
    let items = client
        .list_all(&tree::collection_path(&CLUSTER, Some(&project)), &query)
        .await?;
    let rows = items.iter().map(row).collect::<Vec<_>>();
    if items.is_empty() {
        eprintln!("no clusters in {project}");
    } else if output == Output::Wide {
        let (headers, rows) = crate::output::wide(HEADERS.to_vec(), rows, &items);
        print_table(&headers, &rows);
    } else {
        print_table(&HEADERS, &rows);
    }
    Ok(())
}

/// `1.35.2 (regular channel; 1.35 supported until 2027-02-28, 83 days; 1.35.3 waits for
/// the window opening …)`.
fn kubernetes(spec: &Value, status: &Value, plan: &Value) -> String {
    let version = &status["version"];
    let release = match text(&version["release"]) {
        "" => text(&spec["kubernetesVersion"]),
        release => release,
    };
    let mut line = release.to_string();
    let channel = text(&version["channel"]);
    if !channel.is_empty() || !plan.is_null() {
        let channel = if channel.is_empty() {
            text(&spec["releaseChannel"])
        } else {
            channel
        };
        line.push_str(&format!(" ({channel} channel"));
        if let Some(end) = version["endOfSupport"].as_str() {
            let days = end
                .parse::<jiff::civil::Date>()
                .ok()
                .map(|d| (d - jiff::Zoned::now().date()).get_days());
            line.push_str(&format!(
                "; {} supported until {end}",
                text(&spec["kubernetesVersion"])
            ));
            match days {
                Some(d) if d < 0 => line.push_str(&format!(", {} days ago", -d)),
                Some(d) => line.push_str(&format!(", {d} days")),
                None => {}
            }
        }
        if let Some(available) = version["available"].as_str() {
            line.push_str(&format!("; {available} waits for the window"));
            if let Some(at) = version["nextWindow"].as_str() {
                line.push_str(&format!(" opening {at}"));
            }
        }
        line.push(')');
    }
    line
}

/// The window in effect and the exclusions, if the cluster is planned.
fn maintenance_line(spec: &Value, plan: &Value) -> Option<String> {
    let window = plan["decisions"]["maintenance.window"].as_str()?;
    let mut line = window.to_string();
    for e in spec["maintenance"]["exclusions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        line.push_str(&format!(
            "; no upgrades {}–{}{}",
            text(&e["start"]),
            text(&e["end"]),
            match text(&e["name"]) {
                "" => String::new(),
                name => format!(" ({name})"),
            }
        ));
    }
    Some(line)
}

/// What the cluster has cost since the month began, and the provisional part of it; `None`
/// for a caller who may not see money (or a server that cannot say).
async fn month_cost(client: &Client, path: &ResourcePath) -> Option<(i64, i64)> {
    let names: Vec<&str> = path.names().collect();
    let [org, folder, project, cluster] = names[..] else {
        return None;
    };
    let query = [
        ("folder", folder.to_string()),
        ("project", project.to_string()),
        ("cluster", cluster.to_string()),
    ];
    let report: dialtone_types::usage::UsageReport = client
        .get(&format!("/v1/orgs/{org}/usage"), &query)
        .await
        .ok()?;
    let total = report.total;
    Some((
        total.recorded.cost_micros + total.provisional.cost_micros,
        total.provisional.cost_micros,
    ))
}

fn describe(path: &ResourcePath, cluster: &Value, month_cost: Option<(i64, i64)>) {
    let meta = &cluster["metadata"];
    let spec = &cluster["spec"];
    let status = &cluster["status"];
    let plan = &status["plan"];
    let field = |label: &str, value: String| println!("{:<16}{}", format!("{label}:"), value);
    field("Name", text(&meta["name"]).into());
    field("Path", path.to_string());
    field("UID", text(&meta["uid"]).into());
    field("Type", text(&spec["type"]).into());
    field("Region", text(&spec["region"]).into());
    field("Kubernetes", kubernetes(spec, status, plan));
    if let Some(maintenance) = maintenance_line(spec, plan) {
        field("Maintenance", maintenance);
    }
    if let Some((cost, provisional)) = month_cost {
        field(
            "Cost",
            format!(
                "{} this month (UTC), {} of it provisional",
                crate::usage::dollars(cost),
                crate::usage::dollars(provisional)
            ),
        );
    }
    field(
        "Workers",
        format!("{}–{}", spec["minNodes"], spec["maxNodes"]),
    );
    field("Labels", labels(&meta["labels"]));
    field(
        "Created",
        format!(
            "{} ({} ago)",
            text(&meta["creationTimestamp"]),
            age(&meta["creationTimestamp"])
        ),
    );
    if let Some(deleting) = meta["deletionTimestamp"].as_str() {
        field("Deleting", format!("since {deleting}"));
    }
    field("Phase", text(&status["phase"]).into());
    field("Health", text(&status["health"]).into());
    field(
        "Endpoint",
        match text(&status["endpoint"]) {
            "" => "<not yet>".into(),
            e => e.into(),
        },
    );
    if !plan.is_null() {
        println!("Plan:");
        println!(
            "  network        {} ({}), pods {}, services {}",
            text(&plan["network"]["vpcCidr"]),
            if plan["network"]["sharedVpc"] == true {
                "shared with the project's developer clusters in the region"
            } else {
                "its own"
            },
            text(&plan["network"]["podCidr"]),
            text(&plan["network"]["serviceCidr"]),
        );
        for subnet in plan["network"]["subnets"].as_array().into_iter().flatten() {
            println!(
                "  subnet         {} {}",
                text(&subnet["zone"]),
                text(&subnet["cidr"])
            );
        }
        let cp = plan["controlPlane"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!(
            "  control plane  {} × {} in {}",
            cp.len(),
            cp.first().map_or("", |n| text(&n["instanceType"])),
            cp.iter()
                .map(|n| text(&n["zone"]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  workers        {}–{} in {}, families {}",
            plan["workers"]["minNodes"],
            plan["workers"]["maxNodes"],
            plan["workers"]["zones"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect::<Vec<_>>()
                .join(", "),
            plan["workers"]["families"].as_array().map_or(0, Vec::len)
        );
        println!(
            "  decisions      {} (see `dialtone cluster describe -o yaml` or `dialtone cluster-types describe {}`)",
            plan["decisions"].as_object().map_or(0, |d| d.len()),
            text(&spec["type"])
        );
    }
    let counts = status["nodeCounts"].as_array().cloned().unwrap_or_default();
    if !counts.is_empty() {
        println!("Nodes by zone:");
        for c in &counts {
            println!(
                "  {:<14} {:<12} {}/{} running",
                text(&c["role"]),
                text(&c["zone"]),
                c["ready"],
                c["total"]
            );
        }
    }
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    if !nodes.is_empty() {
        println!("Nodes:");
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                vec![
                    format!("  {}", text(&n["name"])),
                    text(&n["zone"]).to_string(),
                    text(&n["instanceType"]).to_string(),
                    text(&n["instanceId"]).to_string(),
                    text(&n["state"]).to_string(),
                    text(&n["kubernetesVersion"]).to_string(),
                ]
            })
            .collect();
        print_table(
            &["  NAME", "ZONE", "TYPE", "INSTANCE", "STATE", "VERSION"],
            &rows,
        );
    }
    let repairs = status["repairs"].as_array().cloned().unwrap_or_default();
    if !repairs.is_empty() {
        println!("Repairs:");
        for r in &repairs {
            let in_a_row = match r["inARow"].as_u64() {
                Some(n) if n > 1 => format!(" ({n} in a row)"),
                _ => String::new(),
            };
            println!(
                "  {:>5} ago  {:<8} {}{in_a_row}: {}",
                age(&r["time"]),
                text(&r["node"]),
                text(&r["instanceId"]),
                text(&r["reason"])
            );
        }
    }
    let sizing = &status["sizing"];
    if sizing.is_object() {
        println!(
            "Right-sizing:   workers cost ${:.4}/h; {} consolidation",
            sizing["usdPerHour"].as_f64().unwrap_or(0.0),
            cluster["spec"]["consolidation"]
                .as_str()
                .unwrap_or("balanced"),
        );
        for d in sizing["decisions"].as_array().into_iter().flatten() {
            let bound = match d["lowerBoundUsdPerHour"].as_f64() {
                Some(bound) => format!("bound ${bound:.4}/h"),
                None => format!(
                    "saves ${:.4}/h",
                    d["savesUsdPerHour"].as_f64().unwrap_or(0.0)
                ),
            };
            println!(
                "  {:>5} ago  {:<8} {:>4} pods  ${:.4}/h  {bound}  {:.1} ms",
                age(&d["time"]),
                text(&d["action"]),
                d["pods"],
                d["usdPerHour"].as_f64().unwrap_or(0.0),
                d["millis"].as_f64().unwrap_or(0.0),
            );
            println!("         {}", text(&d["message"]));
        }
    }
    println!("Conditions:");
    for c in status["conditions"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {:<6} {:<22} {}",
            text(&c["type"]),
            text(&c["status"]),
            text(&c["reason"]),
            text(&c["message"])
        );
    }
    crate::output::print_events(&status["events"]);
}

/// `dialtone sim kill|hang|recover INSTANCE`.
async fn break_instance(
    client: &Client,
    output: Output,
    instance: &str,
    operation: &str,
    done: &str,
) -> anyhow::Result<()> {
    let changed: Value = client
        .post(
            &format!("/v1/sim/instances/{instance}/{operation}"),
            &json!({}),
        )
        .await?;
    match output {
        Output::Table => {
            let state = text(&changed["state"]);
            match changed["reason"].as_str() {
                Some(reason) => println!("instance {instance} {done}: {state}, {reason}"),
                None => println!("instance {instance} {done}: {state}"),
            }
        }
        _ => print_value(output, &changed)?,
    }
    Ok(())
}

pub async fn sim(command: SimCommand, client: &Client, output: Output) -> anyhow::Result<()> {
    let version: Value = client.get("/version", &[]).await?;
    if let Some(provider) = version["provider"].as_str().filter(|p| *p != "sim") {
        anyhow::bail!(
            "this control plane's provider is `{provider}`: `dialtone sim` works only against \
             the `sim` provider (`dialtone server --provider sim`)"
        );
    }
    match command {
        SimCommand::Serve(_) => unreachable!("`sim serve` runs before any context is read"),
        SimCommand::Resources { region, tag } => {
            let mut query = Vec::new();
            if let Some(r) = region {
                query.push(("region", r));
            }
            if let Some(t) = tag {
                query.push(("tag", t));
            }
            let list: Value = client.get("/v1/sim/resources", &query).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if !matches!(output, Output::Table | Output::Wide) {
                return print_value(output, &list);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|r| {
                    vec![
                        text(&r["id"]).to_string(),
                        text(&r["spec"]["kind"]).to_string(),
                        text(&r["region"]).to_string(),
                        text(&r["state"]).to_string(),
                        text(&r["tags"]["dialtone.dev/owner"]).to_string(),
                        text(&r["tags"]["dialtone.dev/part"]).to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                eprintln!("the sim cloud holds no resources");
            } else {
                print_table(&["ID", "KIND", "REGION", "STATE", "OWNER", "PART"], &rows);
            }
        }
        SimCommand::Fault(FaultCommand::Add {
            kind,
            region,
            zone,
            count,
            probability,
        }) => {
            let mut body = json!({"kind": kind});
            for (key, value) in [
                ("region", region.map(Value::from)),
                ("zone", zone.map(Value::from)),
                ("count", count.map(Value::from)),
                ("probability", probability.map(Value::from)),
            ] {
                if let Some(v) = value {
                    body[key] = v;
                }
            }
            let fault: Value = client.post("/v1/sim/faults", &body).await?;
            match output {
                Output::Table => println!("fault {} injected", text(&fault["id"])),
                _ => print_value(output, &fault)?,
            }
        }
        SimCommand::Fault(FaultCommand::List) => {
            let list: Value = client.get("/v1/sim/faults", &[]).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if !matches!(output, Output::Table | Output::Wide) {
                return print_value(output, &list);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|f| {
                    let or_any = |v: &Value| v.as_str().unwrap_or("any").to_string();
                    vec![
                        text(&f["id"]).to_string(),
                        text(&f["kind"]).to_string(),
                        or_any(&f["region"]),
                        or_any(&f["zone"]),
                        f["count"]
                            .as_u64()
                            .map_or("until removed".into(), |c| format!("{c} time(s)")),
                        f["fired"].to_string(),
                    ]
                })
                .collect();
            print_table(&["ID", "KIND", "REGION", "ZONE", "FOR", "FIRED"], &rows);
        }
        SimCommand::Fault(FaultCommand::Remove { id, all }) => {
            let path = match (id, all) {
                (Some(id), false) => format!("/v1/sim/faults/{id}"),
                (None, true) => "/v1/sim/faults".to_string(),
                _ => bail!("name a fault to remove, or pass --all"),
            };
            let (_, body) = client.delete(&path, &[]).await?;
            match output {
                Output::Table => println!("{}", text(&body["message"])),
                _ => print_value(output, &body)?,
            }
        }
        SimCommand::Kill { instance } => {
            break_instance(client, output, &instance, "kill", "killed").await?
        }
        SimCommand::Hang { instance } => {
            break_instance(client, output, &instance, "hang", "hung").await?
        }
        SimCommand::Recover { instance } => {
            break_instance(client, output, &instance, "recover", "recovered").await?
        }
        SimCommand::Account(AccountCommand::Create) => {
            let account: Value = client.post("/v1/sim/accounts", &json!({})).await?;
            match output {
                Output::Table => println!("account {} opened", text(&account["id"])),
                _ => print_value(output, &account)?,
            }
        }
        SimCommand::Account(command) => {
            let accounts: Vec<Value> = match command {
                AccountCommand::Get { account } => {
                    vec![
                        client
                            .get(&format!("/v1/sim/accounts/{account}"), &[])
                            .await?,
                    ]
                }
                _ => {
                    let list: Value = client.get("/v1/sim/accounts", &[]).await?;
                    list["items"].as_array().cloned().unwrap_or_default()
                }
            };
            if !output.is_table() {
                return print_value(output, &json!({ "items": accounts }));
            }
            let mut rows = Vec::new();
            for account in &accounts {
                let id = text(&account["id"]);
                for vpc in account["vpcs"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        id.to_string(),
                        "vpc".into(),
                        text(&vpc["id"]).to_string(),
                        text(&vpc["region"]).to_string(),
                        text(&vpc["spec"]["cidr"]).to_string(),
                        text(&vpc["state"]).to_string(),
                    ]);
                }
                for peering in account["peerings"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        id.to_string(),
                        "peering".into(),
                        text(&peering["id"]).to_string(),
                        text(&peering["region"]).to_string(),
                        format!("→ {}", text(&peering["spec"]["peerVpcId"])),
                        text(&peering["peering"]["state"]).to_string(),
                    ]);
                }
                if rows.is_empty() {
                    rows.push(vec![
                        id.to_string(),
                        "".into(),
                        "".into(),
                        "".into(),
                        "".into(),
                        "".into(),
                    ]);
                }
            }
            print_table(&["ACCOUNT", "KIND", "ID", "REGION", "CIDR", "STATE"], &rows);
        }
        SimCommand::Vpc(VpcCommand::Create {
            account,
            cidr,
            region,
        }) => {
            let vpc: Value = client
                .post(
                    &format!("/v1/sim/accounts/{account}/vpcs"),
                    &json!({"region": region, "cidr": cidr}),
                )
                .await?;
            match output {
                Output::Table => println!(
                    "vpc {} ({cidr}) made in account {account}, {region}",
                    text(&vpc["id"])
                ),
                _ => print_value(output, &vpc)?,
            }
        }
        SimCommand::Peering(command) => {
            let (id, account, answer) = match command {
                PeeringCommand::Accept { id, account } => (id, account, Some("accept")),
                PeeringCommand::Reject { id, account } => (id, account, Some("reject")),
                PeeringCommand::Delete { id, account } => (id, account, None),
            };
            let peering = format!("/v1/sim/accounts/{account}/peerings/{id}");
            let (body, said) = match answer {
                Some(answer) => {
                    let answered: Value = client
                        .post(&format!("{peering}/{answer}"), &json!({}))
                        .await?;
                    let said = format!("peering {id}: {}", text(&answered["peering"]["state"]));
                    (answered, said)
                }
                None => {
                    let (_, body) = client.delete(&peering, &[]).await?;
                    let said = text(&body["message"]).to_string();
                    (body, said)
                }
            };
            match output {
                Output::Table => println!("{said}"),
                _ => print_value(output, &body)?,
            }
        }
        SimCommand::Quotas {
            region,
            vcpus,
            vpcs,
            load_balancers,
        } => {
            let path = format!("/v1/sim/regions/{region}/quotas");
            let mut quotas: Value = client.get(&path, &[]).await?;
            if vcpus.is_some() || vpcs.is_some() || load_balancers.is_some() {
                for (key, value) in [
                    ("vcpus", vcpus),
                    ("vpcs", vpcs),
                    ("loadBalancers", load_balancers),
                ] {
                    if let Some(v) = value {
                        quotas[key] = json!(v);
                    }
                }
                quotas = client.put(&path, &quotas).await?;
            }
            print_value(
                if output.is_table() {
                    Output::Yaml
                } else {
                    output
                },
                &quotas,
            )?;
        }
    }
    Ok(())
}

/// The kubeconfig kubectl reads first.
fn default_kubeconfig() -> std::path::PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    std::path::Path::new(&home).join(".kube").join("config")
}
