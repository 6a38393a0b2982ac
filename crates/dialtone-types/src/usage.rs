//! What `GET /v1/orgs/{org}/usage` answers: usage and cost over a time range, grouped.
//!
//! Amounts are integers of the smallest units, so that totals are exact sums: milli-vCPU-
//! seconds, MiB-seconds and micro-dollars.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a grouping is by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UsageGrouping {
    /// One row: the scope's total.
    None,
    /// Folder by folder.
    Folder,
    /// Project by project (`folder/project`).
    Project,
    /// Cluster by cluster (`folder/project/cluster`).
    Cluster,
    /// Day by day, UTC (`2026-12-07`).
    Day,
    /// Hour by hour, UTC (`2026-12-07T10:00Z`).
    Hour,
}

impl UsageGrouping {
    /// Every grouping.
    pub const ALL: [UsageGrouping; 6] = [
        UsageGrouping::None,
        UsageGrouping::Folder,
        UsageGrouping::Project,
        UsageGrouping::Cluster,
        UsageGrouping::Day,
        UsageGrouping::Hour,
    ];

    /// As the API and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            UsageGrouping::None => "none",
            UsageGrouping::Folder => "folder",
            UsageGrouping::Project => "project",
            UsageGrouping::Cluster => "cluster",
            UsageGrouping::Day => "day",
            UsageGrouping::Hour => "hour",
        }
    }

    /// The grouping spelled `name`.
    pub fn parse(name: &str) -> Option<UsageGrouping> {
        UsageGrouping::ALL.into_iter().find(|g| g.name() == name)
    }
}

/// Usage and its cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageAmounts {
    /// Thousandths of vCPU-seconds.
    pub cpu_milli_seconds: i64,
    /// MiB-seconds of memory.
    pub memory_mib_seconds: i64,
    /// Micro-dollars.
    pub cost_micros: i64,
}

/// One group's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The group: a folder, `folder/project`, `folder/project/cluster`, a day or an hour;
    /// the scope's path for `none`.
    pub group: String,
    /// What its closed records hold.
    pub recorded: UsageAmounts,
    /// What it has used since its last closed record, priced at today's rates: the next
    /// records will hold it.
    pub provisional: UsageAmounts,
    /// How many records.
    pub records: u64,
}

/// An answer of the usage API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// The node of the tree it covers: `demo`, `demo/eng`, `demo/eng/web/dev`.
    pub scope: String,
    /// Its start, at a period's start (UTC).
    pub from: String,
    /// Its end, excluded.
    pub to: String,
    /// The grouping.
    pub by: UsageGrouping,
    /// Seconds per record.
    pub period_seconds: i64,
    /// One row per group, in the group's order.
    pub rows: Vec<UsageRow>,
    /// The sum of the rows, exactly.
    pub total: UsageRow,
}

/// Whether an invoice can still change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    /// The month has not ended, or some of its seconds are not recorded yet.
    Open,
    /// Every second of the month is recorded: the invoice is final.
    Closed,
}

/// One cluster's part of an invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    /// `folder/project/cluster`.
    pub cluster: String,
    /// The cluster's uid: a cluster deleted and made again under its name is another line.
    pub cluster_uid: String,
    /// Its region.
    pub region: String,
    /// What its records for the month hold.
    pub amounts: UsageAmounts,
    /// How many records.
    pub records: u64,
}

/// An org's invoice for a calendar month (UTC): a line per cluster, each the sum of its
/// records, the total the sum of the lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// The org's name.
    pub org: String,
    /// `2026-12`.
    pub month: String,
    /// Final, or still to change.
    pub status: InvoiceStatus,
    /// A line per cluster, by `cluster`.
    pub lines: Vec<InvoiceLine>,
    /// The sum of the lines, exactly.
    pub total: UsageAmounts,
    /// How many records.
    pub records: u64,
}
