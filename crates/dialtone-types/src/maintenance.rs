//! When automatic upgrades may disrupt a cluster: its release channel (how soon new
//! Kubernetes releases reach it), its recurring maintenance window, and exclusions (date
//! ranges without automatic upgrades). Times are UTC.

use jiff::civil::{Time, Weekday};
use jiff::{SignedDuration, Timestamp, ToSpan};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{FieldErrors, FieldReason};

/// How soon new Kubernetes releases reach a cluster, after GKE's release channels.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ReleaseChannel {
    /// Releases on the day upstream publishes them.
    Rapid,
    /// Patches a week after upstream, minors a month after.
    #[default]
    Regular,
    /// Patches two weeks after upstream, minors three months after.
    Stable,
}

impl ReleaseChannel {
    /// Every channel, as errors list them.
    pub const ALL: [ReleaseChannel; 3] = [
        ReleaseChannel::Rapid,
        ReleaseChannel::Regular,
        ReleaseChannel::Stable,
    ];

    /// Its name in the spec.
    pub fn name(self) -> &'static str {
        match self {
            ReleaseChannel::Rapid => "rapid",
            ReleaseChannel::Regular => "regular",
            ReleaseChannel::Stable => "stable",
        }
    }

    /// Days after upstream's release of a new minor (its first patch) before the channel
    /// offers it.
    pub fn minor_delay_days(self) -> i64 {
        match self {
            ReleaseChannel::Rapid => 0,
            ReleaseChannel::Regular => 30,
            ReleaseChannel::Stable => 90,
        }
    }

    /// Days after upstream's release of a patch before the channel offers it.
    pub fn patch_delay_days(self) -> i64 {
        match self {
            ReleaseChannel::Rapid => 0,
            ReleaseChannel::Regular => 7,
            ReleaseChannel::Stable => 14,
        }
    }

    /// The longest exclusion a cluster in the channel may set: the slower the channel, the
    /// longer its owners may freeze it (an exclusion never holds back a version past its end
    /// of support).
    pub fn max_exclusion_days(self) -> i64 {
        match self {
            ReleaseChannel::Rapid => 14,
            ReleaseChannel::Regular => 30,
            ReleaseChannel::Stable => 90,
        }
    }
}

impl std::fmt::Display for ReleaseChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The day a maintenance window recurs on: every day, or one day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum WindowDay {
    Daily,
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl WindowDay {
    fn weekday(self) -> Option<Weekday> {
        Some(match self {
            WindowDay::Daily => return None,
            WindowDay::Monday => Weekday::Monday,
            WindowDay::Tuesday => Weekday::Tuesday,
            WindowDay::Wednesday => Weekday::Wednesday,
            WindowDay::Thursday => Weekday::Thursday,
            WindowDay::Friday => Weekday::Friday,
            WindowDay::Saturday => Weekday::Saturday,
            WindowDay::Sunday => Weekday::Sunday,
        })
    }

    fn short(self) -> &'static str {
        match self {
            WindowDay::Daily => "daily",
            WindowDay::Monday => "Mon",
            WindowDay::Tuesday => "Tue",
            WindowDay::Wednesday => "Wed",
            WindowDay::Thursday => "Thu",
            WindowDay::Friday => "Fri",
            WindowDay::Saturday => "Sat",
            WindowDay::Sunday => "Sun",
        }
    }
}

/// A recurring stretch of time in which automatic upgrades may replace nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// `daily`, or the day of the week it opens: `monday` … `sunday`.
    pub day: WindowDay,
    /// When it opens, `HH:MM` in UTC.
    pub start: String,
    /// How long it stays open: at least 4 hours, at most 24.
    pub hours: u32,
}

impl MaintenanceWindow {
    /// The shortest window: an upgrade of a large cluster needs the time.
    pub const MIN_HOURS: u32 = 4;

    /// Open all the time.
    pub fn any_time() -> Self {
        MaintenanceWindow {
            day: WindowDay::Daily,
            start: "00:00".into(),
            hours: 24,
        }
    }

