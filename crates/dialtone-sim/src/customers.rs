//! The other side of a peering: customers' accounts, the VPCs they own, and their answers to
//! peering requests. A customer's resources are invisible to the provider's own calls, as
//! another AWS account's are; only the sim's operator API (`dialtone sim account …`) acts
//! as the customer.

use dialtone_cloud::{
    CloudError, CloudResource, CloudResult, PeeringState, PeeringStatus, Region, ResourceKind,
    ResourceSpec, ResourceState,
};
use ipnet::Ipv4Net;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::persist::{Table, Write};
use crate::{Peering, Record, Sim, State, after, invalid, json, latency};

/// The account the provider's own calls act in: Dialtone's.
pub const OWN_ACCOUNT: &str = "100000000000";

/// A customer's account as its owner sees it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    /// The VPCs it owns.
    pub vpcs: Vec<CloudResource>,
    /// The peering requests made to its VPCs, to accept or reject.
    pub peerings: Vec<CloudResource>,
}

/// Checks that `id` is a peering with a VPC of `account` and in `wanted` now: another
/// account's, or a resource that is no peering, is not found; one in another state is
/// refused, saying `why`.
fn expect_peering(
    state: &State,
    account: &str,
    id: &str,
    wanted: PeeringState,
    why: &str,
    now: Timestamp,
) -> CloudResult<()> {
    let not_found = || CloudError::NotFound { id: id.to_string() };
    let record = state.records.get(id).ok_or_else(not_found)?;
    match &record.resource.spec {
        ResourceSpec::VpcPeering { peer_account, .. } if peer_account == account => {}
        _ => return Err(not_found()),
    }
    let seen = state.observe(record, now).ok_or_else(not_found)?;
    match seen.peering.map(|p| p.state) {
        Some(state) if state == wanted => Ok(()),
        current => Err(invalid(format!(
            "{id} is {}; {why}",
            current.map_or("gone", PeeringState::as_str)
        ))),
    }
}

/// A peering's state now, and how the provider's generic state reads it.
pub(crate) fn peering_state(
    record: &Record,
    peering: &Peering,
    now: Timestamp,
) -> (ResourceState, PeeringStatus) {
    let ResourceSpec::VpcPeering { peer_account, .. } = &record.resource.spec else {
        unreachable!("only peerings carry a peering's state")
    };
    let ended = |reason: &str| ResourceState::Terminated {
        reason: reason.to_string(),
    };
    let (state, generic, message) = if record.gone_at.is_some() {
        let message = "Deleting".to_string();
        (PeeringState::Deleting, ResourceState::Deleting, message)
    } else if now < record.ready_at {
        let message = format!("Initiating Request to {peer_account}");
        (
            PeeringState::InitiatingRequest,
            ResourceState::Pending,
            message,
        )
    } else if let Some(failure) = &peering.failure {
        (PeeringState::Failed, ended(failure), failure.clone())
    } else {
        match peering.answer {
            Some((_, false)) => {
                let message = format!("Rejected by {peer_account}");
                (PeeringState::Rejected, ended(&message), message)
            }
            Some((active_at, true)) if now < active_at => (
                PeeringState::Provisioning,
                ResourceState::Pending,
                "Provisioning".to_string(),
            ),
            Some(_) => (
                PeeringState::Active,
                ResourceState::Available,
                "Active".to_string(),
            ),
            None if now >= peering.expires_at => {
                let message = format!("Expired: {peer_account} did not answer in time");
                (PeeringState::Expired, ended(&message), message)
            }
            None => (
                PeeringState::PendingAcceptance,
                ResourceState::Pending,
                format!("Pending Acceptance by {peer_account}"),
            ),
        }
    };
    let status = PeeringStatus {
        state,
        message,
        peer_cidr: peering.peer_cidr,
        expires_at: (peering.answer.is_none() && peering.failure.is_none())
            .then_some(peering.expires_at),
    };
    (generic, status)
}

