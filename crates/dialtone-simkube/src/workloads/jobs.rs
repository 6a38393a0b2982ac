//! Jobs: pods that run to completion. The job controller keeps up to `parallelism` pods
//! running until `completions` have succeeded (`Complete`), or until more than
//! `backoffLimit` have failed, counting container restarts under `OnFailure`, or
//! `activeDeadlineSeconds` has passed (`Failed`). How long a pod runs and how it exits are
//! the kubelet's simulation (`sim.dialtone.dev/run-for`, `sim.dialtone.dev/exit-code`).
//! A finished job is deleted `ttlSecondsAfterFinished` later, when that is set.

use jiff::Timestamp;

use super::*;

const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Upstream's defaults, and the selector it generates: the job's own uid, also written into
/// the template's labels (with the legacy `controller-uid` and `job-name`).
pub fn defaults(job: &mut Value) {
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    let spec = &mut job["spec"];
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    for (field, default) in [
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        if spec[field].is_null() {
            spec[field] = default;
        }
    }
    if spec["manualSelector"] != true && spec["selector"].is_null() {
        spec["selector"] = json!({"matchLabels": {UID_LABEL: uid}});
        let labels = &mut spec["template"]["metadata"]["labels"];
        for (label, value) in [
            (UID_LABEL, &uid),
            (NAME_LABEL, &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels[label] = value.clone();
        }
    }
}

/// A job's spec (at `at`: `spec`, or a cron job's `spec.jobTemplate.spec`) as upstream
/// validates it; `old` is the stored job, whose template may not change.
pub fn validate(spec: &Value, at: &str, old: Option<&Value>, causes: &mut Vec<(String, String)>) {
    let pod = &spec["template"]["spec"];
    if pod["containers"].as_array().is_none_or(|c| c.is_empty()) {
        causes.push((
            format!("{at}.template.spec.containers"),
            "Required value".into(),
        ));
    }
    match pod["restartPolicy"].as_str().unwrap_or("") {
        "OnFailure" | "Never" => {}
        "" => causes.push((
            format!("{at}.template.spec.restartPolicy"),
            "Required value: valid values: \"OnFailure\", \"Never\"".into(),
        )),
        other => causes.push((
            format!("{at}.template.spec.restartPolicy"),
            format!("Unsupported value: \"{other}\": supported values: \"OnFailure\", \"Never\""),
        )),
    }
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = spec[field].as_i64().filter(|n| *n < 0) {
            causes.push((
                format!("{at}.{field}"),
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            ));
        }
    }
    if let Some(old) = old {
        for field in ["template", "selector", "completions"] {
            if old["spec"][field] != spec[field] {
                causes.push((
                    format!("{at}.{field}"),
                    format!("Invalid value: {}: field is immutable", spec[field]),
                ));
            }
        }
    }
}

pub(super) fn sync(cluster: &ClusterApi) {
    let jobs = cluster.objects.list("jobs", None).0;
    if jobs.is_empty() {
        return;
    }
    let pods = cluster.objects.list("pods", None).0;
    for job in &jobs {
        sync_one(cluster, job, &pods);
    }
}

fn finished(job: &Value) -> Option<&Value> {
    holding(job, "Complete").or_else(|| holding(job, "Failed"))
}

/// Whether the job ended: `Complete` or `Failed`.
pub(crate) fn is_finished(job: &Value) -> bool {
    finished(job).is_some()
}

fn since(time: &Value) -> Option<i64> {
    let at = timestamp(time)?;
    Some(Timestamp::now().as_second() - at.as_second())
}

fn sync_one(cluster: &ClusterApi, job: &Value, pods: &[Arc<Value>]) {
    let spec = &job["spec"];
    if let Some(done) = finished(job) {
        if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64()
            && since(&done["lastTransitionTime"]).is_some_and(|s| s >= ttl)
        {
            let _ = cluster
                .objects
                .delete(&key("jobs", namespace_of(job), name_of(job)));
        }
        return;
    }
    let owned = owned_by(pods, job);
    let running = active(&owned);
    let succeeded = owned
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count() as i64;
    let failed_pods = owned
        .iter()
        .filter(|p| p["status"]["phase"] == "Failed")
        .count() as i64;
    let restarts: i64 = running
        .iter()
        .flat_map(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let failures = failed_pods + restarts;
    let completions = spec["completions"].as_i64();
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    let started = job["status"]["startTime"].clone();
    let started = if started.is_null() {
        json!(now())
    } else {
        started
    };
    let previous = &job["status"]["conditions"];
    let mut conditions: Vec<Value> = Vec::new();
    let mut end = |reason: &str, message: &str, success: bool| {
        for pod in &running {
            delete_pod(cluster, job, pod);
        }
        if success {
            conditions.push(condition(
                previous,
                "SuccessCriteriaMet",
                true,
                reason,
                message,
            ));
            conditions.push(condition(previous, "Complete", true, reason, message));
        } else {
            conditions.push(condition(previous, "FailureTarget", true, reason, message));
            conditions.push(condition(previous, "Failed", true, reason, message));
        }
        crate::events::record(
            cluster,
            job,
            if success {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason,
            message,
            "job-controller",
        );
    };
    let suspended = spec["suspend"] == true;
    if completions.is_some_and(|c| succeeded >= c)
        || (completions.is_none() && succeeded > 0 && running.is_empty())
    {
        end(
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            true,
        );
    } else if failures > backoff_limit {
        end(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            false,
        );
    } else if spec["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|deadline| since(&started).is_some_and(|s| s >= deadline))
    {
        end(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
            false,
        );
    } else if suspended {
        for pod in &running {
            delete_pod(cluster, job, pod);
        }
        conditions.push(condition(
            previous,
            "Suspended",
            true,
            "JobSuspended",
            "Job suspended",
        ));
    } else {
        let remaining = completions.map_or(parallelism, |c| (c - succeeded).max(0));
        let wanted = parallelism.min(remaining) as usize;
        for _ in running.len()..wanted {
            let name = format!("{}-{}", name_of(job), crate::cluster::random_suffix());
            let pod = pod_from_template(job, &spec["template"], &name, &[]);
            create_pod(cluster, job, pod);
        }
    }
    let ended = conditions
        .iter()
        .any(|c| c["type"] == "Complete" || c["type"] == "Failed");
    let ready = running.iter().filter(|p| is_ready(p)).count();
    let mut status = json!({
        "startTime": if suspended { job["status"]["startTime"].clone() } else { started },
        "active": if ended { 0 } else { running.len() },
        "succeeded": succeeded,
        "failed": failed_pods,
        "ready": ready,
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": conditions,
    });
    if conditions.iter().any(|c| c["type"] == "Complete") {
        status["completionTime"] = json!(now());
    }
    if let Some(fields) = status.as_object_mut() {
        fields.retain(|k, v| {
            matches!(
                k.as_str(),
                "ready" | "terminating" | "uncountedTerminatedPods"
            ) || !is_empty(v) && v.as_i64() != Some(0)
        });
    }
    write_status(cluster, "jobs", job, status);
}
