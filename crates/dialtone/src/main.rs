//! The `dialtone` binary: the control plane (`dialtone server`) and the CLI.

mod cli;
mod cluster;
mod connection;
mod exec_credential;
mod jsonpath;
mod kubeconfig;
mod output;
mod policy;
mod server;
mod tree;
mod usage;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::FromArgMatches;
use dialtone_client::{CliConfig, Client, ClientError};
use dialtone_types::ResourcePath;
use dialtone_types::auth::{NewToken, TokenRequest, WhoAmI};
use dialtone_types::kinds::{FOLDER, GROUP, IDENTITY, NAMESPACE, ORG, PROJECT};
use serde_json::Value;

use crate::cli::{
    AuditCommand, Cli, ClusterTypesCommand, Command, ConfigCommand, Output, TokenCommand,
    VersionsCommand,
};
use crate::output::{print_list, print_table, print_value, printable};

// The control plane decodes and drops many small objects on every controller pass; mimalloc
// keeps that cheap where glibc's allocator spends its time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // With COMPLETE set, the shell is asking for completions: answer and exit.
    clap_complete::CompleteEnv::with_factory(cli::command).complete();
    let cli = match Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Long-running services write to sockets whose peers may die at any time.
    let is_server = matches!(
        cli.command,
        Command::Server(_) | Command::Sim(cli::SimCommand::Serve(_))
    );
    if !is_server {
        // A CLI whose output is piped into `head` should end quietly when the reader goes,
        // as Unix tools do, not panic on the write. The server and the sim service keep
        // ignoring SIGPIPE, which a write to a dead peer's socket would otherwise raise.
        // SAFETY: called before any thread starts; restores the default disposition.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_level = if is_server { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints an error for people: the message, then one line per bad field.
fn report(error: &anyhow::Error) {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Api(api)) if api.causes.is_empty() => {
            eprintln!("error: {} ({:?})", printable(&api.message), api.reason)
        }
        // The message repeats the causes; one line per field reads better.
        Some(ClientError::Api(api)) => {
            eprintln!("error: the request is invalid ({:?}):", api.reason);
            for cause in &api.causes {
                eprintln!(
                    "  {}: {}",
                    printable(&cause.field),
                    printable(&cause.message)
                );
            }
        }
        _ => eprintln!("error: {}", printable(&format!("{error:#}"))),
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(CliConfig::default_path)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = config_path(&cli);
    let output = cli.output;
    match cli.command {
        Command::Server(args) => server::run(*args, config_path).await,
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut cli::command(),
                "dialtone",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&dialtone_server::openapi_document())?
            );
            Ok(())
        }
        Command::Config(command) => config(command, &config_path),
        Command::Login(args) => login(args, &config_path).await,
        Command::Sim(cli::SimCommand::Serve(args)) => server::sim_serve(args).await,
        Command::Regions(cli::RegionsCommand::Certificates {
            dir,
            regions,
            names,
        }) => {
            for file in dialtone_server::tls::region_certificates(&dir, &regions, &names)? {
                println!("{}", file.display());
            }
            Ok(())
        }
        command => {
            let config = CliConfig::load(&config_path)?;
            let context = config.context(cli.context.as_deref())?.clone();
            let client = Client::from_context(&context)?;
            match command {
                Command::Org(c) => tree::run(&ORG, c, &client, &context, output).await,
                Command::Folder(c) => tree::run(&FOLDER, c, &client, &context, output).await,
                Command::Project(c) => tree::run(&PROJECT, c, &client, &context, output).await,
                Command::Namespace(c) => tree::run(&NAMESPACE, c, &client, &context, output).await,
                Command::Identity(c) => tree::run(&IDENTITY, c, &client, &context, output).await,
                Command::Group(c) => tree::run(&GROUP, c, &client, &context, output).await,
                Command::Policy(c) => policy::run(c, &client, output).await,
                Command::Cluster(c) => {
                    cluster::run(c, &client, &context, &config_path, output).await
                }
                Command::Sim(c) => cluster::sim(c, &client, output).await,
                Command::Connection(c) => connection::run(c, &client, &context, output).await,
                Command::ClusterTypes(c) => cluster_types(c, &client, output).await,
                Command::Versions(c) => versions(c, &client, output).await,
                Command::Token(c) => token(c, &client, &context, output).await,
                Command::Audit(c) => audit(c, &client, &context, output).await,
                Command::Invoice(cli::InvoiceCommand::Get { month, org }) => {
                    let org = org_of(org, &context)?;
                    usage::invoice(month, org, &client, output).await
                }
                Command::Billing(c) => {
                    let org = org_of(c.org(), &context)?;
                    usage::billing(c, org, &client, output).await
                }
                Command::Usage(args) => {
                    let org = org_of(args.org.clone(), &context)?;
                    usage::run(args, org, &client, output).await
                }
                Command::Regions(c) => regions(c, &client, output).await,
                Command::Whoami => {
                    let me: WhoAmI = client.get("/v1/whoami", &[]).await?;
                    match output {
                        Output::Table => println!(
                            "{}@{}{} at {}",
                            me.identity,
                            me.org,
                            if me.platform_admin {
                                " (platform admin)"
                            } else {
                                ""
                            },
                            client.endpoint()
                        ),
                        _ => print_value(output, &serde_json::to_value(me)?)?,
                    }
                    Ok(())
                }
                _ => unreachable!("handled above"),
            }
        }
    }
}

