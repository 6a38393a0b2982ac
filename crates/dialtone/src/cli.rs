//! The command line, declared with clap.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dialtone",
    version,
    about = "Kubernetes clusters as a policy-defined dial-tone service"
)]
pub struct Cli {
    /// The context of the CLI configuration to use (default: the current one).
    #[arg(long, global = true, env = "DIALTONE_CONTEXT")]
    pub context: Option<String>,
    /// The CLI configuration file.
    #[arg(long, global = true, env = "DIALTONE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format: wide, name, json, yaml, csv (usage), jsonpath=TEMPLATE or
    /// custom-columns=HEADER:.path,… (default: a table).
    #[arg(short, long, global = true, value_parser = parse_output, default_value = "table")]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    /// The table with more columns.
    Wide,
    /// `kind/name`, one a line.
    Name,
    Json,
    Yaml,
    /// A kubectl JSONPath template (kept for the whole run of the command).
    JsonPath(&'static str),
    /// `HEADER:.path` pairs, comma-separated.
    CustomColumns(&'static str),
    /// Comma-separated values, for spreadsheets (`dialtone usage`).
    Csv,
}

impl Output {
    /// Whether people read it: a table, plain or wide.
    pub fn is_table(self) -> bool {
        matches!(self, Output::Table | Output::Wide)
    }
}

/// `-o` as kubectl takes it.
pub fn parse_output(text: &str) -> Result<Output, String> {
    // A CLI process prints once: keeping the template for its whole run is fine.
    let keep = |t: &str| -> &'static str { Box::leak(t.to_string().into_boxed_str()) };
    Ok(match text {
        "" | "table" => Output::Table,
        "wide" => Output::Wide,
        "name" => Output::Name,
        "json" => Output::Json,
        "yaml" => Output::Yaml,
        "csv" => Output::Csv,
        other => match other.split_once('=') {
            Some(("jsonpath", template)) => {
                crate::jsonpath::render(template, &serde_json::Value::Null)?;
                Output::JsonPath(keep(template))
            }
            Some(("custom-columns", columns)) => {
                for column in columns.split(',') {
                    let (header, path) = column.split_once(':').filter(|(h, p)| !h.is_empty() && !p.is_empty()).ok_or_else(|| {
                        format!("custom-columns take HEADER:.path pairs, comma-separated; `{column}` is not one")
                    })?;
                    let _ = header;
                    crate::jsonpath::column(path, &serde_json::Value::Null)?;
                }
                Output::CustomColumns(keep(columns))
            }
            _ => {
                return Err(format!(
                    "unknown output format `{other}`; valid formats: wide, name, json, yaml, csv, jsonpath=TEMPLATE, custom-columns=HEADER:.path,…"
                ));
            }
        },
    })
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane.
    #[command(
        after_help = "Examples:\n  dialtone server --dev\n  dialtone server --dev --sim-time-scale 0.1\n  dialtone server --store etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 --tls-cert server.pem --tls-key server-key.pem"
    )]
    Server(Box<ServerArgs>),
    /// Orgs: isolated tenants.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone org create acme\n  dialtone org list -o name\n  dialtone org describe acme"
    )]
    Org(NounCommand),
    /// Folders: containers under an org.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone folder create eng --display-name Engineering\n  dialtone folder list -l team=core -o wide\n  dialtone folder delete eng --cascade"
    )]
    Folder(NounCommand),
    /// Projects: containers under a folder, where clusters live.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone project create web --folder eng --label tier=web\n  dialtone project list -A\n  dialtone project get acme/eng/web -o yaml"
    )]
    Project(NounCommand),
    /// Smart Clusters: Kubernetes clusters of a type, in a region, in a project.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone cluster create dev-1 --project web --type developer --region us-east-1 --wait --timeout 10m\n  dialtone cluster list -A -o wide\n  dialtone cluster describe dev-1 --project web\n  dialtone cluster credentials dev-1 --project web && kubectl get nodes\n  dialtone cluster update prod-1 --project web --kubernetes-version 1.37 --wait\n  dialtone cluster delete dev-1 --project web --wait --yes"
    )]
    Cluster(ClusterCommand),
    /// Connections: a production cluster's VPC peered with a customer's VPC.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone connection create db --cluster prod-1 --peer-account 111122223333 --peer-vpc vpc-0a1b2c3d --peer-cidr 192.168.0.0/16 --peer-region us-east-1\n  dialtone connection describe db --cluster prod-1\n  dialtone connection list -A\n  dialtone connection delete db --cluster prod-1 --wait"
    )]
    Connection(ConnectionCommand),
    /// Namespaces: a cluster's Kubernetes namespaces, as nodes of the tree.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone namespace create acme/eng/web/dev-1/payments\n  dialtone namespace list -A"
    )]
    Namespace(NounCommand),
    /// Identities: who can hold tokens, in an org.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone identity create alice\n  dialtone identity list -o name"
    )]
    Identity(NounCommand),
    /// Groups of identities, named as one subject in access policies.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone group create devs --member alice --member bob\n  dialtone group get devs -o yaml"
    )]
    Group(NounCommand),
    /// Access policies: role bindings on any node of the tree.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone policy add acme/eng --role cluster.view --subject group:devs\n  dialtone policy get acme/eng\n  dialtone policy what-if acme/eng --add cluster.edit=user:alice\n  dialtone policy explain --as alice --verb get --resource pods --on acme/eng/web/dev-1"
    )]
    Policy(PolicyCommand),
    /// The built-in simulated cloud: its resources, failure injection and quotas.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone sim resources --region us-east-1\n  dialtone sim fault add boot-failure --region us-east-1 --count 3\n  dialtone sim kill i-00000000000000006\n  dialtone sim hang i-00000000000000007\n  dialtone sim account create\n  dialtone sim vpc create --account 215561234567 --cidr 192.168.0.0/16\n  dialtone sim peering accept pcx-0000000000000002a --account 215561234567"
    )]
    Sim(SimCommand),
    /// Smart Cluster types and the decisions each makes.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone cluster-types list\n  dialtone cluster-types describe production"
    )]
    ClusterTypes(ClusterTypesCommand),
    /// Kubernetes releases clusters can run, and what each release channel offers.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone versions list\n  dialtone versions list --channel stable\n  dialtone versions list -o json"
    )]
    Versions(VersionsCommand),
    /// API tokens.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone token create --identity ci --ttl 30d --description deploys\n  dialtone token list\n  dialtone token revoke 216bb8b793f3b276"
    )]
    Token(TokenCommand),
    /// The audit log of an org.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone audit list --tail 20\n  dialtone audit list -o json"
    )]
    Audit(AuditCommand),
    /// Usage and cost, to the second, of an org, folder, project or cluster.
    #[command(
        after_help = "Examples:\n  dialtone usage --by cluster\n  dialtone usage --folder eng --by project --from 2026-11 --to 2026-12\n  dialtone usage --folder eng --project web --cluster dev --by day -o csv\n  dialtone usage --by namespace"
    )]
    Usage(UsageArgs),
    /// Monthly invoices: a line per cluster, each the sum of its usage records.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone invoice get\n  dialtone invoice get 2026-11 -o csv"
    )]
    Invoice(InvoiceCommand),
    /// How an org is billed: by its nodes' capacity or its pods' requests, and its prices.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone billing get\n  dialtone billing set --org acme --mode requests --rate us-east-1=0.04,0.004"
    )]
    Billing(BillingCommand),
    /// The regions of this control plane: how stale each one's copy of the others is, and
    /// whether they hold the same.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone regions list\n  dialtone regions status\n  dialtone regions certificates --dir region-tls --region us-east-1 --region eu-west-1"
    )]
    Regions(RegionsCommand),
    /// Who the current token belongs to.
    Whoami,
    /// Sign in to a Dialtone server: checks the token, then saves a context for it and
    /// makes it the current one.
    #[command(
        after_help = "Examples:\n  dialtone login https://dialtone.example.com:7443 --token-file ~/dialtone-token --certificate-authority ca.pem\n  DIALTONE_TOKEN=dt_… dialtone login https://10.0.0.5:7443 --certificate-authority ca.pem --name prod"
    )]
    Login(LoginArgs),
    /// Contexts of the CLI configuration.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  dialtone config get-contexts\n  dialtone config use-context prod\n  dialtone config set-context --folder eng --project web"
    )]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the OpenAPI document of the API.
    Openapi,
}

