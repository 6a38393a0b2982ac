//! The API server's audit log (`--audit-log-path`), written as upstream's log backend writes
//! it: one `audit.k8s.io/v1` Event per request, a JSON object on a line, at the level the
//! policy gives the request (watches when they start, every other request when answered).
//!
//! The policy is the one in the ConfigMap `kube-system/audit-policy` as it stands, read
//! again when it changes, or, while that is missing or unreadable, the one the control plane
//! booted with; the boot uploads it there, as kubeadm uploads its configuration. So a
//! changed policy takes effect at once, and Dialtone can read it back to find drift.
//!
//! The log rotates at [`MAX_BYTES`]; backups go after the plan's retention
//! (`--audit-log-maxage`) or beyond [`MAX_BACKUPS`]: a sim cluster's log stays under
//! 12 MiB. `/logs/kubernetes/audit/audit.log` serves it to those RBAC lets read `/logs/*`,
//! whole or by byte range, as upstream's `/logs/` handler serves the node's `/var/log`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dialtone_kubeapi::audit::{self, Level, Policy};
use serde_json::{Value, json};

use crate::cluster::key;
use crate::rbac::UserInfo;
use crate::status::{KubeError, KubeResult};
use crate::store::Objects;

/// The size at which the log is rotated.
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// How many rotated files are kept at most.
pub const MAX_BACKUPS: usize = 2;

const FILE_NAME: &str = "audit.log";

/// One cluster's audit log.
pub struct AuditLog {
    dir: PathBuf,
    /// The policy the control plane booted with.
    boot: Arc<Policy>,
    /// How long rotated files are kept.
    retention: Duration,
    /// Held while an event is appended, so that events are whole lines and rotation
    /// happens once.
    appending: Mutex<()>,
    /// The ConfigMap's policy and the resourceVersion it was read at; no policy when it
    /// does not parse.
    uploaded: Mutex<Option<(String, Option<Arc<Policy>>)>>,
}

/// What one request was, as its event records it.
pub struct Seen<'a> {
    pub audit_id: &'a str,
    pub user: &'a UserInfo,
    /// Who the request acted as, when it impersonated someone.
    pub impersonated: Option<&'a UserInfo>,
    pub verb: &'a str,
    pub target: audit::Target<'a>,
    /// The resource's API version, when the request is for one.
    pub api_version: &'a str,
    pub request_uri: &'a str,
    pub user_agent: &'a str,
    pub received: jiff::Timestamp,
}

impl AuditLog {
    /// The log in `dir`, kept with `boot` until the cluster holds a policy of its own.
    pub fn open(dir: PathBuf, boot: Policy, retention_days: u32) -> Self {
        AuditLog {
            dir,
            boot: Arc::new(boot),
            retention: Duration::from_secs(u64::from(retention_days) * 86_400),
            appending: Mutex::new(()),
            uploaded: Mutex::new(None),
        }
    }

    /// The policy the boot uploads to the cluster.
    pub fn boot_policy(&self) -> &Policy {
        &self.boot
    }

    /// The policy in force: the cluster's ConfigMap's when it holds a readable one.
    fn policy(&self, objects: &Objects) -> Arc<Policy> {
        let (namespace, name) = audit::POLICY_CONFIGMAP;
        let Some(config_map) = objects.get(&key("configmaps", namespace, name)) else {
            return self.boot.clone();
        };
        let version = config_map["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut uploaded = self.uploaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read_at, policy)) = &*uploaded
            && *read_at == version
        {
            return policy.clone().unwrap_or_else(|| self.boot.clone());
        }
        let text = config_map["data"][audit::POLICY_KEY].as_str().unwrap_or("");
        let policy = match Policy::parse(text) {
            Ok(policy) => Some(Arc::new(policy)),
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's audit policy does not parse; the boot policy stays");
                None
            }
        };
        *uploaded = Some((version, policy.clone()));
        policy.unwrap_or_else(|| self.boot.clone())
    }

    /// Logs one request at the level the policy gives it. The response is passed through,
    /// read whole first when its body is to be logged.
    pub async fn record(
        &self,
        objects: &Objects,
        seen: Seen<'_>,
        request_body: &[u8],
        response: Response,
    ) -> Response {
        let acting = seen.impersonated.unwrap_or(seen.user);
        let attributes = audit::Attributes {
            user: &acting.name,
            groups: &acting.groups,
            verb: seen.verb,
            target: seen.target,
        };
        let level = self.policy(objects).level(&attributes);
        if level == Level::None {
            return response;
        }
        let streaming = seen.verb == "watch";
        let mut event = json!({
            "kind": "Event",
            "apiVersion": audit::API_VERSION,
            "level": format!("{level:?}"),
            "auditID": seen.audit_id,
            "stage": if streaming { "ResponseStarted" } else { "ResponseComplete" },
            "requestURI": seen.request_uri,
            "verb": seen.verb,
            "user": {"username": seen.user.name, "groups": seen.user.groups},
            "userAgent": seen.user_agent,
            "responseStatus": {"metadata": {}, "code": response.status().as_u16()},
            "requestReceivedTimestamp": micros(seen.received),
            "stageTimestamp": micros(jiff::Timestamp::now()),
        });
        if let Some(as_user) = seen.impersonated {
            event["impersonatedUser"] = json!({"username": as_user.name, "groups": as_user.groups});
        }
        if let audit::Target::Resource {
            group,
            resource,
            subresource,
            namespace,
            name,
        } = seen.target
        {
            let mut object = json!({"resource": resource, "apiVersion": seen.api_version});
            for (field, value) in [
                ("apiGroup", group),
                ("subresource", subresource),
                ("namespace", namespace),
                ("name", name),
            ] {
                if !value.is_empty() {
                    object[field] = json!(value);
                }
            }
            event["objectRef"] = object;
        }
        // Read only where the event takes something from it.
        let body = (level >= Level::Request || seen.verb == "create")
            .then(|| serde_json::from_slice::<Value>(request_body).ok())
            .flatten();
        // A create names its object in its body, as upstream's event then says.
        if seen.verb == "create"
            && event["objectRef"].is_object()
            && event["objectRef"]["name"].is_null()
            && let Some(name) = body.as_ref().and_then(|b| b["metadata"]["name"].as_str())
        {
            event["objectRef"]["name"] = json!(name);
        }
        if level >= Level::Request
            && let Some(body) = body
        {
            event["requestObject"] = body;
        }
        let response = if level == Level::RequestResponse && !streaming {
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            if let Ok(body) = serde_json::from_slice::<Value>(&bytes) {
                event["responseObject"] = body;
            }
            Response::from_parts(parts, Body::from(bytes))
        } else {
            response
        };
        self.write(&event);
        response
    }

