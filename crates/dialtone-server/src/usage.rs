//! `GET /v1/orgs/{org}/usage`: the usage and cost of an org, folder, project or cluster over
//! a time range, grouped, from the meter's records (see `dialtone_controllers::metering`).
//! Who may see money is the tree's policies' word: `billing` (in `org.admin` and
//! `org.billing`) on the scope or above; anyone else gets 403 on a node they can see and
//! 404 on one they cannot.
//!
//! A range is cut at the meter's periods (an hour): `from` rounds down and `to` up, and a
//! record counts in the range its period starts in. What has been used since the last
//! closed record is shown apart, as provisional, priced at today's rates.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_controllers::metering::{self, DAY};
use dialtone_metering::{Measure, Owner, Totals, ceil_second, period_of};
use dialtone_types::kinds::{CLUSTER, FOLDER, ORG, PROJECT};
use dialtone_types::usage::{
    Billing, BillingMode, BillingSettings, Invoice, InvoiceLine, InvoiceStatus, RegionPrice,
    RegionRates, UsageAmounts, UsageGrouping, UsageReport, UsageRow,
};
use dialtone_types::{ApiError, Reason, ResourcePath};
use jiff::{SignedDuration, Timestamp};

use crate::App;
use crate::auth::{Part, Principal, Verb, enforce_platform};
use crate::error::HttpResult;
use crate::resources::{authorized_part, check_query, object_path, to_json};

/// The longest range one request may cover.
const MAX_DAYS: i64 = 400;

fn bad(message: impl Into<String>) -> crate::error::HttpError {
    ApiError::new(Reason::BadRequest, message).into()
}

/// `2026-12-07`, `2026-12`, or an RFC 3339 time, read as UTC.
fn parse_time(name: &str, text: &str) -> HttpResult<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let date = text
        .parse::<jiff::civil::Date>()
        .or_else(|_| format!("{text}-01").parse::<jiff::civil::Date>());
    date.ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            bad(format!(
                "{name} `{text}` is not a time: give a day (2026-12-07), a month (2026-12) or an RFC 3339 time (2026-12-07T10:00:00Z)"
            ))
        })
}

/// The first second of `at`'s month, UTC.
fn month_start(at: Timestamp) -> Timestamp {
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    jiff::civil::date(date.year(), date.month(), 1)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_or(at, |z| z.timestamp())
}

fn in_scope(scope: &[&str], owner: &Owner) -> bool {
    [&owner.folder, &owner.project, &owner.cluster]
        .iter()
        .zip(scope)
        .all(|(have, want)| have == want)
}

/// The group a usage of `owner` in the period at `period` belongs to; by namespace, a
/// node's (the capacity's) is its cluster's `(idle)` and a pod's its namespace.
fn group_of(
    by: UsageGrouping,
    scope: &str,
    owner: &Owner,
    measure: &Measure,
    period: i64,
) -> String {
    let at = Timestamp::from_second(period).unwrap_or_default();
    match by {
        UsageGrouping::Namespace => match measure {
            Measure::Capacity => idle_of(owner),
            Measure::Requests { namespace } => format!("{}/{namespace}", owner.cluster_path()),
        },
        UsageGrouping::None => scope.to_string(),
        UsageGrouping::Folder => owner.folder.clone(),
        UsageGrouping::Project => format!("{}/{}", owner.folder, owner.project),
        UsageGrouping::Cluster => owner.cluster_path(),
        UsageGrouping::Day => at.strftime("%Y-%m-%d").to_string(),
        UsageGrouping::Hour => at.strftime("%Y-%m-%dT%H:00Z").to_string(),
    }
}

/// Totals as the API shows them.
fn amounts(totals: &Totals) -> UsageAmounts {
    UsageAmounts {
        cpu_milli_seconds: totals.cpu_milli_seconds,
        memory_mib_seconds: totals.memory_mib_seconds,
        cost_micros: totals.cost_micros,
    }
}

/// The group of a cluster's capacity no pod requested, by namespace:
/// `folder/project/cluster/(idle)`.
fn idle_of(owner: &Owner) -> String {
    format!("{}/(idle)", owner.cluster_path())
}