#[derive(Args)]
pub struct ServerArgs {
    /// Everything on this machine: embedded store, generated certificates, a bootstrap
    /// admin, and a CLI context ready to use.
    #[arg(long)]
    pub dev: bool,
    /// Where the API listens, `host:port`.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Where the embedded store, certificates and state live
    /// (default: ~/.local/share/dialtone/dev or …/server).
    #[arg(long, env = "DIALTONE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `embedded`, or `etcd://host:port,host:port,host:port`.
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// The region this control plane owns.
    #[arg(long, default_value = "local")]
    pub region: String,
    /// Serve this certificate (PEM) instead of generating one; needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA that signed --tls-cert, handed to CLI users.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Another DNS name or IP for the generated certificate (repeatable).
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// On an empty store, the org of the bootstrap platform admin.
    #[arg(long, default_value = "demo")]
    pub bootstrap_org: String,
    /// Seconds between compactions of old store revisions; watches and paginated lists can
    /// resume within one interval.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub compaction_interval: u64,
    /// Seconds of usage per metering record (an hour). A store keeps the period its first
    /// records were cut at; a server started with another refuses to start. Shorter periods
    /// are for tests and demos.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub metering_period: u64,
    /// How often the meter reads the cloud's instance lifetimes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub metering_interval_ms: u64,
    /// How often a Ready cluster is looked at anyway, in seconds, on a cloud whose event
    /// feed tells of its resources' changes (the sim) while watches of the cluster tell of
    /// its pods', Services' and namespaces'. Default: ten
    /// minutes at real speed (`--sim-time-scale` scales it, to at least 5 s). A cloud with no
    /// feed is health-checked every 10 s instead.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub cluster_resync_seconds: Option<u64>,
    /// The cloud clusters are built in.
    #[arg(long, value_enum, default_value_t = ProviderKind::Sim)]
    pub provider: ProviderKind,
    #[command(flatten)]
    pub sim: SimCloudArgs,
    /// With --provider sim: use the shared sim cloud of `dialtone sim serve` at this URL
    /// (`https://host:port`) instead of one in this process, so that several servers on one
    /// etcd share one cloud. Needs --sim-ca and --sim-token-file; the --sim-* settings above
    /// are then the service's.
    #[arg(long, value_name = "URL", requires_all = ["sim_ca", "sim_token_file"])]
    pub sim_url: Option<String>,
    /// With --sim-url: the CA that signed the service's certificate (`tls/ca.pem` in its
    /// data directory).
    #[arg(long, value_name = "FILE")]
    pub sim_ca: Option<PathBuf>,
    /// With --sim-url: the file holding the service's token (`sim-token` in its data
    /// directory).
    #[arg(long, value_name = "FILE")]
    pub sim_token_file: Option<PathBuf>,
    /// With --provider aws: send every AWS call here instead of AWS's endpoints (a moto
    /// server, a proxy). Credentials come from the SDK's standard chain.
    #[arg(long, value_name = "URL")]
    pub aws_endpoint_url: Option<String>,
    /// With --provider aws: the machine image amd64 instances boot (`ami-…`, Debian 12 or
    /// Ubuntu 24.04); cloud-init installs Kubernetes on it.
    #[arg(long, value_name = "AMI", required_if_eq("provider", "aws"))]
    pub aws_image_id: Option<String>,
    /// With --provider aws: the same for arm64 instances; without it, arm64 types fail to
    /// launch with a condition that says so.
    #[arg(long, value_name = "AMI")]
    pub aws_arm64_image_id: Option<String>,
    /// With --provider aws: the region asked at startup whether the credentials work.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub aws_check_region: String,
    /// With --provider aws: the lifecycle's waits relative to a real cloud's (1); lower
    /// against a fake cloud that answers at once, such as moto.
    #[arg(long, default_value_t = 1.0)]
    pub aws_time_scale: f64,
    /// With --dev: the name of the CLI context to write.
    #[arg(long, default_value = "dev")]
    pub context_name: String,
    /// A version catalogue of your own (the built-in one's format, docs/versions.md) in
    /// place of the built-in one; read again whenever the file changes, so that a patch
    /// release added to it reaches clusters in their next maintenance window.
    #[arg(long, value_name = "FILE")]
    pub kubernetes_versions: Option<std::path::PathBuf>,
    /// How this server names itself to the other servers of its store (in `/readyz` and
    /// leader election); host, listen address and process id by default.
    #[arg(long, value_name = "NAME")]
    pub server_id: Option<String>,
    /// Servers sharing one etcd cluster elect one to run the controllers; a leader that
    /// dies is replaced within this many seconds (its lease's time to live).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=60))]
    pub leader_lease_seconds: u64,
    /// Another region of this control plane and its region listener,
    /// `REGION=https://host:port` (repeatable). Needs --region-listen and the region
    /// certificates (`dialtone regions certificates`).
    #[arg(long = "peer", value_name = "REGION=URL", value_parser = parse_peer, requires_all = ["region_listen", "region_ca", "region_cert", "region_key"])]
    pub peers: Vec<(String, String)>,
    /// With --peer: where this region's peers reach it (`host:port`), over TLS with
    /// certificates both ways.
    #[arg(long, value_name = "ADDR")]
    pub region_listen: Option<SocketAddr>,
    /// With --peer: the CA that signed every region's certificate.
    #[arg(long, value_name = "FILE")]
    pub region_ca: Option<PathBuf>,
    /// With --peer: this region's certificate, named after it.
    #[arg(long, value_name = "FILE")]
    pub region_cert: Option<PathBuf>,
    /// With --peer: its key.
    #[arg(long, value_name = "FILE")]
    pub region_key: Option<PathBuf>,
    /// Fault injection for tests: make this background task panic once (repeatable).
    #[arg(long, hide = true)]
    pub fault_panic_task: Vec<String>,
}

