//! Access policies at scale: the authorization check on a tree of about 100,000 nodes with
//! 1,000,000 bindings, next to a scan of every binding (what an index-free check costs)
//! and to upstream RBAC semantics evaluated over one cluster's projected objects; and the
//! projection of one cluster with 500 namespaces.
//!
//! `cargo run --release -p dialtone-bench --bin policy`

use std::time::{Duration, Instant};

use dialtone_kubeapi::rbac::{self, Listed, Request, UserInfo};
use dialtone_policy::projection::{Managed, project};
use dialtone_policy::{
    Binding, Catalogue, Level, NodeId, Permission, Policies, Subject, TreeResource, TreeVerb,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FOLDERS: usize = 100;
const PROJECTS: usize = 10;
const CLUSTERS: usize = 10;
const NAMESPACES: usize = 9;
const USERS: usize = 10_000;
const GROUPS: usize = 1_000;
const BINDINGS: usize = 1_000_000;
const CHECKS: usize = 1_000_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.3} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(5);
    let started = Instant::now();
    let mut policies = Policies::new(Catalogue::default());
    let org = policies.add_node(None, "acme", Level::Org).unwrap();
    let mut clusters = Vec::new();
    for f in 0..FOLDERS {
        let folder = policies
            .add_node(Some(org), &format!("f{f}"), Level::Folder)
            .unwrap();
        for p in 0..PROJECTS {
            let project = policies
                .add_node(Some(folder), &format!("p{p}"), Level::Project)
                .unwrap();
            for c in 0..CLUSTERS {
                let cluster = policies
                    .add_node(Some(project), &format!("c{c}"), Level::Cluster)
                    .unwrap();
                clusters.push(cluster);
                for n in 0..NAMESPACES {
                    policies
                        .add_node(Some(cluster), &format!("ns{n}"), Level::Namespace)
                        .unwrap();
                }
            }
        }
    }
    // One cluster with 500 namespaces, for the projection.
    let big = policies
        .add_node(policies.parent(clusters[0]), "big", Level::Cluster)
        .unwrap();
    for n in 0..500 {
        policies
            .add_node(Some(big), &format!("team-{n}"), Level::Namespace)
            .unwrap();
    }
    let nodes: Vec<NodeId> = policies.nodes().collect();
    for u in 0..USERS {
        policies.add_user(&format!("user-{u}"));
    }
    for g in 0..GROUPS {
        policies.add_group(&format!("group-{g}"));
    }
    let mut members: Vec<Vec<String>> = vec![Vec::new(); GROUPS];
    for u in 0..USERS {
        for _ in 0..3 {
            members[rng.random_range(0..GROUPS)].push(format!("user-{u}"));
        }
    }
    for (g, users) in members.iter().enumerate() {
        policies.set_members(&format!("group-{g}"), users).unwrap();
    }
    let roles: Vec<(String, Level)> = policies
        .catalogue()
        .roles()
        .iter()
        .map(|r| (r.name.clone(), r.level))
        .collect();
    let mut per_node: Vec<Vec<Binding>> = vec![Vec::new(); nodes.len()];
    for _ in 0..BINDINGS {
        let i = rng.random_range(0..nodes.len());
        let level = policies.level(nodes[i]);
        let bindable: Vec<&(String, Level)> = roles.iter().filter(|(_, l)| level <= *l).collect();
        let role = bindable[rng.random_range(0..bindable.len())].0.clone();
        let subject = if rng.random_bool(0.8) {
            Subject::User(format!("user-{}", rng.random_range(0..USERS)))
        } else {
            Subject::Group(format!("group-{}", rng.random_range(0..GROUPS)))
        };
        per_node[i].push(Binding { role, subject });
    }
    for (i, bindings) in per_node.iter().enumerate() {
        policies.set_bindings(nodes[i], bindings).unwrap();
    }
    println!(
        "tree: {} nodes, {} bindings, {USERS} users in {GROUPS} groups (3 each); built in {:.1} s",
        nodes.len(),
        BINDINGS,
        started.elapsed().as_secs_f64()
    );

    // The check, one call at a time (each sample includes reading the clock, ~20 ns).
    let permissions: Vec<Permission> = TreeResource::ALL
        .into_iter()
        .flat_map(|r| {
            TreeVerb::ALL
                .into_iter()
                .map(move |v| Permission::new(v, r))
        })
        .collect();
    let queries: Vec<(String, Permission, NodeId)> = (0..CHECKS)
        .map(|_| {
            (
                format!("user-{}", rng.random_range(0..USERS)),
                permissions[rng.random_range(0..permissions.len())],
                nodes[rng.random_range(0..nodes.len())],
            )
        })
        .collect();
    let mut samples = Vec::with_capacity(CHECKS);
    let mut granted = 0usize;
    for (user, permission, node) in &queries {
        let start = Instant::now();
        let allowed = policies.allowed(user, *permission, *node);
        samples.push(start.elapsed());
        granted += allowed as usize;
    }
    let (p50, p99) = (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    );
    // As a request does it: the caller resolved once, then its checks (a list filters
    // every item with one).
    let callers: Vec<_> = queries
        .iter()
        .map(|(user, _, _)| policies.caller(user).expect("a known user"))
        .collect();
    let mut resolved_samples = Vec::with_capacity(CHECKS);
    for ((_, permission, node), caller) in queries.iter().zip(&callers) {
        let start = Instant::now();
        std::hint::black_box(policies.allows(caller, *permission, *node));
        resolved_samples.push(start.elapsed());
    }
    let resolved_p50 = percentile(&mut resolved_samples, 0.5);
    let resolved_p99 = percentile(&mut resolved_samples, 0.99);

    // Without an index: every binding scanned, as a naive check would.
    let all = policies.all_bindings();
    let mut scan_samples = Vec::new();
    for (user, permission, node) in queries.iter().take(200) {
        let start = Instant::now();
        let path = policies.path(*node);
        let groups = policies.groups(user);
        let allowed = all.iter().any(|(at, b)| {
            let at = policies.path(*at);
            (path == at || path.starts_with(&format!("{at}/")))
                && match &b.subject {
                    Subject::User(u) => u == user,
                    g @ Subject::Group(_) => groups.contains(&g.to_string()),
                }
                && policies
                    .catalogue()
                    .get(&b.role)
                    .unwrap()
                    .permissions
                    .has(*permission)
        });
        std::hint::black_box(allowed);
        scan_samples.push(start.elapsed());
    }
    let scan_p50 = percentile(&mut scan_samples, 0.5);

    // Upstream RBAC semantics over one cluster's projected objects (a sim cluster's
    // authorizer), for the same kind of question inside a cluster.
    let cluster = clusters[rng.random_range(0..clusters.len())];
    let mut projected = Listed {
        cluster_roles: dialtone_kubeapi::defaults::cluster_roles(),
        ..Listed::default()
    };
    for object in project(&policies, cluster) {
        match object.to_object() {
            Managed::ClusterRole(o) => projected.cluster_roles.push(o),
            Managed::ClusterRoleBinding(o) => projected.cluster_role_bindings.push(o),
            Managed::RoleBinding(o) => projected.role_bindings.push(o),
        }
    }
    // The same questions answered by scanning every binding (decoding each, as a sim
    // cluster did) and by the index a sim cluster now keeps, side by side.
    let index = rbac::RbacIndex::build(&projected);
    let mut rbac_samples = Vec::new();
    let mut indexed_samples = Vec::new();
    for i in 0..20_000 {
        let user = UserInfo {
            name: format!("user-{}", i % USERS),
            groups: Vec::new(),
        };
        let request = Request::Resource {
            verb: "get".into(),
            namespace: format!("ns{}", i % NAMESPACES),
            api_group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            name: String::new(),
        };
        let start = Instant::now();
        let scanned = std::hint::black_box(rbac::authorize(&projected, &user, &request));
        rbac_samples.push(start.elapsed());
        let start = Instant::now();
        let indexed = std::hint::black_box(index.authorize(&user, &request));
        indexed_samples.push(start.elapsed());
        assert_eq!(scanned, indexed, "the index must decide as the scan does");
    }
    let indexed_p50 = percentile(&mut indexed_samples, 0.5);
    let indexed_p99 = percentile(&mut indexed_samples, 0.99);
    let rbac_p50 = percentile(&mut rbac_samples, 0.5);
    let rbac_p99 = percentile(&mut rbac_samples, 0.99);

    println!(
        "check ({CHECKS} random user × permission × node, {:.1} % allowed): p50 {}, p99 {}",
        granted as f64 * 100.0 / CHECKS as f64,
        micros(p50),
        micros(p99)
    );
    println!(
        "  with the caller resolved once per request: p50 {}, p99 {}",
        micros(resolved_p50),
        micros(resolved_p99)
    );
    println!(
        "  scan of every binding (no index), 200 checks: p50 {} ({:.0}× the check)",
        millis(scan_p50),
        scan_p50.as_secs_f64() / p50.as_secs_f64()
    );
    println!(
        "  upstream RBAC semantics over one cluster's {} projected bindings, scanned: p50 {}, p99 {} ({:.1}× the check's p99)",
        projected.cluster_role_bindings.len() + projected.role_bindings.len(),
        micros(rbac_p50),
        micros(rbac_p99),
        rbac_p99.as_secs_f64() / p99.as_secs_f64()
    );
    println!(
        "  the same, indexed by subject (a sim cluster's authorizer): p50 {}, p99 {} ({:.0}× faster at p99 than the scan)",
        micros(indexed_p50),
        micros(indexed_p99),
        rbac_p99.as_secs_f64() / indexed_p99.as_secs_f64()
    );

    let mut projection_samples = Vec::new();
    let mut objects = 0;
    for _ in 0..50 {
        let start = Instant::now();
        objects = project(&policies, big).len();
        projection_samples.push(start.elapsed());
    }
    println!(
        "projection of one cluster with 500 namespaces ({objects} objects): p50 {}, p99 {}",
        millis(percentile(&mut projection_samples, 0.5)),
        millis(percentile(&mut projection_samples, 0.99))
    );
}
