//! Usage intervals and the per-period records they are owed.
//!
//! An interval is measured in whole seconds: its start rounded down, its end rounded up,
//! so a pod that lived a tenth of a second holds one second and no second is split between
//! two records. Periods (an hour, by default) are aligned to the Unix epoch in UTC and are
//! whole seconds long, so cutting an interval at them loses nothing.
//!
//! A period of an interval is final, and its record due, once the interval has ended or has
//! been seen running after that period. A record is never rewritten: when what is known of
//! a period changes (an end learned after the period was recorded as whole), a correction
//! carries the difference, linked to the period's first record, so that the period's
//! records always sum to what it held.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rates::RateCard;

/// What is metered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Subject {
    /// A node: its instance, as the provider reports it.
    #[serde(rename_all = "camelCase")]
    Node {
        /// The provider's id.
        instance_id: String,
        /// `m7i.large`.
        instance_type: String,
    },
    /// A pod: the resources its containers request.
    #[serde(rename_all = "camelCase")]
    Pod {
        /// Its uid, which no other pod ever has.
        uid: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl Subject {
    /// What tells it apart from every other subject of its cluster: `node/i-…`, `pod/{uid}`.
    pub fn key(&self) -> String {
        match self {
            Subject::Node { instance_id, .. } => format!("node/{instance_id}"),
            Subject::Pod { uid, .. } => format!("pod/{uid}"),
        }
    }

    /// Which side of the bill it is on.
    pub fn measure(&self) -> Measure {
        match self {
            Subject::Node { .. } => Measure::Capacity,
            Subject::Pod { namespace, .. } => Measure::Requests {
                namespace: namespace.clone(),
            },
        }
    }
}

/// Which side of the bill a usage is on: what nodes offer, or what a namespace's pods ask.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Measure {
    /// Nodes' capacity.
    #[default]
    Capacity,
    /// The requests of a namespace's pods.
    Requests {
        /// The namespace.
        namespace: String,
    },
}

/// Where a usage belongs in the tree: uids say whose it is, names how it is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The org's uid: records are filed by it.
    pub org_uid: String,
    /// The org's name.
    pub org: String,
    /// The folder's name.
    pub folder: String,
    /// The project's name.
    pub project: String,
    /// The cluster's name.
    pub cluster: String,
    /// The cluster's uid.
    pub cluster_uid: String,
    /// The cluster's region.
    pub region: String,
}

impl Owner {
    /// `folder/project/cluster`: the cluster as its org's reports and invoices name it.
    pub fn cluster_path(&self) -> String {
        format!("{}/{}/{}", self.folder, self.project, self.cluster)
    }
}

/// What a subject holds in each second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Size {
    /// Thousandths of a vCPU.
    pub millicpu: u64,
    /// MiB of memory.
    pub memory_mib: u64,
}

/// A subject's life: from its start to its end, while it has not ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// Whose it is.
    pub owner: Owner,
    /// What it is.
    pub subject: Subject,
    /// What it holds.
    pub size: Size,
    /// When it started: a node's instance launched, a pod started.
    pub start: Timestamp,
    /// When it ended, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
}

/// One period of one interval (or a correction of one), as it is kept: immutable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRecord {
    /// Derived from the cluster, the subject, the period and the correction's number: the
    /// same record always has the same id.
    pub id: String,
    /// The period's start.
    pub period: Timestamp,
    /// Whose it is.
    pub owner: Owner,
    /// What it measures.
    pub subject: Subject,
    /// What the subject holds in each second.
    pub size: Size,
    /// The seconds of the period it covers: `[from, to)`.
    pub from: Timestamp,
    /// The end of those seconds.
    pub to: Timestamp,
    /// Milli-vCPU-seconds; negative in a correction that takes some back.
    pub cpu_milli_seconds: i64,
    /// MiB-seconds; as above.
    pub memory_mib_seconds: i64,
    /// What it costs, in micro-dollars, at `rates`.
    pub cost_micros: i64,
    /// The rates it was priced at.
    pub rates: RateCard,
    /// The id of the period's first record, for a correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<String>,
}