fn org_of(flag: Option<String>, context: &dialtone_client::Context) -> anyhow::Result<String> {
    let placement = cli::Placement {
        org: flag,
        ..Default::default()
    };
    tree::default_for(&ORG, &placement, context)
}

async fn token(
    command: TokenCommand,
    client: &Client,
    context: &dialtone_client::Context,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            identity,
            org,
            description,
            ttl,
        } => {
            let me: WhoAmI = client.get("/v1/whoami", &[]).await?;
            let org = org.unwrap_or(me.org);
            let identity = identity.unwrap_or(me.identity);
            let request = TokenRequest {
                description,
                ttl_seconds: ttl.map(|ttl| ttl.as_secs()),
            };
            let path = ResourcePath::org(&org).child(&IDENTITY, &identity);
            let token: NewToken = client
                .post(&format!("{}/tokens", tree::api_path(&path)), &request)
                .await?;
            match output {
                Output::Table => {
                    println!("{}", token.token);
                    eprintln!(
                        "token {} for {identity}@{org}, expires {}; store it now, it is not shown again",
                        token.info.id, token.info.expires_at
                    );
                }
                _ => print_value(output, &serde_json::to_value(token)?)?,
            }
        }
        TokenCommand::List { org } => {
            let org = org_of(org, context)?;
            let list: Value = client.get(&format!("/v1/orgs/{org}/tokens"), &[]).await?;
            match output {
                Output::Table => {
                    let rows: Vec<Vec<String>> = list["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| {
                            ["id", "identity", "description", "createdAt", "expiresAt"]
                                .iter()
                                .map(|f| t[*f].as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .collect();
                    print_table(
                        &["ID", "IDENTITY", "DESCRIPTION", "CREATED", "EXPIRES"],
                        &rows,
                    );
                }
                _ => print_list(
                    output,
                    "TokenInfo",
                    list["items"].as_array().cloned().unwrap_or_default(),
                )?,
            }
        }
        TokenCommand::Revoke { id, org } => {
            let org = org_of(org, context)?;
            client
                .delete(&format!("/v1/orgs/{org}/tokens/{id}"), &[])
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

async fn regions(
    command: cli::RegionsCommand,
    client: &Client,
    output: Output,
) -> anyhow::Result<()> {
    let list: Value = client.get("/v1/regions", &[]).await?;
    let items: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    let digests: Option<Value> = match command {
        cli::RegionsCommand::Status => Some(client.get("/v1/regions/digests", &[]).await?),
        _ => None,
    };
    if !output.is_table() {
        return match digests {
            Some(digests) => print_value(
                output,
                &serde_json::json!({"regions": items, "convergence": digests}),
            ),
            None => print_list(output, "Region", items),
        };
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            let name = match r["this"].as_bool() {
                Some(true) => format!("{} (this)", text(&r["name"])),
                _ => text(&r["name"]),
            };
            vec![
                name,
                match (r["this"].as_bool(), r["reachable"].as_bool()) {
                    (Some(true), _) => "-".into(),
                    (_, Some(true)) => "yes".into(),
                    _ => format!("no: {}", text(&r["error"])),
                },
                r["lagSeconds"]
                    .as_f64()
                    .map_or("-".into(), |s| format!("{s:.1}s")),
                text(&r["caughtUpAt"]),
                r["appliedRevision"]
                    .as_i64()
                    .map_or("-".into(), |r| r.to_string()),
            ]
        })
        .collect();
    print_table(
        &["REGION", "REACHABLE", "LAG", "CAUGHT UP AT", "APPLIED"],
        &rows,
    );
    if let Some(d) = digests {
        println!();
        match d["converged"].as_bool() {
            Some(true) => println!("digests match in every region"),
            _ => {
                for pair in d["differing"].as_array().into_iter().flatten() {
                    println!("digests differ: {}", text(pair));
                }
                for (region, why) in d["unreachable"].as_object().into_iter().flatten() {
                    println!("not compared: {region} ({})", text(why));
                }
            }
        }
    }
    Ok(())
}

async fn versions(command: VersionsCommand, client: &Client, output: Output) -> anyhow::Result<()> {
    let VersionsCommand::List { channel } = command;
    let list: Value = client.get("/v1/versions", &[]).await?;
    let items: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            channel
                .as_deref()
                .is_none_or(|c| !v["channels"][c].is_null())
        })
        .cloned()
        .collect();
    if !output.is_table() {
        return print_list(output, "KubernetesVersionInfo", items);
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            let days = v["daysToEndOfSupport"].as_i64().unwrap_or_default();
            let mut row = vec![
                text(&v["minor"]),
                text(&v["released"]),
                match days {
                    d if d < 0 => format!("{} (past)", text(&v["endOfSupport"])),
                    d => format!("{} ({d}d)", text(&v["endOfSupport"])),
                },
            ];
            for c in ["rapid", "regular", "stable"] {
                let mut cell = text(&v["channels"][c]);
                if v["defaultFor"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == c))
                {
                    cell.push_str(" (default)");
                }
                row.push(cell);
            }
            if output == Output::Wide {
                row.push(
                    v["patches"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| p.as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            row
        })
        .collect();
    let mut header = vec![
        "MINOR",
        "RELEASED",
        "END OF SUPPORT",
        "RAPID",
        "REGULAR",
        "STABLE",
    ];
    if output == Output::Wide {
        header.push("PATCHES");
    }
    print_table(&header, &rows);
    Ok(())
}

async fn cluster_types(
    command: ClusterTypesCommand,
    client: &Client,
    output: Output,
) -> anyhow::Result<()> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match command {
        ClusterTypesCommand::List => {
            let list: Value = client.get("/v1/clustertypes", &[]).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            match output {
                Output::Table => {
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|t| {
                            vec![
                                text(&t["name"]),
                                t["decisions"].as_array().map_or(0, Vec::len).to_string(),
                                text(&t["description"]),
                            ]
                        })
                        .collect();
                    print_table(&["NAME", "DECISIONS", "DESCRIPTION"], &rows);
                }
                _ => print_list(output, "ClusterTypeInfo", items)?,
            }
        }
        ClusterTypesCommand::Describe { name } => {
            let info: Value = client.get(&format!("/v1/clustertypes/{name}"), &[]).await?;
            if !output.is_table() {
                return print_value(output, &info);
            }
            println!("{}: {}\n", text(&info["name"]), text(&info["description"]));
            let wide = output == Output::Wide;
            let rows: Vec<Vec<String>> = info["decisions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let enforces = d["enforces"].as_str();
                    let mut row = vec![
                        text(&d["key"]),
                        text(&d["value"]),
                        enforces.map_or("advisory", |_| "enforced").to_string(),
                    ];
                    if wide {
                        row.push(enforces.unwrap_or("-").to_string());
                    }
                    row.push(text(&d["reason"]));
                    row
                })
                .collect();
            let mut header = vec!["DECISION", "VALUE", "ENFORCED"];
            if wide {
                header.push("BUILDS OR CHECKS");
            }
            header.push("WHY");
            print_table(&header, &rows);
            println!(
                "\n{} enforced: something built or checked follows from each; {} advisory: recorded in every plan and shown, but nothing is built from them yet.",
                info["enforced"], info["advisory"]
            );
        }
    }
    Ok(())
}

