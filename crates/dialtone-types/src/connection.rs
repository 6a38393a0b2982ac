//! Connections: a production cluster's VPC peered with a customer's VPC, so that pods reach
//! the customer's databases, endpoints and VPNs without crossing the internet. A
//! connection is part of its cluster: whoever may change the cluster's connections
//! (`cluster.admin`) may create one, whoever sees the cluster sees it.

use ipnet::Ipv4Net;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::{CLUSTER, Kind, KindInfo};
use crate::meta::Condition;
use crate::validation::{FieldErrors, FieldReason};

/// Connections, under a cluster.
pub static CONNECTION: KindInfo = KindInfo {
    kind: "Connection",
    plural: "connections",
    singular: "connection",
    parent: Some(&CLUSTER),
};

/// What a connection peers with, and what the peer may reach.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ConnectionSpec")]
pub struct Connection {
    /// The 12-digit id of the account that owns the peer VPC.
    pub peer_account: String,
    /// The peer VPC's id: `vpc-` and hexadecimal digits.
    pub peer_vpc: String,
    /// The region of the peer VPC.
    pub peer_region: String,
    /// The peer VPC's ranges that the cluster routes to through the peering. None may
    /// overlap the cluster's VPC, pod or Service ranges, or another connection's.
    pub peer_cidrs: Vec<String>,
    /// TCP ports of the cluster's nodes that the peer's ranges may open connections to
    /// (NodePorts, for example). Empty: none; the peer only answers what pods ask.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ports: Vec<u16>,
    /// Every protocol and port of the cluster's nodes is open to the peer's ranges.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_all: bool,
}

/// Where a peering is, in AWS's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PeeringState {
    /// The cloud is looking up the peer VPC.
    InitiatingRequest,
    /// Waiting for the peer account's owner to accept.
    PendingAcceptance,
    /// Accepted; the cloud is setting it up.
    Provisioning,
    /// Carrying traffic.
    Active,
    /// The peer account's owner refused it.
    Rejected,
    /// Not answered in time (AWS: 7 days).
    Expired,
    /// The cloud could not make it: a peer VPC that does not exist, overlapping ranges.
    Failed,
    /// Being removed.
    Deleting,
    /// Removed.
    Deleted,
}

impl PeeringState {
    /// Every state, in the order a peering goes through them.
    pub const ALL: [PeeringState; 9] = [
        PeeringState::InitiatingRequest,
        PeeringState::PendingAcceptance,
        PeeringState::Provisioning,
        PeeringState::Active,
        PeeringState::Rejected,
        PeeringState::Expired,
        PeeringState::Failed,
        PeeringState::Deleting,
        PeeringState::Deleted,
    ];

    /// As AWS spells it: `pending-acceptance`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeeringState::InitiatingRequest => "initiating-request",
            PeeringState::PendingAcceptance => "pending-acceptance",
            PeeringState::Provisioning => "provisioning",
            PeeringState::Active => "active",
            PeeringState::Rejected => "rejected",
            PeeringState::Expired => "expired",
            PeeringState::Failed => "failed",
            PeeringState::Deleting => "deleting",
            PeeringState::Deleted => "deleted",
        }
    }

    /// The state AWS spells `name`.
    pub fn parse(name: &str) -> Option<PeeringState> {
        PeeringState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the peering has ended for good: it can be neither accepted nor deleted, and
    /// the cloud forgets it in time.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PeeringState::Rejected
                | PeeringState::Expired
                | PeeringState::Failed
                | PeeringState::Deleted
        )
    }
}

impl std::fmt::Display for PeeringState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the control plane reports about a connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// The generation of the spec that this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// `Ready` (traffic flows both ways as far as Dialtone's side goes), `Accepted`,
    /// `RoutesReady`, each with what to do next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the peering was asked for: recorded before the request, so that one whose
    /// answer was lost is waited for, not asked for twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<Timestamp>,
    /// The peering's id in the cloud (`pcx-…`), once requested.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peering_id: String,
    /// The peering's state as the cloud reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PeeringState>,
    /// The cloud's own words about the state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state_message: String,
    /// When a request not yet accepted expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The cluster's ranges the customer routes to through the peering (its VPC's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_cidrs: Vec<String>,
    /// The routes to the peer in place, one per route table of the cluster's VPC and
    /// peer range: `rtb-… → 192.168.0.0/16`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// What the customer must do on their side, in order, with the exact commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    /// What a peering does not do: its MTU, no transitive routing, DNS across regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    /// The latest events, oldest first: what drifted and was put back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::cluster::ClusterEvent>,
}

