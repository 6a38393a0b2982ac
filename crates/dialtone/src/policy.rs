//! `dialtone policy`: role bindings on the nodes of the tree, explained and previewed.

use anyhow::{Context as _, bail};
use dialtone_client::Client;
use dialtone_types::ResourcePath;
use dialtone_types::policy::{AccessPolicy, Explanation, PolicyBinding, WhatIf, WhatIfRequest};

use crate::cli::{BindingArgs, Output, PolicyCommand};
use crate::output::{print_table, print_value};
use crate::tree::api_path;

/// The tree node a path of names (`acme/eng/web`) stands for.
fn node(path: &str) -> anyhow::Result<ResourcePath> {
    Ok(ResourcePath::tree_node(path)?)
}

fn policy_url(path: &str) -> anyhow::Result<String> {
    Ok(format!("{}/policy", api_path(&node(path)?)))
}

/// `ROLE=SUBJECT`.
fn binding_of(text: &str) -> anyhow::Result<(String, String)> {
    let (role, subject) = text
        .split_once('=')
        .with_context(|| format!("`{text}` must be ROLE=SUBJECT, e.g. cluster.view=group:devs"))?;
    Ok((role.to_string(), subject.to_string()))
}

fn grant(policy: &mut AccessPolicy, role: &str, subject: &str) {
    match policy.bindings.iter_mut().find(|b| b.role == role) {
        Some(binding) if binding.subjects.iter().any(|s| s == subject) => {}
        Some(binding) => binding.subjects.push(subject.to_string()),
        None => policy.bindings.push(PolicyBinding {
            role: role.to_string(),
            subjects: vec![subject.to_string()],
        }),
    }
}

/// Whether the subject held the role.
fn revoke(policy: &mut AccessPolicy, role: &str, subject: &str) -> bool {
    let mut found = false;
    for binding in policy.bindings.iter_mut().filter(|b| b.role == role) {
        let before = binding.subjects.len();
        binding.subjects.retain(|s| s != subject);
        found |= binding.subjects.len() != before;
    }
    policy.bindings.retain(|b| !b.subjects.is_empty());
    found
}

fn print_policy(node: &str, policy: &AccessPolicy, output: Output) -> anyhow::Result<()> {
    if !output.is_table() {
        return print_value(output, &serde_json::to_value(policy)?);
    }
    let rows: Vec<Vec<String>> = policy
        .bindings
        .iter()
        .map(|b| vec![b.role.clone(), b.subjects.join(", ")])
        .collect();
    if rows.is_empty() {
        eprintln!("no bindings on {node} (it inherits its ancestors')");
    } else {
        print_table(&["ROLE", "SUBJECTS"], &rows);
    }
    eprintln!("etag: {}", policy.etag);
    Ok(())
}

/// Reads a node's policy, changes it, and writes it back with the etag read, so that a
/// concurrent change is a 409 rather than lost.
async fn edit(
    client: &Client,
    node: &str,
    output: Output,
    change: impl FnOnce(&mut AccessPolicy) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let url = policy_url(node)?;
    let mut policy: AccessPolicy = client.get(&url, &[]).await?;
    let done = change(&mut policy)?;
    let set: AccessPolicy = client.put(&url, &policy).await?;
    eprintln!("{done}");
    print_policy(node, &set, output)
}

pub async fn run(command: PolicyCommand, client: &Client, output: Output) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Get { node } => {
            let policy: AccessPolicy = client.get(&policy_url(&node)?, &[]).await?;
            print_policy(&node, &policy, output)?;
        }
        PolicyCommand::Set { node, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let policy: AccessPolicy = serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{} is not a policy", file.display()))?;
            let set: AccessPolicy = client.put(&policy_url(&node)?, &policy).await?;
            print_policy(&node, &set, output)?;
        }
        PolicyCommand::Add(BindingArgs {
            node,
            role,
            subject,
        }) => {
            edit(client, &node, output, |policy| {
                grant(policy, &role, &subject);
                Ok(format!("{role} granted to {subject} on {node}"))
            })
            .await?;
        }
        PolicyCommand::Remove(BindingArgs {
            node,
            role,
            subject,
        }) => {
            edit(client, &node, output, |policy| {
                if !revoke(policy, &role, &subject) {
                    bail!("{subject} has no {role} binding on {node} itself (it may inherit one: see `dialtone policy explain`)");
                }
                Ok(format!("{role} taken back from {subject} on {node}"))
            })
            .await?;
        }
        PolicyCommand::Explain {
            identity,
            verb,
            resource,
            on,
        } => {
            let org = node(&on)?.org_name().to_string();
            let mut query = vec![
                ("verb", verb),
                ("resource", resource),
                ("node", on.trim_matches('/').to_string()),
            ];
            if let Some(identity) = identity {
                query.push(("identity", identity));
            }
            let answer: Explanation = client
                .get(&format!("/v1/orgs/{org}/explain"), &query)
                .await?;
            if !output.is_table() {
                return print_value(output, &serde_json::to_value(&answer)?);
            }
            println!(
                "{}: {} may {}{} {} ({}) on {}",
                if answer.allowed { "ALLOWED" } else { "DENIED" },
                answer.identity,
                if answer.allowed { "" } else { "not " },
                answer.verb,
                answer.resource,
                answer.api,
                answer.node
            );
            if answer.allowed && answer.granted_by.is_empty() {
                println!("granted by bindings on nodes whose policy you may not read");
            }
            if !answer.granted_by.is_empty() {
                let rows: Vec<Vec<String>> = answer
                    .granted_by
                    .iter()
                    .map(|g| vec![g.node.clone(), g.role.clone(), g.subject.clone()])
                    .collect();
                print_table(&["NODE", "ROLE", "SUBJECT"], &rows);
            }
        }
        PolicyCommand::WhatIf {
            node: path,
            add,
            remove,
        } => {
            let mut policy: AccessPolicy = client.get(&policy_url(&path)?, &[]).await?;
            for text in &add {
                let (role, subject) = binding_of(text)?;
                grant(&mut policy, &role, &subject);
            }
            for text in &remove {
                let (role, subject) = binding_of(text)?;
                revoke(&mut policy, &role, &subject);
            }
            let org = node(&path)?.org_name().to_string();
            let request = WhatIfRequest {
                node: path.trim_matches('/').to_string(),
                policy,
            };
            let preview: WhatIf = client
                .post(&format!("/v1/orgs/{org}/whatif"), &request)
                .await?;
            if !output.is_table() {
                return print_value(output, &serde_json::to_value(&preview)?);
            }
            let rows: Vec<Vec<String>> = preview
                .clusters
                .iter()
                .flat_map(|c| {
                    let of = |change: &'static str, objects: &[String]| {
                        objects
                            .iter()
                            .map(|o| vec![c.cluster.clone(), change.to_string(), o.clone()])
                            .collect::<Vec<_>>()
                    };
                    [
                        of("add", &c.add),
                        of("change", &c.change),
                        of("remove", &c.remove),
                    ]
                    .concat()
                })
                .collect();
            if rows.is_empty() {
                eprintln!("no cluster's RBAC would change");
            } else {
                print_table(&["CLUSTER", "CHANGE", "OBJECT"], &rows);
            }
            eprintln!("nothing was applied");
        }
    }
    Ok(())
}
