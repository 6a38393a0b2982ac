//! One scenario suite, two providers: each scenario runs the real binary against the `sim`
//! and against `aws` on a moto server, and reads what was built from the cloud itself (the
//! sim's operator API; EC2 and Elastic Load Balancing through the AWS SDK).
//!
//! Where the suite stops on aws: moto runs no machine, so no kubelet ever registers and no
//! API server answers. An aws cluster is checked up to the point where its API would answer
//! (every instance running, the cluster waiting for its API), and its instances' user data
//! is checked instead: valid for cloud-init and, per cluster type and node role, the same as
//! its snapshot in `tests/snapshots/`. On the sim, the same scenarios go on to Ready.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::Api;
use dialtone_testkit::{DevServer, MotoServer};
use serde_json::{Value, json};

const PROJECT: &str = "/v1/orgs/demo/folders/eng/projects/web";
const REGION: &str = "us-east-1";
const CLUSTER_TAG: &str = "dialtone.dev/cluster";
const NETWORK_TAG: &str = "dialtone.dev/network";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cloud {
    Sim,
    Aws,
}

/// A resource Dialtone made, as the cloud itself reports it.
#[derive(Clone, Debug)]
struct Seen {
    kind: &'static str,
    id: String,
    zone: String,
    instance_type: String,
    subnet: String,
    vpc: String,
    tags: BTreeMap<String, String>,
}

impl Seen {
    fn tag(&self, key: &str) -> &str {
        self.tags.get(key).map_or("", String::as_str)
    }
}

struct Aws {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// Two-second usage periods, metered five times a second.
const METERING: [&str; 4] = ["--metering-period", "2", "--metering-interval-ms", "200"];

/// A dev server on one of the clouds. The server is dropped before moto.
struct World {
    cloud: Cloud,
    api: Api,
    server: DevServer,
    aws: Option<Aws>,
    _moto: Option<MotoServer>,
    _versions: tempfile::TempDir,
}

fn tags_of<'a>(
    pairs: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    pairs
        .filter_map(|(k, v)| Some((k?.to_string(), v.unwrap_or_default().to_string())))
        .collect()
}

fn dialtones(tags: &BTreeMap<String, String>) -> bool {
    tags.keys().any(|k| k.starts_with("dialtone.dev/"))
}

impl World {
    async fn start(cloud: Cloud) -> World {
        let binary = env!("CARGO_BIN_EXE_dialtone");
        // A catalogue dated from today, so that clusters (and the user data snapshots) get
        // the same release whatever the day.
        let versions = tempfile::tempdir().unwrap();
        let catalogue = versions.path().join("versions.json");
        common::write_catalogue(&catalogue, common::THREE_MINORS);
        let catalogue = catalogue.to_str().unwrap();
        let (server, aws, moto) = match cloud {
            Cloud::Sim => (
                DevServer::start(
                    binary.as_ref(),
                    &[
                        &["--sim-time-scale", "0", "--kubernetes-versions", catalogue][..],
                        &METERING,
                    ]
                    .concat(),
                )
                .expect("dev server starts"),
                None,
                None,
            ),
            Cloud::Aws => {
                let moto = MotoServer::start().expect("moto's server starts");
                let server = DevServer::start_with_env(
                    binary.as_ref(),
                    &[
                        "--provider",
                        "aws",
                        "--aws-endpoint-url",
                        moto.endpoint(),
                        // Images moto lists; it does not check their architecture.
                        "--aws-image-id",
                        "ami-12c6146b",
                        "--aws-arm64-image-id",
                        "ami-12c6146b",
                        "--aws-time-scale",
                        "0.01",
                        "--kubernetes-versions",
                        catalogue,
                        "--metering-period",
                        METERING[1],
                        "--metering-interval-ms",
                        METERING[3],
                    ],
                    &[
                        ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing"),
                    ],
                )
                .expect("dev server starts on aws");
                let keys = dialtone_aws::AccessKeys {
                    id: "testing".into(),
                    secret: "testing".into(),
                };
                let config = dialtone_aws::sdk_config(Some(moto.endpoint()), Some(&keys)).await;
                let aws = Aws {
                    ec2: aws_sdk_ec2::Client::new(&config),
                    elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
                };
                (server, Some(aws), Some(moto))
            }
        };
        let api = Api::admin(&server);
        api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
        api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
            .await;
        World {
            cloud,
            api,
            server,
            aws,
            _moto: moto,
            _versions: versions,
        }
    }

    async fn create(&self, name: &str, cluster_type: &str) -> String {
        let body =
            json!({"metadata": {"name": name}, "spec": {"type": cluster_type, "region": REGION}});
        let (status, created) = self.api.post(&format!("{PROJECT}/clusters"), body).await;
        assert_eq!(status, 201, "{created}");
        format!("{PROJECT}/clusters/{name}")
    }

