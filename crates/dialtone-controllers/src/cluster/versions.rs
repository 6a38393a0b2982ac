//! Keeping a cluster's Kubernetes current: the patch release its nodes run, chosen from the
//! version catalogue by its release channel; patch and minor upgrades started in its
//! maintenance window and held back by exclusions; a minor past its end of support moved
//! to the next in the first window regardless of exclusions. The upgrade itself (one
//! control-plane node at a time, then workers by surge) is the node step's.

use dialtone_planner::versions::{Catalogue, MinorRelease, day_of, minor_name, patch_of};
use dialtone_store::registry::RegistryError;
use dialtone_types::cluster::{ClusterPlan, ClusterStatus, MaintenanceWindow, VersionStatus};
use dialtone_types::{Cluster, ClusterCondition, ConditionStatus, Object, Phase, ResourcePath};
use jiff::Timestamp;

use super::{Lifecycle, record_event, set_condition};

/// How long before its end of support a minor's clusters are told to move.
const WARN_DAYS: i64 = 30;

/// What the version step decided.
pub(super) enum Decided {
    /// The nodes should run this release.
    Release(String),
    /// The spec moved to the next minor (the cluster as stored now, `None` if it went
    /// meanwhile); the pass ends, and the next one plans it.
    MovedMinor(Option<Box<Object<Cluster, ClusterStatus>>>),
}

/// The patch order of a release within its minor; a release named by its minor only (as
/// clusters from before the catalogue are) comes before every patch.
fn patch_number(release: &str) -> i64 {
    patch_of(release).map_or(-1, i64::from)
}

impl Lifecycle {
    /// Decides the release the cluster's nodes run this pass, and whether a minor upgrade
    /// starts; sets `status.version` and the `VersionSupported` condition.
    pub(super) async fn keep_current(
        &self,
        path: &ResourcePath,
        cluster: &Object<Cluster, ClusterStatus>,
        plan: &ClusterPlan,
        status: &mut ClusterStatus,
        now: Timestamp,
    ) -> Result<Decided, RegistryError> {
        let catalogue = self.versions.current();
        let today = day_of(now);
        let channel = plan.settings.upgrade.channel;
        let window = &plan.settings.maintenance.window;
        let exclusion = cluster
            .spec
            .maintenance
            .as_ref()
            .and_then(|m| m.exclusion_at(now));
        let minor = catalogue.minor(&plan.kubernetes_version);
        // The release in effect: what was decided before, or what the nodes of a cluster
        // from before the catalogue run, as long as it is of the planned minor.
        let previous = status
            .version
            .as_ref()
            .map(|v| v.release.clone())
            .or_else(|| {
                status
                    .nodes
                    .iter()
                    .find(|n| !n.kubernetes_version.is_empty())
                    .map(|n| n.kubernetes_version.clone())
            })
            .filter(|r| minor_name(r) == plan.kubernetes_version);
        let Some(minor) = minor else {
            let release = previous.unwrap_or_else(|| format!("{}.0", plan.kubernetes_version));
            set_condition(
                &mut status.conditions,
                ClusterCondition::VersionSupported,
                ConditionStatus::False,
                "NotInCatalogue",
                format!(
                    "{} is not in the version catalogue, so nothing says whether it is supported; move to one it lists (`dialtone versions list`)",
                    plan.kubernetes_version
                ),
                now,
            );
            status.version = Some(VersionStatus {
                release: release.clone(),
                channel,
                end_of_support: None,
                available: String::new(),
                next_window: None,
            });
            return Ok(Decided::Release(release));
        };
        let newest = &minor.newest_patch(channel, today).version;
        let mut release = previous.unwrap_or_else(|| newest.clone());
        // Upgrades start only on a Ready cluster whose nodes all run the release in effect.
        let settled = status.phase == Some(Phase::Ready)
            && status
                .nodes
                .iter()
                .all(|n| n.kubernetes_version.is_empty() || n.kubernetes_version == release);
        let open = window.contains(now);
        let next_minor = catalogue.next_minor(&minor.minor);

        if !minor.supported(today) {
            if let Some(next) = next_minor
                && open
                && settled
            {
                let message = format!(
                    "{} reached its end of support on {}: moving to {} in the maintenance window ({window}){}",
                    minor.minor,
                    minor.end_of_support,
                    next.minor,
                    match exclusion {
                        Some(e) => format!(", despite the exclusion {}", exclusion_name(e)),
                        None => String::new(),
                    }
                );
                return self
                    .move_minor(path, cluster, status, next, "ForcedUpgrade", message, now)
                    .await;
            }
        } else if plan.settings.upgrade.auto_minor
            && let Some(next) = next_minor.filter(|n| {
                catalogue
                    .offered(channel, today)
                    .any(|o| o.minor == n.minor)
            })
            && open
            && exclusion.is_none()
            && settled
        {
            let message = format!(
                "the {channel} channel offers {}: moving from {} in the maintenance window ({window})",
                next.minor, minor.minor
            );
            return self
                .move_minor(path, cluster, status, next, "MinorUpgrade", message, now)
                .await;
        }

        let patch_waiting = patch_number(newest) > patch_number(&release);
        if patch_waiting
            && plan.settings.upgrade.auto_patch
            && open
            && exclusion.is_none()
            && settled
        {
            record_event(
                status,
                now,
                false,
                "PatchUpgrade",
                format!(
                    "moving from {release} to {newest}, the {channel} channel's newest, in the maintenance window ({window})"
                ),
            );
            release = newest.clone();
        }
        let available = (patch_number(newest) > patch_number(&release)).then(|| newest.clone());
        let unsupported = !minor.supported(today);
        let next_window = (available.is_some() || unsupported).then(|| {
            next_opening(
                window,
                now,
                exclusion.filter(|_| !unsupported).map(|e| e.end),
            )
        });
        verdict(
            status,
            &catalogue,
            minor,
            &release,
            available.as_deref(),
            next_window,
            now,
        );
        status.version = Some(VersionStatus {
            release: release.clone(),
            channel,
            end_of_support: Some(minor.end_of_support),
            available: available.unwrap_or_default(),
            next_window,
        });
        Ok(Decided::Release(release))
    }