/// Recorded and provisional totals of one side of the bill.
#[derive(Default)]
struct Side {
    recorded: Totals,
    provisional: Totals,
}

impl Side {
    fn part(&mut self, recorded: bool) -> &mut Totals {
        match recorded {
            true => &mut self.recorded,
            false => &mut self.provisional,
        }
    }

    fn both(&self) -> Totals {
        let mut both = self.recorded;
        both.merge(&self.provisional);
        both
    }
}

/// A group's totals: nodes' capacity and pods' requests.
#[derive(Default)]
struct Sums {
    capacity: Side,
    requests: Side,
    records: u64,
}

impl Sums {
    fn merge(&mut self, other: &Sums) {
        for (mine, theirs) in [
            (&mut self.capacity, &other.capacity),
            (&mut self.requests, &other.requests),
        ] {
            mine.recorded.merge(&theirs.recorded);
            mine.provisional.merge(&theirs.provisional);
        }
        self.records += other.records;
    }

    fn row(&self, group: String, mode: BillingMode) -> UsageRow {
        let billed = match mode {
            BillingMode::Capacity => &self.capacity,
            BillingMode::Requests => &self.requests,
        };
        let (capacity, requests) = (self.capacity.both(), self.requests.both());
        let mut idle = capacity;
        idle.remove(&requests);
        UsageRow {
            group,
            recorded: amounts(&billed.recorded),
            provisional: amounts(&billed.provisional),
            records: self.records,
            capacity: amounts(&capacity),
            requests: amounts(&requests),
            idle: amounts(&idle),
        }
    }
}

/// Every group's sums, as usages are added.
struct Groups<'a> {
    by: UsageGrouping,
    scope: &'a str,
    sums: BTreeMap<String, Sums>,
}

impl Groups<'_> {
    /// Adds what an interval of `owner` measuring `measure` used in the period at
    /// `period`: `recorded` in closed records, or provisional. By namespace, a pod's
    /// requests are its namespace's share of the capacity, taken from `(idle)`.
    fn add(
        &mut self,
        owner: &Owner,
        measure: &Measure,
        period: i64,
        used: &Totals,
        recorded: bool,
    ) {
        let group = group_of(self.by, self.scope, owner, measure, period);
        let sums = self.sums.entry(group).or_default();
        sums.records += used.records;
        match measure {
            Measure::Capacity => sums.capacity.part(recorded).merge(used),
            Measure::Requests { .. } => {
                sums.requests.part(recorded).merge(used);
                if self.by == UsageGrouping::Namespace {
                    sums.capacity.part(recorded).merge(used);
                    let idle = self.sums.entry(idle_of(owner)).or_default();
                    idle.capacity.part(recorded).remove(used);
                }
            }
        }
    }
}