    /// Polls the cluster until `done` holds, failing after 90 s with its last state.
    async fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, cluster) = self.api.get(path).await;
            if (status == 200 && done(&cluster)) || (status == 404 && what == "gone") {
                return cluster;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{path} never became {what} on {:?}: {status} {cluster:#}",
                self.cloud
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Built as far as this cloud goes: Ready on the sim; on aws, every planned node's
    /// instance running and the cluster waiting for its API, which no moto instance serves.
    async fn built(&self, path: &str) -> Value {
        let cloud = self.cloud;
        self.wait_for(path, "built", |c| match cloud {
            Cloud::Sim => c["status"]["phase"] == "Ready",
            Cloud::Aws => {
                let nodes = c["status"]["nodes"].as_array();
                let all_running = nodes.is_some_and(|n| {
                    !n.is_empty() && n.iter().all(|node| node["state"] == "running")
                });
                all_running
                    && c["status"]["conditions"]
                        .as_array()
                        .is_some_and(|conditions| {
                            conditions
                                .iter()
                                .any(|k| k["type"] == "Ready" && k["reason"] == "WaitingForAPI")
                        })
            }
        })
        .await
    }

    async fn delete(&self, path: &str) {
        let (_, mut cluster) = self.api.get(path).await;
        if cluster["spec"]["deletionProtection"] == true {
            cluster["spec"]["deletionProtection"] = json!(false);
            let (status, body) = self.api.put(path, cluster).await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, body) = self.api.delete(path).await;
        assert!(status == 200 || status == 202, "{status} {body}");
        self.wait_for(path, "gone", |_| false).await;
    }

    /// Every live resource Dialtone made, read from the cloud.
    /// Waits until the usage of each of `clusters` is recorded to its last second, from
    /// the cloud's own instance lifetimes.
    async fn metered(&self, clusters: &[&str]) {
        let start = Instant::now();
        loop {
            let (status, report) = self
                .api
                .get("/v1/orgs/demo/usage?by=cluster&from=2026-01-01")
                .await;
            assert_eq!(status, 200, "{report}");
            let recorded = |name: &str| {
                report["rows"].as_array().unwrap().iter().any(|r| {
                    r["group"] == name && r["recorded"]["cpuMilliSeconds"].as_i64() > Some(0)
                })
            };
            if clusters.iter().all(|c| recorded(c))
                && report["total"]["provisional"]["cpuMilliSeconds"] == 0
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{clusters:?} never metered on {:?}: {report:#}",
                self.cloud
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn resources(&self) -> Vec<Seen> {
        match &self.aws {
            None => self.sim_resources().await,
            Some(aws) => aws_resources(aws).await,
        }
    }

    async fn sim_resources(&self) -> Vec<Seen> {
        let (status, list) = self.api.get("/v1/sim/resources").await;
        assert_eq!(status, 200, "{list}");
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] != "deleting" && r["state"] != "terminated")
            .map(|r| Seen {
                kind: match r["spec"]["kind"].as_str().unwrap() {
                    "vpc" => "vpc",
                    "subnet" => "subnet",
                    "routeTable" => "routeTable",
                    "securityGroup" => "securityGroup",
                    "loadBalancer" => "loadBalancer",
                    "instance" => "instance",
                    "vpcPeering" => "vpcPeering",
                    other => panic!("an unexpected kind {other}"),
                },
                id: text(&r["id"]),
                zone: text(&r["spec"]["zone"]),
                instance_type: text(&r["spec"]["instanceType"]),
                subnet: text(&r["spec"]["subnetId"]),
                vpc: text(&r["spec"]["vpcId"]),
                tags: serde_json::from_value(r["tags"].clone()).unwrap(),
            })
            .collect()
    }

    /// The resources of the cluster whose uid is `uid`, and of the network it lives in.
    async fn of_cluster(&self, uid: &str, network: &str) -> Vec<Seen> {
        self.resources()
            .await
            .into_iter()
            .filter(|r| r.tag(CLUSTER_TAG) == uid || r.tag(NETWORK_TAG) == network)
            .collect()
    }

    /// Makes the instance die as a failed host would.
    async fn kill(&self, instance_id: &str) {
        match &self.aws {
            None => {
                let (status, body) = self
                    .api
                    .post(&format!("/v1/sim/instances/{instance_id}/kill"), json!({}))
                    .await;
                assert_eq!(status, 200, "{body}");
            }
            Some(aws) => {
                aws.ec2
                    .terminate_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Nothing Dialtone made is left; on aws not even an untagged VPC or load balancer.
    async fn assert_empty(&self) {
        let left = self.resources().await;
        assert!(left.is_empty(), "left behind: {left:#?}");
        if let Some(aws) = &self.aws {
            let vpcs = aws.ec2.describe_vpcs().send().await.unwrap();
            let extra: Vec<_> = vpcs
                .vpcs()
                .iter()
                .filter(|v| v.is_default() != Some(true))
                .collect();
            assert!(extra.is_empty(), "VPCs left: {extra:#?}");
            let balancers = aws.elb.describe_load_balancers().send().await.unwrap();
            assert!(
                balancers.load_balancers().is_empty(),
                "load balancers left: {:#?}",
                balancers.load_balancers()
            );
        }
    }

    /// The instance's user data, on aws.
    async fn user_data(&self, instance_id: &str) -> Option<String> {
        use base64::Engine;
        let aws = self.aws.as_ref()?;
        let out = aws
            .ec2
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let encoded = out.user_data()?.value()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        Some(String::from_utf8(bytes).unwrap())
    }
}

async fn aws_resources(aws: &Aws) -> Vec<Seen> {
    let seen = |kind, id: &str, tags| Seen {
        kind,
        id: id.to_string(),
        zone: String::new(),
        instance_type: String::new(),
        subnet: String::new(),
        vpc: String::new(),
        tags,
    };
    let mut all = Vec::new();
    let ec2 = &aws.ec2;
    for v in ec2.describe_vpcs().send().await.unwrap().vpcs() {
        let tags = tags_of(v.tags().iter().map(|t| (t.key(), t.value())));
        all.push(seen("vpc", v.vpc_id().unwrap(), tags));
    }
    for s in ec2.describe_subnets().send().await.unwrap().subnets() {
        let tags = tags_of(s.tags().iter().map(|t| (t.key(), t.value())));
        all.push(Seen {
            zone: s.availability_zone().unwrap_or_default().to_string(),
            vpc: s.vpc_id().unwrap_or_default().to_string(),
            ..seen("subnet", s.subnet_id().unwrap(), tags)
        });
    }
    for r in ec2
        .describe_route_tables()
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        let tags = tags_of(r.tags().iter().map(|t| (t.key(), t.value())));
        all.push(seen("routeTable", r.route_table_id().unwrap(), tags));
    }
    for g in ec2
        .describe_internet_gateways()
        .send()
        .await
        .unwrap()
        .internet_gateways()
    {
        let tags = tags_of(g.tags().iter().map(|t| (t.key(), t.value())));
        all.push(seen(
            "internetGateway",
            g.internet_gateway_id().unwrap(),
            tags,
        ));
    }
    for g in ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        let tags = tags_of(g.tags().iter().map(|t| (t.key(), t.value())));
        all.push(seen("securityGroup", g.group_id().unwrap(), tags));
    }
    for reservation in ec2
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
    {
        for i in reservation.instances() {
            use aws_sdk_ec2::types::InstanceStateName;
            let state = i.state().and_then(|s| s.name());
            if matches!(
                state,
                Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
            ) {
                continue;
            }
            let tags = tags_of(i.tags().iter().map(|t| (t.key(), t.value())));
            all.push(Seen {
                zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or_default()
                    .to_string(),
                instance_type: i.instance_type().unwrap().as_str().to_string(),
                subnet: i.subnet_id().unwrap_or_default().to_string(),
                vpc: i.vpc_id().unwrap_or_default().to_string(),
                ..seen("instance", i.instance_id().unwrap(), tags)
            });
        }
    }
    let balancers = aws.elb.describe_load_balancers().send().await.unwrap();
    for lb in balancers.load_balancers() {
        let arn = lb.load_balancer_arn().unwrap();
        let described = aws
            .elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .unwrap();
        let tags = tags_of(
            described
                .tag_descriptions()
                .iter()
                .flat_map(|d| d.tags())
                .map(|t| (t.key(), t.value())),
        );
        all.push(seen("loadBalancer", arn, tags));
    }
    all.retain(|r| dialtones(&r.tags));
    all
}

fn of_kind<'a>(resources: &'a [Seen], kind: &str) -> Vec<&'a Seen> {
    resources.iter().filter(|r| r.kind == kind).collect()
}

fn uid(cluster: &Value) -> String {
    cluster["metadata"]["uid"].as_str().unwrap().to_string()
}

/// The user data with what differs from run to run (uids, names, keys, tokens) replaced by
/// placeholders.
fn normalized(user_data: &str, uid: &str, endpoint: &str, dialtone: &str) -> String {
    let mut out = Vec::new();
    let mut in_pem = false;
    for line in user_data.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("-----BEGIN") {
            in_pem = true;
            out.push(format!(
                "{}<{}>",
                &line[..line.len() - trimmed.len()],
                trimmed.trim_matches('-')
            ));
            continue;
        }
        if in_pem {
            in_pem = !trimmed.starts_with("-----END");
            continue;
        }
        if let Some(at) = line.find("certificate-authority-data: ") {
            out.push(format!("{}<dialtone-ca>", &line[..at + 28]));
            continue;
        }
        out.push(
            line.replace(uid, "<uid>")
                .replace(endpoint, "<endpoint>")
                .replace(dialtone, "<dialtone>"),
        );
    }
    let text = out.join("\n") + "\n";
    let token = regex_like(&text, "token: ", 23);
    let pin = regex_like(&text, "sha256:", 64);
    let key = regex_like(&text, "secret: ", 44);
    [(token, "<token>"), (pin, "<ca-pin>"), (key, "<key>")]
        .into_iter()
        .fold(text, |text, (found, placeholder)| match found {
            Some(found) => text.replace(&found, placeholder),
            None => text,
        })
}