/// The last whole second at or before `at`.
fn floor_second(at: Timestamp) -> i64 {
    at.as_second() - i64::from(at.subsec_nanosecond() < 0)
}

/// The first whole second at or after `at`: where an interval that ends at `at` stops
/// counting.
pub fn ceil_second(at: Timestamp) -> i64 {
    at.as_second() + i64::from(at.subsec_nanosecond() > 0)
}

fn second(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("a time within jiff's range")
}

/// The record's id: a digest of what it measures and which correction it is (0 for the
/// period's first record).
fn record_id(owner: &Owner, subject: &Subject, period: i64, correction: usize) -> String {
    let mut digest = Sha256::new();
    digest.update(owner.cluster_uid.as_bytes());
    digest.update(b"\0");
    digest.update(subject.key().as_bytes());
    digest.update(b"\0");
    digest.update(period.to_string().as_bytes());
    digest.update(b"\0");
    digest.update(correction.to_string().as_bytes());
    let hex: String = digest
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("u{hex}")
}

impl Interval {
    /// The seconds of each `period`-second period that are final by `seen_running_at`
    /// (when the subject was last seen still running; ignored once it has ended), from the
    /// period that starts at `from` on: `(period, from, to)`, whole seconds.
    pub fn final_periods(
        &self,
        period: i64,
        from: i64,
        seen_running_at: Timestamp,
    ) -> Vec<(i64, i64, i64)> {
        let start = floor_second(self.start);
        let limit = match self.end {
            Some(end) => ceil_second(end).max(start),
            // Only periods wholly before the one it was seen in.
            None => period_of(floor_second(seen_running_at), period),
        };
        let mut periods = Vec::new();
        let mut at = period_of(start, period).max(period_of(from, period));
        while at < limit {
            let (first, last) = (start.max(at), limit.min(at + period));
            if last > first {
                periods.push((at, first, last));
            }
            at += period;
        }
        periods
    }
}

/// The start of the `period`-second period that holds second `at`.
pub fn period_of(at: i64, period: i64) -> i64 {
    at.div_euclid(period) * period
}

/// The records `interval` is owed for its periods of `period` seconds from the one that
/// starts at `from` on, beyond those `written` for them: a first record for each final
/// period that has none, and a correction for each period whose records no longer sum to
/// what it held (an end learned late, an end earlier than a period recorded).
pub fn reconcile(
    interval: &Interval,
    written: &[UsageRecord],
    period: i64,
    from: i64,
    seen_running_at: Timestamp,
    rates: RateCard,
) -> Vec<UsageRecord> {
    let mut by_period: BTreeMap<i64, Vec<&UsageRecord>> = BTreeMap::new();
    for record in written {
        let at = record.period.as_second();
        if at >= period_of(from, period) {
            by_period.entry(at).or_default().push(record);
        }
    }
    let size = interval.size;
    let mut due = Vec::new();
    let mut held: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (at, first, last) in interval.final_periods(period, from, seen_running_at) {
        held.insert(at, (first, last));
    }
    // Periods with records but no longer held (an end earlier than thought) are owed a
    // correction to nothing.
    let periods: std::collections::BTreeSet<i64> =
        held.keys().chain(by_period.keys()).copied().collect();
    for at in periods {
        let records = by_period.get(&at).map(Vec::as_slice).unwrap_or(&[]);
        let (from, to) = held.get(&at).copied().unwrap_or((at, at));
        let seconds = to - from;
        let cpu = seconds * size.millicpu as i64;
        let memory = seconds * size.memory_mib as i64;
        let (net_cpu, net_memory, net_cost) = records.iter().fold((0, 0, 0), |acc, r| {
            (
                acc.0 + r.cpu_milli_seconds,
                acc.1 + r.memory_mib_seconds,
                acc.2 + r.cost_micros,
            )
        });
        if records.is_empty() && seconds == 0 {
            continue;
        }
        if !records.is_empty() && (net_cpu, net_memory) == (cpu, memory) {
            continue;
        }
        let first = records.iter().find(|r| r.corrects.is_none());
        // Priced at the rates of the period's first record, so that a correction restates
        // the period rather than repricing it.
        let rates = first.map_or(rates, |r| r.rates);
        let (cpu_delta, memory_delta) = (cpu - net_cpu, memory - net_memory);
        due.push(UsageRecord {
            id: record_id(&interval.owner, &interval.subject, at, records.len()),
            period: second(at),
            owner: interval.owner.clone(),
            subject: interval.subject.clone(),
            size,
            from: second(from),
            to: second(to),
            cpu_milli_seconds: cpu_delta,
            memory_mib_seconds: memory_delta,
            cost_micros: rates.cost_micros(cpu, memory) - net_cost,
            rates,
            corrects: first.map(|r| r.id.clone()),
        });
    }
    due
}

