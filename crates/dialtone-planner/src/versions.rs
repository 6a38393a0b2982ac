//! The catalogue of Kubernetes releases clusters are built of: each minor with its release
//! and end-of-support dates and its patch releases, as data
//! (`data/kubernetes-versions.json`, or the operator's file). Release channels read it: a
//! channel offers a release some days after upstream published it (`ReleaseChannel`), and
//! no channel offers a minor past its end of support.

use std::sync::{Arc, RwLock};

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use dialtone_types::cluster::ReleaseChannel;

const BUILT_IN: &str = include_str!("../data/kubernetes-versions.json");

/// One patch release, such as `1.35.2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchRelease {
    /// `1.35.2`.
    pub version: String,
    /// The day upstream published it.
    pub released: Date,
}

/// One minor, such as `1.35`, and its patch releases, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinorRelease {
    /// `1.35`.
    pub minor: String,
    /// The day upstream published its first release.
    pub released: Date,
    /// The first day it is no longer supported.
    pub end_of_support: Date,
    /// Its patch releases, oldest first.
    pub patches: Vec<PatchRelease>,
}

impl MinorRelease {
    /// The first day `channel` offers the minor.
    pub fn offered_from(&self, channel: ReleaseChannel) -> Date {
        add_days(self.released, channel.minor_delay_days())
    }

    /// Whether it is still supported on `today`.
    pub fn supported(&self, today: Date) -> bool {
        today < self.end_of_support
    }

    /// The newest patch `channel` offers on `today`: the first patch when the channel
    /// offers none yet (a cluster asked for the minor explicitly).
    pub fn newest_patch(&self, channel: ReleaseChannel, today: Date) -> &PatchRelease {
        self.patches
            .iter()
            .rev()
            .find(|p| add_days(p.released, channel.patch_delay_days()) <= today)
            .unwrap_or(&self.patches[0])
    }

    /// The patch release named `version`, if it is one of this minor's.
    pub fn patch(&self, version: &str) -> Option<&PatchRelease> {
        self.patches.iter().find(|p| p.version == version)
    }
}

fn add_days(date: Date, days: i64) -> Date {
    date.checked_add(days.days()).unwrap_or(date)
}

/// The day `now` falls on in UTC, the calendar support dates count in.
pub fn day_of(now: Timestamp) -> Date {
    now.to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// The minor of a version: `1.35.2` and `1.35` → 35.
pub fn minor_of(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

/// The minor a release belongs to: `1.35.2` → `1.35`.
pub fn minor_name(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// The patch of a release: `1.35.2` → 2; `None` for a minor alone (`1.35`).
pub fn patch_of(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse::<u32>().ok()?;
    let patch = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(patch)
}

/// The releases clusters can run, oldest minor first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalogue {
    /// Where its data comes from, and how to extend it.
    #[serde(default)]
    pub about: String,
    /// Every minor, oldest first.
    pub minors: Vec<MinorRelease>,
}

impl Catalogue {
    /// The catalogue built into Dialtone, read once.
    pub fn built_in() -> &'static Catalogue {
        static PARSED: std::sync::OnceLock<Catalogue> = std::sync::OnceLock::new();
        PARSED.get_or_init(|| {
            Catalogue::parse(BUILT_IN).expect("the built-in catalogue is checked by its tests")
        })
    }

    /// Reads a catalogue, checking that every minor and patch is named and dated in order.
    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let catalogue: Catalogue = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if catalogue.minors.is_empty() {
            return Err("no minors".into());
        }
        let mut previous: Option<u32> = None;
        for m in &catalogue.minors {
            let minor = minor_of(&m.minor)
                .filter(|_| m.minor.split('.').count() == 2)
                .ok_or_else(|| format!("`{}` is not a minor such as 1.35", m.minor))?;
            if previous.is_some_and(|p| p >= minor) {
                return Err(format!(
                    "{} is out of order: list minors oldest first",
                    m.minor
                ));
            }
            previous = Some(minor);
            if m.end_of_support <= m.released {
                return Err(format!("{}: endOfSupport must be after released", m.minor));
            }
            if m.patches.is_empty() {
                return Err(format!("{} has no patch releases", m.minor));
            }
            let mut last: Option<(u32, Date)> = None;
            for p in &m.patches {
                let patch = patch_of(&p.version)
                    .filter(|_| minor_name(&p.version) == m.minor)
                    .ok_or_else(|| {
                        format!("`{}` is not a patch release of {}", p.version, m.minor)
                    })?;
                if last.is_some_and(|(n, day)| n >= patch || day > p.released) {
                    return Err(format!(
                        "{} is out of order: list patches oldest first",
                        p.version
                    ));
                }
                last = Some((patch, p.released));
            }
        }
        Ok(catalogue)
    }

    /// The minor named `minor` (`1.35`, or the minor of `1.35.2`).
    pub fn minor(&self, minor: &str) -> Option<&MinorRelease> {
        let name = minor_name(minor);
        self.minors.iter().find(|m| m.minor == name)
    }

    /// The minors `channel` offers on `today`, oldest first.
    pub fn offered(
        &self,
        channel: ReleaseChannel,
        today: Date,
    ) -> impl Iterator<Item = &MinorRelease> {
        self.minors
            .iter()
            .filter(move |m| m.offered_from(channel) <= today && m.supported(today))
    }

    /// The minor a new cluster in `channel` gets when it names none: the newest offered.
    pub fn default_minor(&self, channel: ReleaseChannel, today: Date) -> Option<&MinorRelease> {
        self.offered(channel, today).last()
    }

    /// The minor after `minor`, if the catalogue has it.
    pub fn next_minor(&self, minor: &str) -> Option<&MinorRelease> {
        let number = minor_of(minor)?;
        self.minors
            .iter()
            .find(|m| minor_of(&m.minor) == Some(number + 1))
    }

    /// The minor a cluster may be created at or move to, or why not, with the valid
    /// choices.
    pub fn check(
        &self,
        version: &str,
        channel: ReleaseChannel,
        today: Date,
    ) -> Result<&MinorRelease, String> {
        let offered: Vec<&str> = self
            .offered(channel, today)
            .map(|m| m.minor.as_str())
            .collect();
        let valid = format!("the {channel} channel offers {}", offered.join(", "));
        let Some(minor) = self.minor(version).filter(|_| !version.is_empty()) else {
            return Err(format!(
                "`{version}` is not in the version catalogue; {valid}"
            ));
        };
        if version != minor.minor {
            return Err(format!(
                "name a minor such as {}: the channel picks its patch release; {valid}",
                minor.minor
            ));
        }
        if !minor.supported(today) {
            return Err(format!(
                "{} reached its end of support on {}; {valid}",
                minor.minor, minor.end_of_support
            ));
        }
        if minor.offered_from(channel) > today {
            return Err(format!(
                "the {channel} channel offers {} from {}; {valid}, or choose the rapid channel",
                minor.minor,
                minor.offered_from(channel)
            ));
        }
        Ok(minor)
    }
}

