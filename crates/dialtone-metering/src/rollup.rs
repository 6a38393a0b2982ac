//! Totals by any grouping of records, exact: a total is the integer sum of its parts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::UsageRecord;

/// What some records add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Milli-vCPU-seconds.
    pub cpu_milli_seconds: i64,
    /// MiB-seconds.
    pub memory_mib_seconds: i64,
    /// Micro-dollars.
    pub cost_micros: i64,
    /// How many records.
    pub records: u64,
}

impl Totals {
    /// Adds one record.
    pub fn add(&mut self, record: &UsageRecord) {
        self.cpu_milli_seconds += record.cpu_milli_seconds;
        self.memory_mib_seconds += record.memory_mib_seconds;
        self.cost_micros += record.cost_micros;
        self.records += 1;
    }

    /// Takes other totals' amounts away (not their records: they are still read).
    pub fn remove(&mut self, other: &Totals) {
        self.cpu_milli_seconds -= other.cpu_milli_seconds;
        self.memory_mib_seconds -= other.memory_mib_seconds;
        self.cost_micros -= other.cost_micros;
    }

    /// Adds other totals.
    pub fn merge(&mut self, other: &Totals) {
        self.cpu_milli_seconds += other.cpu_milli_seconds;
        self.memory_mib_seconds += other.memory_mib_seconds;
        self.cost_micros += other.cost_micros;
        self.records += other.records;
    }
}

/// The totals of `records` by the key `group` gives each, in the key's order.
pub fn rollup<'a, K: Ord>(
    records: impl IntoIterator<Item = &'a UsageRecord>,
    group: impl Fn(&UsageRecord) -> K,
) -> BTreeMap<K, Totals> {
    let mut totals: BTreeMap<K, Totals> = BTreeMap::new();
    for record in records {
        totals.entry(group(record)).or_default().add(record);
    }
    totals
}