/// `at` plus `seconds`, for tests and callers that count in seconds.
pub fn after(at: Timestamp, seconds: i64) -> Timestamp {
    at + SignedDuration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    const RATES: RateCard = RateCard {
        vcpu_hour_micros: 36_000,
        gib_hour_micros: 3_600,
    };

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn node(start: &str, end: Option<&str>) -> Interval {
        Interval {
            owner: Owner {
                org_uid: "o1".into(),
                org: "demo".into(),
                folder: "eng".into(),
                project: "web".into(),
                cluster: "dev".into(),
                cluster_uid: "c1".into(),
                region: "us-east-1".into(),
            },
            subject: Subject::Node {
                instance_id: "i-1".into(),
                instance_type: "m7i.large".into(),
            },
            size: Size {
                millicpu: 2000,
                memory_mib: 8192,
            },
            start: at(start),
            end: end.map(at),
        }
    }

    fn sum(records: &[UsageRecord]) -> (i64, i64, i64) {
        records.iter().fold((0, 0, 0), |a, r| {
            (
                a.0 + r.cpu_milli_seconds,
                a.1 + r.memory_mib_seconds,
                a.2 + r.cost_micros,
            )
        })
    }

    #[test]
    fn a_node_of_known_size_and_life_yields_exactly_its_vcpu_and_memory_seconds_and_cost() {
        // 2 vCPUs and 8 GiB for 2 h 30 min: 18,000 vCPU-seconds, 72,000 GiB-seconds.
        let interval = node("2026-12-07T10:00:00Z", Some("2026-12-07T12:30:00Z"));
        let records = reconcile(&interval, &[], HOUR, 0, at("2026-12-07T13:00:00Z"), RATES);
        assert_eq!(records.len(), 3);
        let (cpu, memory, cost) = sum(&records);
        assert_eq!(cpu, 18_000 * 1000);
        assert_eq!(memory, 72_000 * 1024);
        // 5 vCPU-hours at 36,000 and 20 GiB-hours at 3,600.
        assert_eq!(cost, 5 * 36_000 + 20 * 3_600);
        assert_eq!(records[2].from, at("2026-12-07T12:00:00Z"));
        assert_eq!(records[2].to, at("2026-12-07T12:30:00Z"));
        // Written again (a restart, a second server), nothing more is owed.
        assert!(
            reconcile(
                &interval,
                &records,
                HOUR,
                0,
                at("2026-12-07T14:00:00Z"),
                RATES
            )
            .is_empty()
        );
    }

    #[test]
    fn a_scale_event_in_the_middle_of_an_hour_splits_it_exactly() {
        // One node ends at 10:20:00, its replacement starts then: the hour is 3,600 s once.
        let old = node("2026-12-07T09:00:00Z", Some("2026-12-07T10:20:00Z"));
        let mut new = node("2026-12-07T10:20:00Z", None);
        new.subject = Subject::Node {
            instance_id: "i-2".into(),
            instance_type: "m7i.large".into(),
        };
        let seen = at("2026-12-07T11:00:01Z");
        let hour = |records: Vec<UsageRecord>| {
            records
                .into_iter()
                .filter(|r| r.period == at("2026-12-07T10:00:00Z"))
                .map(|r| r.cpu_milli_seconds / 2000)
                .sum::<i64>()
        };
        let old_seconds = hour(reconcile(&old, &[], HOUR, 0, seen, RATES));
        let new_seconds = hour(reconcile(&new, &[], HOUR, 0, seen, RATES));
        assert_eq!((old_seconds, new_seconds), (1_200, 2_400));
    }

    #[test]
    fn a_running_node_is_recorded_only_for_hours_wholly_past() {
        let interval = node("2026-12-07T10:15:00Z", None);
        assert!(reconcile(&interval, &[], HOUR, 0, at("2026-12-07T10:59:59Z"), RATES).is_empty());
        let records = reconcile(&interval, &[], HOUR, 0, at("2026-12-07T12:00:00Z"), RATES);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].cpu_milli_seconds, 2700 * 2000);
        assert_eq!(records[1].cpu_milli_seconds, 3600 * 2000);
    }

    #[test]
    fn a_pod_that_lived_less_than_a_second_is_counted_for_one() {
        let mut pod = node("2026-12-07T10:00:00.2Z", Some("2026-12-07T10:00:00.7Z"));
        pod.subject = Subject::Pod {
            uid: "p1".into(),
            namespace: "default".into(),
            name: "blink".into(),
        };
        pod.size = Size {
            millicpu: 250,
            memory_mib: 64,
        };
        let records = reconcile(&pod, &[], HOUR, 0, at("2026-12-07T10:00:01Z"), RATES);
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].cpu_milli_seconds, records[0].memory_mib_seconds),
            (250, 64)
        );
    }

    #[test]
    fn an_end_learned_after_its_hour_was_recorded_whole_is_a_linked_correction() {
        // Seen running at 12:00:05, so 10:00–11:00 and 11:00–12:00 were recorded whole;
        // then the provider says it ended at 11:30:00.
        let running = node("2026-12-07T10:00:00Z", None);
        let written = reconcile(&running, &[], HOUR, 0, at("2026-12-07T12:00:05Z"), RATES);
        assert_eq!(written.len(), 2);
        let ended = node("2026-12-07T10:00:00Z", Some("2026-12-07T11:30:00Z"));
        let corrections = reconcile(&ended, &written, HOUR, 0, at("2026-12-07T12:10:00Z"), RATES);
        assert_eq!(corrections.len(), 1);
        let correction = &corrections[0];
        assert_eq!(correction.corrects.as_ref(), Some(&written[1].id));
        assert_eq!(correction.cpu_milli_seconds, -1800 * 2000);
        assert_ne!(correction.id, written[1].id);
        let all: Vec<UsageRecord> = written.iter().chain(&corrections).cloned().collect();
        assert_eq!(sum(&all).0, 5400 * 2000);
        assert_eq!(
            sum(&all).2,
            RATES.cost_micros(5400 * 2000, 5400 * 8192),
            "the hours' costs are restated exactly"
        );
        // And nothing more once the correction is written.
        assert!(reconcile(&ended, &all, HOUR, 0, at("2026-12-07T13:00:00Z"), RATES).is_empty());
    }

    proptest::proptest! {
        /// However an interval's life is observed (seen at any times, ended at any time,
        /// records written at each observation), its records sum to exactly its seconds.
        #[test]
        fn records_always_sum_to_the_seconds_held(
            start in 0i64..20_000,
            length in 0i64..20_000,
            sightings in proptest::collection::vec(0i64..40_000, 0..6),
        ) {
            let base = at("2026-12-07T00:00:00Z");
            let mut interval = node("2026-12-07T00:00:00Z", None);
            interval.start = after(base, start);
            let end = start + length;
            let mut written: Vec<UsageRecord> = Vec::new();
            let mut seen: Vec<i64> = sightings;
            seen.sort();
            for s in seen {
                // Seen running, even after its end (a stale answer): corrected later.
                let observed = interval.clone();
                written.extend(reconcile(&observed, &written, HOUR, 0, after(base, s), RATES));
            }
            interval.end = Some(after(base, end));
            written.extend(reconcile(&interval, &written, HOUR, 0, after(base, 50_000), RATES));
            proptest::prop_assert_eq!(sum(&written).0, length * 2000);
            proptest::prop_assert_eq!(sum(&written).1, length * 8192);
            let ids: std::collections::BTreeSet<&str> = written.iter().map(|r| r.id.as_str()).collect();
            proptest::prop_assert_eq!(ids.len(), written.len());
        }
    }
}
