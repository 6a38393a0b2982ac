//! Cron jobs: a job from `spec.jobTemplate` at every time `spec.schedule` names (standard
//! five-field cron, or `@hourly` and its kin), in `spec.timeZone` or UTC. Jobs are named by
//! their scheduled minute as upstream names them, so a time is never run twice;
//! `concurrencyPolicy` decides what happens while the last one runs, and finished jobs
//! beyond the history limits are deleted. A schedule missed while the cluster was down is
//! run once, if it falls within `startingDeadlineSeconds` (a day when unset).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::jobs::is_finished;
use super::*;

/// How far back a missed schedule is still run when `startingDeadlineSeconds` is unset.
const CATCH_UP: SignedDuration = SignedDuration::from_hours(24);

/// One field of a schedule: the values it allows, and whether it was `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    allowed: u64,
    any: bool,
}

/// A parsed five-field schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    minute: Field,
    hour: Field,
    day: Field,
    month: Field,
    weekday: Field,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let number = match names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + min,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("failed to parse int from {text}"))?,
    };
    if number < min || number > max {
        return Err(format!(
            "end of range ({number}) above maximum ({max}): {text}"
        ));
    }
    Ok(number)
}

fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Field, String> {
    let mut allowed = 0u64;
    let mut any = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (
                range,
                Some(
                    step.parse::<u32>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("failed to parse int from {step}"))?,
                ),
            ),
            None => (item, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            any = step.is_none();
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, min, max, names)?, value(high, min, max, names)?)
        } else {
            let start = value(range, min, max, names)?;
            (start, if step.is_some() { max } else { start })
        };
        if low > high {
            return Err(format!(
                "beginning of range ({low}) beyond end of range ({high}): {item}"
            ));
        }
        for v in (low..=high).step_by(step.unwrap_or(1) as usize) {
            allowed |= 1 << v;
        }
    }
    Ok(Field { allowed, any })
}

impl Schedule {
    /// Reads a schedule as upstream's cron library does, with its error messages.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {text}",
                fields.len()
            ));
        }
        let mut weekday = field(fields[4], 0, 7, &WEEKDAYS)?;
        // 7 is Sunday too.
        if weekday.allowed & (1 << 7) != 0 {
            weekday.allowed = (weekday.allowed & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minute: field(fields[0], 0, 59, &[])?,
            hour: field(fields[1], 0, 23, &[])?,
            day: field(fields[2], 1, 31, &[])?,
            month: field(fields[3], 1, 12, &MONTHS)?,
            weekday,
        })
    }

    /// Whether the schedule names the minute starting at `at` in `zone`.
    fn names(&self, at: Timestamp, zone: &TimeZone) -> bool {
        let t = at.to_zoned(zone.clone());
        let has = |f: Field, v: i64| f.allowed & (1 << v) != 0;
        let day = has(self.day, i64::from(t.day()));
        let weekday = has(self.weekday, i64::from(t.weekday().to_sunday_zero_offset()));
        // Standard cron: a day matches by either field when both are restricted.
        let day_matches = if self.day.any || self.weekday.any {
            day && weekday
        } else {
            day || weekday
        };
        has(self.minute, i64::from(t.minute()))
            && has(self.hour, i64::from(t.hour()))
            && has(self.month, i64::from(t.month()))
            && day_matches
    }

    /// The latest minute in `(after, until]` that the schedule names.
    fn latest(&self, after: Timestamp, until: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let minute = |t: Timestamp| t.as_second().div_euclid(60) * 60;
        let mut at = minute(until);
        while at > after.as_second() {
            let t = Timestamp::from_second(at).ok()?;
            if self.names(t, zone) {
                return Some(t);
            }
            at -= 60;
        }
        None
    }
}

/// The zone `spec.timeZone` names, UTC when unset.
fn zone_of(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| "unknown time zone".to_string()),
    }
}