pub async fn usage(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(
        &query,
        &["folder", "project", "cluster", "from", "to", "by"],
    )?;
    let org = object_path(&ORG, &params)?;
    let names: Vec<&str> = ["folder", "project", "cluster"]
        .iter()
        .map_while(|k| query.get(*k).map(String::as_str))
        .collect();
    if let Some(orphan) = ["folder", "project", "cluster"]
        .iter()
        .skip(names.len())
        .find(|k| query.contains_key(**k))
    {
        return Err(bad(format!(
            "{orphan} names a node under a {}: give every level above it (folder, project, cluster)",
            ["folder", "project"][names.len().min(1)]
        )));
    }
    let scope = match names.len() {
        0 => org.clone(),
        n => {
            let kind = [&FOLDER, &PROJECT, &CLUSTER][n - 1];
            let all: Vec<String> = std::iter::once(org.org_name())
                .chain(names.iter().copied())
                .map(String::from)
                .collect();
            ResourcePath::from_names(kind, &all).map_err(|e| bad(e.to_string()))?
        }
    };
    authorized_part(&app, &principal, &scope, Verb::List, Part::Billing).await?;
    let org_uid = org_uid(&app, &org).await?;
    let by = match query.get("by") {
        None => UsageGrouping::None,
        Some(by) => UsageGrouping::parse(by).ok_or_else(|| {
            let valid: Vec<&str> = UsageGrouping::ALL.iter().map(|g| g.name()).collect();
            bad(format!(
                "unknown grouping `{by}`; valid: {}",
                valid.join(", ")
            ))
        })?,
    };
    let now = (app.clock)();
    let period = app.meter.period;
    let from = match query.get("from") {
        Some(text) => parse_time("from", text)?,
        None => month_start(now),
    };
    let to = match query.get("to") {
        Some(text) => parse_time("to", text)?,
        None => now,
    };
    if to <= from {
        return Err(bad(format!(
            "the range is empty or inverted: from {from} is not before to {to}"
        )));
    }
    if to.duration_since(from) > SignedDuration::from_hours(MAX_DAYS * 24) {
        return Err(bad(format!(
            "the range covers more than {MAX_DAYS} days; ask for less"
        )));
    }
    let (from, to) = (
        period_of(from.as_second(), period),
        period_of(ceil_second(to) + period - 1, period),
    );
    let question = Question {
        org_uid: &org_uid,
        scope: &names,
        scope_text: scope.names().collect::<Vec<_>>().join("/"),
        from,
        to,
        by,
        now,
    };
    let report = report(&**app.registry.store(), &app.meter, &question)
        .await
        .map_err(|e| ApiError::new(Reason::InternalError, e))?;
    Ok(to_json(StatusCode::OK, &report))
}

/// `2026-12`: its first second and the next month's, UTC.
fn month_range(text: &str) -> HttpResult<(Timestamp, Timestamp)> {
    let start = format!("{text}-01")
        .parse::<jiff::civil::Date>()
        .ok()
        .filter(|_| text.len() == 7)
        .ok_or_else(|| {
            bad(format!(
                "`{text}` is not a month: give it as YYYY-MM (2026-12)"
            ))
        })?;
    let at = |date: jiff::civil::Date| {
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| bad(e.to_string()))
    };
    let next = start
        .checked_add(jiff::Span::new().months(1))
        .map_err(|e| bad(e.to_string()))?;
    Ok((at(start)?, at(next)?))
}

/// `GET /v1/orgs/{org}/invoices/{month}`: a line per cluster, each the sum of the month's
/// records, closed once every second of the month is recorded.
pub async fn invoice(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &[])?;
    let month = params
        .iter()
        .find(|(k, _)| k == "month")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let org_params: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| k != "month").collect();
    let org = object_path(&ORG, &org_params)?;
    authorized_part(&app, &principal, &org, Verb::Get, Part::Billing).await?;
    let (start, end) = month_range(&month)?;
    let now = (app.clock)();
    if start > now {
        return Err(bad(format!("{month} has not begun: no invoice yet")));
    }
    let org_uid = org_uid(&app, &org).await?;
    let store = app.registry.store();
    let (from, to) = (start.as_second(), end.as_second());
    // A month is whole days: its day totals, which sum its records.
    let days = metering::day_totals(&**store, &org_uid, from, to)
        .await
        .map_err(|e| ApiError::new(Reason::InternalError, e))?;
    let mode = metering::billing(&**store, &org_uid)
        .await
        .map_err(|e| ApiError::new(Reason::InternalError, e))?
        .mode;
    let mut clusters: BTreeMap<(String, &str), (&Owner, Totals)> = BTreeMap::new();
    for day in &days {
        if metering::billed_by(&day.measure) != mode {
            continue;
        }
        let owner = &day.owner;
        clusters
            .entry((owner.cluster_path(), &owner.cluster_uid))
            .or_insert((owner, Totals::default()))
            .1
            .merge(&day.totals);
    }
    let mut total = Totals::default();
    let lines: Vec<InvoiceLine> = clusters
        .into_iter()
        .map(|((cluster, _), (owner, totals))| {
            total.merge(&totals);
            InvoiceLine {
                cluster,
                cluster_uid: owner.cluster_uid.clone(),
                region: owner.region.clone(),
                amounts: amounts(&totals),
                records: totals.records,
            }
        })
        .collect();
    // Closed once the month is over and no interval still owes it a record.
    let owed = metering::intervals(&**store)
        .await
        .map_err(|e| ApiError::new(Reason::InternalError, e))?
        .into_iter()
        .any(|(stored, _)| {
            let interval = &stored.interval;
            interval.owner.org_uid == org_uid
                && interval.start.as_second() < to
                && interval.end.is_none_or(|e| e.as_second() >= from)
                && !stored.done()
                && stored.recorded_until < to
        });
    let status = match now >= end && !owed {
        true => InvoiceStatus::Closed,
        false => InvoiceStatus::Open,
    };
    let invoice = Invoice {
        org: org.org_name().to_string(),
        month,
        status,
        mode,
        records: total.records,
        lines,
        total: amounts(&total),
    };
    Ok(to_json(StatusCode::OK, &invoice))
}

