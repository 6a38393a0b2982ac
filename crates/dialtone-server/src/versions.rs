//! `GET /v1/versions`: the Kubernetes version catalogue as each release channel offers it
//! today; and the operator's catalogue file (`--kubernetes-versions`), read again when it
//! changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use dialtone_planner::versions::{Catalogue, Versions, day_of};
use dialtone_types::cluster::ReleaseChannel;
use dialtone_types::cluster_types::KubernetesVersionInfo;
use dialtone_types::{List, ListMeta};

use crate::App;
use crate::resources::to_json;

/// How often the catalogue file is checked for changes.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Every minor of the catalogue, oldest first, with what each channel offers of it today.
pub fn list(catalogue: &Catalogue, today: jiff::civil::Date) -> Vec<KubernetesVersionInfo> {
    catalogue
        .minors
        .iter()
        .map(|m| KubernetesVersionInfo {
            minor: m.minor.clone(),
            released: m.released,
            end_of_support: m.end_of_support,
            days_to_end_of_support: (m.end_of_support - today).get_days().into(),
            channels: ReleaseChannel::ALL
                .into_iter()
                .filter(|&c| catalogue.offered(c, today).any(|o| o.minor == m.minor))
                .map(|c| (c, m.newest_patch(c, today).version.clone()))
                .collect(),
            default_for: ReleaseChannel::ALL
                .into_iter()
                .filter(|&c| {
                    catalogue
                        .default_minor(c, today)
                        .is_some_and(|d| d.minor == m.minor)
                })
                .collect(),
            patches: m.patches.iter().map(|p| p.version.clone()).collect(),
        })
        .collect()
}

pub async fn list_versions(State(app): State<App>) -> Response {
    let today = day_of((app.clock)());
    let items = list(&app.versions.current(), today);
    to_json(
        StatusCode::OK,
        &List::new("KubernetesVersion", ListMeta::default(), items),
    )
}

/// Reads the catalogue at `path`, saying what is wrong with it.
pub fn read(path: &Path) -> anyhow::Result<Catalogue> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Catalogue::parse(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a version catalogue: {e}", path.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Puts the file at `path` in effect each time it changes; a file that does not read
/// leaves the catalogue as it was, with a warning.
pub async fn follow(versions: Arc<Versions>, path: PathBuf) {
    let mut seen = modified(&path);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match read(&path) {
            Ok(catalogue) => {
                let before = versions.current();
                let added: Vec<&str> = catalogue
                    .minors
                    .iter()
                    .flat_map(|m| &m.patches)
                    .map(|p| p.version.as_str())
                    .filter(|v| before.minor(v).and_then(|m| m.patch(v)).is_none())
                    .collect();
                tracing::info!(file = %path.display(), added = ?added, "version catalogue read again");
                versions.replace(catalogue);
            }
            Err(e) => tracing::warn!(error = %e, "the version catalogue stays as it was"),
        }
    }
}