/// The `len` characters after the first `prefix` in `text`.
fn regex_like(text: &str, prefix: &str, len: usize) -> Option<String> {
    let start = text.find(prefix)? + prefix.len();
    text.get(start..start + len).map(str::to_string)
}

/// The user data passes cloud-init's own schema check.
fn assert_valid_cloud_config(user_data: &str, what: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), user_data).unwrap();
    let out = std::process::Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(file.path())
        .output()
        .expect("cloud-init runs (scripts/setup installs Debian's cloud-init)");
    assert!(
        out.status.success(),
        "{what}'s user data fails cloud-init's schema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The user data is its snapshot; `DIALTONE_BLESS=1` writes the snapshot instead.
fn assert_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.yaml"));
    if std::env::var_os("DIALTONE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; write it with DIALTONE_BLESS=1",
            path.display()
        )
    });
    if expected != actual {
        // The first line that differs, with a little of what surrounds it.
        let (expected_lines, actual_lines): (Vec<&str>, Vec<&str>) =
            (expected.lines().collect(), actual.lines().collect());
        let first = expected_lines
            .iter()
            .zip(&actual_lines)
            .position(|(e, a)| e != a)
            .unwrap_or(expected_lines.len().min(actual_lines.len()));
        let around = |lines: &[&str]| {
            lines[first.saturating_sub(3)..(first + 4).min(lines.len())].join("\n")
        };
        panic!(
            "{name}'s user data differs from {} at line {}; if the change is meant, run again with DIALTONE_BLESS=1\n--- expected\n{}\n--- actual\n{}",
            path.display(),
            first + 1,
            around(&expected_lines),
            around(&actual_lines)
        );
    }
}

