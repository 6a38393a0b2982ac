//! The verbs every tree noun shares: create, get, describe, list (and watch), delete.

use anyhow::{Context as _, bail};
use dialtone_client::{Client, Context};
use dialtone_types::{KindInfo, ResourcePath};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::cli::{CreateArgs, ListArgs, NounCommand, ObjectArgs, Output, Placement};
use crate::output::{
    OBJECT_HEADERS, age, labels, object_row, print_list, print_table, print_value, wide,
};

/// The kinds above `kind`, top first.
fn ancestors(kind: &'static KindInfo) -> Vec<&'static KindInfo> {
    let mut chain = Vec::new();
    let mut next = kind.parent;
    while let Some(k) = next {
        chain.push(k);
        next = k.parent;
    }
    chain.reverse();
    chain
}

/// The name of the `kind` ancestor: from its flag, else from the context's default.
pub(crate) fn default_for(
    kind: &KindInfo,
    placement: &Placement,
    context: &Context,
) -> anyhow::Result<String> {
    let none = String::new();
    let (flag, default) = match kind.singular {
        "org" => (&placement.org, &context.org),
        "folder" => (&placement.folder, &context.folder),
        "project" => (&placement.project, &context.project),
        _ => (&placement.cluster, &none),
    };
    match flag
        .clone()
        .or_else(|| (!default.is_empty()).then(|| default.clone()))
    {
        Some(name) => Ok(name),
        None => bail!(
            "which {0}? pass --{0} NAME (or a full path in place of a name), or set a default with `dialtone config set-context --{0} NAME`",
            kind.singular
        ),
    }
}

/// The path named by `name`: either a full path (`acme/eng/web`) or a name whose ancestors
/// come from the flags and the context's defaults.
pub fn resolve(
    kind: &'static KindInfo,
    name: &str,
    placement: &Placement,
    context: &Context,
) -> anyhow::Result<ResourcePath> {
    let mut names: Vec<String> = name.split('/').map(String::from).collect();
    if names.len() == 1 {
        let mut full = Vec::new();
        for ancestor in ancestors(kind) {
            full.push(default_for(ancestor, placement, context)?);
        }
        full.append(&mut names);
        names = full;
    }
    Ok(ResourcePath::from_names(kind, &names)?)
}

/// The parent whose `kind` children a list shows; `None` for orgs.
fn resolve_parent(
    kind: &'static KindInfo,
    args: &ListArgs,
    context: &Context,
) -> anyhow::Result<Option<ResourcePath>> {
    let Some(parent_kind) = kind.parent else {
        if args.parent.is_some() {
            bail!("orgs have no parent");
        }
        return Ok(None);
    };
    match &args.parent {
        Some(path) if path.contains('/') || parent_kind.parent.is_none() => {
            Ok(Some(ResourcePath::from_names(
                parent_kind,
                &path.split('/').map(String::from).collect::<Vec<_>>(),
            )?))
        }
        Some(name) => resolve(parent_kind, name, &args.placement, context).map(Some),
        None => {
            let names = ancestors(kind)
                .into_iter()
                .map(|k| default_for(k, &args.placement, context))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(ResourcePath::from_names(parent_kind, &names)?))
        }
    }
}

/// Every object of `kind` in the org (`-A`): each level of the tree is listed down to the
/// kind's parents, and the selector applies to the kind itself.
pub async fn list_everywhere(
    kind: &'static KindInfo,
    args: &ListArgs,
    client: &Client,
    context: &Context,
) -> anyhow::Result<Vec<Value>> {
    let org = ResourcePath::org(&default_for(
        &dialtone_types::kinds::ORG,
        &args.placement,
        context,
    )?);
    let Some(parent) = kind.parent else {
        return client
            .list_all(&collection_path(kind, None), &selector(args))
            .await
            .map_err(Into::into);
    };
    let mut levels = vec![kind];
    let mut above = parent;
    while let Some(next) = above.parent {
        levels.push(above);
        above = next;
    }
    levels.reverse();
    let mut parents = vec![org];
    let mut found = Vec::new();
    for (depth, level) in levels.iter().enumerate() {
        let last = depth + 1 == levels.len();
        let query = if last { selector(args) } else { Vec::new() };
        let mut next = Vec::new();
        for parent in &parents {
            let items = client
                .list_all(&collection_path(level, Some(parent)), &query)
                .await?;
            if last {
                found.extend(items);
            } else {
                next.extend(items.iter().filter_map(|item| {
                    item["metadata"]["name"]
                        .as_str()
                        .map(|name| parent.child(level, name))
                }));
            }
        }
        parents = next;
    }
    Ok(found)
}

