//! The meter: every node's life, as the provider reports its instance's (from running to
//! termination or death), kept as a usage interval with the cluster that owns it, and cut
//! into immutable usage records, one per period (an hour) once that period is final; the
//! pods' intervals, which the [`pods::PodMeter`] keeps, are cut the same way. Each record is
//! priced at its org's rates (`/billing/{org uid}`: by capacity or by requests, and its own
//! prices per region, else the catalogue's).
//!
//! Exactly once, whatever crashes: a record's key is derived from what it measures, and a
//! pass writes an interval's new records and its cursor (`recordedUntil`) in one
//! transaction that holds only if the interval is as the pass read it and none of the
//! records exists. A server killed mid-pass wrote all or nothing; a second server metering
//! the same store conflicts and reads again. An end learned after its period was recorded
//! whole (the provider said "running" a little too long) becomes a correction record.
//!
//! Keys: `/usage/intervals/{cluster uid}/{subject}` for intervals,
//! `/usage/records/{org uid}/{period start, 12 digits}/{cluster uid}/{subject}/{record id}`
//! for records, so that an org's usage over a time range is one range read;
//! `/usage/days/{org uid}/{day start}/{cluster uid}/{subject}` for each interval's records
//! of a UTC day summed, written in the same transaction as the records, so that a report
//! over whole days reads one key per interval and day instead of one per period;
//! `/usage/period` holds the period the store's records were cut at, which a server started
//! with another refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dialtone_cloud::tags::{TAG_CLUSTER, TAG_OWNER};
use dialtone_cloud::{InstanceLifetime, LIFETIME_RETENTION_DAYS, Provider};
use dialtone_metering::{
    Interval, Measure, Owner, RateCard, Size, Subject, Totals, UsageRecord, ceil_second, period_of,
};
use dialtone_store::registry::Registry;
use dialtone_store::{KeyRange, Revision, Store, Txn, TxnOutcome};
use dialtone_types::ResourcePath;
use dialtone_types::usage::{BillingMode, BillingSettings};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

const INTERVALS: &str = "/usage/intervals/";
const RECORDS: &str = "/usage/records/";
const DAYS: &str = "/usage/days/";
/// Seconds in a UTC day.
pub const DAY: i64 = 86_400;
const PERIOD_KEY: &str = "/usage/period";
const BILLING: &str = "/billing/";

pub mod pods;

/// One period, unless the server is told otherwise (`--metering-period`).
pub const DEFAULT_PERIOD_SECONDS: i64 = 3600;

/// An interval as the meter keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredInterval {
    pub interval: Interval,
    /// Every second before this one has its records: a period's start while the interval
    /// runs, the second after its end once it has ended.
    pub recorded_until: i64,
}

impl StoredInterval {
    /// Whether nothing more is owed: it ended and every period up to its end is recorded.
    pub fn done(&self) -> bool {
        self.interval
            .end
            .is_some_and(|end| self.recorded_until >= ceil_second(end))
    }
}

fn interval_key(cluster_uid: &str, subject: &Subject) -> String {
    format!("{INTERVALS}{cluster_uid}/{}", subject.key())
}

/// The org's billing settings (the defaults, while none were set).
pub async fn billing(store: &dyn Store, org_uid: &str) -> Result<BillingSettings, String> {
    let key = format!("{BILLING}{org_uid}");
    match store.get(key.as_bytes()).await.map_err(|e| e.to_string())? {
        Some(kv) => serde_json::from_slice(&kv.value)
            .map_err(|e| format!("corrupt billing settings of org {org_uid}: {e}")),
        None => Ok(BillingSettings::default()),
    }
}

