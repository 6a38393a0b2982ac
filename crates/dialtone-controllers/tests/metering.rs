//! Two meters, as two servers would run them, over one real etcd and one cloud: each
//! second of each instance is recorded once, whatever order their passes interleave in,
//! while instances come, go and die; and two pod meters following one cluster's changes
//! keep each pod's interval once, whichever applies a change first.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dialtone_cloud::tags::{TAG_CLUSTER, TAG_OWNER};
use dialtone_cloud::{CreateRequest, DiskType, InstanceMetadata, Provider, ResourceSpec, Tags};
use dialtone_controllers::metering::pods::{Followed, follow_changes, read_cursor};
use dialtone_controllers::metering::{Meter, day_totals, records};
use dialtone_kube::usage::PodUsage;
use dialtone_metering::{Owner, Subject, UsageRecord, ceil_second};
use dialtone_sim::{Sim, SimOptions};
use dialtone_store::registry::Registry;
use dialtone_store::{EtcdStore, Store};
use dialtone_testkit::EtcdCluster;
use futures::StreamExt;

const REGION: &str = "us-east-1";
const CLUSTER_UID: &str = "3f1c0c52-0000-4000-8000-000000000001";

fn request(token: &str, spec: ResourceSpec) -> CreateRequest {
    CreateRequest {
        client_token: token.to_string(),
        spec,
        tags: Tags::from([
            (TAG_CLUSTER.to_string(), CLUSTER_UID.to_string()),
            (
                TAG_OWNER.to_string(),
                "orgs/acme/folders/eng/projects/web/clusters/dev".to_string(),
            ),
        ]),
        bootstrap: None,
    }
}

/// A subnet and a security group to launch instances in.
async fn network(sim: &Sim) -> (String, String) {
    let vpc = sim
        .create(
            REGION,
            request(
                "vpc",
                ResourceSpec::Vpc {
                    cidr: "10.1.0.0/16".parse().unwrap(),
                },
            ),
        )
        .await
        .unwrap();
    let subnet = sim
        .create(
            REGION,
            request(
                "subnet",
                ResourceSpec::Subnet {
                    vpc_id: vpc.id.clone(),
                    zone: "us-east-1a".into(),
                    cidr: "10.1.0.0/20".parse().unwrap(),
                },
            ),
        )
        .await
        .unwrap();
    let sg = sim
        .create(
            REGION,
            request(
                "sg",
                ResourceSpec::SecurityGroup {
                    vpc_id: vpc.id,
                    ingress: Vec::new(),
                },
            ),
        )
        .await
        .unwrap();
    (subnet.id, sg.id)
}

fn instance(subnet: &str, sg: &str) -> ResourceSpec {
    ResourceSpec::Instance {
        instance_type: "m7i.large".into(),
        zone: "us-east-1a".into(),
        subnet_id: subnet.into(),
        security_group_id: sg.into(),
        image: "dialtone-node-1.35".into(),
        root_disk_gib: 50,
        disk_type: DiskType::Gp3,
        disk_encrypted: true,
        metadata: InstanceMetadata {
            tokens_required: true,
            hop_limit: 1,
        },
    }
}

/// One first record per subject and period, whoever wrote it.
fn one_first_record_per_period(written: &[UsageRecord]) {
    let firsts: Vec<_> = written
        .iter()
        .filter(|r| r.corrects.is_none())
        .map(|r| (r.subject.key(), r.period))
        .collect();
    let unique: BTreeSet<_> = firsts.iter().cloned().collect();
    assert_eq!(unique.len(), firsts.len(), "a period recorded twice");
}

fn meter(store: Arc<dyn Store>, sim: Arc<Sim>) -> Meter {
    Meter::new(
        Registry::new(store, "local", jiff::Timestamp::now),
        sim,
        jiff::Timestamp::now,
        1,
        Duration::from_millis(50),
    )
}

/// One real etcd with org acme's project eng/web in it, and one cloud.
struct World {
    _etcd: EtcdCluster,
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    sim: Arc<Sim>,
    org_uid: String,
}

