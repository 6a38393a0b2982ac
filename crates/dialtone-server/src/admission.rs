//! What a kind checks and completes before it is stored, beyond its own fields: the
//! admission step. Most kinds need nothing; a cluster is planned here, so that everything
//! wrong with it is a 4xx before anything is provisioned, and its network is allocated from
//! the org's address plan.

use dialtone_controllers::CONNECTION_FINALIZER;
use dialtone_controllers::cluster::CLUSTER_FINALIZER;
use dialtone_planner::{AddressPlan, ClusterRequest, PlanContext, PlanError};
use dialtone_store::Compare;
use dialtone_store::registry::ListOptions;
use dialtone_store::registry::validate;
use dialtone_types::cluster::{ClusterPlan, ClusterStatus, parse_address_pool};
use dialtone_types::kinds::{CLUSTER, IDENTITY};
use dialtone_types::validation::FieldReason;
use dialtone_types::{
    ApiError, Cluster, ClusterType, Condition, ConditionStatus, Connection, ConnectionStatus,
    FieldErrors, Folder, Group, Identity, Kind, Namespace, Object, Org, Project, ResourcePath,
};
use dialtone_types::{ClusterCondition, Phase};

use crate::App;
use crate::error::HttpResult;
use crate::networks::GuardError;

#[async_trait::async_trait]
pub trait Admission: Kind {
    /// Creates of this kind allocate from a pool shared across the org (cluster networks),
    /// so they hold the network index's allocation lock until the object is stored.
    const ALLOCATES: bool = false;

    /// Whether clients may write the status; when not, only controllers do.
    const CLIENT_STATUS: bool = true;

    /// Completes and checks a new object under `parent` before it is stored.
    async fn admit_create(
        _app: &App,
        _parent: Option<&ResourcePath>,
        _object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        Ok(())
    }

    /// The org's guard of this kind's allocations as it is now, read before admission
    /// decides, so that a create guarded by it fails if another server allocated meanwhile.
    /// An admission that reads what it checks from the store, after the guard, needs no
    /// more than the guard.
    async fn allocation_guard(app: &App, org: &str) -> HttpResult<Compare> {
        Ok(app.registry.allocation_guard(org, Self::INFO).await?)
    }

    /// Admits a new object as [`Admission::admit_create`] does, and says whether it took
    /// something new from the org's pool, so that its create must be guarded against
    /// another server's allocation; one that reuses what the org already holds (a developer
    /// cluster in its project's shared network) need not be. Decided from the same view of
    /// the pool as the admission itself.
    async fn admit_create_allocating(
        app: &App,
        parent: Option<&ResourcePath>,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<bool> {
        Self::admit_create(app, parent, object).await?;
        Ok(Self::ALLOCATES)
    }

    /// Called with the object just created, while the allocation lock is still held.
    fn stored(_app: &App, _object: &Object<Self, Self::Status>) {}

    /// Checks a new spec for the object at `path` before it replaces the current one.
    async fn admit_update(
        _app: &App,
        _path: &ResourcePath,
        _object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        Ok(())
    }
}

/// A connection is for a production cluster, within its type's limit, to a known region,
/// and routes to ranges that clash with nothing the cluster already routes. Where it peers
/// is fixed once asked: another peer is another connection.
#[async_trait::async_trait]
impl Admission for Connection {
    /// Two connections created at once must not both take the last slot or one range.
    const ALLOCATES: bool = true;
    const CLIENT_STATUS: bool = false;

    async fn admit_create(
        app: &App,
        parent: Option<&ResourcePath>,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        let cluster_path = parent.expect("connections live in clusters");
        check_connection(app, cluster_path, object).await?;
        hold_with(&mut object.metadata, CONNECTION_FINALIZER);
        Ok(())
    }