/// The sim cloud's settings, for `dialtone server` (its own sim) and `dialtone sim serve`.
#[derive(Args)]
pub struct SimCloudArgs {
    /// The sim cloud's latencies relative to a real cloud's: 1 looks like a cloud (instances
    /// boot in about 30 s), 0.1 is ten times faster, 0 is instant.
    #[arg(long, default_value_t = 1.0)]
    pub sim_time_scale: f64,
    /// The sim cloud's eventual consistency: for up to this many milliseconds after a
    /// create, describe may not show the new resource, as EC2's DescribeInstances may miss an
    /// instance RunInstances just returned (each resource draws its lag, seeded).
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub sim_describe_lag_ms: u64,
    /// How long a peering request waits for the customer's answer before it expires, in
    /// seconds of real time (AWS: 7 days).
    #[arg(long, value_name = "SECONDS", default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub sim_peering_expiry: u64,
    /// Where the sim's clusters serve the Kubernetes API (one port for all; the TLS server
    /// name picks the cluster).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub kube_listen: std::net::SocketAddr,
    /// Private or special address ranges that clusters' admission webhooks may call
    /// (comma-separated CIDRs, e.g. 10.20.0.0/16). Webhooks are called over HTTPS only, and
    /// never at loopback, link-local or private addresses outside these ranges, nor at the
    /// control plane's own listeners.
    #[arg(long, value_name = "CIDRS", value_parser = parse_cidrs, default_value = "")]
    pub webhook_allowed_cidrs: Cidrs,
}