    /// Appends one event, rotating first when the log is full. The file is opened for each
    /// event, so that a fleet of clusters holds no descriptor open for its logs. A log that
    /// cannot be written is reported and the request still answered; the next event tries
    /// again.
    fn write(&self, event: &Value) {
        let mut line = serde_json::to_vec(event).expect("an event serializes");
        line.push(b'\n');
        let _appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join(FILE_NAME);
        let open = || OpenOptions::new().create(true).append(true).open(&path);
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut file = open()?;
            if file.metadata()?.len() + line.len() as u64 > MAX_BYTES {
                drop(file);
                self.rotate()?;
                file = open()?;
            }
            file.write_all(&line)
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the audit log");
        }
    }

    /// Moves the log aside under the time it was rotated and drops backups too old or too
    /// many.
    fn rotate(&self) -> std::io::Result<()> {
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S%.3f");
        std::fs::rename(
            self.dir.join(FILE_NAME),
            self.dir.join(format!("audit-{stamp}.log")),
        )?;
        let mut backups: Vec<(PathBuf, SystemTime)> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.starts_with("audit-") && name.ends_with(".log")
            })
            .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
            .collect();
        backups.sort_by_key(|b| std::cmp::Reverse(b.1));
        let now = SystemTime::now();
        for (index, (path, modified)) in backups.iter().enumerate() {
            let old = now.duration_since(*modified).unwrap_or_default() > self.retention;
            if index >= MAX_BACKUPS || old {
                std::fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Serves the log at [`audit::LOG_PATH`]: all of it, or the byte range asked for
    /// (`bytes=0-99`, `bytes=100-`, `bytes=-500`), as a file server does.
    pub fn serve(&self, headers: &HeaderMap) -> KubeResult<Response> {
        let cannot =
            |e: std::io::Error| KubeError::internal(format!("cannot read the audit log: {e}"));
        // A log not written yet reads as empty.
        let file = match File::open(self.dir.join(FILE_NAME)) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(cannot(e)),
        };
        let size = match &file {
            Some(file) => file.metadata().map_err(cannot)?.len(),
            None => 0,
        };
        let range = headers
            .get(axum::http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| byte_range(v, size));
        let (start, end, status) = match range {
            Some(Ok((start, end))) => (start, end, StatusCode::PARTIAL_CONTENT),
            Some(Err(())) => {
                return Ok(Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("content-range", format!("bytes */{size}"))
                    .body(Body::empty())
                    .expect("a valid response"));
            }
            None => (0, size, StatusCode::OK),
        };
        let mut bytes = Vec::with_capacity((end - start) as usize);
        if let Some(mut file) = file {
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.take(end - start).read_to_end(&mut bytes))
                .map_err(cannot)?;
        }
        let mut response = Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .header("accept-ranges", "bytes");
        if status == StatusCode::PARTIAL_CONTENT {
            response = response.header(
                "content-range",
                format!("bytes {start}-{}/{size}", end.saturating_sub(1)),
            );
        }
        Ok(response.body(Body::from(bytes)).expect("a valid response"))
    }
}

/// The half-open byte range a `Range` header asks of a file of `size` bytes; `None` for a
/// header this server ignores (another unit, several ranges), `Err` for one it cannot
/// satisfy.
fn byte_range(header: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (first, "") => (first.parse().ok()?, size),
        (first, last) => {
            let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            if last < first {
                return None;
            }
            (first, (last + 1).min(size))
        }
    };
    if range.0 >= size && !(size == 0 && range.0 == 0) {
        return Some(Err(()));
    }
    Some(Ok(range))
}

/// Upstream's `MicroTime`: RFC 3339 with microseconds.
fn micros(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_read_as_a_file_server_reads_them() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Ok((90, 100))));
        assert_eq!(byte_range("bytes=-10", 100), Some(Ok((90, 100))));
        assert_eq!(byte_range("bytes=-1000", 100), Some(Ok((0, 100))));
        assert_eq!(byte_range("bytes=95-200", 100), Some(Ok((95, 100))));
        assert_eq!(byte_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("lines=1-2", 100), None);
        assert_eq!(byte_range("bytes=-10", 0), Some(Ok((0, 0))));
    }

    #[test]
    fn the_log_rotates_at_its_size_and_keeps_two_backups() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().to_path_buf(), Policy::new(vec![], vec![]), 365);
        let event = json!({"pad": "x".repeat(1 << 20)});
        for _ in 0..20 {
            log.write(&event);
            // Backups are named by the millisecond.
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names.len(), 1 + MAX_BACKUPS, "{names:?}");
        assert!(names.contains(&FILE_NAME.to_string()));
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(size <= MAX_BYTES, "{size}");
    }
}