    async fn admit_update(
        app: &App,
        path: &ResourcePath,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        let current: Object<Connection, ConnectionStatus> = app.registry.get(path).await?;
        let mut errors = FieldErrors::default();
        let (old, new) = (&current.spec, &object.spec);
        for (field, changed) in [
            ("spec.peerAccount", old.peer_account != new.peer_account),
            ("spec.peerVpc", old.peer_vpc != new.peer_vpc),
            ("spec.peerRegion", old.peer_region != new.peer_region),
            ("spec.peerCidrs", old.peer_cidrs != new.peer_cidrs),
        ] {
            if changed {
                errors.push(
                    field,
                    FieldReason::FieldValueImmutable,
                    "where a connection peers is fixed; create another connection for another peer or range",
                );
            }
        }
        errors
            .into_result()
            .map_err(|e| ApiError::invalid(e).into())
    }
}

/// Everything wrong with a new connection under `cluster_path`, at once: its own fields
/// and how it fits its cluster.
async fn check_connection(
    app: &App,
    cluster_path: &ResourcePath,
    object: &Object<Connection, ConnectionStatus>,
) -> HttpResult<()> {
    let (name, spec) = (&object.metadata.name, &object.spec);
    let cluster: Object<Cluster, ClusterStatus> = app.registry.get(cluster_path).await?;
    let Some(plan) = &cluster.status.plan else {
        return Err(ApiError::new(
            dialtone_types::Reason::Conflict,
            format!("{cluster_path} has no plan yet; try again once it is provisioning"),
        )
        .into());
    };
    let limit = plan.settings.network.max_connections;
    if limit == 0 {
        return Err(ApiError::new(
            dialtone_types::Reason::Forbidden,
            format!(
                "{cluster_path} is a {} cluster, which shares its project's network and takes no connections (network.maxConnections is 0); connections are for production clusters, which have a VPC of their own",
                plan.cluster_type.name()
            ),
        )
        .into());
    }
    let mut errors = validate(object);
    let regions = app.provider.regions();
    if !spec.peer_region.is_empty() && !regions.iter().any(|r| r.name == spec.peer_region) {
        let names: Vec<&str> = regions.iter().map(|r| r.name).collect();
        errors.push(
            "spec.peerRegion",
            FieldReason::FieldValueInvalid,
            format!(
                "unknown region `{}`; valid regions: {}",
                spec.peer_region,
                names.join(", ")
            ),
        );
    }
    let existing: Vec<Object<Connection, ConnectionStatus>> =
        app.registry.list_under::<Connection>(cluster_path).await?;
    let others: Vec<_> = existing
        .iter()
        .filter(|c| c.metadata.name != *name && c.metadata.deletion_timestamp.is_none())
        .collect();
    if others.len() >= limit as usize {
        return Err(ApiError::new(
            dialtone_types::Reason::Conflict,
            format!(
                "{cluster_path} has {} connections, the most its type allows (network.maxConnections: {limit}); delete one first",
                others.len()
            ),
        )
        .into());
    }
    let network = &plan.network;
    let mut taken: Vec<(String, ipnet::Ipv4Net)> = vec![
        ("the cluster's VPC range".into(), network.vpc_cidr),
        ("the cluster's pod range".into(), network.pod_cidr),
        ("the cluster's Service range".into(), network.service_cidr),
    ];
    for other in &others {
        for net in other.spec.peer_networks() {
            taken.push((format!("connection `{}`", other.metadata.name), net));
        }
    }
    for (i, text) in spec.peer_cidrs.iter().enumerate() {
        let Ok(net) = dialtone_types::connection::parse_cidr(text) else {
            continue;
        };
        if let Some((what, clash)) = taken
            .iter()
            .find(|(_, t)| t.contains(&net) || net.contains(t))
        {
            errors.push(
                &format!("spec.peerCidrs[{i}]"),
                FieldReason::FieldValueInvalid,
                format!("{net} overlaps {what} ({clash}); peered networks must not overlap"),
            );
        }
    }
    errors
        .into_result()
        .map_err(|e| ApiError::invalid(e).into())
}

/// Adds `finalizer` to the object's, once: its controller's cleanup holds it.
fn hold_with(meta: &mut dialtone_types::ObjectMeta, finalizer: &str) {
    if !meta.finalizers.iter().any(|f| f == finalizer) {
        meta.finalizers.push(finalizer.to_string());
    }
}

impl Admission for Org {}
impl Admission for Folder {}
impl Admission for Project {}
impl Admission for Identity {}

/// Names Kubernetes keeps for itself.
#[async_trait::async_trait]
impl Admission for Namespace {
    async fn admit_create(
        _app: &App,
        _parent: Option<&ResourcePath>,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        if object.metadata.name.starts_with("kube-") {
            let mut errors = FieldErrors::default();
            errors.push(
                "metadata.name",
                FieldReason::FieldValueForbidden,
                "names starting with `kube-` are Kubernetes' own",
            );
            return Err(ApiError::invalid(errors).into());
        }
        Ok(())
    }
}

/// A group's members are identities of its org.
#[async_trait::async_trait]
impl Admission for Group {
    async fn admit_create(
        app: &App,
        parent: Option<&ResourcePath>,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        match parent {
            Some(org) => check_members(app, org, &object.spec).await,
            None => Ok(()),
        }
    }