/// What a usage report is asked.
pub struct Question<'a> {
    /// The org's uid.
    pub org_uid: &'a str,
    /// The folder, project and cluster names the scope narrows to (none: the org).
    pub scope: &'a [&'a str],
    /// The scope as the report names it: `demo/eng`.
    pub scope_text: String,
    /// The range, in seconds at periods' starts.
    pub from: i64,
    pub to: i64,
    pub by: UsageGrouping,
    pub now: Timestamp,
}

/// The report `question` asks for: the org's records over the range, those in scope summed
/// by group, with what intervals have used since their last record as provisional.
pub async fn report(
    store: &dyn dialtone_store::Store,
    meter: &metering::Meter,
    question: &Question<'_>,
) -> Result<UsageReport, String> {
    let Question {
        org_uid,
        scope: scope_names,
        from,
        to,
        by,
        now,
        ..
    } = *question;
    let scope_text = &question.scope_text;
    let period = meter.period;
    let store_billing = metering::billing(store, org_uid).await?;
    let mut groups = Groups {
        by,
        scope: scope_text,
        sums: BTreeMap::new(),
    };
    // Whole days are read from the day totals, the hours at either end from the records.
    let whole = (period_of(from + DAY - 1, DAY), period_of(to, DAY));
    let spans = if by != UsageGrouping::Hour && whole.0 < whole.1 {
        for day in metering::day_totals(store, org_uid, whole.0, whole.1).await? {
            if in_scope(scope_names, &day.owner) {
                groups.add(&day.owner, &day.measure, day.day, &day.totals, true);
            }
        }
        vec![(from, whole.0), (whole.1, to)]
    } else {
        vec![(from, to)]
    };
    for (first, last) in spans.into_iter().filter(|(a, b)| a < b) {
        for record in metering::records(store, org_uid, first, last).await? {
            if in_scope(scope_names, &record.owner) {
                let mut one = Totals::default();
                one.add(&record);
                let measure = record.subject.measure();
                groups.add(
                    &record.owner,
                    &measure,
                    record.period.as_second(),
                    &one,
                    true,
                );
            }
        }
    }
    // What intervals hold beyond their records, up to now.
    for (stored, _) in metering::intervals(store).await? {
        let interval = &stored.interval;
        let owner = &interval.owner;
        if owner.org_uid != *org_uid || !in_scope(scope_names, owner) {
            continue;
        }
        let mut open = interval.clone();
        let cut = open.end.map_or(now, |end| end.min(now));
        open.end = Some(cut.max(open.start));
        let from_second = stored.recorded_until.max(from);
        let rates = meter.rates(&store_billing, &owner.region);
        let measure = interval.subject.measure();
        for (at, first, last) in open.final_periods(period, from_second, now) {
            if at >= to || last <= from_second {
                continue;
            }
            let seconds = last - first.max(from_second);
            let cpu = seconds * interval.size.millicpu as i64;
            let memory = seconds * interval.size.memory_mib as i64;
            let used = Totals {
                cpu_milli_seconds: cpu,
                memory_mib_seconds: memory,
                cost_micros: rates.cost_micros(cpu, memory),
                records: 0,
            };
            groups.add(owner, &measure, at, &used, false);
        }
    }
    let mut all = Sums::default();
    for sum in groups.sums.values() {
        all.merge(sum);
    }
    let mode = store_billing.mode;
    let stamp = |s: i64| Timestamp::from_second(s).unwrap_or_default().to_string();
    Ok(UsageReport {
        scope: scope_text.clone(),
        from: stamp(from),
        to: stamp(to),
        by,
        period_seconds: period,
        mode,
        rows: groups
            .sums
            .into_iter()
            .map(|(group, sum)| sum.row(group, mode))
            .collect(),
        total: all.row("TOTAL".into(), mode),
    })
}