fn selector(args: &ListArgs) -> Vec<(&'static str, String)> {
    args.selector
        .iter()
        .map(|s| ("labelSelector", s.clone()))
        .collect()
}

/// A PARENT column first, as kubectl's NAMESPACE column with `-A`.
pub fn with_parents(
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    objects: &[Value],
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let headers = std::iter::once("PARENT").chain(headers).collect();
    let rows = rows
        .into_iter()
        .zip(objects)
        .map(|(row, object)| {
            let parent = object["metadata"]["parent"].as_str().unwrap_or_default();
            std::iter::once(parent.to_string()).chain(row).collect()
        })
        .collect();
    (headers, rows)
}

pub fn api_path(path: &ResourcePath) -> String {
    format!("/v1/{path}")
}

pub(crate) fn collection_path(kind: &KindInfo, parent: Option<&ResourcePath>) -> String {
    match parent {
        None => format!("/v1/{}", kind.plural),
        Some(p) => format!("/v1/{p}/{}", kind.plural),
    }
}

fn create_body(kind: &'static KindInfo, args: &CreateArgs) -> anyhow::Result<Value> {
    let mut labels = serde_json::Map::new();
    for label in &args.labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label `{label}` must be key=value"))?;
        labels.insert(k.to_string(), json!(v));
    }
    let mut spec = serde_json::Map::new();
    if let Some(d) = &args.display_name {
        spec.insert("displayName".into(), json!(d));
    }
    if let Some(d) = &args.description {
        spec.insert("description".into(), json!(d));
    }
    if args.platform_admin {
        if kind.singular != "identity" {
            bail!("--platform-admin applies to identities only");
        }
        spec.insert("platformAdmin".into(), json!(true));
    }
    if !args.members.is_empty() {
        if kind.singular != "group" {
            bail!("--member applies to groups only");
        }
        spec.insert("members".into(), json!(args.members));
    }
    let name = args.name.rsplit('/').next().unwrap_or_default();
    Ok(
        json!({"apiVersion": dialtone_types::API_VERSION, "kind": kind.kind, "metadata": {"name": name, "labels": labels}, "spec": spec}),
    )
}