    async fn admit_update(
        app: &App,
        path: &ResourcePath,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        check_members(app, &ResourcePath::org(path.org_name()), &object.spec).await
    }
}

async fn check_members(app: &App, org: &ResourcePath, group: &Group) -> HttpResult<()> {
    let identities = app
        .registry
        .list_raw(&IDENTITY, Some(org), &ListOptions::default(), &|_| true)
        .await?;
    let known: std::collections::HashSet<&str> = identities
        .items
        .iter()
        .map(|i| i.metadata.name.as_str())
        .collect();
    let mut errors = FieldErrors::default();
    for (i, member) in group.members.iter().enumerate() {
        if !known.contains(member.as_str()) {
            errors.push(
                &format!("spec.members[{i}]"),
                FieldReason::FieldValueInvalid,
                format!("no identity `{member}` in {org}"),
            );
        }
    }
    errors
        .into_result()
        .map_err(|e| ApiError::invalid(e).into())
}

/// Every problem of the object: its own fields first, then its version's, then what the
/// planner found.
fn all_problems(
    object: &Object<Cluster, ClusterStatus>,
    version: Option<&str>,
    planned: Option<PlanError>,
) -> ApiError {
    let mut errors = validate(object);
    if let Some(message) = version {
        errors.push(
            "spec.kubernetesVersion",
            FieldReason::FieldValueInvalid,
            message,
        );
    }
    for problem in planned.into_iter().flat_map(|e| e.0) {
        errors.push(
            problem.field,
            FieldReason::FieldValueInvalid,
            problem.message,
        );
    }
    ApiError::invalid(errors)
}

/// Plans the cluster, or says everything wrong with it at once (`version` is what the
/// version catalogue found wrong with its version). With an unknown type, the rest of the
/// spec is still checked, against the developer type's rules.
fn plan_or_problems(
    object: &Object<Cluster, ClusterStatus>,
    version: Option<&str>,
    context: &PlanContext<'_>,
) -> Result<ClusterPlan, ApiError> {
    let known_type = ClusterType::parse(&object.spec.cluster_type).is_ok();
    let request = request_of(&object.metadata.name, &object.spec);
    match dialtone_planner::plan(&request, context) {
        Ok(plan) if known_type && version.is_none() && validate(object).is_empty() => Ok(plan),
        Ok(_) => Err(all_problems(object, version, None)),
        Err(problems) if known_type => Err(all_problems(object, version, Some(problems))),
        Err(PlanError(problems)) => {
            let type_independent = problems
                .into_iter()
                .filter(|p| !matches!(p.field, "spec.minNodes" | "spec.maxNodes"))
                .collect();
            Err(all_problems(
                object,
                version,
                Some(PlanError(type_independent)),
            ))
        }
    }
}

/// What is wrong with running `spec`'s version in its channel today, if anything. A
/// version the planner cannot read is the planner's to report.
fn version_problem(app: &App, spec: &Cluster) -> Option<String> {
    let version = &spec.kubernetes_version;
    if version.is_empty() {
        // Named none, and the channel had none to give.
        return Some(format!(
            "the {} channel offers no supported minor today; the version catalogue needs newer releases",
            spec.channel()
        ));
    }
    dialtone_planner::versions::minor_of(version)?;
    let today = dialtone_planner::versions::day_of((app.clock)());
    app.versions
        .current()
        .check(version, spec.channel(), today)
        .err()
}

/// Refuses to start an upgrade while another is under way.
fn upgrade_under_way(current: &Object<Cluster, ClusterStatus>) -> HttpResult<()> {
    let status = &current.status;
    let planned = status.plan.as_ref().map(|p| p.kubernetes_version.as_str());
    let release = status.version.as_ref().map(|v| v.release.as_str());
    let behind = status
        .nodes
        .iter()
        .filter(|n| {
            !n.kubernetes_version.is_empty() && Some(n.kubernetes_version.as_str()) != release
        })
        .count();
    let message = if planned.is_some_and(|p| p != current.spec.kubernetes_version) {
        format!(
            "the move to {} has not started yet; wait for it to finish",
            current.spec.kubernetes_version
        )
    } else if behind > 0 {
        format!(
            "an upgrade to {} is under way ({behind} of {} nodes still to go); wait for it to finish",
            release.unwrap_or_default(),
            status.nodes.len()
        )
    } else {
        return Ok(());
    };
    Err(ApiError::new(dialtone_types::Reason::Conflict, message).into())
}

/// The planner's request; an unknown type is checked as developer so the rest of the spec
/// still gets checked.
fn request_of(name: &str, spec: &Cluster) -> ClusterRequest {
    let cluster_type = ClusterType::parse(&spec.cluster_type).unwrap_or(ClusterType::Developer);
    ClusterRequest::from_spec(name, cluster_type, spec)
}

async fn org_pool(app: &App, org: &str) -> HttpResult<ipnet::Ipv4Net> {
    let org: Object<Org> = app.registry.get(&ResourcePath::org(org)).await?;
    parse_address_pool(org.spec.address_plan()).map_err(|message| {
        let mut errors = FieldErrors::default();
        errors.push(
            "org.spec.addressPlan",
            FieldReason::FieldValueInvalid,
            message,
        );
        ApiError::invalid(errors).into()
    })
}

fn pin_spec(spec: &mut Cluster, plan: &ClusterPlan) {
    // Defaults become explicit, as Kubernetes does, so that later plans read the same spec.
    spec.kubernetes_version = plan.kubernetes_version.clone();
    spec.release_channel = Some(plan.settings.upgrade.channel);
    spec.min_nodes = Some(plan.workers.min_nodes);
    spec.max_nodes = Some(plan.workers.max_nodes);
    spec.deletion_protection
        .get_or_insert(plan.settings.security.deletion_protection);
}

/// The decision whose value is each new cluster's default deletion protection, as the
/// messages name it.
const DELETION_PROTECTION: &str = "security.deletionProtection";

/// Refuses a delete that would remove a cluster whose deletion protection is on: the
/// cluster itself, or with `cascade`, any cluster below the node.
pub async fn check_deletion_protection(
    app: &App,
    path: &ResourcePath,
    cascade: bool,
) -> HttpResult<()> {
    let is_cluster = path.kind().plural == CLUSTER.plural;
    let clusters: Vec<Object<Cluster, ClusterStatus>> = if is_cluster {
        vec![app.registry.get(path).await?]
    } else if cascade && path.kind().depth() < CLUSTER.depth() {
        app.registry.list_under::<Cluster>(path).await?
    } else {
        return Ok(());
    };
    let Some(protected) = clusters
        .iter()
        .find(|c| c.spec.deletion_protection == Some(true))
    else {
        return Ok(());
    };
    let name = &protected.metadata.name;
    let cluster = ResourcePath::parse(&protected.metadata.parent)
        .map(|p| p.child(&CLUSTER, name).to_string())
        .unwrap_or_else(|_| name.clone());
    let message = if is_cluster {
        format!(
            "cluster {cluster} has deletion protection on ({DELETION_PROTECTION}); turn it off first: `dialtone cluster update {cluster} --deletion-protection=false`"
        )
    } else {
        format!(
            "{path} holds cluster {cluster}, which has deletion protection on ({DELETION_PROTECTION}); turn it off first: `dialtone cluster update {cluster} --deletion-protection=false`"
        )
    };
    Err(ApiError::new(dialtone_types::Reason::Conflict, message).into())
}

#[async_trait::async_trait]
impl Admission for Cluster {
    const ALLOCATES: bool = true;
    const CLIENT_STATUS: bool = false;

