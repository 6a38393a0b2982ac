//! Merging a cluster's credentials into a kubeconfig, as `gcloud container clusters
//! get-credentials` does: the cluster, user and context entries of that name are replaced,
//! everything else in the file is kept, and the new context becomes the current one.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine;
use serde_json::Value;
use serde_yaml_ng::{Mapping, Value as Yaml};

fn named(name: &str, key: &str, body: Yaml) -> Yaml {
    let mut entry = Mapping::new();
    entry.insert("name".into(), name.into());
    entry.insert(key.into(), body);
    Yaml::Mapping(entry)
}

fn upsert(config: &mut Mapping, list: &str, entry: Yaml) {
    let name = entry.get("name").cloned();
    let items = config
        .entry(list.into())
        .or_insert_with(|| Yaml::Sequence(Vec::new()));
    if !items.is_sequence() {
        *items = Yaml::Sequence(Vec::new());
    }
    let items = items.as_sequence_mut().expect("made a sequence");
    items.retain(|item| item.get("name") != name.as_ref());
    items.push(entry);
}

/// How kubectl authenticates to the cluster.
pub enum Auth {
    /// A token written into the file, good until it expires (`--static`).
    Token(String),
    /// A client-go exec credential plugin: this command, run with these arguments and
    /// environment, prints an `ExecCredential` whenever kubectl needs one.
    Exec {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
}

impl Auth {
    fn user(&self) -> Mapping {
        let mut user = Mapping::new();
        match self {
            Auth::Token(token) => {
                user.insert("token".into(), token.as_str().into());
            }
            Auth::Exec { command, args, env } => {
                let mut exec = Mapping::new();
                exec.insert(
                    "apiVersion".into(),
                    "client.authentication.k8s.io/v1".into(),
                );
                exec.insert("command".into(), command.as_str().into());
                exec.insert(
                    "args".into(),
                    Yaml::Sequence(args.iter().map(|a| a.as_str().into()).collect()),
                );
                let env = env
                    .iter()
                    .map(|(name, value)| {
                        let mut entry = Mapping::new();
                        entry.insert("name".into(), name.as_str().into());
                        entry.insert("value".into(), value.as_str().into());
                        Yaml::Mapping(entry)
                    })
                    .collect();
                exec.insert("env".into(), Yaml::Sequence(env));
                exec.insert("interactiveMode".into(), "Never".into());
                exec.insert(
                    "installHint".into(),
                    "dialtone is the CLI that wrote this kubeconfig; install it, or run `dialtone cluster credentials --static` for a kubeconfig that needs nothing".into(),
                );
                user.insert("exec".into(), Yaml::Mapping(exec));
            }
        }
        user
    }
}

pub fn merge(file: &Path, context: &str, credentials: &Value, auth: &Auth) -> anyhow::Result<()> {
    let mut config: Mapping = match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a kubeconfig", file.display()))?,
        _ => Mapping::new(),
    };
    config.insert("apiVersion".into(), "v1".into());
    config.insert("kind".into(), "Config".into());
    let text = |key: &str| credentials[key].as_str().unwrap_or("").to_string();
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), text("server").into());
    cluster.insert("tls-server-name".into(), text("tlsServerName").into());
    cluster.insert(
        "certificate-authority-data".into(),
        base64::engine::general_purpose::STANDARD
            .encode(text("certificateAuthority"))
            .into(),
    );
    let user = auth.user();
    let mut context_body = Mapping::new();
    context_body.insert("cluster".into(), context.into());
    context_body.insert("user".into(), context.into());
    upsert(
        &mut config,
        "clusters",
        named(context, "cluster", Yaml::Mapping(cluster)),
    );
    upsert(
        &mut config,
        "users",
        named(context, "user", Yaml::Mapping(user)),
    );
    upsert(
        &mut config,
        "contexts",
        named(context, "context", Yaml::Mapping(context_body)),
    );
    config.insert("current-context".into(), context.into());
    // The file holds a credential: readable by its owner alone.
    dialtone_client::config::write_private(file, &serde_yaml_ng::to_string(&config)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