/// How a peer range is read; the error says what is wrong.
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("`{text}` is not an IPv4 CIDR such as 192.168.0.0/16"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set; the network is {}",
            net.trunc()
        ));
    }
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(format!(
            "`{text}` is a /{}; a VPC's ranges are /16 to /28",
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// Whether `id` is an account id: 12 decimal digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `id` is a VPC id: `vpc-` and 8 or 17 hexadecimal digits.
pub fn is_vpc_id(id: &str) -> bool {
    id.strip_prefix("vpc-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The most peer ranges one connection routes to (AWS: five IPv4 ranges per VPC).
pub const MAX_PEER_CIDRS: usize = 5;

impl Kind for Connection {
    const INFO: &'static KindInfo = &CONNECTION;
    type Status = ConnectionStatus;

    fn validate(&self, errors: &mut FieldErrors) {
        if !is_account_id(&self.peer_account) {
            errors.push(
                "spec.peerAccount",
                FieldReason::FieldValueInvalid,
                format!(
                    "`{}` is not an account id: 12 digits, such as 111122223333",
                    self.peer_account
                ),
            );
        }
        if !is_vpc_id(&self.peer_vpc) {
            errors.push(
                "spec.peerVpc",
                FieldReason::FieldValueInvalid,
                format!(
                    "`{}` is not a VPC id: `vpc-` and 8 or 17 hexadecimal digits, such as vpc-0a1b2c3d",
                    self.peer_vpc
                ),
            );
        }
        if self.peer_region.is_empty() {
            errors.push(
                "spec.peerRegion",
                FieldReason::FieldValueRequired,
                "the peer VPC's region is required",
            );
        }
        if self.peer_cidrs.is_empty() {
            errors.push(
                "spec.peerCidrs",
                FieldReason::FieldValueRequired,
                "at least one of the peer VPC's ranges is required",
            );
        }
        if self.peer_cidrs.len() > MAX_PEER_CIDRS {
            errors.push(
                "spec.peerCidrs",
                FieldReason::FieldValueTooLong,
                format!("a VPC has at most {MAX_PEER_CIDRS} IPv4 ranges"),
            );
        }
        let mut parsed: Vec<(usize, Ipv4Net)> = Vec::new();
        for (i, text) in self.peer_cidrs.iter().enumerate() {
            let field = format!("spec.peerCidrs[{i}]");
            match parse_cidr(text) {
                Ok(net) => {
                    if let Some((j, other)) = parsed
                        .iter()
                        .find(|(_, o)| o.contains(&net) || net.contains(o))
                    {
                        errors.push(
                            &field,
                            FieldReason::FieldValueInvalid,
                            format!("{net} overlaps spec.peerCidrs[{j}] ({other})"),
                        );
                    }
                    parsed.push((i, net));
                }
                Err(message) => errors.push(&field, FieldReason::FieldValueInvalid, message),
            }
        }
        for (i, port) in self.allow_ports.iter().enumerate() {
            if *port == 0 {
                errors.push(
                    &format!("spec.allowPorts[{i}]"),
                    FieldReason::FieldValueInvalid,
                    "ports are 1 to 65535",
                );
            }
        }
        if self.allow_all && !self.allow_ports.is_empty() {
            errors.push(
                "spec.allowPorts",
                FieldReason::FieldValueForbidden,
                "spec.allowAll already opens every port; name ports or allow all, not both",
            );
        }
    }
}

impl Connection {
    /// The peer's ranges, as validated.
    pub fn peer_networks(&self) -> Vec<Ipv4Net> {
        self.peer_cidrs
            .iter()
            .filter_map(|c| parse_cidr(c).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Connection {
        Connection {
            peer_account: "111122223333".into(),
            peer_vpc: "vpc-0a1b2c3d".into(),
            peer_region: "us-east-1".into(),
            peer_cidrs: vec!["192.168.0.0/16".into()],
            ..Connection::default()
        }
    }

    fn fields(spec: &Connection) -> Vec<String> {
        let mut errors = FieldErrors::default();
        spec.validate(&mut errors);
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        assert!(fields(&valid()).is_empty());
        let bad = Connection {
            peer_account: "1111-2222-3333".into(),
            peer_vpc: "vpc-xyz".into(),
            peer_region: String::new(),
            peer_cidrs: vec![
                "10.1.0.0/16".into(),
                "10.1.2.0/24".into(),
                "10.1.0.1/16".into(),
                "nonsense".into(),
            ],
            allow_ports: vec![0],
            allow_all: true,
        };
        assert_eq!(
            fields(&bad),
            [
                "spec.peerAccount",
                "spec.peerVpc",
                "spec.peerRegion",
                "spec.peerCidrs[1]",
                "spec.peerCidrs[2]",
                "spec.peerCidrs[3]",
                "spec.allowPorts[0]",
                "spec.allowPorts",
            ]
        );
    }

    #[test]
    fn ids_are_read_as_aws_writes_them() {
        assert!(is_vpc_id("vpc-0a1b2c3d4e5f60718"));
        assert!(!is_vpc_id("vpc-0a1b2c3d4e5f6071"));
        assert!(is_account_id("000000000000"));
        assert!(!is_account_id("00000000000a"));
        assert!(
            PeeringState::ALL
                .iter()
                .all(|s| PeeringState::parse(s.as_str()) == Some(*s))
        );
    }
}
