//! `dialtone server`: starts the control plane; with `--dev`, also everything a newcomer needs.

use std::path::PathBuf;

use anyhow::Context as _;
use dialtone_client::{CliConfig, Context};
use dialtone_server::{ServerOptions, StoreLocation, tls::TlsFiles};

use dialtone_backend::aws::AwsBackendOptions;
use dialtone_backend::sim::SimBackendOptions;
use dialtone_backend::sim::remote::RemoteSimOptions;
use dialtone_backend::sim::service::SimServiceOptions;

use crate::cli::{ProviderKind, ServerArgs, SimCloudArgs, SimServeArgs};

/// `--peer` and the region listener's settings; clap has checked that they come together.
fn region_options(args: &ServerArgs) -> Option<dialtone_server::regions::RegionsOptions> {
    if args.peers.is_empty() {
        return None;
    }
    Some(dialtone_server::regions::RegionsOptions {
        peers: args.peers.iter().cloned().collect(),
        listen: args.region_listen?,
        tls: dialtone_server::tls::TlsFiles {
            ca_cert: args.region_ca.clone()?,
            cert: args.region_cert.clone()?,
            key: args.region_key.clone()?,
        },
    })
}

/// The machine images `--aws-image-id` and `--aws-arm64-image-id` name.
fn aws_images(args: &ServerArgs) -> dialtone_backend::aws::MachineImages {
    dialtone_backend::aws::MachineImages {
        amd64: args.aws_image_id.clone().unwrap_or_default(),
        arm64: args.aws_arm64_image_id.clone(),
    }
}

/// `~/.local/share/dialtone/{name}` (or under `$XDG_DATA_HOME`).
fn default_data_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share")
        });
    base.join("dialtone").join(name)
}

/// The sim cloud `--sim-*` and `--kube-listen` describe, kept in `data_dir`.
fn sim_options(args: &SimCloudArgs, data_dir: PathBuf) -> SimBackendOptions {
    SimBackendOptions {
        data_dir,
        time_scale: args.sim_time_scale,
        describe_lag: std::time::Duration::from_millis(args.sim_describe_lag_ms),
        peering_expiry: std::time::Duration::from_secs(args.sim_peering_expiry),
        kube_listen: args.kube_listen,
        webhook_allowed_cidrs: args.webhook_allowed_cidrs.0.clone(),
    }
}

/// Waits until `serving` ends or the process is told to stop (Ctrl-C, SIGTERM).
async fn until_stopped(serving: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    tokio::select! {
        _ = serving => {}
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        _ = terminate.recv() => eprintln!("stopping"),
    }
    Ok(())
}

/// `dialtone sim serve`: the sim cloud for several servers, until Ctrl-C or SIGTERM.
pub async fn sim_serve(args: SimServeArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| default_data_dir("sim"));
    let running = dialtone_backend::sim::service::serve(SimServiceOptions {
        cloud: sim_options(&args.sim, data_dir),
        listen: args.listen,
        tls_names: args.tls_names,
    })
    .await?;
    println!(
        "dialtone sim service listening on https://{} (clusters on {})\n\nStart servers with:\n  dialtone server --sim-url https://{} --sim-ca {} --sim-token-file {}",
        running.addr,
        args.sim.kube_listen,
        running.addr,
        running.ca_cert.display(),
        running.token_file.display(),
    );
    until_stopped(running.wait()).await
}

pub async fn run(args: ServerArgs, config_path: PathBuf) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(if args.dev { "dev" } else { "server" }));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let store = StoreLocation::parse(&args.store, &data_dir)?;
    let tls = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
            ca_cert: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let mut running = dialtone_server::start(ServerOptions {
        listen: args.listen,
        store,
        data_dir: data_dir.clone(),
        region: args.region.clone(),
        tls,
        tls_names: args.tls_names.clone(),
        bootstrap_org: args.bootstrap_org.clone(),
        bootstrap_identity: "admin".into(),
        mint_admin_token: args.dev,
        compaction_interval: std::time::Duration::from_secs(args.compaction_interval),
        backend: match args.provider {
            ProviderKind::Sim => match &args.sim_url {
                Some(url) => dialtone_backend::sim::remote::backend(RemoteSimOptions {
                    url: url.clone(),
                    ca: args.sim_ca.clone().unwrap_or_default(),
                    token_file: args.sim_token_file.clone().unwrap_or_default(),
                }),
                None => dialtone_backend::sim::backend(sim_options(&args.sim, data_dir.clone())),
            },
            ProviderKind::Aws => dialtone_backend::aws::backend(AwsBackendOptions {
                data_dir: data_dir.clone(),
                endpoint_url: args.aws_endpoint_url.clone(),
                images: aws_images(&args),
                check_region: args.aws_check_region.clone(),
                lifecycle_time_scale: args.aws_time_scale,
            }),
        },
        fault_panic_tasks: args.fault_panic_task.clone(),
        kubernetes_versions: args.kubernetes_versions.clone(),
        metering: dialtone_server::MeteringOptions {
            period_seconds: args.metering_period as i64,
            interval: std::time::Duration::from_millis(args.metering_interval_ms),
        },
        leadership: dialtone_server::LeadershipOptions {
            identity: args.server_id.clone(),
            lease: std::time::Duration::from_secs(args.leader_lease_seconds),
        },
        regions: region_options(&args),
        cluster_resync: args
            .cluster_resync_seconds
            .map(std::time::Duration::from_secs),
    })
    .await?;
    let endpoint = format!("https://{}", running.addr);
    let ca_pem = std::fs::read_to_string(&running.ca_cert)
        .with_context(|| format!("cannot read {}", running.ca_cert.display()))?;
    if args.dev {
        let token = running
            .admin_token
            .as_ref()
            .context("the dev server minted no admin token")?;
        let mut config = CliConfig::load(&config_path)?;
        config.upsert(Context {
            name: args.context_name.clone(),
            server: endpoint.clone(),
            certificate_authority_data: ca_pem,
            token: token.token.clone(),
            org: args.bootstrap_org.clone(),
            ..Default::default()
        });
        config.current_context = args.context_name.clone();
        config.save(&config_path)?;
        println!(
            "\nDialtone dev server is running.\n\n  API:        {endpoint}\n  Store:      {} ({})\n  Data dir:   {}\n  CA:         {}\n  Region:     {}\n  Signed in:  admin@{} (platform admin)\n  CLI config: {} (context \"{}\", now current)\n\nTry, in another terminal:\n  dialtone whoami\n  dialtone folder create eng\n  dialtone project create web --folder eng --label tier=web\n  dialtone project list --folder eng\n  dialtone folder describe eng\n\nThe state persists in the data dir; stop with Ctrl-C.\n",
            running.store_backend,
            args.store,
            data_dir.display(),
            running.ca_cert.display(),
            args.region,
            args.bootstrap_org,
            config_path.display(),
            args.context_name,
        );
    } else {
        println!(
            "dialtone server listening on {endpoint} (store: {}, region: {})",
            running.store_backend, args.region
        );
        if let Some(token) = &running.admin_token {
            println!(
                "\nBootstrap: created org `{}` and platform admin `admin`. Their token, shown only now:\n\n  {}\n\nCA certificate for clients: {}\n",
                args.bootstrap_org,
                token.token,
                running.ca_cert.display()
            );
        }
    }
    until_stopped(running.wait()).await?;
    running.resign().await;
    Ok(())
}