    /// Every problem of the window, under `field`.
    pub fn validate(&self, field: &str, errors: &mut FieldErrors) {
        if self.start_time().is_none() {
            errors.push(
                &format!("{field}.start"),
                FieldReason::FieldValueInvalid,
                format!(
                    "`{}` is not a time of day; use HH:MM in UTC, such as 02:00",
                    self.start
                ),
            );
        }
        if !(Self::MIN_HOURS..=24).contains(&self.hours) {
            errors.push(
                &format!("{field}.hours"),
                FieldReason::FieldValueInvalid,
                format!(
                    "{} hours; a window lasts {} to 24 hours, so that an upgrade has time to finish",
                    self.hours,
                    Self::MIN_HOURS
                ),
            );
        }
    }

    fn start_time(&self) -> Option<Time> {
        let (h, m) = self.start.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
    }

    /// The openings that can matter around `now`: from eight days before to eight after.
    fn openings(&self, now: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        let start = self.start_time().unwrap_or(Time::midnight());
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        (-8..=8i64).filter_map(move |offset| {
            let date = today.checked_add(offset.days()).ok()?;
            if self.day.weekday().is_some_and(|w| w != date.weekday()) {
                return None;
            }
            date.to_datetime(start)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .ok()
                .map(|z| z.timestamp())
        })
    }

    fn length(&self) -> SignedDuration {
        SignedDuration::from_hours(i64::from(self.hours))
    }

    /// Whether the window is open at `now`.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.openings(now)
            .any(|open| open <= now && now < open + self.length())
    }

    /// When the window next opens after `now`.
    pub fn next_opening(&self, now: Timestamp) -> Timestamp {
        self.openings(now)
            .find(|open| *open > now)
            .unwrap_or(now + SignedDuration::from_hours(24 * 7))
    }
}

impl std::fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.day == WindowDay::Daily && self.hours == 24 {
            return f.write_str("any time");
        }
        let end = self
            .start_time()
            .map(|t| t.wrapping_add(self.length()))
            .map_or_else(|| "?".to_string(), |t| t.strftime("%H:%M").to_string());
        write!(f, "{} {}–{} UTC", self.day.short(), self.start, end)
    }
}

/// A window's fields, as the spec gives them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFields {
    day: WindowDay,
    start: String,
    hours: u32,
}

impl<'de> Deserialize<'de> for MaintenanceWindow {
    /// The typed form, or the text earlier plans stored (`any time`, `Sat 02:00-06:00
    /// UTC`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        Ok(match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) if text.starts_with("Sat 02:00") => MaintenanceWindow {
                day: WindowDay::Saturday,
                start: "02:00".into(),
                hours: 4,
            },
            serde_json::Value::String(_) => MaintenanceWindow::any_time(),
            value => {
                let WindowFields { day, start, hours } =
                    serde_json::from_value(value).map_err(D::Error::custom)?;
                MaintenanceWindow { day, start, hours }
            }
        })
    }
}

/// A stretch of dates in which no automatic upgrade starts, except one of a version past
/// its end of support.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceExclusion {
    /// What it is for, such as `black-friday`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// When it begins.
    pub start: Timestamp,
    /// When it ends; at most the channel's longest exclusion after `start`.
    pub end: Timestamp,
}

impl MaintenanceExclusion {
    /// Whether it holds at `now`.
    pub fn covers(&self, now: Timestamp) -> bool {
        self.start <= now && now < self.end
    }
}

/// When automatic upgrades may disrupt the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    /// The recurring window; the type's (`maintenance.window`) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<MaintenanceWindow>,
    /// Date ranges without automatic upgrades.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<MaintenanceExclusion>,
}