/// `GET /v1/orgs/{org}/billing`: what the org pays for and at what prices, region by
/// region, for whoever may see its money.
pub async fn get_billing(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
) -> HttpResult<Response> {
    check_query(&query, &[])?;
    let org = object_path(&ORG, &params)?;
    authorized_part(&app, &principal, &org, Verb::Get, Part::Billing).await?;
    let settings = metering::billing(&**app.registry.store(), &org_uid(&app, &org).await?)
        .await
        .map_err(|e| ApiError::new(Reason::InternalError, e))?;
    Ok(to_json(
        StatusCode::OK,
        &shown_billing(&app, &org, &settings),
    ))
}

/// `PUT /v1/orgs/{org}/billing`: sets what the org pays for and its own prices. Prices are
/// the platform's to set, so only platform admins may; records already written keep the
/// rates they carry.
pub async fn put_billing(
    State(app): State<App>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<Vec<(String, String)>>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> HttpResult<Response> {
    check_query(&query, &[])?;
    let org = object_path(&ORG, &params)?;
    // Whoever cannot see the org's money learns nothing more from a refusal.
    authorized_part(&app, &principal, &org, Verb::Get, Part::Billing).await?;
    enforce_platform(&app, &principal, Verb::Update, &org)?;
    let settings: BillingSettings = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not billing settings: {e}")))?;
    let regions: Vec<&str> = app.provider.regions().iter().map(|r| r.name).collect();
    let mut causes = Vec::new();
    for (region, rates) in &settings.rates {
        if !regions.contains(&region.as_str()) {
            causes.push(format!(
                "rates.{region}: no such region; valid: {}",
                regions.join(", ")
            ));
        }
        for (field, price) in [
            ("vcpuHourMicros", rates.vcpu_hour_micros),
            ("gibHourMicros", rates.gib_hour_micros),
        ] {
            if price < 0 {
                causes.push(format!(
                    "rates.{region}.{field}: a price cannot be negative ({price})"
                ));
            }
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::new(Reason::Invalid, causes.join("; ")).into());
    }
    let org_uid = org_uid(&app, &org).await?;
    metering::set_billing(&**app.registry.store(), &org_uid, &settings)
        .await
        .map_err(|e| ApiError::new(Reason::ServiceUnavailable, e))?;
    Ok(to_json(
        StatusCode::OK,
        &shown_billing(&app, &org, &settings),
    ))
}

/// The uid of `org`, which must exist.
async fn org_uid(app: &App, org: &ResourcePath) -> HttpResult<String> {
    Ok(app
        .registry
        .org_uid(org.org_name())
        .await?
        .ok_or_else(|| ApiError::not_found(org))?)
}

/// `settings` as the org's billing shows them: the prices in effect in every region.
fn shown_billing(app: &App, org: &ResourcePath, settings: &BillingSettings) -> Billing {
    let regions = app
        .provider
        .regions()
        .iter()
        .map(|region| {
            let rates = app.meter.rates(settings, region.name);
            RegionPrice {
                region: region.name.to_string(),
                rates: RegionRates {
                    vcpu_hour_micros: rates.vcpu_hour_micros as i64,
                    gib_hour_micros: rates.gib_hour_micros as i64,
                },
                overridden: settings.rates.contains_key(region.name),
            }
        })
        .collect();
    Billing {
        org: org.org_name().to_string(),
        mode: settings.mode,
        regions,
    }
}