impl Sim {
    /// The deadlines and outcome of a peering request as it is made: it fails (as AWS's
    /// does, after it was accepted as a request) when the peer VPC does not exist in the
    /// account and region named, or its range overlaps the requester's.
    pub(crate) fn request_peering(
        &self,
        state: &State,
        spec: &ResourceSpec,
        now: Timestamp,
    ) -> CloudResult<Peering> {
        let ResourceSpec::VpcPeering {
            vpc_id,
            peer_account,
            peer_vpc_id,
            peer_region,
        } = spec
        else {
            unreachable!("called for peerings")
        };
        self.region(peer_region)?;
        if peer_account.len() != 12 || !peer_account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!(
                "`{peer_account}` is not an account id (12 digits)"
            )));
        }
        let range = |record: Option<&Record>| match record.map(|r| &r.resource.spec) {
            Some(ResourceSpec::Vpc { cidr }) => Some(*cidr),
            _ => None,
        };
        let own_range = range(state.records.get(vpc_id));
        let peer = state.records.get(peer_vpc_id).filter(|r| {
            r.is_live()
                && r.resource.region == *peer_region
                && r.owner() == peer_account
                && r.resource.spec.kind() == ResourceKind::Vpc
        });
        let peer_cidr = range(peer);
        let failure = match (own_range, peer_cidr) {
            (_, None) => Some(format!(
                "Failed: the peer VPC {peer_vpc_id} does not exist in account {peer_account} in {peer_region}"
            )),
            (Some(own), Some(peer)) if own.contains(&peer) || peer.contains(&own) => Some(format!(
                "Failed: the peer VPC's range {peer} overlaps the requester's {own}"
            )),
            _ => None,
        };
        let expiry =
            SignedDuration::try_from(self.options.peering_expiry).unwrap_or(SignedDuration::MAX);
        Ok(Peering {
            expires_at: now.checked_add(expiry).unwrap_or(Timestamp::MAX),
            failure,
            peer_cidr,
            answer: None,
        })
    }

    /// Opens a customer's account, with a new 12-digit id.
    pub async fn create_account(&self) -> CloudResult<Account> {
        let (id, queued) = {
            let mut state = self.lock();
            let id = loop {
                let drawn: u64 =
                    rand::Rng::random_range(&mut state.rng, 200_000_000_000..1_000_000_000_000);
                let id = drawn.to_string();
                if id != OWN_ACCOUNT && !state.accounts.contains(&id) {
                    break id;
                }
            };
            state.accounts.insert(id.clone());
            let writes = vec![Self::meta_write("accounts", json(&state.accounts))];
            (id, self.queue(writes))
        };
        self.persist(queued).await?;
        Ok(self.account(&id).expect("just opened"))
    }

    /// Every customer's account, by id.
    pub fn accounts(&self) -> Vec<String> {
        self.lock().accounts.iter().cloned().collect()
    }

    /// A customer's account with what it owns and is asked; `None` for an unknown one.
    pub fn account(&self, id: &str) -> Option<Account> {
        let now = Timestamp::now();
        let state = self.lock();
        if !state.accounts.contains(id) {
            return None;
        }
        let mut account = Account {
            id: id.to_string(),
            vpcs: Vec::new(),
            peerings: Vec::new(),
        };
        for record in state.records.values() {
            let seen = || state.observe(record, now);
            match &record.resource.spec {
                ResourceSpec::Vpc { .. } if record.account.as_deref() == Some(id) => {
                    account.vpcs.extend(seen());
                }
                ResourceSpec::VpcPeering { peer_account, .. } if peer_account == id => {
                    account.peerings.extend(seen());
                }
                _ => {}
            }
        }
        Some(account)
    }

    /// Makes a VPC in a customer's account.
    pub async fn create_customer_vpc(
        &self,
        account: &str,
        region: &str,
        cidr: Ipv4Net,
    ) -> CloudResult<CloudResource> {
        let region: &Region = self.region(region)?;
        if cidr.trunc() != cidr || !(16..=28).contains(&cidr.prefix_len()) {
            return Err(invalid(format!(
                "`{cidr}` is not a VPC range: a network of /16 to /28"
            )));
        }
        let now = Timestamp::now();
        let (created, queued) = {
            let mut state = self.lock();
            if !state.accounts.contains(account) {
                return Err(CloudError::NotFound {
                    id: format!("account {account}"),
                });
            }
            state.counters.next_resource += 1;
            let id = format!("vpc-{:017x}", state.counters.next_resource);
            let record = Record {
                resource: CloudResource {
                    id: id.clone(),
                    region: region.name.to_string(),
                    spec: ResourceSpec::Vpc { cidr },
                    tags: Default::default(),
                    state: ResourceState::Pending,
                    address: String::new(),
                    created_at: now,
                    peering: None,
                },
                client_token: format!("{account}/{id}"),
                ready_at: now,
                gone_at: None,
                boot_failure: None,
                died: None,
                hung: None,
                listed_from: None,
                account: Some(account.to_string()),
                requested: None,
                requested_tags: None,
                peering: None,
                user_data: None,
            };
            let writes = vec![
                Write {
                    table: Table::Resources,
                    key: id.clone(),
                    value: Some(json(&record)),
                },
                Self::meta_write("counters", json(&state.counters)),
            ];
            state.insert(record);
            let created = state
                .observe(&state.records[&id], now)
                .expect("just created");
            (created, self.queue(writes))
        };
        self.persist(queued).await?;
        Ok(created)
    }

    /// The customer `account` deletes the active peering `id` with one of its VPCs, as the
    /// accepter may on AWS; the requester is told only by its describes.
    pub async fn delete_peering_as_customer(&self, account: &str, id: &str) -> CloudResult<()> {
        let now = Timestamp::now();
        let queued = {
            let mut state = self.lock();
            expect_peering(
                &state,
                account,
                id,
                PeeringState::Active,
                "the accepter deletes only an active peering",
                now,
            )?;
            let record = state
                .modify(id, |record| record.gone_at = Some(now))
                .expect("found above");
            let writes = vec![Write {
                table: Table::Resources,
                key: id.to_string(),
                value: Some(json(record)),
            }];
            self.queue(writes)
        };
        self.persist(queued).await
    }

    /// The customer `account` accepts (or rejects) the peering request `id` made to one of
    /// its VPCs, as `aws ec2 accept-vpc-peering-connection` does. Only a request pending
    /// acceptance can be answered.
    pub async fn answer_peering(
        &self,
        account: &str,
        id: &str,
        accept: bool,
    ) -> CloudResult<CloudResource> {
        let now = Timestamp::now();
        let (answered, queued) = {
            let mut state = self.lock();
            expect_peering(
                &state,
                account,
                id,
                PeeringState::PendingAcceptance,
                "only a request pending acceptance can be answered",
                now,
            )?;
            let settled_at = match accept {
                true => after(now, latency::PEERING_STEP_MS, self.options.time_scale),
                false => now,
            };
            let record = state
                .modify(id, |record| {
                    if let Some(peering) = &mut record.peering {
                        peering.answer = Some((settled_at, accept));
                    }
                })
                .expect("found above");
            let bytes = json(record);
            state.schedule(settled_at, id);
            let answered = state
                .observe(&state.records[id], now)
                .expect("still listed");
            let writes = vec![Write {
                table: Table::Resources,
                key: id.to_string(),
                value: Some(bytes),
            }];
            (answered, self.queue(writes))
        };
        self.persist(queued).await?;
        Ok(answered)
    }
}