/// The catalogue in effect, shared by the API and the controllers; an operator's file
/// replaces it while the server runs.
pub struct Versions {
    current: RwLock<Arc<Catalogue>>,
}

impl Versions {
    /// Starts with `catalogue`.
    pub fn new(catalogue: Catalogue) -> Self {
        Versions {
            current: RwLock::new(Arc::new(catalogue)),
        }
    }

    /// The catalogue now.
    pub fn current(&self) -> Arc<Catalogue> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `catalogue` in effect.
    pub fn replace(&self, catalogue: Catalogue) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalogue);
    }
}

impl Default for Versions {
    fn default() -> Self {
        Versions::new(Catalogue::built_in().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Date {
        text.parse().unwrap()
    }

    #[test]
    fn the_built_in_catalogue_reads_and_has_three_supported_minors_in_each_channel() {
        let catalogue = Catalogue::built_in();
        assert!(catalogue.minors.len() >= 3);
        // On the day the catalogue was last brought up to date.
        for channel in ReleaseChannel::ALL {
            let offered = catalogue.offered(channel, day("2026-12-07")).count();
            assert!(offered >= 3, "{channel} offers {offered}");
        }
    }

    #[test]
    fn channels_offer_releases_after_their_delays() {
        let catalogue = Catalogue::built_in();
        let minor = catalogue.minor("1.34").unwrap();
        let day_after = day("2025-09-10");
        assert_eq!(
            minor.newest_patch(ReleaseChannel::Rapid, day_after).version,
            "1.34.1"
        );
        assert_eq!(
            minor
                .newest_patch(ReleaseChannel::Regular, day_after)
                .version,
            "1.34.0"
        );
        assert_eq!(
            minor
                .newest_patch(ReleaseChannel::Regular, day("2025-09-16"))
                .version,
            "1.34.1"
        );
        assert_eq!(
            catalogue
                .default_minor(ReleaseChannel::Stable, day("2025-10-01"))
                .map(|m| m.minor.as_str()),
            Some("1.33")
        );
        assert_eq!(catalogue.next_minor("1.34").unwrap().minor, "1.35");
        assert!(catalogue.next_minor("1.37").is_none());
    }

    #[test]
    fn unknown_unsupported_and_not_yet_offered_minors_are_refused_with_the_choices() {
        let catalogue = Catalogue::built_in();
        let today = day("2026-12-07");
        let refused = |v: &str, c| catalogue.check(v, c, today).unwrap_err();
        assert!(
            refused("1.99", ReleaseChannel::Regular).contains(
                "not in the version catalogue; the regular channel offers 1.35, 1.36, 1.37"
            )
        );
        assert!(refused("1.33", ReleaseChannel::Regular).contains("end of support on 2026-06-28"));
        assert!(refused("1.35.0", ReleaseChannel::Regular).contains("name a minor"));
        assert!(
            catalogue
                .check("1.37", ReleaseChannel::Stable, day("2026-10-01"))
                .unwrap_err()
                .contains("offers 1.37 from 2026-11-24")
        );
        assert!(
            catalogue
                .check("1.36", ReleaseChannel::Stable, today)
                .is_ok()
        );
    }

    #[test]
    fn malformed_catalogues_say_what_is_wrong() {
        let bad = |json: &str| Catalogue::parse(json).unwrap_err();
        assert!(bad(r#"{"minors": []}"#).contains("no minors"));
        let minor = |m: &str, patches: &str| {
            format!(
                r#"{{"minors": [{{"minor": "{m}", "released": "2026-01-01", "endOfSupport": "2027-01-01", "patches": [{patches}]}}]}}"#
            )
        };
        assert!(bad(&minor("1.x", "")).contains("not a minor"));
        assert!(bad(&minor("1.40", "")).contains("no patch releases"));
        assert!(
            bad(&minor(
                "1.40",
                r#"{"version": "1.41.0", "released": "2026-01-01"}"#
            ))
            .contains("not a patch release of 1.40")
        );
        assert!(
            bad(&minor(
                "1.40",
                r#"{"version": "1.40.1", "released": "2026-01-01"}, {"version": "1.40.0", "released": "2026-01-02"}"#
            ))
            .contains("out of order")
        );
    }
}