impl Maintenance {
    /// Every problem of the window and the exclusions, for a cluster in `channel`.
    pub fn validate(&self, channel: ReleaseChannel, errors: &mut FieldErrors) {
        if let Some(window) = &self.window {
            window.validate("spec.maintenance.window", errors);
        }
        let longest = channel.max_exclusion_days();
        for (i, exclusion) in self.exclusions.iter().enumerate() {
            let field = format!("spec.maintenance.exclusions[{i}]");
            let length = exclusion.end.duration_since(exclusion.start);
            if length <= SignedDuration::ZERO {
                errors.push(
                    &format!("{field}.end"),
                    FieldReason::FieldValueInvalid,
                    "must be after start",
                );
            } else if length > SignedDuration::from_hours(24 * longest) {
                errors.push(
                    &field,
                    FieldReason::FieldValueInvalid,
                    format!(
                        "lasts {:.1} days; the {channel} channel allows exclusions of up to {longest} days",
                        length.as_secs_f64() / 86_400.0
                    ),
                );
            }
        }
    }

    /// The exclusion that holds at `now`, if any.
    pub fn exclusion_at(&self, now: Timestamp) -> Option<&MaintenanceExclusion> {
        self.exclusions.iter().find(|e| e.covers(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn saturday() -> MaintenanceWindow {
        MaintenanceWindow {
            day: WindowDay::Saturday,
            start: "02:00".into(),
            hours: 4,
        }
    }

    #[test]
    fn a_weekly_window_is_open_on_its_day_only() {
        let window = saturday();
        // 2026-12-12 is a Saturday.
        assert!(!window.contains(at("2026-12-12T01:59:59Z")));
        assert!(window.contains(at("2026-12-12T02:00:00Z")));
        assert!(window.contains(at("2026-12-12T05:59:59Z")));
        assert!(!window.contains(at("2026-12-12T06:00:00Z")));
        assert!(!window.contains(at("2026-12-13T03:00:00Z")));
        assert_eq!(
            window.next_opening(at("2026-12-07T10:00:00Z")),
            at("2026-12-12T02:00:00Z")
        );
        assert_eq!(
            window.next_opening(at("2026-12-12T03:00:00Z")),
            at("2026-12-19T02:00:00Z")
        );
        assert_eq!(window.to_string(), "Sat 02:00–06:00 UTC");
    }

    #[test]
    fn a_daily_window_may_span_midnight() {
        let window = MaintenanceWindow {
            day: WindowDay::Daily,
            start: "22:00".into(),
            hours: 6,
        };
        assert!(window.contains(at("2026-12-08T01:00:00Z")));
        assert!(!window.contains(at("2026-12-08T04:00:00Z")));
        assert!(MaintenanceWindow::any_time().contains(at("2026-12-08T04:00:00Z")));
        assert_eq!(MaintenanceWindow::any_time().to_string(), "any time");
    }

    #[test]
    fn short_windows_bad_times_and_long_exclusions_are_refused() {
        let mut errors = FieldErrors::default();
        let maintenance = Maintenance {
            window: Some(MaintenanceWindow {
                day: WindowDay::Monday,
                start: "25:00".into(),
                hours: 3,
            }),
            exclusions: vec![
                MaintenanceExclusion {
                    name: "freeze".into(),
                    start: at("2026-12-01T00:00:00Z"),
                    end: at("2027-01-15T00:00:00Z"),
                },
                MaintenanceExclusion {
                    name: String::new(),
                    start: at("2026-12-02T00:00:00Z"),
                    end: at("2026-12-01T00:00:00Z"),
                },
            ],
        };
        maintenance.validate(ReleaseChannel::Regular, &mut errors);
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.maintenance.window.start",
                "spec.maintenance.window.hours",
                "spec.maintenance.exclusions[0]",
                "spec.maintenance.exclusions[1].end"
            ]
        );
        let freeze = Maintenance {
            window: None,
            exclusions: maintenance.exclusions[..1].to_vec(),
        };
        let mut stable = FieldErrors::default();
        freeze.validate(ReleaseChannel::Stable, &mut stable);
        assert!(stable.is_empty(), "stable allows 90 days");
    }

    #[test]
    fn windows_stored_as_text_read_back() {
        let window: MaintenanceWindow = serde_json::from_str("\"Sat 02:00-06:00 UTC\"").unwrap();
        assert_eq!(window, saturday());
        let window: MaintenanceWindow = serde_json::from_str("\"any time\"").unwrap();
        assert_eq!(window, MaintenanceWindow::any_time());
    }
}