/// Replaces the org's billing settings. Records already written keep the rates they carry.
pub async fn set_billing(
    store: &dyn Store,
    org_uid: &str,
    settings: &BillingSettings,
) -> Result<(), String> {
    let value = serde_json::to_vec(settings).expect("settings serialize");
    store
        .txn(Txn::default().put(format!("{BILLING}{org_uid}"), value))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The pod intervals of the cluster with uid `cluster_uid`, with their revisions.
async fn pod_intervals(
    store: &dyn Store,
    cluster_uid: &str,
) -> Result<Vec<(StoredInterval, Revision)>, String> {
    let prefix = format!("{INTERVALS}{cluster_uid}/pod/");
    scan(store, &KeyRange::prefix(prefix), stored_interval).await
}

/// A kept interval and its revision.
fn stored_interval(kv: &dialtone_store::KeyValue) -> Result<(StoredInterval, Revision), String> {
    let stored =
        serde_json::from_slice(&kv.value).map_err(|e| format!("a corrupt usage interval: {e}"))?;
    Ok((stored, kv.mod_revision))
}

/// Which billing mode pays for what `measure` measures.
pub fn billed_by(measure: &Measure) -> BillingMode {
    match measure {
        Measure::Capacity => BillingMode::Capacity,
        Measure::Requests { .. } => BillingMode::Requests,
    }
}

fn period_prefix(org_uid: &str, period: i64) -> String {
    format!("{RECORDS}{org_uid}/{period:012}/")
}

fn record_key(record: &UsageRecord) -> String {
    format!(
        "{}{}/{}/{}",
        period_prefix(&record.owner.org_uid, record.period.as_second()),
        record.owner.cluster_uid,
        record.subject.key(),
        record.id
    )
}

/// One interval's records of one UTC day, summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayTotals {
    pub owner: Owner,
    /// Nodes' capacity, or a namespace's pods' requests.
    #[serde(default)]
    pub measure: Measure,
    /// The day's first second.
    pub day: i64,
    pub totals: Totals,
}

fn day_key(owner: &Owner, subject: &Subject, day: i64) -> String {
    format!(
        "{DAYS}{}/{day:012}/{}/{}",
        owner.org_uid,
        owner.cluster_uid,
        subject.key()
    )
}

/// The day totals of `org_uid` for the days that start in `[from, to)` (seconds).
pub async fn day_totals(
    store: &dyn Store,
    org_uid: &str,
    from: i64,
    to: i64,
) -> Result<Vec<DayTotals>, String> {
    let key = |at: i64| format!("{DAYS}{org_uid}/{:012}/", at.max(0)).into_bytes();
    let range = KeyRange {
        start: key(from),
        end: Some(key(to)),
    };
    read_all(store, &range).await
}

/// The records of `org_uid` whose periods start in `[from, to)` (seconds).
pub async fn records(
    store: &dyn Store,
    org_uid: &str,
    from: i64,
    to: i64,
) -> Result<Vec<UsageRecord>, String> {
    let range = KeyRange {
        start: period_prefix(org_uid, from.max(0)).into_bytes(),
        end: Some(period_prefix(org_uid, to.max(0)).into_bytes()),
    };
    read_all(store, &range).await
}

/// Every interval the meter keeps, with its revision.
pub async fn intervals(store: &dyn Store) -> Result<Vec<(StoredInterval, Revision)>, String> {
    scan(store, &KeyRange::prefix(INTERVALS), stored_interval).await
}

async fn read_all<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    range: &KeyRange,
) -> Result<Vec<T>, String> {
    scan(store, range, |kv| {
        serde_json::from_slice(&kv.value).map_err(|e| format!("corrupt usage: {e}"))
    })
    .await
}

/// Every key of `range`, a page at a time, as `take` reads it.
async fn scan<T>(
    store: &dyn Store,
    range: &KeyRange,
    take: impl FnMut(&dialtone_store::KeyValue) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let kvs = store
        .range_all(range, None)
        .await
        .map_err(|e| e.to_string())?;
    kvs.iter().map(take).collect()
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metered {
    /// Records written.
    pub records: usize,
    /// Intervals first seen.
    pub new_intervals: usize,
    /// Transactions another writer got to first (read again next pass).
    pub conflicts: usize,
}

impl Metered {
    /// Counts what settling one interval did and, while it runs and its org is billed
    /// for what it measures, adds its cost per hour to its cluster's burn.
    fn add(&mut self, one: SettledInterval, burning: Option<&mut BTreeMap<(String, String), i64>>) {
        match one.settled {
            Settled::Wrote { records, .. } => self.records += records,
            Settled::Conflict => self.conflicts += 1,
            Settled::Nothing => {}
        }
        if let Some(burning) = burning
            && one.billed
        {
            *burning
                .entry((one.owner.org.clone(), one.owner.cluster_path()))
                .or_default() += one.micros_per_hour;
        }
    }
}

/// What settling one interval did, with what it costs while it runs.
struct SettledInterval {
    settled: Settled,
    owner: Owner,
    /// Whether its org is billed for what it measures.
    billed: bool,
    micros_per_hour: i64,
}

/// Orgs' billing settings, each read once a pass.
#[derive(Default)]
struct Settings(BTreeMap<String, BillingSettings>);

impl Settings {
    async fn of(&mut self, store: &dyn Store, org_uid: &str) -> Result<&BillingSettings, String> {
        if !self.0.contains_key(org_uid) {
            let found = billing(store, org_uid).await?;
            self.0.insert(org_uid.to_string(), found);
        }
        Ok(&self.0[org_uid])
    }
}

/// The meter.
pub struct Meter {
    pub registry: Registry,
    pub provider: Arc<dyn Provider>,
    pub clock: fn() -> Timestamp,
    /// Seconds per period.
    pub period: i64,
    /// How often it reads the provider.
    pub every: Duration,
    /// The rates fitted to the provider's catalogue, before a region's price factor.
    base_rates: RateCard,
    /// What the instances running at the last pass cost per hour.
    burning: std::sync::Mutex<Vec<Burn>>,
}

/// What one cluster's running instances cost per hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Burn {
    pub org: String,
    /// `folder/project/cluster`.
    pub cluster: String,
    pub micros_per_hour: i64,
}