async fn world() -> World {
    let etcd = EtcdCluster::start(1).expect("etcd runs");
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&etcd.endpoints()).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(
        Sim::open(
            &dir.path().join("sim.redb"),
            SimOptions {
                time_scale: 0.0,
                ..SimOptions::default()
            },
        )
        .unwrap(),
    );
    let registry = Registry::new(store.clone(), "local", jiff::Timestamp::now);
    common::acme_project(&registry).await;
    let org_uid = registry.org_uid("acme").await.unwrap().unwrap();
    World {
        _etcd: etcd,
        _dir: dir,
        store,
        sim,
        org_uid,
    }
}

#[tokio::test]
async fn two_meters_on_one_etcd_record_each_second_once() {
    let world = world().await;
    let (store, sim, org_uid) = (world.store.clone(), world.sim.clone(), &world.org_uid);
    let (subnet, sg) = network(&sim).await;
    let (first, second) = (
        meter(store.clone(), sim.clone()),
        meter(store.clone(), sim.clone()),
    );
    first.claim_period(store.as_ref()).await.unwrap();
    second.claim_period(store.as_ref()).await.unwrap();

    // Instances come, go and die while both meters run, passes racing each other.
    let mut running: Vec<String> = Vec::new();
    let mut seed: u64 = 7;
    let mut conflicts = 0;
    for step in 0..40 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        match (seed >> 33) % 4 {
            0 | 1 => {
                let launched = sim
                    .create(
                        REGION,
                        request(&format!("i-{step}"), instance(&subnet, &sg)),
                    )
                    .await
                    .unwrap();
                running.push(launched.id);
            }
            2 if !running.is_empty() => {
                let id = running.remove((seed >> 40) as usize % running.len());
                sim.delete(REGION, &id).await.unwrap();
            }
            3 if !running.is_empty() => {
                let id = running.remove((seed >> 40) as usize % running.len());
                sim.kill_instance(&id).await.unwrap();
            }
            _ => {}
        }
        let (a, b) = tokio::join!(first.pass(), second.pass());
        conflicts += a.unwrap().conflicts + b.unwrap().conflicts;
        tokio::time::sleep(Duration::from_millis((seed >> 50) % 150)).await;
    }
    for id in running.drain(..) {
        sim.delete(REGION, &id).await.unwrap();
    }
    // Once the last second has closed, both settle what is left.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let (a, b) = tokio::join!(first.pass(), second.pass());
        conflicts += a.unwrap().conflicts + b.unwrap().conflicts;
    }

    let lifetimes = sim
        .lifetimes(REGION, jiff::Timestamp::UNIX_EPOCH)
        .await
        .unwrap();
    let expected: i64 = lifetimes
        .iter()
        .map(|l| {
            let end = ceil_second(l.ended_at.expect("every instance ended"));
            (end - l.started_at.as_second()).max(0) * 2000
        })
        .sum();
    let written = records(&*store, org_uid, 0, i64::MAX / 2).await.unwrap();
    let recorded: i64 = written.iter().map(|r| r.cpu_milli_seconds).sum();
    assert_eq!(
        recorded,
        expected,
        "{} lifetimes, {} records, {conflicts} conflicts",
        lifetimes.len(),
        written.len()
    );
    // The day totals, written beside the records, sum them.
    let days = day_totals(&*store, org_uid, 0, i64::MAX / 2).await.unwrap();
    let summed: i64 = days.iter().map(|d| d.totals.cpu_milli_seconds).sum();
    assert_eq!(summed, recorded);
    one_first_record_per_period(&written);
    assert!(lifetimes.len() >= 10, "{} instances", lifetimes.len());
    eprintln!(
        "{} instances, {} records, {conflicts} passes lost a race and read again",
        lifetimes.len(),
        written.len()
    );
}