async fn audit(
    command: AuditCommand,
    client: &Client,
    context: &dialtone_client::Context,
    output: Output,
) -> anyhow::Result<()> {
    let AuditCommand::List { org, tail } = command;
    let org = org_of(org, context)?;
    let mut records = client
        .list_all(&format!("/v1/orgs/{org}/audit"), &[])
        .await?;
    if let Some(n) = tail {
        records = records.split_off(records.len().saturating_sub(n));
    }
    match output {
        Output::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r["time"].as_str().unwrap_or_default().to_string(),
                        r["actor"].as_str().unwrap_or_default().to_string(),
                        r["method"].as_str().unwrap_or_default().to_string(),
                        r["path"].as_str().unwrap_or_default().to_string(),
                        r["status"].to_string(),
                        r["outcome"].as_str().unwrap_or_default().to_string(),
                    ]
                })
                .collect();
            print_table(
                &["TIME", "ACTOR", "METHOD", "PATH", "STATUS", "OUTCOME"],
                &rows,
            );
        }
        _ => print_list(output, "AuditRecord", records)?,
    }
    Ok(())
}

/// Checks the server, its CA and the token with `whoami`, and only then saves the context.
async fn login(args: cli::LoginArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token from {}", file.display()))?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("no token: pass --token-file FILE, or set DIALTONE_TOKEN"),
    };
    let ca = std::fs::read_to_string(&args.certificate_authority).with_context(|| {
        format!(
            "cannot read the CA from {}",
            args.certificate_authority.display()
        )
    })?;
    let server = args.server.trim_end_matches('/').to_string();
    let host = server
        .strip_prefix("https://")
        .with_context(|| format!("`{server}` is not an https:// URL; Dialtone serves TLS only"))?
        .split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string();
    let mut context = dialtone_client::Context {
        name: args.name.unwrap_or(host),
        server,
        certificate_authority_data: ca,
        token,
        ..Default::default()
    };
    let me: WhoAmI = Client::from_context(&context)?
        .get("/v1/whoami", &[])
        .await
        .with_context(|| format!("cannot sign in to {}", context.server))?;
    context.org = me.org.clone();
    let mut config = CliConfig::load(path)?;
    let name = context.name.clone();
    config.upsert(context);
    config.current_context = name.clone();
    config.save(path)?;
    println!(
        "signed in to {} as {}@{}; context \"{name}\" is the current one",
        args.server, me.identity, me.org
    );
    Ok(())
}