/// A placement flag naming a node at or below `kind`'s level (`--cluster` for a project)
/// means nothing for it: refused, rather than silently ignored.
pub fn check_placement(kind: &'static KindInfo, placement: &Placement) -> anyhow::Result<()> {
    let flags = [
        ("--org", &placement.org),
        ("--folder", &placement.folder),
        ("--project", &placement.project),
        ("--cluster", &placement.cluster),
    ];
    // The flags of the levels above the kind's: none for orgs, all four for namespaces.
    let depth = kind.depth().min(flags.len());
    for (flag, value) in &flags[depth..] {
        if value.is_some() {
            bail!(
                "{flag} means nothing for {}: they sit above that level (flags that apply: {})",
                kind.plural,
                flags[..depth]
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// The names of the objects of `kind` under the current context's defaults that start with
/// what was typed, for shell completion (`source <(COMPLETE=bash dialtone)`). Any trouble
/// (no context, no server) completes nothing rather than printing an error into the shell.
pub fn complete_names(
    kind: &'static KindInfo,
    current: &std::ffi::OsStr,
) -> Vec<clap_complete::engine::CompletionCandidate> {
    let typed = current.to_string_lossy().to_string();
    let names = || -> anyhow::Result<Vec<String>> {
        let config = dialtone_client::config::CliConfig::load(
            &dialtone_client::config::CliConfig::default_path(),
        )?;
        let name = std::env::var("DIALTONE_CONTEXT").ok();
        let context = config.context(name.as_deref())?.clone();
        let parent = match kind.parent {
            None => None,
            Some(parent) => Some(resolve(
                parent,
                &default_for(parent, &Placement::default(), &context)?,
                &Placement::default(),
                &context,
            )?),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let items = runtime.block_on(async {
            let client = Client::from_context(&context)?;
            let collection = collection_path(kind, parent.as_ref());
            let list = client.list_all(&collection, &[]);
            tokio::time::timeout(std::time::Duration::from_secs(3), list)
                .await
                .map_err(|_| anyhow::anyhow!("the server is slow"))?
                .map_err(anyhow::Error::from)
        })?;
        Ok(items
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
            .collect())
    };
    names()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(&typed))
        .map(clap_complete::engine::CompletionCandidate::new)
        .collect()
}

pub async fn run(
    kind: &'static KindInfo,
    command: NounCommand,
    client: &Client,
    context: &Context,
    output: Output,
) -> anyhow::Result<()> {
    let placement = match &command {
        NounCommand::Create(args) => &args.placement,
        NounCommand::Get(args) | NounCommand::Describe(args) => &args.placement,
        NounCommand::List(args) => &args.placement,
        NounCommand::Delete(args) => &args.object.placement,
    };
    check_placement(kind, placement)?;
    match command {
        NounCommand::Create(args) => {
            let path = resolve(kind, &args.name, &args.placement, context)?;
            let body = create_body(kind, &args)?;
            let created: Value = client
                .post(&collection_path(kind, path.parent().as_ref()), &body)
                .await?;
            match output {
                Output::Table => println!("{} {path} created", kind.singular),
                _ => print_value(output, &created)?,
            }
        }
        NounCommand::Get(ObjectArgs { name, placement }) => {
            let path = resolve(kind, &name, &placement, context)?;
            let object: Value = client.get(&api_path(&path), &[]).await?;
            match output {
                Output::Table => print_table(&OBJECT_HEADERS, &[object_row(&object)]),
                _ => print_value(output, &object)?,
            }
        }
        NounCommand::Describe(ObjectArgs { name, placement }) => {
            let path = resolve(kind, &name, &placement, context)?;
            let object: Value = client.get(&api_path(&path), &[]).await?;
            if !output.is_table() {
                return print_value(output, &object);
            }
            describe(kind, &path, &object, client).await?;
        }
        NounCommand::List(args) if args.all => {
            let items = list_everywhere(kind, &args, client, context).await?;
            match output {
                _ if !output.is_table() => print_list(output, kind.kind, items)?,
                _ if items.is_empty() => eprintln!("no {} found", kind.plural),
                _ => {
                    let rows = items.iter().map(object_row).collect();
                    let (headers, rows) = with_parents(OBJECT_HEADERS.to_vec(), rows, &items);
                    let (headers, rows) = match output {
                        Output::Wide => wide(headers, rows, &items),
                        _ => (headers, rows),
                    };
                    print_table(&headers, &rows);
                }
            }
        }
        NounCommand::List(args) => {
            let parent = resolve_parent(kind, &args, context)?;
            let mut query = Vec::new();
            if let Some(s) = &args.selector {
                query.push(("labelSelector", s.clone()));
            }
            let collection = collection_path(kind, parent.as_ref());
            if args.watch {
                if let Some(rv) = &args.resource_version {
                    query.push(("resourceVersion", rv.clone()));
                }
                return watch(&collection, &query, client, output).await;
            }
            let items = client.list_all(&collection, &query).await?;
            match output {
                Output::Table | Output::Wide if items.is_empty() => {
                    eprintln!("no {} found", kind.plural)
                }
                Output::Table => print_table(
                    &OBJECT_HEADERS,
                    &items.iter().map(object_row).collect::<Vec<_>>(),
                ),
                Output::Wide => {
                    let rows = items.iter().map(object_row).collect();
                    let (headers, rows) = wide(OBJECT_HEADERS.to_vec(), rows, &items);
                    print_table(&headers, &rows);
                }
                _ => print_list(output, kind.kind, items)?,
            }
        }
        NounCommand::Delete(args) => {
            let path = resolve(kind, &args.object.name, &args.object.placement, context)?;
            let query = if args.cascade {
                vec![("cascade", "true".to_string())]
            } else {
                vec![]
            };
            let (code, body) = client.delete(&api_path(&path), &query).await?;
            match (output, code) {
                (Output::Table, 202) => println!(
                    "{} {path} is being deleted; waiting on finalizers {}",
                    kind.singular, body["metadata"]["finalizers"]
                ),
                (Output::Table, _) => println!("{} {path} deleted", kind.singular),
                _ => print_value(output, &body)?,
            }
        }
    }
    Ok(())
}

async fn describe(
    kind: &'static KindInfo,
    path: &ResourcePath,
    object: &Value,
    client: &Client,
) -> anyhow::Result<()> {
    let meta = &object["metadata"];
    let field = |label: &str, value: String| println!("{:<14}{}", format!("{label}:"), value);
    let list = |v: &Value| match v.as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => "<none>".into(),
    };
    field("Name", meta["name"].as_str().unwrap_or_default().into());
    field("Kind", kind.kind.into());
    field("Path", path.to_string());
    field("UID", meta["uid"].as_str().unwrap_or_default().into());
    field(
        "Home region",
        meta["homeRegion"].as_str().unwrap_or_default().into(),
    );
    field(
        "Created",
        format!(
            "{} ({} ago)",
            meta["creationTimestamp"].as_str().unwrap_or_default(),
            age(&meta["creationTimestamp"])
        ),
    );
    if let Some(deleting) = meta["deletionTimestamp"].as_str() {
        field("Deleting", format!("since {deleting}"));
    }
    field("Generation", meta["generation"].to_string());
    field(
        "Version",
        meta["resourceVersion"].as_str().unwrap_or_default().into(),
    );
    field("Labels", labels(&meta["labels"]));
    field("Annotations", labels(&meta["annotations"]));
    field("Finalizers", list(&meta["finalizers"]));
    println!("Spec:");
    match object["spec"].as_object() {
        Some(spec) if !spec.is_empty() => {
            for (k, v) in spec {
                println!(
                    "  {k}: {}",
                    v.as_str().map_or_else(|| v.to_string(), String::from)
                );
            }
        }
        _ => println!("  <empty>"),
    }
    let conditions = object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if conditions.is_empty() {
        field("Conditions", "<none>".into());
    } else {
        println!("Conditions:");
        for c in conditions {
            println!(
                "  {} {} {} {}",
                c["type"].as_str().unwrap_or_default(),
                c["status"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            );
        }
    }
    let mut children = Vec::new();
    for child in kind.children() {
        let items = client
            .list_all(&collection_path(child, Some(path)), &[])
            .await?;
        children.push(format!("{} {}", items.len(), child.plural));
    }
    if !children.is_empty() {
        field("Children", children.join(", "));
    }
    Ok(())
}

async fn watch(
    collection: &str,
    query: &[(&str, String)],
    client: &Client,
    output: Output,
) -> anyhow::Result<()> {
    let mut events = client.watch(collection, query).await?;
    if matches!(output, Output::Table | Output::Wide) {
        println!("{:<9} {:<24} {:<10} VERSION", "EVENT", "NAME", "STATE");
    }
    while let Some(event) = events.next().await {
        let event = event?;
        if event["type"] == "ERROR" {
            bail!(
                "the watch ended: {}",
                event["object"]["message"]
                    .as_str()
                    .unwrap_or("unknown error")
            );
        }
        match output {
            Output::Table | Output::Wide => {
                let row = object_row(&event["object"]);
                let rv = event["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                println!(
                    "{:<9} {:<24} {:<10} {rv}",
                    event["type"].as_str().unwrap_or_default(),
                    row[0],
                    row[2]
                );
            }
            Output::Json => println!("{}", serde_json::to_string(&event)?),
            Output::Yaml => print!("---\n{}", serde_yaml_ng::to_string(&event)?),
            // The rest print each changed object, as `kubectl get -w -o name` does.
            _ => print_value(output, &event["object"])?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_types::kinds::{FOLDER, PROJECT};

    #[test]
    fn short_names_take_ancestors_from_flags_then_context() {
        let context = Context {
            org: "acme".into(),
            folder: "eng".into(),
            ..Default::default()
        };
        let flags = Placement {
            folder: Some("ops".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&PROJECT, "web", &flags, &context)
                .unwrap()
                .to_string(),
            "orgs/acme/folders/ops/projects/web"
        );
        assert_eq!(
            resolve(&PROJECT, "x/y/web", &flags, &context)
                .unwrap()
                .to_string(),
            "orgs/x/folders/y/projects/web"
        );
        let empty = Context::default();
        let err = resolve(&FOLDER, "eng", &Placement::default(), &empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--org"), "{err}");
    }
}