pub fn validate(spec: &Value, causes: &mut Vec<(String, String)>) {
    let schedule = spec["schedule"].as_str().unwrap_or("");
    if schedule.is_empty() {
        causes.push(("spec.schedule".into(), "Required value".into()));
    } else if schedule.contains("TZ") {
        causes.push((
            "spec.schedule".into(),
            format!(
                "Invalid value: \"{schedule}\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            ),
        ));
    } else if let Err(e) = Schedule::parse(schedule) {
        causes.push((
            "spec.schedule".into(),
            format!("Invalid value: \"{schedule}\": {e}"),
        ));
    }
    if let Some(zone) = spec["timeZone"].as_str()
        && let Err(e) = zone_of(Some(zone))
    {
        causes.push((
            "spec.timeZone".into(),
            format!("Invalid value: \"{zone}\": {e}"),
        ));
    }
    let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
    if !matches!(policy, "Allow" | "Forbid" | "Replace") {
        causes.push((
            "spec.concurrencyPolicy".into(),
            format!(
                "Unsupported value: \"{policy}\": supported values: \"Allow\", \"Forbid\", \"Replace\""
            ),
        ));
    }
    super::jobs::validate(
        &spec["jobTemplate"]["spec"],
        "spec.jobTemplate.spec",
        None,
        causes,
    );
}

pub(super) fn sync(cluster: &ClusterApi) {
    let crons = cluster.objects.list("cronjobs", None).0;
    if crons.is_empty() {
        return;
    }
    let jobs = cluster.objects.list("jobs", None).0;
    for cron in &crons {
        sync_one(cluster, cron, &jobs);
    }
}

fn sync_one(cluster: &ClusterApi, cron: &Value, jobs: &[Arc<Value>]) {
    let spec = &cron["spec"];
    let owned = owned_by(jobs, cron);
    let (schedule, zone) = match (
        Schedule::parse(spec["schedule"].as_str().unwrap_or("")),
        zone_of(spec["timeZone"].as_str()),
    ) {
        (Ok(schedule), Ok(zone)) => (schedule, zone),
        // Admission keeps these out; one written before a rule changed waits.
        _ => return,
    };
    let mut status = cron["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let now = Timestamp::now();
    let last = timestamp(&status["lastScheduleTime"])
        .or_else(|| timestamp(&cron["metadata"]["creationTimestamp"]))
        .unwrap_or(now);
    let deadline = spec["startingDeadlineSeconds"]
        .as_i64()
        .map_or(CATCH_UP, SignedDuration::from_secs);
    let after = last.max(now - deadline);
    let running: Vec<&&Arc<Value>> = owned.iter().filter(|j| !is_finished(j)).collect();
    if spec["suspend"] != true
        && let Some(at) = schedule.latest(after, now, &zone)
    {
        let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
        if policy == "Forbid" && !running.is_empty() {
            crate::events::record(
                cluster,
                cron,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
                "cronjob-controller",
            );
        } else {
            if policy == "Replace" {
                for job in &running {
                    let _ = cluster
                        .objects
                        .delete(&key("jobs", namespace_of(job), name_of(job)));
                }
            }
            start_job(cluster, cron, at);
            status["lastScheduleTime"] = json!(at.to_string());
        }
    }
    let active: Vec<Value> = running
        .iter()
        .map(|j| {
            json!({
                "apiVersion": "batch/v1", "kind": "Job", "name": name_of(j),
                "namespace": namespace_of(j), "uid": j["metadata"]["uid"],
                "resourceVersion": j["metadata"]["resourceVersion"],
            })
        })
        .collect();
    if active.is_empty() {
        status.as_object_mut().map(|s| s.remove("active"));
    } else {
        status["active"] = json!(active);
    }
    if let Some(success) = owned
        .iter()
        .filter_map(|j| j["status"]["completionTime"].as_str())
        .max()
    {
        status["lastSuccessfulTime"] = json!(success);
    }
    prune(cluster, spec, &owned);
    write_status(cluster, "cronjobs", cron, status);
}

fn start_job(cluster: &ClusterApi, cron: &Value, at: Timestamp) {
    let ns = namespace_of(cron);
    let name = format!("{}-{}", name_of(cron), at.as_second() / 60);
    let template = &cron["spec"]["jobTemplate"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(ns);
    metadata["ownerReferences"] = controller_ref(cron);
    metadata["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
        json!(at.to_string());
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": template["spec"]});
    let mut job = stamp_new(job, by_plural("jobs"), ns);
    super::jobs::defaults(&mut job);
    if cluster.objects.create(key("jobs", ns, &name), job).is_ok() {
        crate::events::record(
            cluster,
            cron,
            EventType::Normal,
            "SuccessfulCreate",
            &format!("Created job {name}"),
            "cronjob-controller",
        );
    }
}

/// Deletes the oldest finished jobs beyond the history limits.
fn prune(cluster: &ClusterApi, spec: &Value, owned: &[&Arc<Value>]) {
    for (kind, limit) in [
        (
            "Complete",
            spec["successfulJobsHistoryLimit"].as_i64().unwrap_or(3),
        ),
        (
            "Failed",
            spec["failedJobsHistoryLimit"].as_i64().unwrap_or(1),
        ),
    ] {
        let mut ended: Vec<&&Arc<Value>> =
            owned.iter().filter(|j| condition_holds(j, kind)).collect();
        let limit = limit.max(0) as usize;
        if ended.len() <= limit {
            continue;
        }
        ended.sort_by_key(|j| j["metadata"]["creationTimestamp"].as_str().unwrap_or(""));
        for job in &ended[..ended.len() - limit] {
            let _ = cluster
                .objects
                .delete(&key("jobs", namespace_of(job), name_of(job)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn schedules_name_the_minutes_cron_names() {
        let utc = TimeZone::UTC;
        let every_five = Schedule::parse("*/5 * * * *").unwrap();
        assert!(every_five.names(at("2026-12-06T10:15:00Z"), &utc));
        assert!(!every_five.names(at("2026-12-06T10:16:00Z"), &utc));
        let weekdays = Schedule::parse("30 9 * * MON-FRI").unwrap();
        // 2026-12-06 is a Sunday.
        assert!(!weekdays.names(at("2026-12-06T09:30:00Z"), &utc));
        assert!(weekdays.names(at("2026-12-07T09:30:00Z"), &utc));
        // Both day fields restricted: either matches.
        let either = Schedule::parse("0 0 1 * 0").unwrap();
        assert!(either.names(at("2026-12-06T00:00:00Z"), &utc));
        assert!(either.names(at("2027-01-01T00:00:00Z"), &utc));
        assert!(!either.names(at("2026-12-07T00:00:00Z"), &utc));
        assert_eq!(
            Schedule::parse("@hourly").unwrap(),
            Schedule::parse("0 * * * *").unwrap()
        );
        assert_eq!(
            Schedule::parse("0 0 * * 7").unwrap(),
            Schedule::parse("0 0 * * 0").unwrap()
        );
    }

    #[test]
    fn the_latest_named_minute_is_found_and_none_twice() {
        let hourly = Schedule::parse("@hourly").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            hourly.latest(at("2026-12-06T08:59:00Z"), at("2026-12-06T10:30:12Z"), &utc),
            Some(at("2026-12-06T10:00:00Z"))
        );
        assert_eq!(
            hourly.latest(at("2026-12-06T10:00:00Z"), at("2026-12-06T10:59:59Z"), &utc),
            None
        );
    }

    #[test]
    fn malformed_schedules_say_what_is_wrong() {
        for (text, error) in [
            ("* * * *", "expected exactly 5 fields, found 4"),
            ("61 * * * *", "above maximum (59)"),
            ("a * * * *", "failed to parse int from a"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1)",
            ),
            ("@often", "unrecognized descriptor"),
        ] {
            let got = Schedule::parse(text).unwrap_err();
            assert!(got.contains(error), "{text}: {got}");
        }
    }
}