/// A production cluster: its own VPC, a subnet in each of three zones, a control-plane node
/// in each, the planned workers, each instance of the planned type in its zone's subnet and
/// tagged with its cluster and role; and nothing left after delete.
async fn production_cluster(cloud: Cloud) {
    let world = World::start(cloud).await;
    let path = world.create("prod", "production").await;
    let cluster = world.built(&path).await;
    let uid = uid(&cluster);
    let own = world.of_cluster(&uid, &uid).await;

    let vpcs = of_kind(&own, "vpc");
    assert_eq!(vpcs.len(), 1, "{own:#?}");
    let subnets = of_kind(&own, "subnet");
    let zones: BTreeSet<&str> = subnets.iter().map(|s| s.zone.as_str()).collect();
    assert_eq!((subnets.len(), zones.len()), (3, 3), "{subnets:#?}");
    assert!(subnets.iter().all(|s| s.vpc == vpcs[0].id), "{subnets:#?}");
    assert_eq!(of_kind(&own, "loadBalancer").len(), 1, "{own:#?}");
    assert_eq!(of_kind(&own, "securityGroup").len(), 1, "{own:#?}");

    let instances = of_kind(&own, "instance");
    let planned = cluster["status"]["nodes"].as_array().unwrap();
    assert_eq!(instances.len(), planned.len(), "{instances:#?}");
    for node in planned {
        let id = node["instanceId"].as_str().unwrap();
        let instance = instances
            .iter()
            .find(|i| i.id == id)
            .unwrap_or_else(|| panic!("{id} of {node} is not in the cloud"));
        assert_eq!(instance.instance_type, node["instanceType"], "{node}");
        assert_eq!(instance.zone, node["zone"], "{node}");
        let subnet = subnets.iter().find(|s| s.id == instance.subnet).unwrap();
        assert_eq!(subnet.zone, instance.zone, "{instance:#?}");
        let role = match node["role"].as_str().unwrap() {
            "controlPlane" => "control-plane",
            _ => "worker",
        };
        assert_eq!(instance.tag("dialtone.dev/role"), role, "{instance:#?}");
        assert_eq!(
            instance.tag("dialtone.dev/owner"),
            path.trim_start_matches("/v1/"),
            "{instance:#?}"
        );
    }
    let control_plane: Vec<&&Seen> = instances
        .iter()
        .filter(|i| i.tag("dialtone.dev/role") == "control-plane")
        .collect();
    let cp_zones: BTreeSet<&str> = control_plane.iter().map(|i| i.zone.as_str()).collect();
    assert_eq!((control_plane.len(), cp_zones.len()), (3, 3));
    if let Some(aws) = &world.aws {
        check_production_settings_on_aws(aws, &instances, &of_kind(&own, "loadBalancer")).await;
    }

    check_user_data(&world, &cluster, "production").await;
    world.delete(&path).await;
    world.assert_empty().await;
}