    async fn admit_create(
        app: &App,
        parent: Option<&ResourcePath>,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        Self::admit_create_allocating(app, parent, object)
            .await
            .map(drop)
    }

    /// Clusters are planned from this server's network index, so the guard waits until the
    /// index reflects it.
    async fn allocation_guard(app: &App, org: &str) -> HttpResult<Compare> {
        app.networks
            .guard(&app.registry, org)
            .await
            .map_err(|e| match e {
                GuardError::Registry(e) => e.into(),
                GuardError::Behind(revision) => ApiError::new(
                    dialtone_types::Reason::ServiceUnavailable,
                    format!(
                        "this server's view of the clusters has not caught up with the store (revision {revision}); retry shortly"
                    ),
                )
                .into(),
            })
    }

    async fn admit_create_allocating(
        app: &App,
        parent: Option<&ResourcePath>,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<bool> {
        let parent = parent.expect("clusters live in projects");
        let request = request_of(&object.metadata.name, &object.spec);
        // The caller holds the allocation lock until the cluster, which records its network,
        // is stored: two clusters never get the same network.
        let org = parent.org_name().to_string();
        let pool = org_pool(app, &org).await?;
        let networks = app.networks.of_org(&org);
        let parent_text = parent.to_string();
        let shared = (request.cluster_type == ClusterType::Developer)
            .then(|| {
                networks
                    .iter()
                    .find(|n| n.parent == parent_text && n.shared && n.region == request.region)
            })
            .flatten()
            .map(|n| n.vpc_cidr);
        let mut allocated: Vec<_> = networks.iter().map(|n| n.vpc_cidr).collect();
        allocated.sort();
        allocated.dedup();
        let context = PlanContext {
            catalog: app.provider.catalog(),
            address_plan: &AddressPlan {
                pool,
                allocated,
                start: app.regions.pool_share(),
            },
            existing_vpc: shared,
            kept_families: None,
        };
        let now = (app.clock)();
        if object.spec.kubernetes_version.is_empty()
            && let Some(newest) = app.versions.current().default_minor(
                object.spec.channel(),
                dialtone_planner::versions::day_of(now),
            )
        {
            object.spec.kubernetes_version = newest.minor.clone();
        }
        let version = version_problem(app, &object.spec);
        let plan = plan_or_problems(object, version.as_deref(), &context)?;
        pin_spec(&mut object.spec, &plan);
        object.status = ClusterStatus {
            observed_generation: 1,
            phase: Some(Phase::Provisioning),
            conditions: vec![Condition {
                type_: ClusterCondition::Provisioning.as_str().into(),
                status: ConditionStatus::True,
                reason: "Planned".into(),
                message: "planned; provisioning starts shortly".into(),
                last_transition_time: now,
            }],
            plan: Some(plan),
            ..Default::default()
        };
        hold_with(&mut object.metadata, CLUSTER_FINALIZER);
        Ok(shared.is_none())
    }

    fn stored(app: &App, object: &Object<Self, Self::Status>) {
        let Some(plan) = &object.status.plan else {
            return;
        };
        if let Ok(project) = ResourcePath::parse(&object.metadata.parent) {
            app.networks.record(
                &project.child(&CLUSTER, &object.metadata.name),
                plan,
                object.metadata.resource_version.parse().unwrap_or(0),
            );
        }
    }

    async fn admit_update(
        app: &App,
        path: &ResourcePath,
        object: &mut Object<Self, Self::Status>,
    ) -> HttpResult<()> {
        let current: Object<Cluster, ClusterStatus> = app.registry.get(path).await?;
        if object.spec.kubernetes_version.is_empty() {
            object.spec.kubernetes_version = current.spec.kubernetes_version.clone();
        }
        if object.spec.deletion_protection.is_none() {
            object.spec.deletion_protection = current.spec.deletion_protection;
        }
        let mut errors = FieldErrors::default();
        current.spec.immutable_changes(&object.spec, &mut errors);
        errors.into_result().map_err(ApiError::invalid)?;
        let version = (object.spec.kubernetes_version != current.spec.kubernetes_version)
            .then(|| version_problem(app, &object.spec))
            .flatten();
        if object.spec.kubernetes_version != current.spec.kubernetes_version && version.is_none() {
            upgrade_under_way(&current)?;
        }
        let pool = org_pool(app, path.org_name()).await?;
        let context = PlanContext {
            catalog: app.provider.catalog(),
            address_plan: &AddressPlan {
                pool,
                allocated: Vec::new(),
                start: Default::default(),
            },
            existing_vpc: current.status.plan.as_ref().map(|p| p.network.vpc_cidr),
            kept_families: dialtone_planner::kept_families(
                current.status.plan.as_ref(),
                &object.spec.kubernetes_version,
            ),
        };
        let plan = plan_or_problems(object, version.as_deref(), &context)?;
        pin_spec(&mut object.spec, &plan);
        Ok(())
    }
}
