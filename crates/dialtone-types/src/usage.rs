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
    /// Namespace by namespace (`folder/project/cluster/namespace`), each its pods'
    /// requests, with each cluster's capacity no pod requested as
    /// `folder/project/cluster/(idle)`.
    Namespace,
}

impl UsageGrouping {
    /// Every grouping.
    pub const ALL: [UsageGrouping; 7] = [
        UsageGrouping::None,
        UsageGrouping::Folder,
        UsageGrouping::Project,
        UsageGrouping::Cluster,
        UsageGrouping::Day,
        UsageGrouping::Hour,
        UsageGrouping::Namespace,
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
            UsageGrouping::Namespace => "namespace",
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
    /// The group: a folder, `folder/project`, `folder/project/cluster`, a day, an hour or
    /// `folder/project/cluster/namespace`; the scope's path for `none`.
    pub group: String,
    /// What its closed records bill, as the org is billed (by capacity or by requests).
    pub recorded: UsageAmounts,
    /// What it has used since its last closed record, billed likewise and priced at
    /// today's rates: the next records will hold it.
    pub provisional: UsageAmounts,
    /// How many records were read for it.
    pub records: u64,
    /// Its nodes' capacity, recorded and provisional. By namespace: what its pods
    /// requested of it, or, for `(idle)`, what no pod requested.
    pub capacity: UsageAmounts,
    /// What its pods requested, recorded and provisional.
    pub requests: UsageAmounts,
    /// Capacity no pod requested: `capacity - requests`.
    pub idle: UsageAmounts,
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
    /// What the org pays for, which `recorded` and `provisional` bill.
    pub mode: BillingMode,
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
    /// What its records for the month bill.
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
    /// What the org pays for, which the lines bill.
    pub mode: BillingMode,
    /// A line per cluster, by `cluster`.
    pub lines: Vec<InvoiceLine>,
    /// The sum of the lines, exactly.
    pub total: UsageAmounts,
    /// How many records.
    pub records: u64,
}

/// What an org pays for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BillingMode {
    /// Its nodes' vCPUs and memory, from launch to termination, used or not.
    #[default]
    Capacity,
    /// What its pods request, from start to end: "only the vCPUs and RAM you have used".
    Requests,
}

impl BillingMode {
    /// As the API and the CLI spell it.
    pub fn name(self) -> &'static str {
        match self {
            BillingMode::Capacity => "capacity",
            BillingMode::Requests => "requests",
        }
    }
}

/// Prices of one region, in micro-dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegionRates {
    /// Per vCPU-hour.
    pub vcpu_hour_micros: i64,
    /// Per GiB-hour of memory.
    pub gib_hour_micros: i64,
}

/// How an org is billed: set by platform admins (`PUT /v1/orgs/{org}/billing`), read by
/// whoever may see the org's money.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillingSettings {
    /// What the org pays for; `capacity` unless set.
    #[serde(default)]
    pub mode: BillingMode,
    /// Prices that replace the defaults in the regions named, by region.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rates: std::collections::BTreeMap<String, RegionRates>,
}

/// An org's billing as `GET /v1/orgs/{org}/billing` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Billing {
    /// The org's name.
    pub org: String,
    /// What it pays for.
    pub mode: BillingMode,
    /// The prices in effect in every region.
    pub regions: Vec<RegionPrice>,
}

/// The prices in effect in a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionPrice {
    /// The region.
    pub region: String,
    /// Its prices.
    #[serde(flatten)]
    pub rates: RegionRates,
    /// Whether they are the org's own, not the defaults derived from the catalogue.
    pub overridden: bool,
}