/// `dialtone sim serve`.
#[derive(Args)]
pub struct SimServeArgs {
    /// Where the cloud API listens, `host:port`.
    #[arg(long, default_value = "127.0.0.1:7444")]
    pub listen: SocketAddr,
    /// Where the cloud, its clusters, its certificates (`tls/`) and its token (`sim-token`)
    /// live (default: ~/.local/share/dialtone/sim).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Another DNS name or IP for the generated certificate (repeatable).
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    #[command(flatten)]
    pub sim: SimCloudArgs,
}

/// The clouds `dialtone server` can run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// The built-in simulated cloud, whose clusters answer the Kubernetes API from this
    /// process.
    Sim,
    /// Amazon EC2: clusters of upstream Kubernetes installed by kubeadm on instances.
    Aws,
}

/// A list of address ranges, as `--webhook-allowed-cidrs` takes it.
#[derive(Clone, Debug, Default)]
pub struct Cidrs(pub Vec<ipnet::IpNet>);

fn parse_cidrs(list: &str) -> Result<Cidrs, String> {
    dialtone_backend::sim::parse_webhook_cidrs(list).map(Cidrs)
}

/// The verbs of every tree noun.
#[derive(Subcommand)]
pub enum NounCommand {
    /// Create one.
    Create(CreateArgs),
    /// Show one.
    Get(ObjectArgs),
    /// Show one in detail, with its children.
    Describe(ObjectArgs),
    /// List them, or watch them change.
    List(ListArgs),
    /// Delete one.
    Delete(DeleteArgs),
}

/// Where an object sits: each missing ancestor comes from these flags or the context.
#[derive(Args, Clone, Default)]
pub struct Placement {
    /// The org (default: the context's).
    #[arg(long)]
    pub org: Option<String>,
    /// The folder (default: the context's).
    #[arg(long)]
    pub folder: Option<String>,
    /// The project (default: the context's).
    #[arg(long)]
    pub project: Option<String>,
    /// The cluster (default: the context's).
    #[arg(long)]
    pub cluster: Option<String>,
}

#[derive(Args)]
pub struct ObjectArgs {
    /// A name, or a full path of names such as `acme/eng/web`.
    pub name: String,
    #[command(flatten)]
    pub placement: Placement,
}

#[derive(Args)]
pub struct CreateArgs {
    /// A name, or a full path of names such as `acme/eng/web`.
    pub name: String,
    #[command(flatten)]
    pub placement: Placement,
    /// A name for people, e.g. `Engineering`.
    #[arg(long)]
    pub display_name: Option<String>,
    /// What it is for, in a sentence or two.
    #[arg(long)]
    pub description: Option<String>,
    /// A label, `key=value` (repeatable).
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Identities only: make it a platform admin.
    #[arg(long)]
    pub platform_admin: bool,
    /// Groups only: an identity in the group (repeatable).
    #[arg(long = "member")]
    pub members: Vec<String>,
}