/// On aws, as EC2 and Elastic Load Balancing report them: each instance's metadata options
/// (`security.instanceMetadata`), its root volume's type and encryption (`*.diskType`,
/// `workers.diskEncryption`), and the API's load balancer internal (`network.apiEndpoint`)
/// with cross-zone load balancing on (`network.loadBalancer`).
async fn check_production_settings_on_aws(aws: &Aws, instances: &[&Seen], balancers: &[&Seen]) {
    use aws_sdk_ec2::types::{Filter, HttpTokensState, VolumeType};
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    let described = aws
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
    for i in described.reservations().iter().flat_map(|r| r.instances()) {
        let metadata = i.metadata_options().unwrap();
        assert_eq!(
            (
                metadata.http_tokens(),
                metadata.http_put_response_hop_limit()
            ),
            (Some(&HttpTokensState::Required), Some(1)),
            "{:?}",
            i.instance_id()
        );
    }
    let volumes = aws
        .ec2
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .set_values(Some(ids.clone()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(volumes.volumes().len(), ids.len(), "a root volume each");
    for volume in volumes.volumes() {
        assert_eq!(volume.volume_type(), Some(&VolumeType::Gp3), "{volume:?}");
        assert_eq!(volume.encrypted(), Some(true), "{volume:?}");
    }
    assert_eq!(balancers.len(), 1);
    let arn = &balancers[0].id;
    let described = aws
        .elb
        .describe_load_balancers()
        .load_balancer_arns(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.load_balancers()[0].scheme().map(|s| s.as_str()),
        Some("internal")
    );
    let attributes = aws
        .elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .unwrap();
    let cross_zone = attributes
        .attributes()
        .iter()
        .find(|a| a.key() == Some("load_balancing.cross_zone.enabled"))
        .and_then(|a| a.value());
    assert_eq!(cross_zone, Some("true"), "{attributes:?}");
}

/// On aws: every instance's user data is valid cloud-config, and each role's is its
/// snapshot for the cluster's type.
async fn check_user_data(world: &World, cluster: &Value, cluster_type: &str) {
    if world.cloud != Cloud::Aws {
        return;
    }
    let uid = uid(cluster);
    let endpoint = cluster["status"]["endpoint"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches(":6443")
        .to_string();
    let mut checked = BTreeSet::new();
    for node in cluster["status"]["nodes"].as_array().unwrap() {
        let id = node["instanceId"].as_str().unwrap();
        let name = node["name"].as_str().unwrap();
        let user_data = world
            .user_data(id)
            .await
            .unwrap_or_else(|| panic!("{name} has no user data"));
        assert_valid_cloud_config(&user_data, name);
        let role = match name {
            "cp-0" => "init",
            n if n.starts_with("cp-") => "join-control-plane",
            _ => "worker",
        };
        if checked.insert(role) {
            assert_snapshot(
                &format!("userdata-{cluster_type}-{role}"),
                &normalized(&user_data, &uid, &endpoint, &world.server.endpoint()),
            );
        }
    }
}

/// Two developer clusters of a project share its VPC in the region, each with its own
/// instances; the VPC goes with the last of them. A worker bound raised adds instances; an
/// instance that dies is replaced.
async fn developer_clusters(cloud: Cloud) {
    let world = World::start(cloud).await;
    let a = world.create("dev-a", "developer").await;
    let b = world.create("dev-b", "developer").await;
    let dev_a = world.built(&a).await;
    let dev_b = world.built(&b).await;
    check_user_data(&world, &dev_a, "developer").await;
    let vpc_of = |resources: &[Seen], uid: &str| -> String {
        let instance = resources
            .iter()
            .find(|r| r.kind == "instance" && r.tag(CLUSTER_TAG) == uid)
            .unwrap_or_else(|| panic!("no instance of {uid}: {resources:#?}"));
        instance.vpc.clone()
    };
    let all = world.resources().await;
    assert_eq!(of_kind(&all, "vpc").len(), 1, "one shared VPC: {all:#?}");
    if cloud == Cloud::Aws {
        // The sim's instances do not name their VPC; EC2's do.
        assert_eq!(vpc_of(&all, &uid(&dev_a)), vpc_of(&all, &uid(&dev_b)));
    }

    // The worker bound goes up: more instances.
    let mut grown = dev_a.clone();
    grown["spec"]["minNodes"] = json!(3);
    let (status, body) = world.api.put(&a, grown).await;
    assert_eq!(status, 200, "{body}");
    let grown = world
        .wait_for(&a, "3 workers", |c| {
            c["status"]["nodes"].as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .filter(|n| n["role"] == "worker" && n["state"] == "running")
                    .count()
                    == 3
            })
        })
        .await;
    let instances: Vec<Seen> = world
        .resources()
        .await
        .into_iter()
        .filter(|r| r.kind == "instance" && r.tag(CLUSTER_TAG) == uid(&grown))
        .collect();
    assert_eq!(
        instances.len(),
        4,
        "a control-plane node and 3 workers: {instances:#?}"
    );

    // A worker dies: a new instance takes its slot.
    let victim = grown["status"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == "worker")
        .unwrap()
        .clone();
    world.kill(victim["instanceId"].as_str().unwrap()).await;
    world
        .wait_for(&a, "repaired", |c| {
            c["status"]["nodes"].as_array().is_some_and(|nodes| {
                nodes.iter().any(|n| {
                    n["name"] == victim["name"]
                        && n["state"] == "running"
                        && n["instanceId"] != victim["instanceId"]
                })
            })
        })
        .await;

    world.delete(&a).await;
    let left = world.resources().await;
    assert_eq!(
        of_kind(&left, "vpc").len(),
        1,
        "dev-b still uses it: {left:#?}"
    );
    assert!(
        left.iter().all(|r| r.tag(CLUSTER_TAG) != uid(&dev_a)),
        "dev-a left: {left:#?}"
    );
    world.delete(&b).await;
    world.assert_empty().await;
    world.metered(&["eng/web/dev-a", "eng/web/dev-b"]).await;
}

/// The sim's own commands refuse on another cloud; a cloud that does not answer stops the
/// server at startup, saying what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_refuses_the_sims_commands_and_an_endpoint_that_does_not_answer() {
    let world = World::start(Cloud::Aws).await;
    let out = world.server.cli(&["sim", "resources"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("aws"), "names the provider: {stderr}");

    let dead = format!("http://127.0.0.1:{}", dialtone_testkit::free_port());
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["server", "--provider", "aws", "--aws-image-id", "ami-1"])
        .args(["--aws-endpoint-url", &dead, "--listen"])
        .arg(format!("127.0.0.1:{}", dialtone_testkit::free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("AWS does not answer") && stderr.contains(&dead),
        "says what does not answer: {stderr}"
    );
}

/// The token review webhook clusters' API servers call: a credential Dialtone minted for a
/// cluster names its holder there, and nowhere else; revoked, it names no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_by_token_review_for_their_cluster_only() {
    let world = World::start(Cloud::Sim).await;
    let a = world.create("dev-a", "developer").await;
    let b = world.create("dev-b", "developer").await;
    let (dev_a, dev_b) = (world.built(&a).await, world.built(&b).await);
    let (status, credentials) = world.api.post(&format!("{a}/credentials"), json!({})).await;
    assert_eq!(status, 201, "{credentials}");
    let review = |uid: String, body: Value| {
        let api = world.api.clone();
        // As an API server calls it: no bearer token of its own.
        async move {
            api.send(
                "POST",
                &format!("/v1/authentication/clusters/{uid}/tokenreviews"),
                Some(serde_json::to_vec(&body).unwrap()),
                None,
            )
            .await
        }
    };
    let token_review = |token: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let token = credentials["token"].as_str().unwrap();
    let (status, answer) = review(uid(&dev_a), token_review(token)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(answer["status"]["user"]["username"], "admin", "{answer}");
    let (_, answer) = review(uid(&dev_b), token_review(token)).await;
    assert_eq!(
        answer["status"]["authenticated"], false,
        "another cluster's: {answer}"
    );
    let (_, answer) = review(uid(&dev_a), token_review("dt_not-a-token")).await;
    assert_eq!(answer["status"]["authenticated"], false, "{answer}");
    let (status, answer) = review(uid(&dev_a), json!(["not", "a", "review"])).await;
    assert_eq!(status, 400, "{answer}");

    let token_id = credentials["tokenId"].as_str().unwrap();
    let out = world.server.cli(&["token", "revoke", token_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, answer) = review(uid(&dev_a), token_review(token)).await;
    assert_eq!(
        answer["status"]["authenticated"], false,
        "revoked: {answer}"
    );
}

/// The account that owns the customer's VPCs on moto (any 12 digits but moto's own).
const MOTO_CUSTOMER: &str = "111122223333";

/// A customer of the cluster's owner, with a VPC of its own in another account.
struct Customer {
    account: String,
    vpc: String,
}

/// A peering's routes and rules as the cloud holds them for a cluster.
#[derive(Debug, Default)]
struct Peered {
    /// `(route table, destination, peering)` of every route through a peering.
    routes: Vec<(String, String, String)>,
    /// The route tables of the cluster's VPC.
    tables: BTreeSet<String>,
    /// `(port, source)` of the nodes' security group's rules.
    rules: Vec<(u16, String)>,
    /// `(peering, state)` of every peering of Dialtone's account still in force.
    peerings: Vec<(String, String)>,
}

impl World {
    /// Opens a customer's account with a VPC of `cidr`: the sim's operator API, or EC2 as
    /// another moto account.
    async fn customer(&self, cidr: &str) -> Customer {
        match &self.aws {
            None => {
                let (status, account) = self.api.post("/v1/sim/accounts", json!({})).await;
                assert_eq!(status, 201, "{account}");
                let account = account["id"].as_str().unwrap().to_string();
                let (status, vpc) = self
                    .api
                    .post(
                        &format!("/v1/sim/accounts/{account}/vpcs"),
                        json!({"region": REGION, "cidr": cidr}),
                    )
                    .await;
                assert_eq!(status, 201, "{vpc}");
                Customer {
                    account,
                    vpc: vpc["id"].as_str().unwrap().to_string(),
                }
            }
            Some(aws) => {
                let vpc = aws
                    .ec2
                    .create_vpc()
                    .cidr_block(cidr)
                    .customize()
                    .mutate_request(|r| {
                        r.headers_mut().insert("x-moto-account-id", MOTO_CUSTOMER);
                    })
                    .send()
                    .await
                    .unwrap();
                Customer {
                    account: MOTO_CUSTOMER.to_string(),
                    vpc: vpc.vpc().unwrap().vpc_id().unwrap().to_string(),
                }
            }
        }
    }

    /// The customer accepts (or rejects) the peering, from its own account.
    async fn answer(&self, customer: &Customer, peering: &str, accept: bool) {
        match &self.aws {
            None => {
                let answer = if accept { "accept" } else { "reject" };
                let (status, body) = self
                    .api
                    .post(
                        &format!(
                            "/v1/sim/accounts/{}/peerings/{peering}/{answer}",
                            customer.account
                        ),
                        json!({}),
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
            }
            Some(aws) => {
                let as_customer = |r: &mut aws_sdk_ec2::config::http::HttpRequest| {
                    r.headers_mut().insert("x-moto-account-id", MOTO_CUSTOMER);
                };
                if accept {
                    aws.ec2
                        .accept_vpc_peering_connection()
                        .vpc_peering_connection_id(peering)
                        .customize()
                        .mutate_request(as_customer)
                        .send()
                        .await
                        .unwrap();
                } else {
                    aws.ec2
                        .reject_vpc_peering_connection()
                        .vpc_peering_connection_id(peering)
                        .customize()
                        .mutate_request(as_customer)
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    }

    /// Creates the connection `body` names under `connections` and waits until its peering
    /// is pending the customer's answer: its path and the peering's id.
    async fn ask(&self, connections: &str, body: Value) -> (String, String) {
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        let (status, created) = self.api.post(connections, body).await;
        assert_eq!(status, 201, "{created}");
        let path = format!("{connections}/{name}");
        let asked = self
            .wait_for(&path, "pending acceptance", |c| {
                c["status"]["state"] == "pending-acceptance"
            })
            .await;
        let peering = asked["status"]["peeringId"].as_str().unwrap().to_string();
        (path, peering)
    }

    /// The customer deletes an active peering, from its own account.
    async fn customer_deletes(&self, customer: &Customer, peering: &str) {
        match &self.aws {
            None => {
                let (status, body) = self
                    .api
                    .delete(&format!(
                        "/v1/sim/accounts/{}/peerings/{peering}",
                        customer.account
                    ))
                    .await;
                assert_eq!(status, 200, "{body}");
            }
            Some(aws) => {
                aws.ec2
                    .delete_vpc_peering_connection()
                    .vpc_peering_connection_id(peering)
                    .customize()
                    .mutate_request(|r| {
                        r.headers_mut().insert("x-moto-account-id", MOTO_CUSTOMER);
                    })
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// What the cloud holds for the production cluster `uid`'s peerings.
    async fn peered(&self, uid: &str) -> Peered {
        let mut peered = Peered::default();
        match &self.aws {
            None => {
                let (status, list) = self.api.get("/v1/sim/resources").await;
                assert_eq!(status, 200, "{list}");
                for r in list["items"].as_array().unwrap() {
                    let id = r["id"].as_str().unwrap().to_string();
                    let tag = |key: &str| r["tags"][key].as_str().unwrap_or_default();
                    match r["spec"]["kind"].as_str().unwrap() {
                        "routeTable" if tag(NETWORK_TAG) == uid => {
                            peered.tables.insert(id.clone());
                            for route in r["spec"]["routes"].as_array().into_iter().flatten() {
                                peered.routes.push((
                                    id.clone(),
                                    route["destination"].as_str().unwrap().into(),
                                    route["target"].as_str().unwrap().into(),
                                ));
                            }
                        }
                        "securityGroup" if tag(CLUSTER_TAG) == uid => {
                            for rule in r["spec"]["ingress"].as_array().unwrap() {
                                peered.rules.push((
                                    rule["port"].as_u64().unwrap() as u16,
                                    rule["source"].as_str().unwrap().into(),
                                ));
                            }
                        }
                        "vpcPeering" => {
                            let state = r["peering"]["state"].as_str().unwrap();
                            if !matches!(state, "rejected" | "expired" | "failed") {
                                peered.peerings.push((id, state.to_string()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            Some(aws) => {
                use aws_sdk_ec2::types::Filter;
                let tagged = |key: &str| {
                    Filter::builder()
                        .name(format!("tag:{key}"))
                        .values(uid)
                        .build()
                };
                let tables = aws
                    .ec2
                    .describe_route_tables()
                    .filters(tagged(NETWORK_TAG))
                    .send()
                    .await
                    .unwrap();
                for table in tables.route_tables() {
                    let id = table.route_table_id().unwrap().to_string();
                    peered.tables.insert(id.clone());
                    for route in table.routes() {
                        if let Some(target) = route.vpc_peering_connection_id() {
                            peered.routes.push((
                                id.clone(),
                                route.destination_cidr_block().unwrap().into(),
                                target.into(),
                            ));
                        }
                    }
                }
                let groups = aws
                    .ec2
                    .describe_security_groups()
                    .filters(tagged(CLUSTER_TAG))
                    .send()
                    .await
                    .unwrap();
                for permission in groups
                    .security_groups()
                    .iter()
                    .flat_map(|g| g.ip_permissions())
                {
                    for range in permission.ip_ranges() {
                        peered.rules.push((
                            permission.from_port().unwrap_or(0) as u16,
                            range.cidr_ip().unwrap().into(),
                        ));
                    }
                }
                let peerings = aws
                    .ec2
                    .describe_vpc_peering_connections()
                    .send()
                    .await
                    .unwrap();
                for p in peerings.vpc_peering_connections() {
                    let state = p.status().and_then(|s| s.code()).unwrap().as_str();
                    if !matches!(state, "rejected" | "expired" | "failed" | "deleted") {
                        peered.peerings.push((
                            p.vpc_peering_connection_id().unwrap().into(),
                            state.to_string(),
                        ));
                    }
                }
            }
        }
        peered
    }
}

fn condition<'a>(object: &'a Value, type_: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// A production cluster's connection to a customer's VPC, through every state a user
/// meets: refused input, pending acceptance, active with routes in every route table,
/// rejected, deleted while pending and while active, and the cluster deleted only with
/// cascade. What was built is read from the cloud.
async fn connections(cloud: Cloud) {
    let world = World::start(cloud).await;
    let path = world.create("prod", "production").await;
    let cluster = world
        .wait_for(&path, "given a VPC", |c| {
            c["status"]["events"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        })
        .await;
    let uid = uid(&cluster);
    let vpc_cidr = cluster["status"]["plan"]["network"]["vpcCidr"]
        .as_str()
        .unwrap()
        .to_string();
    let customer = world.customer("192.168.0.0/16").await;
    let connections = format!("{path}/connections");
    let body = |name: &str, account: &str, vpc: &str, region: &str, cidr: &str| {
        json!({"metadata": {"name": name}, "spec": {
            "peerAccount": account, "peerVpc": vpc, "peerRegion": region,
            "peerCidrs": [cidr], "allowPorts": [30080]}})
    };
    let good = |name: &str, cidr: &str| body(name, &customer.account, &customer.vpc, REGION, cidr);

    // Refused with every reason named, and nothing made.
    let (status, refused) = world.api.post(&connections, good("clash", &vpc_cidr)).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.to_string().contains("the cluster's VPC range"),
        "{refused}"
    );
    let (status, refused) = world
        .api
        .post(
            &connections,
            body("bad", "1234-5678", "vpc-nothex", "mars-1", "192.168.0.0/16"),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    let fields = common::error_fields(&refused);
    for field in ["spec.peerAccount", "spec.peerVpc", "spec.peerRegion"] {
        assert!(fields.contains(&field), "{field} not named: {refused}");
    }
    assert!(refused.to_string().contains("valid regions"), "{refused}");
    let developer = world.create("dev", "developer").await;
    let (status, refused) = world
        .api
        .post(
            &format!("{developer}/connections"),
            good("db", "192.168.0.0/16"),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused.to_string().contains("production clusters"),
        "{refused}"
    );
    assert!(world.api.names(&connections).await.is_empty());
    assert!(world.peered(&uid).await.peerings.is_empty());

    // Requested, then accepted from the customer's account: active, routed.
    let (status, created) = world
        .api
        .post(&connections, good("db", "192.168.0.0/16"))
        .await;
    assert_eq!(status, 201, "{created}");
    let db = format!("{connections}/db");
    let pending = world
        .wait_for(&db, "pending acceptance", |c| {
            c["status"]["state"] == "pending-acceptance"
        })
        .await;
    let peering = pending["status"]["peeringId"].as_str().unwrap().to_string();
    assert!(
        pending["status"]["nextSteps"][0]
            .as_str()
            .unwrap()
            .contains(&peering),
        "{pending:#}"
    );
    let (status, refused) = world
        .api
        .post(&connections, good("overlap", "192.168.4.0/24"))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused.to_string().contains("connection `db`"), "{refused}");
    assert_eq!(
        world.peered(&uid).await.routes,
        vec![],
        "no route before it is active"
    );

    world.answer(&customer, &peering, true).await;
    let active = world
        .wait_for(&db, "Ready", |c| condition(c, "Ready")["status"] == "True")
        .await;
    assert_eq!(active["status"]["state"], "active", "{active:#}");
    let peered = world.peered(&uid).await;
    assert!(peered.tables.len() >= 3, "{peered:?}");
    for table in &peered.tables {
        let route = (table.clone(), "192.168.0.0/16".to_string(), peering.clone());
        assert!(
            peered.routes.contains(&route),
            "{table} lacks {route:?}: {peered:?}"
        );
    }
    assert!(
        peered
            .rules
            .contains(&(30080, "192.168.0.0/16".to_string())),
        "{peered:?}"
    );

    // A route taken away behind Dialtone's back is put back, and the connection says so.
    if cloud == Cloud::Sim {
        let table = peered.tables.first().unwrap();
        let (status, body) = world
            .api
            .post(
                &format!("/v1/sim/resources/{table}/changes"),
                json!({"change": "removeRoute", "destination": "192.168.0.0/16"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let restored = world
            .wait_for(&db, "its route put back", |c| {
                c["status"]["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["reason"] == "DriftRestored"))
            })
            .await;
        let said = restored["status"]["events"].to_string();
        assert!(
            said.contains(&format!("{table} → 192.168.0.0/16"))
                && said.contains("removed outside Dialtone; added back"),
            "{said}"
        );
        let route = (table.clone(), "192.168.0.0/16".to_string(), peering.clone());
        assert!(world.peered(&uid).await.routes.contains(&route));
    }

    // Rejected: the state says so, and nothing of it is in the cloud.
    let other = world.customer("172.31.0.0/16").await;
    let (other_path, other_peering) = world
        .ask(
            &connections,
            body("other", &other.account, &other.vpc, REGION, "172.31.0.0/16"),
        )
        .await;
    world.answer(&other, &other_peering, false).await;
    let rejected = world
        .wait_for(&other_path, "rejected", |c| {
            c["status"]["state"] == "rejected"
        })
        .await;
    assert_eq!(
        condition(&rejected, "Ready")["reason"],
        "Rejected",
        "{rejected:#}"
    );
    let peered = world.peered(&uid).await;
    assert!(
        peered
            .routes
            .iter()
            .all(|(_, _, target)| *target != other_peering),
        "{peered:?}"
    );

    // The customer deletes an active peering: the connection says so, its routes go, and
    // no new request is sent behind the user's back.
    let third = world.customer("172.30.0.0/16").await;
    let (brief, brief_peering) = world
        .ask(
            &connections,
            body("brief", &third.account, &third.vpc, REGION, "172.30.0.0/16"),
        )
        .await;
    world.answer(&third, &brief_peering, true).await;
    world
        .wait_for(&brief, "Ready", |c| {
            condition(c, "Ready")["status"] == "True"
        })
        .await;
    world.customer_deletes(&third, &brief_peering).await;
    // The sim's feed wakes the connection; aws has no feed, and a change to the connection
    // does it sooner than the resync.
    if cloud == Cloud::Aws {
        let (_, mut changed) = world.api.get(&brief).await;
        changed["spec"]["allowPorts"] = json!([30081]);
        let (status, body_) = world.api.put(&brief, changed).await;
        assert_eq!(status, 200, "{body_}");
    }
    let deleted = world
        .wait_for(&brief, "deleted outside", |c| {
            c["status"]["state"] == "deleted"
        })
        .await;
    assert_eq!(
        condition(&deleted, "Ready")["reason"],
        "PeeringDeleted",
        "{deleted:#}"
    );
    let peered = world.peered(&uid).await;
    assert!(
        peered
            .routes
            .iter()
            .all(|(_, _, target)| *target != brief_peering),
        "{peered:?}"
    );
    assert_eq!(
        peered.peerings,
        vec![(peering.clone(), "active".to_string())],
        "only db's peering is in force: no second request went out"
    );
    let (status, body_) = world.api.delete(&brief).await;
    assert!(status == 200 || status == 202, "{body_}");
    world.wait_for(&brief, "gone", |_| false).await;

    // A delete while pending withdraws the request.
    let (status, created) = world
        .api
        .post(
            &connections,
            body("later", &other.account, &other.vpc, REGION, "172.31.0.0/16"),
        )
        .await;
    assert_eq!(
        status, 422,
        "{created}: overlaps `other`, which is still there"
    );
    let (status, body_) = world.api.delete(&other_path).await;
    assert!(status == 200 || status == 202, "{body_}");
    world.wait_for(&other_path, "gone", |_| false).await;
    let (later, later_peering) = world
        .ask(
            &connections,
            body("later", &other.account, &other.vpc, REGION, "172.31.0.0/16"),
        )
        .await;
    let (status, body_) = world.api.delete(&later).await;
    assert!(status == 200 || status == 202, "{body_}");
    world.wait_for(&later, "gone", |_| false).await;
    assert!(
        world
            .peered(&uid)
            .await
            .peerings
            .iter()
            .all(|(id, _)| *id != later_peering),
        "the withdrawn request is still in force"
    );

    // The cluster keeps its connections unless deleted with cascade.
    let (_, mut protected) = world.api.get(&path).await;
    protected["spec"]["deletionProtection"] = json!(false);
    let (status, body_) = world.api.put(&path, protected).await;
    assert_eq!(status, 200, "{body_}");
    let (status, refused) = world.api.delete(&path).await;
    assert_eq!(status, 409, "{refused}");

    // Deleting the active connection takes its routes, rule and peering away.
    let (status, body_) = world.api.delete(&db).await;
    assert!(status == 200 || status == 202, "{body_}");
    world.wait_for(&db, "gone", |_| false).await;
    let peered = world.peered(&uid).await;
    assert_eq!(peered.routes, vec![], "{peered:?}");
    assert!(
        !peered
            .rules
            .iter()
            .any(|(_, source)| source == "192.168.0.0/16"),
        "{peered:?}"
    );
    assert_eq!(peered.peerings, vec![], "{peered:?}");

    world.delete(&developer).await;
    world.delete(&path).await;
    world.assert_empty().await;
}

/// On the sim, whose peering requests expire in a second here: a request nobody answers
/// expires and says what to do, and a cluster takes as many connections as its type allows
/// (`network.maxConnections`), not one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_expires_and_a_cluster_takes_at_most_its_types_connections() {
    let server = DevServer::start(
        env!("CARGO_BIN_EXE_dialtone").as_ref(),
        &["--sim-time-scale", "0", "--sim-peering-expiry", "1"],
    )
    .expect("dev server starts");
    let api = Api::admin(&server);
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
    let (status, body) = api
        .post(
            &format!("{PROJECT}/clusters"),
            json!({"metadata": {"name": "prod"}, "spec": {"type": "production", "region": REGION}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let limit = body["status"]["plan"]["settings"]["network"]["maxConnections"]
        .as_u64()
        .unwrap();
    assert_eq!(limit, 50);
    let connections = format!("{PROJECT}/clusters/prod/connections");
    let (_, account) = api.post("/v1/sim/accounts", json!({})).await;
    let account = account["id"].as_str().unwrap().to_string();
    let (_, vpc) = api
        .post(
            &format!("/v1/sim/accounts/{account}/vpcs"),
            json!({"region": REGION, "cidr": "10.250.0.0/16"}),
        )
        .await;
    let connection = |name: String, cidr: String| {
        json!({"metadata": {"name": name}, "spec": {
            "peerAccount": account, "peerVpc": vpc["id"], "peerRegion": REGION,
            "peerCidrs": [cidr]}})
    };
    let (status, body) = api
        .post(
            &connections,
            connection("late".into(), "10.250.0.0/16".into()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let start = Instant::now();
    let expired = loop {
        let (_, late) = api.get(&format!("{connections}/late")).await;
        if late["status"]["state"] == "expired" {
            break late;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{late:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready = condition(&expired, "Ready");
    assert_eq!(ready["reason"], "Expired", "{expired:#}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("create it again"),
        "{expired:#}"
    );

    for i in 1..limit {
        let (status, body) = api
            .post(
                &connections,
                connection(format!("c{i}"), format!("192.168.{i}.0/24")),
            )
            .await;
        assert_eq!(status, 201, "connection {i}: {body}");
    }
    let (status, refused) = api
        .post(
            &connections,
            connection("one-more".into(), "192.168.200.0/24".into()),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("network.maxConnections: 50"),
        "{refused}"
    );
    assert_eq!(api.names(&connections).await.len(), limit as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_the_sim() {
    connections(Cloud::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_aws() {
    connections(Cloud::Aws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_cluster_on_the_sim() {
    production_cluster(Cloud::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_cluster_on_aws() {
    production_cluster(Cloud::Aws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developer_clusters_on_the_sim() {
    developer_clusters(Cloud::Sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developer_clusters_on_aws() {
    developer_clusters(Cloud::Aws).await;
}