impl Meter {
    /// A meter of `period`-second records reading `provider` every `every`; its rates are
    /// fitted to the provider's catalogue once, here.
    pub fn new(
        registry: Registry,
        provider: Arc<dyn Provider>,
        clock: fn() -> Timestamp,
        period: i64,
        every: Duration,
    ) -> Self {
        let base_rates = RateCard::derived(provider.catalog());
        Meter {
            registry,
            provider,
            clock,
            period,
            every,
            base_rates,
            burning: Default::default(),
        }
    }

    /// Records the store's period, or refuses one that differs from it: records cut at two
    /// periods would not add up. Called at startup on every server, leader or not, so it
    /// writes through `store`, not the meter's fenced registry.
    pub async fn claim_period(&self, store: &dyn dialtone_store::Store) -> Result<(), String> {
        loop {
            let stored = store
                .get(PERIOD_KEY.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(kv) = stored {
                let stored: i64 = String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
                if stored != self.period {
                    return Err(format!(
                        "this store's usage is metered in periods of {stored} s; start the server with --metering-period {stored}"
                    ));
                }
                return Ok(());
            }
            let txn = Txn::default()
                .when(PERIOD_KEY, 0)
                .put(PERIOD_KEY, self.period.to_string());
            // On a conflict another server claimed it first: read what it claimed.
            if let TxnOutcome::Committed { .. } = store.txn(txn).await.map_err(|e| e.to_string())? {
                return Ok(());
            }
        }
    }

    /// The rates an org with `settings` pays in `region`: its own, or the defaults.
    pub fn rates(&self, settings: &BillingSettings, region: &str) -> RateCard {
        match settings.rates.get(region) {
            Some(own) => RateCard {
                vcpu_hour_micros: own.vcpu_hour_micros.max(0) as u64,
                gib_hour_micros: own.gib_hour_micros.max(0) as u64,
            },
            None => self.default_rates(region),
        }
    }

    /// The default rates of `region`: the catalogue's, times the region's price factor.
    pub fn default_rates(&self, region: &str) -> RateCard {
        let base = self.base_rates;
        let factor = self
            .provider
            .regions()
            .iter()
            .find(|r| r.name == region)
            .map_or(1.0, |r| r.price_factor);
        RateCard {
            vcpu_hour_micros: (base.vcpu_hour_micros as f64 * factor).round() as u64,
            gib_hour_micros: (base.gib_hour_micros as f64 * factor).round() as u64,
        }
    }

    /// What each cluster's running instances cost per hour, as of the last pass.
    pub fn burn_rates(&self) -> Vec<Burn> {
        self.burning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Meters forever, a pass every `every`.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.pass().await {
                Ok(metered) if metered != Metered::default() => {
                    tracing::debug!(?metered, "metered")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot meter usage"),
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// One pass: every region's lifetimes against the kept intervals, then the pods'
    /// intervals (which the [`pods::PodMeter`] keeps) settled.
    pub async fn pass(&self) -> Result<Metered, String> {
        let now = (self.clock)();
        let store = self.registry.store().clone();
        let mut kept: BTreeMap<String, (StoredInterval, Revision)> = intervals(&*store)
            .await?
            .into_iter()
            .map(|(s, rev)| {
                (
                    interval_key(&s.interval.owner.cluster_uid, &s.interval.subject),
                    (s, rev),
                )
            })
            .collect();
        let since = now - SignedDuration::from_hours(LIFETIME_RETENTION_DAYS * 24);
        let mut metered = Metered::default();
        let mut reported = BTreeSet::new();
        let mut every_region_answered = true;
        let mut orgs: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut settings = Settings::default();
        let mut burning: BTreeMap<(String, String), i64> = BTreeMap::new();
        for region in self.provider.regions() {
            let lifetimes = match self.provider.lifetimes(region.name, since).await {
                Ok(lifetimes) => lifetimes,
                Err(e) => {
                    every_region_answered = false;
                    tracing::debug!(region = region.name, error = %e, "no lifetimes");
                    continue;
                }
            };
            for lifetime in lifetimes {
                let Some(cluster_uid) = lifetime.tags.get(TAG_CLUSTER) else {
                    continue;
                };
                let subject = Subject::Node {
                    instance_id: lifetime.id.clone(),
                    instance_type: lifetime.instance_type.clone(),
                };
                let key = interval_key(cluster_uid, &subject);
                reported.insert(key.clone());
                let (mut stored, revision) = match kept.remove(&key) {
                    Some(found) => found,
                    None => {
                        let Some(interval) = self
                            .interval_of(&lifetime, cluster_uid, subject, &mut orgs)
                            .await?
                        else {
                            continue;
                        };
                        metered.new_intervals += 1;
                        let start = interval.start.as_second();
                        let stored = StoredInterval {
                            interval,
                            recorded_until: period_of(start, self.period),
                        };
                        (stored, 0)
                    }
                };
                let end_learned = stored.interval.end.is_none() && lifetime.ended_at.is_some();
                if end_learned {
                    stored.interval.end = lifetime.ended_at.map(|end| end.max(lifetime.started_at));
                }
                let running = lifetime.ended_at.is_none() && lifetime.started_at <= now;
                metered.add(
                    self.settle_one(&*store, &mut settings, stored, revision, end_learned, now)
                        .await?,
                    running.then_some(&mut burning),
                );
            }
        }
        // Pods' intervals: their ends come from the pod meter, their records from here.
        for (stored, revision) in kept.values() {
            if !matches!(stored.interval.subject, Subject::Pod { .. }) {
                continue;
            }
            let running = stored.interval.end.is_none();
            metered.add(
                self.settle_one(
                    &*store,
                    &mut settings,
                    stored.clone(),
                    *revision,
                    false,
                    now,
                )
                .await?,
                running.then_some(&mut burning),
            );
        }
        if every_region_answered {
            *self.burning.lock().unwrap_or_else(|e| e.into_inner()) = burning
                .into_iter()
                .map(|((org, cluster), micros_per_hour)| Burn {
                    org,
                    cluster,
                    micros_per_hour,
                })
                .collect();
            // What the provider no longer reports and is done with is forgotten; its
            // records stay. A pod's interval is done once its end is recorded.
            for (key, (stored, revision)) in kept {
                if !reported.contains(&key) && stored.done() {
                    let _ = store
                        .txn(Txn::default().when(key.clone(), revision).delete(key))
                        .await;
                }
            }
        }
        Ok(metered)
    }

    /// Settles one interval at its org's rates: what was written, and what the interval
    /// costs per hour, priced as its org is billed.
    async fn settle_one(
        &self,
        store: &dyn Store,
        settings: &mut Settings,
        stored: StoredInterval,
        revision: Revision,
        end_learned: bool,
        now: Timestamp,
    ) -> Result<SettledInterval, String> {
        let owner = stored.interval.owner.clone();
        let size = stored.interval.size;
        let measured = billed_by(&stored.interval.subject.measure());
        let billing = settings.of(store, &owner.org_uid).await?;
        let rates = self.rates(billing, &owner.region);
        let hour = rates.cost_micros(size.millicpu as i64 * 3600, size.memory_mib as i64 * 3600);
        let settled = settle(
            store,
            self.period,
            stored,
            revision,
            end_learned,
            now,
            rates,
        )
        .await?;
        Ok(SettledInterval {
            settled,
            owner,
            billed: billing.mode == measured,
            micros_per_hour: hour,
        })
    }

    /// A new interval for `lifetime`, owned by the cluster its tags name; `None` when its
    /// owner cannot be told (no owner tag, an org that is gone).
    async fn interval_of(
        &self,
        lifetime: &InstanceLifetime,
        cluster_uid: &str,
        subject: Subject,
        orgs: &mut BTreeMap<String, Option<String>>,
    ) -> Result<Option<Interval>, String> {
        let Some(path) = lifetime
            .tags
            .get(TAG_OWNER)
            .and_then(|p| ResourcePath::parse(p).ok())
        else {
            return Ok(None);
        };
        let names: Vec<&str> = path.names().collect();
        let [org, folder, project, cluster] = names[..] else {
            return Ok(None);
        };
        let org_uid = match orgs.get(org) {
            Some(uid) => uid.clone(),
            None => {
                let uid = self
                    .registry
                    .org_uid(org)
                    .await
                    .map_err(|e| e.to_string())?;
                orgs.insert(org.to_string(), uid.clone());
                uid
            }
        };
        let Some(org_uid) = org_uid else {
            return Ok(None);
        };
        let Some(facts) = self.provider.catalog().get(&lifetime.instance_type) else {
            return Ok(None);
        };
        Ok(Some(Interval {
            owner: Owner {
                org_uid,
                org: org.to_string(),
                folder: folder.to_string(),
                project: project.to_string(),
                cluster: cluster.to_string(),
                cluster_uid: cluster_uid.to_string(),
                region: lifetime.region.clone(),
            },
            subject,
            size: Size {
                millicpu: u64::from(facts.vcpus) * 1000,
                memory_mib: facts.memory_mib,
            },
            start: lifetime.started_at,
            end: None,
        }))
    }
}

/// Writes what `stored` is owed by `now`, with its new cursor, in one transaction;
/// `end_learned` when its end was found this pass.
pub async fn settle(
    store: &dyn Store,
    period: i64,
    mut stored: StoredInterval,
    revision: Revision,
    end_learned: bool,
    now: Timestamp,
    rates: RateCard,
) -> Result<Settled, String> {
    let cursor = stored.recorded_until;
    let interval = &stored.interval;
    // An end before the cursor (learned after its periods were recorded as whole, from
    // the provider or the pod meter) reopens the periods from the end's on.
    let reopened = interval.end.filter(|end| ceil_second(*end) < cursor);
    if revision != 0 && !end_learned && reopened.is_none() && stored.done() {
        return Ok(Settled::Nothing);
    }
    let from = reopened.map_or(cursor, |end| period_of(end.as_second(), period));
    let due = interval.final_periods(period, from, now);
    if revision != 0 && !end_learned && due.is_empty() {
        return Ok(Settled::Nothing);
    }
    // The records already there: of the periods due, and of those reopened.
    let upto = due.last().map_or(from, |d| d.0).max(cursor - 1);
    let mut written = Vec::new();
    let mut at = period_of(from, period);
    while at <= upto {
        let prefix = format!(
            "{}{}/{}/",
            period_prefix(&interval.owner.org_uid, at),
            interval.owner.cluster_uid,
            interval.subject.key()
        );
        written.extend(read_all::<UsageRecord>(store, &KeyRange::prefix(prefix)).await?);
        at += period;
    }
    let owed = dialtone_metering::reconcile(interval, &written, period, from, now, rates);
    stored.recorded_until = match interval.end {
        Some(end) => ceil_second(end),
        None => period_of(now.as_second(), period),
    };
    let key = interval_key(&stored.interval.owner.cluster_uid, &stored.interval.subject);
    let mut txn = Txn::default().when(key.clone(), revision);
    let mut days: BTreeMap<i64, Totals> = BTreeMap::new();
    for record in &owed {
        let record_key = record_key(record);
        txn = txn.when(record_key.clone(), 0).put(
            record_key,
            serde_json::to_vec(record).expect("a record serializes"),
        );
        days.entry(period_of(record.period.as_second(), DAY))
            .or_default()
            .add(record);
    }
    // Only this interval's transactions write its day totals, each guarded as this one is.
    for (day, added) in days {
        let day_key = day_key(&stored.interval.owner, &stored.interval.subject, day);
        let mut totals = match store
            .get(day_key.as_bytes())
            .await
            .map_err(|e| e.to_string())?
        {
            Some(kv) => serde_json::from_slice::<DayTotals>(&kv.value)
                .map_err(|e| format!("corrupt day totals: {e}"))?,
            None => DayTotals {
                owner: stored.interval.owner.clone(),
                measure: stored.interval.subject.measure(),
                day,
                totals: Totals::default(),
            },
        };
        totals.totals.merge(&added);
        txn = txn.put(
            day_key,
            serde_json::to_vec(&totals).expect("day totals serialize"),
        );
    }
    txn = txn.put(
        key,
        serde_json::to_vec(&stored).expect("an interval serializes"),
    );
    match store.txn(txn).await.map_err(|e| e.to_string())? {
        TxnOutcome::Committed { revision } => Ok(Settled::Wrote {
            records: owed.len(),
            revision,
        }),
        TxnOutcome::Conflict => Ok(Settled::Conflict),
    }
}

/// What [`settle`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was owed.
    Nothing,
    /// `records` were written, with the interval, at `revision`.
    Wrote { records: usize, revision: Revision },
    /// Another writer changed the interval first; it is read again next pass.
    Conflict,
}