#[derive(Args)]
pub struct ListArgs {
    /// The parent, as a path of names (default: from flags and the context).
    pub parent: Option<String>,
    #[command(flatten)]
    pub placement: Placement,
    /// Only objects whose labels match, e.g. `tier=web,env!=dev`.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// List across every parent in the org (every folder, project or cluster), as
    /// kubectl's `-A` lists across namespaces.
    #[arg(long = "all", short = 'A', conflicts_with_all = ["parent", "watch"])]
    pub all: bool,
    /// Keep printing changes as they happen.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// With --watch: only changes after this resourceVersion.
    #[arg(long)]
    pub resource_version: Option<String>,
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub object: ObjectArgs,
    /// Delete everything under it too.
    #[arg(long)]
    pub cascade: bool,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is shown once.
    Create {
        /// For this identity (default: yourself).
        #[arg(long)]
        identity: Option<String>,
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
        /// What the token is for, shown by `token list`.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime, e.g. `12h`, `30d` (default 90d).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// List the org's tokens (never their secrets).
    List {
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a token at once.
    Revoke {
        id: String,
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
    },
}

/// A role granted to a subject: `--role cluster.view --subject group:devs`.
#[derive(Args, Clone)]
pub struct BindingArgs {
    /// A node of the tree, as a path of names: `acme`, `acme/eng`, `acme/eng/web/prod-1/payments`.
    pub node: String,
    /// The role to bind, e.g. `cluster.view`; an unknown one is refused with the list of roles.
    #[arg(long)]
    pub role: String,
    /// `user:<identity>` or `group:<group>`.
    #[arg(long)]
    pub subject: String,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// A node's own role bindings and its etag.
    Get {
        /// A node of the tree, as a path of names.
        node: String,
    },
    /// Replace a node's policy with the one in a file (JSON or YAML, as `get -o yaml`
    /// prints it); its etag, if any, must still be current.
    Set {
        node: String,
        /// The policy, as YAML or JSON (`-` for standard input).
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
    },
    /// Grant a role to a subject on a node.
    Add(BindingArgs),
    /// Take a role back from a subject on a node.
    Remove(BindingArgs),
    /// Whether an identity may do something on a node, and the bindings that grant it.
    Explain {
        /// The identity (default: yourself).
        #[arg(long = "as")]
        identity: Option<String>,
        /// The verb, e.g. `get`, `create`, `delete`.
        #[arg(long)]
        verb: String,
        /// One of Dialtone's (clusters, policies, credentials, …) or a Kubernetes resource
        /// (pods, deployments, …) on a cluster or namespace.
        #[arg(long)]
        resource: String,
        /// The node, as a path of names.
        #[arg(long)]
        on: String,
    },
    /// The RBAC objects a policy change would add, change and remove in each cluster,
    /// without applying it.
    WhatIf {
        node: String,
        /// Grant `ROLE=SUBJECT` (repeatable).
        #[arg(long)]
        add: Vec<String>,
        /// Take back `ROLE=SUBJECT` (repeatable).
        #[arg(long)]
        remove: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum VersionsCommand {
    /// Every minor of the catalogue: its dates, and the patch each channel offers today.
    List {
        /// Only the minors this channel offers: rapid, regular or stable.
        #[arg(long, value_parser = ["rapid", "regular", "stable"])]
        channel: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RegionsCommand {
    /// Each region: whether this one reaches it, and how stale this one's copy of its
    /// objects is.
    List,
    /// The same, and whether every region holds the same of every org (platform admins).
    Status,
    /// Make a region CA and a certificate for each region, for `--region-ca`,
    /// `--region-cert` and `--region-key`.
    Certificates {
        /// Where to write them; a CA already there is kept.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A region to make a certificate for (repeatable).
        #[arg(long = "region", required = true)]
        regions: Vec<String>,
        /// Another DNS name or IP the certificates are valid for (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

fn parse_peer(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((region, url)) if !region.is_empty() && url.starts_with("https://") => {
            Ok((region.to_string(), url.to_string()))
        }
        _ => Err(format!(
            "expected REGION=https://host:port, as in eu-west-1=https://10.0.1.5:7444, not {text:?}"
        )),
    }
}

#[derive(Subcommand)]
pub enum ClusterTypesCommand {
    /// The types.
    List,
    /// Every decision of one type, with its value and the reason for it.
    Describe {
        /// `developer` or `production`.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The org's audit records, oldest first.
    List {
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
        /// Only the last N records.
        #[arg(long)]
        tail: Option<usize>,
    },
}

#[derive(Subcommand)]
pub enum InvoiceCommand {
    /// One month's invoice (UTC).
    Get {
        /// `2026-12` (default: this month, still open).
        month: Option<String>,
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum BillingCommand {
    /// What the org pays for and its prices in every region.
    Get {
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
    },
    /// Sets what the org pays for or its own prices (platform admins only).
    Set {
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
        /// `capacity` (its nodes) or `requests` (its pods' requests).
        #[arg(long)]
        mode: Option<String>,
        /// `REGION=VCPU_HOUR,GIB_HOUR`, in dollars: the org's own prices in a region.
        #[arg(long = "rate")]
        rates: Vec<String>,
        /// A region whose own prices go back to the defaults.
        #[arg(long = "default-rate")]
        default_rates: Vec<String>,
    },
}

impl BillingCommand {
    /// The org it names, if any.
    pub fn org(&self) -> Option<String> {
        match self {
            BillingCommand::Get { org } | BillingCommand::Set { org, .. } => org.clone(),
        }
    }
}

#[derive(Args)]
pub struct UsageArgs {
    /// The org (default: the context's).
    #[arg(long)]
    pub org: Option<String>,
    /// Only this folder.
    #[arg(long)]
    pub folder: Option<String>,
    /// Only this project (with --folder).
    #[arg(long, requires = "folder")]
    pub project: Option<String>,
    /// Only this cluster (with --folder and --project).
    #[arg(long, requires = "project")]
    pub cluster: Option<String>,
    /// The start: a day (2026-12-01), a month (2026-12) or an RFC 3339 time, UTC (default:
    /// the start of this month).
    #[arg(long)]
    pub from: Option<String>,
    /// The end, excluded (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// Rows by none, folder, project, cluster, day, hour or namespace.
    #[arg(long, default_value = "none")]
    pub by: String,
}

#[derive(Args)]
pub struct LoginArgs {
    /// The server, `https://host:port`.
    pub server: String,
    /// The token (or `DIALTONE_TOKEN`; better, `--token-file`, which keeps it out of the
    /// shell's history).
    #[arg(
        long,
        env = "DIALTONE_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The PEM file of the CA that signed the server's certificate.
    #[arg(long)]
    pub certificate_authority: PathBuf,
    /// The context's name (default: the server's host).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Make a context the current one.
    UseContext { name: String },
    /// List the contexts.
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Set the default org, folder and project of a context (default: the current one).
    SetContext {
        name: Option<String>,
        /// The org (default: the context's).
        #[arg(long)]
        org: Option<String>,
        /// The folder (default: the context's).
        #[arg(long)]
        folder: Option<String>,
        /// The project (default: the context's).
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster; it is planned at once and provisioned in the background.
    Create(ClusterCreateArgs),
    /// Show one.
    Get(ObjectArgs),
    /// Show one in detail: plan, nodes by zone, conditions and events.
    Describe(ObjectArgs),
    /// List them, or watch them change.
    List(ListArgs),
    /// Change a cluster's worker bounds, version, families or deletion protection.
    Update(ClusterUpdateArgs),
    /// Delete one, and everything it has in the cloud. Asks first unless --yes; refused
    /// while the cluster's deletion protection is on.
    Delete {
        #[command(flatten)]
        object: ObjectArgs,
        /// Wait until every cloud resource of the cluster is gone.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long, e.g. `10m` (default: no limit).
        #[arg(long, value_parser = parse_duration, requires = "wait")]
        timeout: Option<Duration>,
        /// Delete without asking (needed when standard input is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Delete its connections too; without it, a cluster with connections is kept.
        #[arg(long)]
        cascade: bool,
    },
    /// Write a kubeconfig context for the cluster. kubectl gets short-lived credentials of
    /// your own through `dialtone cluster token` (an exec plugin) for as long as your CLI
    /// sign-in lasts; `--static` writes one credential that expires instead.
    Credentials {
        #[command(flatten)]
        object: ObjectArgs,
        /// The kubeconfig to merge into (default: the first of $KUBECONFIG, or ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// Write a token into the kubeconfig instead of the exec plugin; it stops working
        /// when it expires.
        #[arg(long = "static")]
        static_token: bool,
        /// How long each credential lasts, e.g. `1h` (default: 1h through the exec plugin,
        /// 12h with --static).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Print a client-go ExecCredential for the cluster: the kubeconfig's exec plugin,
    /// which kubectl runs whenever it needs a fresh credential.
    Token {
        /// The cluster's full path, `org/folder/project/cluster`.
        cluster: String,
        /// How long the credential lasts (default 1h).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
}

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Ask to peer a production cluster's VPC with a VPC of another account; its owner
    /// accepts, then routes go in.
    Create(ConnectionCreateArgs),
    /// Show one.
    Get(ObjectArgs),
    /// Show one in detail: the peering's state, routes, what the peer must do next, limits.
    Describe(ObjectArgs),
    /// List a cluster's connections (`--cluster`), or every one with -A.
    List(ListArgs),
    /// Delete one: its routes and rules, then its peering.
    Delete {
        #[command(flatten)]
        object: ObjectArgs,
        /// Wait until the routes and the peering are gone.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long, e.g. `5m` (default: no limit).
        #[arg(long, value_parser = parse_duration, requires = "wait")]
        timeout: Option<Duration>,
    },
}

#[derive(Args)]
pub struct ConnectionCreateArgs {
    /// A name, or a full path `org/folder/project/cluster/name`.
    pub name: String,
    #[command(flatten)]
    pub placement: Placement,
    /// The 12-digit id of the account that owns the peer VPC.
    #[arg(long)]
    pub peer_account: String,
    /// The peer VPC's id, `vpc-…`.
    #[arg(long)]
    pub peer_vpc: String,
    /// A range of the peer VPC to route to (repeatable).
    #[arg(long = "peer-cidr", required = true)]
    pub peer_cidrs: Vec<String>,
    /// The peer VPC's region.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(regions()))]
    pub peer_region: String,
    /// A TCP port of the nodes the peer may open connections to (repeatable).
    #[arg(long = "allow-port")]
    pub allow_ports: Vec<u16>,
    /// Every port and protocol of the nodes is open to the peer's ranges.
    #[arg(long, conflicts_with = "allow_ports")]
    pub allow_all: bool,
    /// Wait until the peering is accepted and active, with its routes in place.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long, e.g. `10m` (default: no limit).
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

#[derive(Args)]
pub struct ClusterCreateArgs {
    /// A name, or a full path `org/folder/project/name`.
    pub name: String,
    #[command(flatten)]
    pub placement: Placement,
    /// `developer` or `production`.
    #[arg(long = "type", value_parser = Suggested(cluster_types))]
    pub cluster_type: String,
    /// For example `us-east-1`.
    #[arg(long, value_parser = Suggested(regions))]
    pub region: String,
    /// A Kubernetes minor its channel offers (default: the newest it offers; `dialtone
    /// versions list`).
    #[arg(long = "kubernetes-version", value_parser = Suggested(versions))]
    pub kubernetes_version: Option<String>,
    /// The fewest workers (default: the type's).
    #[arg(long)]
    pub min_nodes: Option<u32>,
    /// The most workers (default: the type's).
    #[arg(long)]
    pub max_nodes: Option<u32>,
    /// Only these instance families for workers (repeatable).
    #[arg(long = "allow-family")]
    pub allowed_families: Vec<String>,
    /// Never these instance families for workers (repeatable).
    #[arg(long = "exclude-family")]
    pub excluded_families: Vec<String>,
    /// The architectures of nodes for pods that select none (repeatable; default: amd64).
    #[arg(long = "arch", value_parser = ["amd64", "arm64"])]
    pub architectures: Vec<String>,
    /// Count burstable types (`t3`, `t4g`, …) at their full vCPUs, spending CPU credits
    /// under sustained load (default: at their baseline).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_burstable: Option<bool>,
    /// What consolidation must save for the pods it evicts: whenEmpty, balanced (the
    /// default) or aggressive.
    #[arg(long, value_parser = ["whenEmpty", "balanced", "aggressive"])]
    pub consolidation: Option<String>,
    /// Refuse deletes until turned off (default: the type's; on for production).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub deletion_protection: Option<bool>,
    #[command(flatten)]
    pub upgrades: UpgradeArgs,
    /// A label, `key=value` (repeatable).
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Wait until the cluster is Ready.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long, e.g. `10m` (default: no limit).
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

/// When and how a cluster's Kubernetes is upgraded by itself (docs/versions.md).
#[derive(Args)]
pub struct UpgradeArgs {
    /// How soon new Kubernetes releases reach the cluster: rapid, regular or stable
    /// (default: the type's; docs/versions.md).
    #[arg(long, value_parser = ["rapid", "regular", "stable"])]
    pub release_channel: Option<String>,
    /// When automatic upgrades may replace nodes, as DAY,HH:MM,HOURS in UTC: `daily` or
    /// a day of the week, the start, and 4 to 24 hours (`saturday,02:00,4h`).
    #[arg(long, value_name = "DAY,HH:MM,HOURS")]
    pub maintenance_window: Option<String>,
    /// No automatic upgrades from START to END (dates or RFC 3339 times), as
    /// NAME,START,END (repeatable; replaces the list).
    #[arg(long = "maintenance-exclusion", value_name = "NAME,START,END")]
    pub maintenance_exclusions: Vec<String>,
}

#[derive(Args)]
pub struct ClusterUpdateArgs {
    #[command(flatten)]
    pub object: ObjectArgs,
    /// The fewest workers (default: the type's).
    #[arg(long)]
    pub min_nodes: Option<u32>,
    /// The most workers (default: the type's).
    #[arg(long)]
    pub max_nodes: Option<u32>,
    /// Upgrade to this Kubernetes minor (the next one): nodes are replaced by nodes of the
    /// new version, on the families with the best price per performance.
    #[arg(long = "kubernetes-version", value_parser = Suggested(versions))]
    pub kubernetes_version: Option<String>,
    /// Only these instance families for workers (repeatable; replaces the list).
    #[arg(long = "allow-family")]
    pub allowed_families: Vec<String>,
    /// Never these instance families for workers (repeatable; replaces the list).
    #[arg(long = "exclude-family")]
    pub excluded_families: Vec<String>,
    /// The architectures of nodes for pods that select none (repeatable; replaces the list).
    #[arg(long = "arch", value_parser = ["amd64", "arm64"])]
    pub architectures: Vec<String>,
    /// Count burstable types at their full vCPUs (`--allow-burstable=false` to stop).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_burstable: Option<bool>,
    /// What consolidation must save for the pods it evicts: whenEmpty, balanced or
    /// aggressive.
    #[arg(long, value_parser = ["whenEmpty", "balanced", "aggressive"])]
    pub consolidation: Option<String>,
    /// Turn deletion protection on or off (`--deletion-protection=false`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub deletion_protection: Option<bool>,
    #[command(flatten)]
    pub upgrades: UpgradeArgs,
    /// Remove every maintenance exclusion.
    #[arg(long, conflicts_with = "maintenance_exclusions")]
    pub clear_maintenance_exclusions: bool,
    /// Wait until the cluster is Ready with the change.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long, e.g. `10m` (default: no limit).
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
}

#[derive(Subcommand)]
pub enum SimCommand {
    /// Run the sim cloud as a service of its own, which several servers share through
    /// `dialtone server --sim-url`.
    Serve(SimServeArgs),
    /// The sim cloud's resources.
    Resources {
        /// Only this region, e.g. `us-east-1`.
        #[arg(long)]
        region: Option<String>,
        /// Only resources with this tag, `key=value`.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Injected faults.
    #[command(subcommand)]
    Fault(FaultCommand),
    /// Kill a running instance, as a host failure would.
    Kill { instance: String },
    /// Make a running instance stop answering, as a kernel hang or a lost network would:
    /// its status checks fail and its node turns NotReady.
    Hang { instance: String },
    /// Make a hung instance answer again.
    Recover { instance: String },
    /// Customers' accounts: they own VPCs to peer with and answer peering requests.
    #[command(subcommand)]
    Account(AccountCommand),
    /// A VPC in a customer's account.
    #[command(subcommand)]
    Vpc(VpcCommand),
    /// A customer's answer to a peering request made to one of its VPCs.
    #[command(subcommand)]
    Peering(PeeringCommand),
    /// Show a region's quotas, or set them.
    Quotas {
        region: String,
        /// The most vCPUs the region may run.
        #[arg(long)]
        vcpus: Option<u64>,
        /// The most VPCs the region may hold.
        #[arg(long)]
        vpcs: Option<u64>,
        /// The most load balancers the region may hold.
        #[arg(long)]
        load_balancers: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Open a customer's account, with a new 12-digit id.
    Create,
    /// Every customer's account, with its VPCs and the peering requests made to it.
    List,
    /// One account, with its VPCs and the peering requests made to it.
    Get { account: String },
}

#[derive(Subcommand)]
pub enum VpcCommand {
    /// Make a VPC in a customer's account.
    Create {
        /// The account that owns it.
        #[arg(long)]
        account: String,
        /// Its range, e.g. `192.168.0.0/16`.
        #[arg(long)]
        cidr: String,
        #[arg(long, default_value = "us-east-1", value_parser = clap::builder::PossibleValuesParser::new(regions()))]
        region: String,
    },
}

#[derive(Subcommand)]
pub enum PeeringCommand {
    /// Accept a peering request, as `aws ec2 accept-vpc-peering-connection` does.
    Accept {
        /// The peering's id, `pcx-…`.
        id: String,
        /// The account accepting: the owner of the peer VPC.
        #[arg(long)]
        account: String,
    },
    /// Reject a peering request.
    Reject {
        /// The peering's id, `pcx-…`.
        id: String,
        /// The account rejecting: the owner of the peer VPC.
        #[arg(long)]
        account: String,
    },
    /// Delete an active peering from the customer's side.
    Delete {
        /// The peering's id, `pcx-…`.
        id: String,
        /// The account deleting: the owner of the peer VPC.
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand)]
pub enum FaultCommand {
    /// Inject a fault: boot-failure, zone-outage, throttling or timeout-after-success.
    Add {
        kind: String,
        /// Only this region, e.g. `us-east-1`.
        #[arg(long)]
        region: Option<String>,
        /// Only this zone, e.g. `us-east-1a`.
        #[arg(long)]
        zone: Option<String>,
        /// Remove it after it fired this many times (default: until removed).
        #[arg(long)]
        count: Option<u32>,
        /// The chance that a matching call is hit (default 1).
        #[arg(long)]
        probability: Option<f64>,
    },
    /// The faults in force.
    List,
    /// Remove one fault, or all.
    Remove {
        id: Option<String>,
        /// Every one of them.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// The one duration syntax of every flag: a positive whole number and a unit, `90s`, `45m`,
/// `12h`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!(
            "`{text}` is not a duration: expected a number and a unit, like 90s, 45m, 12h or 30d"
        )
    })?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    if n == 0 {
        return Err(format!("`{text}`: a duration must be longer than zero"));
    }
    n.checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        for bad in [
            "",
            "0s",
            "-5m",
            "5",
            "5w",
            "1.5h",
            "m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

/// A value the server checks (and whose refusal lists the valid ones), with the values this
/// CLI knows of offered to shell completion and shown in help.
#[derive(Clone)]
pub struct Suggested(fn() -> Vec<&'static str>);

impl clap::builder::TypedValueParser for Suggested {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            (self.0)()
                .into_iter()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

fn cluster_types() -> Vec<&'static str> {
    dialtone_types::ClusterType::ALL
        .iter()
        .map(|t| t.name())
        .collect()
}

fn regions() -> Vec<&'static str> {
    dialtone_cloud::REGIONS.iter().map(|r| r.name).collect()
}

fn versions() -> Vec<&'static str> {
    dialtone_planner::versions::Catalogue::built_in()
        .minors
        .iter()
        .map(|m| m.minor.as_str())
        .collect()
}

/// The command line, with each noun's placement flags that mean nothing for it (`--cluster`
/// on a project) hidden from help and completion; given anyway, they are refused.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    use dialtone_types::connection::CONNECTION;
    use dialtone_types::kinds::{CLUSTER, FOLDER, GROUP, IDENTITY, NAMESPACE, ORG, PROJECT};
    let flags = ["org", "folder", "project", "cluster"];
    let mut command = Cli::command();
    for (noun, kind) in [
        ("org", &ORG),
        ("folder", &FOLDER),
        ("project", &PROJECT),
        ("cluster", &CLUSTER),
        ("namespace", &NAMESPACE),
        ("connection", &CONNECTION),
        ("identity", &IDENTITY),
        ("group", &GROUP),
    ] {
        let meaningless = &flags[kind.depth().min(flags.len())..];
        command = command.mut_subcommand(noun, |noun| {
            let verbs: Vec<String> = noun
                .get_subcommands()
                .map(|v| v.get_name().to_string())
                .collect();
            verbs.into_iter().fold(noun, |noun, verb| {
                noun.mut_subcommand(verb, |mut verb| {
                    for flag in meaningless {
                        if verb.get_arguments().any(|a| a.get_id() == *flag) {
                            verb = verb.mut_arg(*flag, |a| a.hide(true));
                        }
                    }
                    // An existing object's name completes from the server (not a new one's).
                    if verb.get_name() != "create"
                        && verb.get_arguments().any(|a| a.get_id() == "name")
                    {
                        verb = verb.mut_arg("name", |a| {
                            a.add(clap_complete::engine::ArgValueCompleter::new(
                                move |current: &std::ffi::OsStr| {
                                    crate::tree::complete_names(kind, current)
                                },
                            ))
                        });
                    }
                    verb
                })
            })
        });
    }
    command
}
