//! `dialtone connection`: a production cluster's VPC peerings with customers' VPCs.

use std::time::Duration;

use anyhow::bail;
use dialtone_client::{Client, ClientError, Context};
use dialtone_types::connection::CONNECTION;
use dialtone_types::{Reason, ResourcePath};
use serde_json::{Value, json};

use crate::cli::{ConnectionCommand, ConnectionCreateArgs, NounCommand, ObjectArgs, Output};
use crate::cluster::{Waiting, condition, text};
use crate::output::{age, print_list, print_table, print_value};
use crate::tree::{self, api_path, check_placement, list_everywhere, resolve, with_parents};

const HEADERS: [&str; 7] = [
    "NAME",
    "STATE",
    "PEERING",
    "PEER ACCOUNT",
    "PEER VPC",
    "PEER CIDRS",
    "AGE",
];

fn row(connection: &Value) -> Vec<String> {
    let status = &connection["status"];
    let state = match (
        connection["metadata"]["deletionTimestamp"].is_null(),
        text(&status["state"]),
    ) {
        (false, _) => "deleting",
        (true, "") => "requesting",
        (true, state) => state,
    };
    let cidrs = connection["spec"]["peerCidrs"]
        .as_array()
        .map(|c| c.iter().map(text).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    vec![
        text(&connection["metadata"]["name"]).to_string(),
        state.to_string(),
        text(&status["peeringId"]).to_string(),
        text(&connection["spec"]["peerAccount"]).to_string(),
        text(&connection["spec"]["peerVpc"]).to_string(),
        cidrs,
        age(&connection["metadata"]["creationTimestamp"]),
    ]
}

fn create_body(args: &ConnectionCreateArgs, name: &str) -> Value {
    let mut spec = json!({
        "peerAccount": args.peer_account,
        "peerVpc": args.peer_vpc,
        "peerRegion": args.peer_region,
        "peerCidrs": args.peer_cidrs,
    });
    if !args.allow_ports.is_empty() {
        spec["allowPorts"] = json!(args.allow_ports);
    }
    if args.allow_all {
        spec["allowAll"] = json!(true);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

/// Polls until the connection's peering is active with its routes in place; fails when it
/// ended (rejected, expired, failed) or the timeout passes.
async fn wait_ready(
    client: &Client,
    path: &ResourcePath,
    timeout: Option<Duration>,
) -> anyhow::Result<Value> {
    let mut waiting = Waiting::new(timeout);
    loop {
        let connection: Value = client.get(&api_path(path), &[]).await?;
        let ready = condition(&connection, "Ready");
        let state = text(&connection["status"]["state"]).to_string();
        waiting.step(
            &state,
            ready
                .map(|c| format!("{}: {}", text(&c["reason"]), text(&c["message"])))
                .unwrap_or_default(),
        );
        if ready.is_some_and(|c| c["status"] == "True") {
            return Ok(connection);
        }
        if matches!(
            state.as_str(),
            "rejected" | "expired" | "failed" | "deleted"
        ) {
            bail!(
                "connection {path} is {state}: {}",
                ready.map_or("", |c| text(&c["message"]))
            );
        }
        waiting
            .poll(&format!("connection {path} to be active"))
            .await?;
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
            Ok(connection) => waiting.step(
                "deleting",
                format!(
                    "removing routes and the peering {}",
                    text(&connection["status"]["peeringId"])
                ),
            ),
            Err(ClientError::Api(e)) if e.reason == Reason::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        waiting
            .poll(&format!("connection {path} to be deleted"))
            .await?;
    }
}

fn describe(connection: &Value) {
    let field = |label: &str, value: &str| println!("{:<16}{value}", format!("{label}:"));
    let spec = &connection["spec"];
    let status = &connection["status"];
    fn list(v: &Value) -> Vec<&str> {
        v.as_array()
            .map(|items| items.iter().map(text).collect())
            .unwrap_or_default()
    }
    field("Name", text(&connection["metadata"]["name"]));
    field("Cluster", text(&connection["metadata"]["parent"]));
    field("Peer account", text(&spec["peerAccount"]));
    field("Peer VPC", text(&spec["peerVpc"]));
    field("Peer region", text(&spec["peerRegion"]));
    field("Peer CIDRs", &list(&spec["peerCidrs"]).join(", "));
    let allowed = match (spec["allowAll"].as_bool(), spec["allowPorts"].as_array()) {
        (Some(true), _) => "every port and protocol".to_string(),
        (_, Some(ports)) if !ports.is_empty() => format!(
            "TCP {}",
            ports
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "nothing new (replies only)".to_string(),
    };
    field("Peer may open", &allowed);
    field("Peering", text(&status["peeringId"]));
    field(
        "State",
        &format!(
            "{} {}",
            text(&status["state"]),
            match text(&status["stateMessage"]) {
                "" => String::new(),
                message => format!("({message})"),
            }
        ),
    );
    if let Some(expires) = status["expiresAt"].as_str() {
        field("Expires", expires);
    }
    field("Cluster CIDRs", &list(&status["clusterCidrs"]).join(", "));
    let routes = list(&status["routes"]);
    println!("Routes:");
    if routes.is_empty() {
        println!("  <none>");
    }
    for route in routes {
        println!("  {route}");
    }
    println!("Conditions:");
    for c in status["conditions"].as_array().into_iter().flatten() {
        println!(
            "  {:<10}{:<8}{:<20}{}",
            text(&c["type"]),
            text(&c["status"]),
            text(&c["reason"]),
            text(&c["message"])
        );
    }
    let steps = list(&status["nextSteps"]);
    if !steps.is_empty() {
        println!("Next steps, in the peer account:");
        for (i, step) in steps.iter().enumerate() {
            println!("  {}. {step}", i + 1);
        }
    }
    if status["events"].as_array().is_some_and(|e| !e.is_empty()) {
        crate::output::print_events(&status["events"]);
    }
    let limits = list(&status["limits"]);
    if !limits.is_empty() {
        println!("Limits:");
        for limit in limits {
            println!("  - {limit}");
        }
    }
}

pub async fn run(
    command: ConnectionCommand,
    client: &Client,
    context: &Context,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        ConnectionCommand::Create(args) => {
            check_placement(&CONNECTION, &args.placement)?;
            let path = resolve(&CONNECTION, &args.name, &args.placement, context)?;
            let parent = path.parent().expect("a connection has a cluster");
            let collection = format!("{}/connections", api_path(&parent));
            let mut created: Value = client
                .post(&collection, &create_body(&args, path.name()))
                .await?;
            if args.wait {
                created = wait_ready(client, &path, args.timeout).await?;
            }
            match output {
                Output::Table if args.wait => println!(
                    "connection {path} is active: {}",
                    text(&created["status"]["peeringId"])
                ),
                Output::Table => println!(
                    "connection {path} created; its peering is requested from account {} (see `dialtone connection describe {path}`)",
                    args.peer_account
                ),
                _ => print_value(output, &created)?,
            }
        }
        ConnectionCommand::Get(args) => {
            tree::run(&CONNECTION, NounCommand::Get(args), client, context, output).await?
        }
        ConnectionCommand::Describe(ObjectArgs { name, placement }) => {
            check_placement(&CONNECTION, &placement)?;
            let path = resolve(&CONNECTION, &name, &placement, context)?;
            let connection: Value = client.get(&api_path(&path), &[]).await?;
            match output {
                _ if output.is_table() => describe(&connection),
                _ => print_value(output, &connection)?,
            }
        }
        ConnectionCommand::List(args) if args.watch || !output.is_table() && !args.all => {
            tree::run(
                &CONNECTION,
                NounCommand::List(args),
                client,
                context,
                output,
            )
            .await?
        }
        ConnectionCommand::List(args) => {
            check_placement(&CONNECTION, &args.placement)?;
            let items = if args.all {
                list_everywhere(&CONNECTION, &args, client, context).await?
            } else {
                let parent = match &args.parent {
                    Some(cluster) => resolve(
                        &dialtone_types::kinds::CLUSTER,
                        cluster,
                        &args.placement,
                        context,
                    )?,
                    None => {
                        let name = args.placement.cluster.clone().ok_or_else(|| {
                            anyhow::anyhow!(
                                "which cluster? pass --cluster NAME, a cluster's path, or -A for every cluster"
                            )
                        })?;
                        resolve(
                            &dialtone_types::kinds::CLUSTER,
                            &name,
                            &args.placement,
                            context,
                        )?
                    }
                };
                let mut query = Vec::new();
                if let Some(s) = &args.selector {
                    query.push(("labelSelector", s.clone()));
                }
                client
                    .list_all(&format!("{}/connections", api_path(&parent)), &query)
                    .await?
            };
            match output {
                _ if !output.is_table() => print_list(output, CONNECTION.kind, items)?,
                _ if items.is_empty() => eprintln!("no connections found"),
                _ => {
                    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
                    if args.all {
                        let (headers, rows) = with_parents(HEADERS.to_vec(), rows, &items);
                        print_table(&headers, &rows);
                    } else {
                        print_table(&HEADERS, &rows);
                    }
                }
            }
        }
        ConnectionCommand::Delete {
            object,
            wait,
            timeout,
        } => {
            check_placement(&CONNECTION, &object.placement)?;
            let path = resolve(&CONNECTION, &object.name, &object.placement, context)?;
            let (code, body) = client.delete(&api_path(&path), &[]).await?;
            if wait {
                wait_gone(client, &path, timeout).await?;
            }
            match (output, code, wait) {
                (Output::Table, _, true) => {
                    println!("connection {path} deleted, with its routes and peering")
                }
                (Output::Table, 202, false) => {
                    println!("connection {path} is being deleted; its routes and peering go first")
                }
                (Output::Table, _, false) => println!("connection {path} deleted"),
                _ => print_value(output, &body)?,
            }
        }
    }
    Ok(())
}
