//! Replication between regions, simulated over random schedules: three regions, each an
//! embedded store, write objects homed in them, pull each other's changes when their link
//! is up, compact their history now and then (so that a puller must start again from a
//! snapshot), and are cut off and healed at random. Once every link is healed and every
//! region has pulled, every acknowledged write is in every region and the digests match.
//!
//! Each seed is replayable: `REPLICATION_SEED=17 cargo test -p dialtone-store --test
//! replication` runs that one alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use dialtone_store::replication::{Batch, Replication};
use dialtone_store::{EmbeddedStore, KeyRange, Store, StoreError, Txn};
use futures::StreamExt;

const REGIONS: [&str; 3] = ["east", "west", "eu"];
const SEEDS: u64 = 100;
const STEPS: usize = 120;

/// SplitMix64: small, and the same numbers from the same seed on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Region {
    store: Arc<dyn Store>,
    replication: Replication,
    _dir: tempfile::TempDir,
}

fn object(home: &str, spec: u64) -> String {
    format!(r#"{{"metadata":{{"homeRegion":"{home}"}},"spec":{{"n":{spec}}}}}"#)
}

/// Region `to` pulls `from`'s changes as the server's puller does: from where it stopped,
/// or from a snapshot when it has never pulled or `from` no longer keeps that history.
async fn pull(regions: &[Region], to: usize, from: usize) -> Result<(), StoreError> {
    let (source, target) = (&regions[from], &regions[to]);
    let name = REGIONS[from];
    let head = source.store.revision().await?;
    let Some(applied) = target.replication.applied(name).await? else {
        let snapshot = source.replication.snapshot().await?;
        return target.replication.restore(name, &snapshot).await;
    };
    if applied.revision >= head {
        return Ok(());
    }
    let mut changes = match source.replication.changes(applied.revision + 1).await {
        Ok(changes) => changes.boxed(),
        Err(StoreError::Compacted { .. }) => {
            let snapshot = source.replication.snapshot().await?;
            return target.replication.restore(name, &snapshot).await;
        }
        Err(e) => return Err(e),
    };
    while let Some(batch) = changes.next().await {
        let batch: Batch = batch?;
        let revision = batch.revision;
        if !batch.changes.is_empty() {
            target.replication.apply(name, &batch).await?;
        }
        if revision >= head {
            return target.replication.caught_up(name, revision).await;
        }
    }
    Ok(())
}

/// What every region should hold in the end: each acknowledged write, by key.
type Model = BTreeMap<String, Option<String>>;

async fn run(seed: u64) {
    let mut rng = Rng(seed);
    let regions: Vec<Region> = REGIONS
        .iter()
        .map(|name| {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
            Region {
                replication: Replication::new(store.clone(), *name),
                store,
                _dir: dir,
            }
        })
        .collect();
    let mut model = Model::new();
    // Two orgs homed in each region, made before anything is cut.
    for (r, region) in regions.iter().enumerate() {
        for o in 0..2 {
            let key = format!("/o/orgs/{}-{o}", REGIONS[r]);
            let value = object(REGIONS[r], 0);
            region
                .store
                .txn(Txn::default().put(key.clone(), value.clone()))
                .await
                .unwrap();
            model.insert(key, Some(value));
        }
    }
    // links[i][j]: whether region i can reach region j.
    let mut links = [[true; 3]; 3];
    let mut schedule = Vec::new();
    for step in 0..STEPS {
        match rng.below(10) {
            // A write at its home: a folder of one of the region's orgs made, changed or
            // deleted.
            0..=4 => {
                let r = rng.below(3);
                let key = format!(
                    "/o/folders/{}-{}/f{}",
                    REGIONS[r],
                    rng.below(2),
                    rng.below(4)
                );
                let value = (rng.below(4) != 0).then(|| object(REGIONS[r], step as u64));
                let txn = match &value {
                    Some(v) => Txn::default().put(key.clone(), v.clone()),
                    None => Txn::default().delete(key.clone()),
                };
                regions[r].store.txn(txn).await.unwrap();
                schedule.push(format!("{step}: {} writes {key}", REGIONS[r]));
                model.insert(key, value);
            }
            // A pull over a link that is up.
            5..=7 => {
                let (to, from) = (rng.below(3), rng.below(3));
                if to != from && links[to][from] {
                    pull(&regions, to, from).await.unwrap();
                    schedule.push(format!("{step}: {} pulls {}", REGIONS[to], REGIONS[from]));
                }
            }
            // A region forgets its history: pullers behind it start from a snapshot.
            8 => {
                let r = rng.below(3);
                let head = regions[r].store.revision().await.unwrap();
                // Compacting again at the same revision is refused, as etcd does.
                match regions[r].store.compact(head).await {
                    Ok(()) | Err(StoreError::Compacted { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                schedule.push(format!("{step}: {} compacts at {head}", REGIONS[r]));
            }
            // A region is cut off, or its links heal.
            _ => {
                let r = rng.below(3);
                let up = rng.below(2) == 0;
                links[r] = [up; 3];
                for row in links.iter_mut() {
                    row[r] = up;
                }
                schedule.push(format!(
                    "{step}: {} {}",
                    REGIONS[r],
                    if up { "heals" } else { "is cut off" }
                ));
            }
        }
    }
    // Healed, and every region pulls from every other until nothing moves.
    for _ in 0..2 {
        for to in 0..3 {
            for from in 0..3 {
                if to != from {
                    pull(&regions, to, from).await.unwrap();
                }
            }
        }
    }
    let schedule = schedule.join("\n");
    for (r, region) in regions.iter().enumerate() {
        for (key, value) in &model {
            let held = region
                .store
                .get(key.as_bytes())
                .await
                .unwrap()
                .map(|kv| String::from_utf8(kv.value).unwrap());
            assert_eq!(
                &held, value,
                "seed {seed}: {} holds {key} wrongly after healing; the schedule:\n{schedule}",
                REGIONS[r]
            );
        }
        let folders = region
            .store
            .range(&KeyRange::prefix("/o/folders/"), None, 0)
            .await
            .unwrap();
        let expected = model
            .iter()
            .filter(|(k, v)| k.starts_with("/o/folders/") && v.is_some())
            .count();
        assert_eq!(
            folders.kvs.len(),
            expected,
            "seed {seed}: {} holds a folder deleted at its home; the schedule:\n{schedule}",
            REGIONS[r]
        );
    }
    let digests = regions[0].replication.digests().await.unwrap();
    assert_eq!(digests.len(), 6, "seed {seed}: {digests:?}");
    for (r, region) in regions.iter().enumerate().skip(1) {
        assert_eq!(
            region.replication.digests().await.unwrap(),
            digests,
            "seed {seed}: {} differs from {}; the schedule:\n{schedule}",
            REGIONS[r],
            REGIONS[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_converge_with_every_acknowledged_write_over_random_schedules() {
    let seeds: Vec<u64> = match std::env::var("REPLICATION_SEED") {
        Ok(seed) => vec![seed.parse().expect("REPLICATION_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    for seed in seeds {
        run(seed).await;
    }
}
