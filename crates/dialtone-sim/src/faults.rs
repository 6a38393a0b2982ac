//! Failure injection: what can go wrong in the simulated cloud, on purpose.

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Matching instance launches succeed, then the instance fails to boot and terminates.
    BootFailure,
    /// The zone is down until the fault is removed: its instances are impaired and nothing
    /// launches there.
    ZoneOutage,
    /// Matching calls are refused with `Throttled`.
    Throttling,
    /// Matching create and delete calls take effect, then answer `Timeout`.
    TimeoutAfterSuccess,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::BootFailure,
        FaultKind::ZoneOutage,
        FaultKind::Throttling,
        FaultKind::TimeoutAfterSuccess,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BootFailure => "boot-failure",
            FaultKind::ZoneOutage => "zone-outage",
            FaultKind::Throttling => "throttling",
            FaultKind::TimeoutAfterSuccess => "timeout-after-success",
        }
    }
}

/// What can happen to one running instance, on an operator's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceFault {
    /// Its host fails: the instance terminates.
    Kill,
    /// It keeps running but stops answering, as after a kernel hang or a lost network: its
    /// status checks fail and its kubelet stops posting the node's status.
    Hang,
    /// A hung instance answers again.
    Recover,
}

/// A fault to inject. Without `count` it stays until removed; with it, it is removed after
/// firing that many times. `probability` (default 1) is the chance that a matching call is hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub id: String,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// How many times it has fired.
    pub fired: u32,
}

impl FaultSpec {
    /// Every problem with the spec, in one message.
    pub fn check(&self, regions: &[dialtone_cloud::Region]) -> Result<(), String> {
        let mut problems = Vec::new();
        let region = match &self.region {
            Some(name) => match regions.iter().find(|r| r.name == name) {
                Some(r) => Some(r),
                None => {
                    problems.push(format!(
                        "unknown region `{name}`; valid regions: {}",
                        regions
                            .iter()
                            .map(|r| r.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    None
                }
            },
            None => None,
        };
        if let Some(zone) = &self.zone {
            let known = regions
                .iter()
                .filter(|r| region.is_none_or(|only| only.name == r.name))
                .any(|r| r.zones().contains(zone));
            if !known {
                problems.push(format!("unknown zone `{zone}`"));
            }
        }
        if self.kind == FaultKind::ZoneOutage && self.zone.is_none() {
            problems.push("a zone-outage needs a zone".to_string());
        }
        if let Some(p) = self.probability
            && !(p > 0.0 && p <= 1.0)
        {
            problems.push(format!("probability must be in (0, 1], not {p}"));
        }
        if self.count == Some(0) {
            problems.push("count must be at least 1".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn matches(&self, kind: FaultKind, region: &str, zone: Option<&str>) -> bool {
        self.kind == kind
            && self.region.as_deref().is_none_or(|r| r == region)
            && self
                .zone
                .as_deref()
                .is_none_or(|z| zone.is_none_or(|given| given == z))
    }
}

/// Whether a fault of `kind` hits this call; counts it and retires spent faults. Returns
/// whether any fault fired.
pub fn fire(
    faults: &mut Vec<Fault>,
    rng: &mut impl Rng,
    kind: FaultKind,
    region: &str,
    zone: Option<&str>,
) -> bool {
    let Some(index) = faults.iter().position(|f| {
        f.spec.matches(kind, region, zone) && f.spec.count.is_none_or(|count| f.fired < count)
    }) else {
        return false;
    };
    let fault = &mut faults[index];
    if let Some(p) = fault.spec.probability
        && !rng.random_bool(p)
    {
        return false;
    }
    fault.fired += 1;
    if fault.spec.count.is_some_and(|count| fault.fired >= count) {
        faults.remove(index);
    }
    true
}
