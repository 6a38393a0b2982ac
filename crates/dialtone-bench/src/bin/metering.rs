//! Metering at fleet scale: a month of a 1,000-cluster fleet (three nodes each, running the
//! whole month) ingested hour by hour through the meter's own write path (`settle`: read the
//! period's records, reconcile, one guarded transaction per interval and period) into the
//! embedded store, then the usage report by day and by cluster over the month, as the API
//! builds it (`dialtone_server::usage::report`, from the day totals), timed beside the same
//! month summed by day from every record.
//!
//! `cargo run --release -p dialtone-bench --bin metering [-- --clusters 1000 --days 30]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dialtone_controllers::metering::{DAY, Meter, Settled, StoredInterval, records, settle};
use dialtone_metering::rollup::rollup;
use dialtone_metering::{Interval, Owner, Size, Subject, period_of};
use dialtone_server::usage::{Question, report};
use dialtone_store::registry::Registry;
use dialtone_store::{EmbeddedStore, Store};
use dialtone_types::usage::UsageGrouping;
use dialtone_types::{Object, Org};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};

#[derive(Parser)]
struct Args {
    /// Clusters in the fleet.
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Nodes per cluster, each running the whole range.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Days of usage.
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Intervals settled at once, as a pass settles them.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Reports asked per grouping.
    #[arg(long, default_value_t = 10)]
    queries: usize,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb"))?);
    let registry = Registry::new(store.clone(), "local", Timestamp::now);
    registry
        .create(None, Object::new("bench", Org::default()))
        .await?;
    let org_uid = registry
        .org_uid("bench")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no org"))?;
    let sim = Arc::new(dialtone_sim::Sim::open(
        &dir.path().join("sim.redb"),
        dialtone_sim::SimOptions::default(),
    )?);
    let meter = Meter::new(
        registry.clone(),
        sim.clone(),
        Timestamp::now,
        3600,
        Duration::from_secs(60),
    );
    let rates = meter.default_rates("us-east-1");
    let start: Timestamp = "2026-11-01T00:00:00Z".parse()?;
    let mut intervals: Vec<(StoredInterval, i64)> = Vec::new();
    for c in 0..args.clusters {
        for n in 0..args.nodes {
            let interval = Interval {
                owner: Owner {
                    org_uid: org_uid.clone(),
                    org: "bench".into(),
                    folder: format!("f{}", c / 100),
                    project: format!("p{}", c / 10 % 10),
                    cluster: format!("c{c}"),
                    cluster_uid: format!("00000000-0000-4000-8000-{c:012}"),
                    region: "us-east-1".into(),
                },
                subject: Subject::Node {
                    instance_id: format!("i-{c:08x}{n:04x}"),
                    instance_type: "m7i.large".into(),
                },
                size: Size {
                    millicpu: 2000,
                    memory_mib: 8192,
                },
                start,
                end: None,
            };
            intervals.push((
                StoredInterval {
                    recorded_until: period_of(start.as_second(), 3600),
                    interval,
                },
                0,
            ));
        }
    }
    println!(
        "{} clusters × {} nodes = {} intervals, {} days: {} records to write",
        args.clusters,
        args.nodes,
        intervals.len(),
        args.days,
        intervals.len() as i64 * args.days * 24
    );
    let began = Instant::now();
    let mut written = 0usize;
    let mut latencies = Vec::new();
    for hour in 1..=args.days * 24 {
        let now = start + SignedDuration::from_hours(hour) + SignedDuration::from_secs(1);
        let store = &store;
        let settled: Vec<(usize, Result<Settled, String>, Duration)> =
            futures::stream::iter(intervals.iter().cloned().enumerate())
                .map(|(i, (stored, revision))| async move {
                    let t = Instant::now();
                    let outcome = settle(&**store, 3600, stored, revision, false, now, rates).await;
                    (i, outcome, t.elapsed())
                })
                .buffer_unordered(args.concurrency)
                .collect()
                .await;
        for (i, outcome, took) in settled {
            match outcome.map_err(anyhow::Error::msg)? {
                Settled::Wrote { records, revision } => {
                    written += records;
                    intervals[i].1 = revision;
                    intervals[i].0.recorded_until = period_of(now.as_second(), 3600);
                }
                other => anyhow::bail!("interval {i} at hour {hour}: {other:?}"),
            }
            latencies.push(took);
        }
        if hour % 24 == 0 {
            // As the server's compactor does, so that old revisions do not pile up.
            store.compact(store.revision().await?).await?;
            eprintln!(
                "day {}: {written} records, {:.0}/s",
                hour / 24,
                written as f64 / began.elapsed().as_secs_f64()
            );
        }
    }
    let ingest = began.elapsed();
    println!(
        "ingest: {written} records in {:.1} s: {:.0} records/s; per interval and period p50 {} p99 {}",
        ingest.as_secs_f64(),
        written as f64 / ingest.as_secs_f64(),
        millis(percentile(&mut latencies, 0.5)),
        millis(percentile(&mut latencies, 0.99)),
    );
    let end = start + SignedDuration::from_hours(args.days * 24);
    // Side by side: the same month by day from every record, as a report would without
    // the day totals.
    let mut from_records = Vec::new();
    for _ in 0..args.queries.min(3) {
        let t = Instant::now();
        let records = records(&*store, &org_uid, start.as_second(), end.as_second())
            .await
            .map_err(anyhow::Error::msg)?;
        let by_day = rollup(&records, |r| period_of(r.period.as_second(), DAY));
        from_records.push(t.elapsed());
        assert_eq!(
            by_day.values().map(|t| t.records).sum::<u64>() as usize,
            written
        );
    }
    let records_p50 = percentile(&mut from_records, 0.5);
    println!(
        "by day from the records: p50 {} ({} reads)",
        millis(records_p50),
        from_records.len()
    );
    for by in [UsageGrouping::Day, UsageGrouping::Cluster] {
        let mut samples = Vec::new();
        let mut rows = 0;
        for _ in 0..args.queries {
            let question = Question {
                org_uid: &org_uid,
                scope: &[],
                scope_text: "bench".into(),
                from: start.as_second(),
                to: end.as_second(),
                by,
                now: end + SignedDuration::from_secs(1),
            };
            let t = Instant::now();
            let answer = report(&*store, &meter, &question)
                .await
                .map_err(anyhow::Error::msg)?;
            samples.push(t.elapsed());
            rows = answer.rows.len();
            assert_eq!(answer.total.records as usize, written);
        }
        let p50 = percentile(&mut samples, 0.5);
        println!(
            "report by {}: {rows} rows over {written} records: p50 {} p99 {}; from the records / report: {:.1}",
            by.name(),
            millis(p50),
            millis(percentile(&mut samples, 0.99)),
            records_p50.as_secs_f64() / p50.as_secs_f64(),
        );
    }
    Ok(())
}
