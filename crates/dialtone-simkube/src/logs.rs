//! `pods/log` and `pods/exec`. A sim node runs no containers, so a container's log is
//! simulated: a line when it started, then one a minute while it runs, each saying so.
//! `kubectl exec` is answered with upstream's error shape and why it cannot run.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::status::KubeError;

/// The most lines a log holds; older ones are gone, as a kubelet's rotated logs are.
const MAX_LINES: usize = 1000;

/// What `kubectl logs` may ask.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub container: Option<String>,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub previous: bool,
}

/// The container the request names, or the pod's only one.
fn container<'a>(pod: &'a Value, asked: Option<&str>) -> Result<&'a Value, KubeError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match asked {
        Some(asked) => containers
            .into_iter()
            .find(|c| c["name"] == asked)
            .ok_or_else(|| {
                KubeError::bad_request(format!("container {asked} is not valid for pod {name}"))
            }),
        None if containers.len() == 1 => Ok(containers[0]),
        None => Err(KubeError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// The log of a container of `pod`, as text.
pub fn log(pod: &Value, options: &LogOptions) -> Result<String, KubeError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let container = container(pod, options.container.as_deref())?;
    let container_name = container["name"].as_str().unwrap_or("");
    if options.previous {
        return Err(KubeError::bad_request(format!(
            "previous terminated container \"{container_name}\" in pod \"{name}\" not found"
        )));
    }
    let started = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == container_name)
        .and_then(|s| crate::cluster::timestamp(&s["state"]["running"]["startedAt"]))
        .ok_or_else(|| {
            KubeError::bad_request(format!(
                "container \"{container_name}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            ))
        })?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    let image = container["image"].as_str().unwrap_or("");
    let mut lines = vec![(
        started,
        format!(
            "[sim] container {container_name} of pod {namespace}/{name} started from {image} on {node}; the sim runs no containers, so this log is simulated"
        ),
    )];
    let now = Timestamp::now();
    let minutes = now.duration_since(started).as_secs().max(0) / 60;
    let first = minutes.saturating_sub(MAX_LINES as i64 - 1).max(1);
    for minute in first..=minutes {
        let at = started
            .checked_add(SignedDuration::from_mins(minute))
            .unwrap_or(now);
        lines.push((
            at,
            format!("[sim] {container_name} has run for {minute} minute(s)"),
        ));
    }
    let skip = options
        .tail_lines
        .map_or(0, |tail| lines.len().saturating_sub(tail));
    let mut text = String::new();
    for (at, line) in lines.into_iter().skip(skip) {
        if options.timestamps {
            text.push_str(&at.to_string());
            text.push(' ');
        }
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// What `kubectl exec` and `attach` get: there is nothing to run a command in.
pub fn exec(pod: &Value) -> KubeError {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("");
    KubeError::bad_request(format!(
        "pod {namespace}/{name} runs in a sim cluster, whose nodes run no containers: there is no process to exec into or attach to"
    ))
}