/// One cluster's pod changes, as its watch would bring them: each pod started, then
/// changed in ways metering ignores, then deleted; `(version, usage)` in version order.
fn pod_changes(base: jiff::Timestamp) -> Vec<(u64, PodUsage)> {
    let mut seed: u64 = 11;
    let mut timed = Vec::new();
    for i in 0..30 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let start = base + jiff::SignedDuration::from_secs(i * 2);
        let end = start + jiff::SignedDuration::from_millis(300 + (seed >> 40) as i64 % 20_000);
        let pod = PodUsage {
            uid: format!("pod-{i}"),
            namespace: ["default", "shop"][i as usize % 2].into(),
            name: format!("p{i}"),
            millicpu: 100 * (1 + i as u64 % 4),
            memory_mib: 64,
            started: Some(start),
            ended: None,
        };
        timed.push((start, pod.clone()));
        timed.push((start + jiff::SignedDuration::from_millis(10), pod.clone()));
        timed.push((
            end,
            PodUsage {
                ended: Some(end),
                ..pod
            },
        ));
    }
    timed.sort_by_key(|(at, _)| *at);
    timed
        .into_iter()
        .enumerate()
        .map(|(i, (_, usage))| (i as u64 + 1, usage))
        .collect()
}

/// Follows `changes` from wherever the cursor is until every one is applied, starting
/// over from the cursor whenever the other follower moved it first; how often it did.
async fn follow_all(
    store: &dyn Store,
    owner: &Owner,
    changes: &[(u64, PodUsage)],
    seed: u64,
) -> usize {
    let mut overtaken = 0;
    let mut seed = seed;
    loop {
        let (cursor, revision) = read_cursor(store, &owner.cluster_uid).await.unwrap();
        let after: u64 = cursor.as_deref().map_or(0, |v| v.parse().unwrap());
        if after == changes.len() as u64 {
            return overtaken;
        }
        // A watch brings a few changes at a time, at its own pace.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let batch: Vec<_> = changes
            .iter()
            .filter(|(v, _)| *v > after)
            .take(1 + (seed >> 40) as usize % 8)
            .map(|(v, usage)| Ok((usage.clone(), format!("{v}"))))
            .collect();
        let paced = futures::stream::iter(batch).then(|change| async move {
            tokio::task::yield_now().await;
            change
        });
        let version = cursor.unwrap_or_else(|| "0".into());
        match follow_changes(store, owner, paced, version, revision)
            .await
            .unwrap()
        {
            Followed::Overtaken => overtaken += 1,
            Followed::Ended => {}
        }
    }
}

#[tokio::test]
async fn two_pod_meters_following_one_cluster_on_one_etcd_record_each_pods_seconds_once() {
    let world = world().await;
    let (store, sim, org_uid) = (world.store.clone(), world.sim.clone(), &world.org_uid);
    let owner = Owner {
        org_uid: org_uid.clone(),
        org: "acme".into(),
        folder: "eng".into(),
        project: "web".into(),
        cluster: "dev".into(),
        cluster_uid: CLUSTER_UID.into(),
        region: REGION.into(),
    };
    // Pods of the last few minutes, so that every period of theirs is final.
    let changes = pod_changes(jiff::Timestamp::now() - jiff::SignedDuration::from_mins(3));
    let (a, b) = tokio::join!(
        follow_all(&*store, &owner, &changes, 1),
        follow_all(&*store, &owner, &changes, 2)
    );
    let meter = meter(store.clone(), sim);
    meter.claim_period(store.as_ref()).await.unwrap();
    meter.pass().await.unwrap();

    let written = records(&*store, org_uid, 0, i64::MAX / 2).await.unwrap();
    for (_, usage) in changes.iter().filter(|(_, u)| u.ended.is_some()) {
        let (start, end) = (usage.started.unwrap(), usage.ended.unwrap());
        let seconds = (ceil_second(end) - start.as_second()).max(1);
        let recorded: i64 = written
            .iter()
            .filter(|r| matches!(&r.subject, Subject::Pod { uid, .. } if *uid == usage.uid))
            .map(|r| r.cpu_milli_seconds)
            .sum();
        assert_eq!(recorded, seconds * usage.millicpu as i64, "{}", usage.uid);
    }
    one_first_record_per_period(&written);
    assert!(a + b > 0, "the followers never raced");
    eprintln!(
        "{} records; the followers were overtaken {a} and {b} times",
        written.len()
    );
}