    /// Moves the cluster's spec to `next`: the pass that plans it upgrades the nodes.
    #[allow(clippy::too_many_arguments)]
    async fn move_minor(
        &self,
        path: &ResourcePath,
        cluster: &Object<Cluster, ClusterStatus>,
        status: &mut ClusterStatus,
        next: &MinorRelease,
        reason: &str,
        message: String,
        now: Timestamp,
    ) -> Result<Decided, RegistryError> {
        let mut moved = cluster.clone();
        moved.spec.kubernetes_version = next.minor.clone();
        let moved = self.registry.update(path, moved).await?.map(Box::new);
        if moved.is_some() {
            record_event(status, now, false, reason, message);
        }
        Ok(Decided::MovedMinor(moved))
    }
}

fn exclusion_name(exclusion: &dialtone_types::cluster::MaintenanceExclusion) -> String {
    match exclusion.name.as_str() {
        "" => format!("until {}", exclusion.end),
        name => format!("`{name}`"),
    }
}

/// When the window next opens for an upgrade: after `held_until` when an exclusion holds
/// one back, and now when it is open.
fn next_opening(
    window: &MaintenanceWindow,
    now: Timestamp,
    held_until: Option<Timestamp>,
) -> Timestamp {
    let from = held_until.unwrap_or(now);
    if window.contains(from) {
        return from;
    }
    window.next_opening(from)
}

/// The `VersionSupported` condition.
fn verdict(
    status: &mut ClusterStatus,
    catalogue: &Catalogue,
    minor: &MinorRelease,
    release: &str,
    available: Option<&str>,
    next_window: Option<Timestamp>,
    now: Timestamp,
) {
    let today = day_of(now);
    let next_minor = catalogue.next_minor(&minor.minor);
    let next = next_minor.map_or("a newer minor", |m| m.minor.as_str());
    let when = next_window.map_or_else(String::new, |t| format!(", which opens {t}"));
    let (value, reason, message) = if !minor.supported(today) {
        let then = match next_minor {
            Some(_) => format!(
                "it moves to {next} in the next maintenance window{when}, exclusions notwithstanding"
            ),
            None => "the version catalogue has no newer minor to move it to".to_string(),
        };
        (
            ConditionStatus::False,
            "EndOfSupport",
            format!(
                "{} reached its end of support on {}; {then}",
                minor.minor, minor.end_of_support
            ),
        )
    } else if minor.end_of_support <= today.saturating_add(jiff::Span::new().days(WARN_DAYS)) {
        (
            ConditionStatus::False,
            "EndOfSupportSoon",
            format!(
                "{} reaches its end of support on {}; move to {next} before then, or it is moved in the first maintenance window after, exclusions notwithstanding",
                minor.minor, minor.end_of_support
            ),
        )
    } else if let Some(available) = available {
        (
            ConditionStatus::True,
            "PatchAvailable",
            format!(
                "runs {release}; {available} waits for the maintenance window{when}. {} is supported until {}",
                minor.minor, minor.end_of_support
            ),
        )
    } else {
        (
            ConditionStatus::True,
            "Current",
            format!(
                "runs {release}, the newest patch its channel offers; {} is supported until {}",
                minor.minor, minor.end_of_support
            ),
        )
    };
    set_condition(
        &mut status.conditions,
        ClusterCondition::VersionSupported,
        value,
        reason,
        message,
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_named_by_their_minor_come_before_every_patch() {
        assert!(patch_number("1.35.0") > patch_number("1.35"));
        assert!(patch_number("1.35.10") > patch_number("1.35.9"));
    }
}