fn config(command: ConfigCommand, path: &std::path::Path) -> anyhow::Result<()> {
    let mut config = CliConfig::load(path)?;
    match command {
        ConfigCommand::UseContext { name } => {
            config.context(Some(&name))?;
            config.current_context = name.clone();
            config.save(path)?;
            println!("switched to context \"{name}\"");
        }
        ConfigCommand::GetContexts => {
            let rows: Vec<Vec<String>> = config
                .contexts
                .iter()
                .map(|c| {
                    let current = if c.name == config.current_context {
                        "*"
                    } else {
                        ""
                    };
                    vec![
                        current.into(),
                        c.name.clone(),
                        c.server.clone(),
                        c.org.clone(),
                        c.folder.clone(),
                        c.project.clone(),
                    ]
                })
                .collect();
            print_table(
                &["CURRENT", "NAME", "SERVER", "ORG", "FOLDER", "PROJECT"],
                &rows,
            );
        }
        ConfigCommand::CurrentContext => println!("{}", config.context(None)?.name),
        ConfigCommand::SetContext {
            name,
            org,
            folder,
            project,
        } => {
            let name = match name {
                Some(n) => n,
                None => config.context(None)?.name.clone(),
            };
            let context = config
                .context_mut(&name)
                .with_context(|| format!("no context named `{name}`"))?;
            if let Some(org) = org {
                context.org = org;
            }
            if let Some(folder) = folder {
                context.folder = folder;
            }
            if let Some(project) = project {
                context.project = project;
            }
            let summary = format!(
                "org={} folder={} project={}",
                context.org, context.folder, context.project
            );
            config.save(path)?;
            println!("context \"{name}\" defaults: {summary}");
        }
    }
    Ok(())
}
