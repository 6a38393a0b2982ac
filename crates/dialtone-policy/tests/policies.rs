//! Random trees, bindings, groups and edit sequences, checked against models that know
//! nothing of the index: (a) the authorization check equals a reference oracle over the
//! bindings as written; (b) upstream RBAC semantics over each cluster's projected objects
//! grant exactly the Kubernetes access the tree grants; (c) projecting only the clusters an
//! edit touches keeps every cluster's objects equal to a projection from scratch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use dialtone_kubeapi::rbac::{self, Listed, Request, UserInfo};
use dialtone_policy::projection::{Desired, Managed, ObjectKind, changes, project};
use dialtone_policy::{
    Binding, Catalogue, KubeGrant, Level, NodeId, Permission, Permissions, Policies, Role, Subject,
    TreeResource, TreeVerb,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use proptest::prelude::*;

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const GROUPS: [&str; 3] = ["eng", "ops", "audit"];

/// The tree's shape: folders, projects per folder, clusters per project, namespaces per
/// cluster.
#[derive(Clone, Debug)]
struct Shape(Vec<Vec<Vec<usize>>>);

#[derive(Clone, Debug)]
enum Edit {
    /// Set the bindings of the node at this index (modulo the live nodes).
    Bind(usize, Vec<(usize, usize)>),
    /// Set a group's members (bit i = USERS[i]).
    Members(usize, u8),
    /// Add a namespace to the cluster at this index.
    AddNamespace(usize),
    /// Remove the namespace or cluster at this index.
    Remove(usize),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(0usize..3, 1..3), 1..3),
        1..3,
    )
    .prop_map(Shape)
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0usize..64, prop::collection::vec((0usize..64, 0usize..7), 0..3))
            .prop_map(|(n, b)| Edit::Bind(n, b)),
        2 => (0usize..GROUPS.len(), any::<u8>()).prop_map(|(g, m)| Edit::Members(g, m)),
        1 => (0usize..64).prop_map(Edit::AddNamespace),
        1 => (0usize..64).prop_map(Edit::Remove),
    ]
}

/// The world as the test writes it, independent of the index.
struct Model {
    policies: Policies,
    catalogue: Catalogue,
    bindings: BTreeMap<String, Vec<Binding>>,
    members: BTreeMap<String, BTreeSet<String>>,
    next_namespace: usize,
}

fn subject(i: usize) -> Subject {
    if i < USERS.len() {
        Subject::User(USERS[i].to_string())
    } else {
        Subject::Group(GROUPS[(i - USERS.len()) % GROUPS.len()].to_string())
    }
}

impl Model {
    fn new(shape: &Shape) -> Model {
        let mut policies = Policies::new(Catalogue::default());
        let org = policies.add_node(None, "acme", Level::Org).unwrap();
        for (f, projects) in shape.0.iter().enumerate() {
            let folder = policies
                .add_node(Some(org), &format!("f{f}"), Level::Folder)
                .unwrap();
            for (p, clusters) in projects.iter().enumerate() {
                let project = policies
                    .add_node(Some(folder), &format!("p{p}"), Level::Project)
                    .unwrap();
                for (c, &namespaces) in clusters.iter().enumerate() {
                    let cluster = policies
                        .add_node(Some(project), &format!("c{c}"), Level::Cluster)
                        .unwrap();
                    for n in 0..namespaces {
                        policies
                            .add_node(Some(cluster), &format!("ns{n}"), Level::Namespace)
                            .unwrap();
                    }
                }
            }
        }
        for user in USERS {
            policies.add_user(user);
        }
        for group in GROUPS {
            policies.add_group(group);
        }
        Model {
            policies,
            catalogue: Catalogue::default(),
            bindings: BTreeMap::new(),
            members: BTreeMap::new(),
            next_namespace: 100,
        }
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.policies.nodes().collect()
    }

    fn of_level(&self, level: Level) -> Vec<NodeId> {
        self.nodes()
            .into_iter()
            .filter(|&n| self.policies.level(n) == level)
            .collect()
    }

    /// Applies an edit; returns the clusters whose projection it may change.
    fn apply(&mut self, edit: &Edit) -> Vec<NodeId> {
        let catalogue = self.catalogue.clone();
        match edit {
            Edit::Bind(n, wanted) => {
                let nodes = self.nodes();
                let node = nodes[n % nodes.len()];
                let level = self.policies.level(node);
                let bindable: Vec<&str> = catalogue
                    .roles()
                    .iter()
                    .filter(|r| r.bindable_at(level))
                    .map(|r| r.name.as_str())
                    .collect();
                let bindings: Vec<Binding> = wanted
                    .iter()
                    .map(|&(r, s)| Binding {
                        role: bindable[r % bindable.len()].to_string(),
                        subject: subject(s),
                    })
                    .collect();
                self.policies.set_bindings(node, &bindings).unwrap();
                self.bindings
                    .insert(self.policies.path(node).to_string(), bindings);
                self.policies.clusters_under(node)
            }
            Edit::Members(g, mask) => {
                let users: Vec<String> = USERS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, u)| u.to_string())
                    .collect();
                // The clusters reached before the change, and after: both may change.
                let mut touched = self.policies.clusters_reached_by(GROUPS[*g]);
                self.policies.set_members(GROUPS[*g], &users).unwrap();
                touched.extend(self.policies.clusters_reached_by(GROUPS[*g]));
                self.members
                    .insert(GROUPS[*g].to_string(), users.into_iter().collect());
                touched
            }
            Edit::AddNamespace(c) => {
                let clusters = self.of_level(Level::Cluster);
                if clusters.is_empty() {
                    return Vec::new();
                }
                let cluster = clusters[c % clusters.len()];
                self.next_namespace += 1;
                let ns = self
                    .policies
                    .add_node(
                        Some(cluster),
                        &format!("ns{}", self.next_namespace),
                        Level::Namespace,
                    )
                    .unwrap();
                self.policies.clusters_under(ns)
            }
            Edit::Remove(i) => {
                let removable: Vec<NodeId> = self
                    .nodes()
                    .into_iter()
                    .filter(|&n| self.policies.level(n) >= Level::Cluster)
                    .collect();
                if removable.is_empty() {
                    return Vec::new();
                }
                let node = removable[i % removable.len()];
                let touched = self.policies.clusters_under(node);
                let path = self.policies.path(node).to_string();
                self.bindings
                    .retain(|p, _| p != &path && !p.starts_with(&format!("{path}/")));
                self.policies.remove_node(node);
                // A removed cluster has nothing to project.
                touched
                    .into_iter()
                    .filter(|&c| self.policies.nodes().any(|n| n == c))
                    .collect()
            }
        }
    }

    fn is_member(&self, user: &str, group: &str) -> bool {
        self.members.get(group).is_some_and(|m| m.contains(user))
    }

    fn names(&self, subject: &Subject, user: &str) -> bool {
        match subject {
            Subject::User(u) => u == user,
            Subject::Group(g) => self.is_member(user, g),
        }
    }

    /// The bindings as written that apply at `path` (its own and its ancestors') to `user`.
    fn applicable(&self, user: &str, path: &str) -> Vec<(&str, &Binding)> {
        self.bindings
            .iter()
            .filter(|(at, _)| path == at.as_str() || path.starts_with(&format!("{at}/")))
            .flat_map(|(at, bindings)| bindings.iter().map(move |b| (at.as_str(), b)))
            .filter(|(_, b)| self.names(&b.subject, user))
            .collect()
    }

    /// The reference oracle: a scan of every binding as written.
    fn allowed(&self, user: &str, permission: Permission, path: &str) -> bool {
        self.applicable(user, path).iter().any(|(_, b)| {
            self.catalogue
                .get(&b.role)
                .unwrap()
                .permissions
                .has(permission)
        })
    }
}

fn permissions() -> Vec<Permission> {
    TreeResource::ALL
        .into_iter()
        .flat_map(|r| {
            TreeVerb::ALL
                .into_iter()
                .map(move |v| Permission::new(v, r))
        })
        .collect()
}

/// A cluster's RBAC as upstream evaluates it: its default roles and the projected objects.
fn cluster_rbac(projected: &[Desired]) -> Listed {
    let mut rbac = Listed {
        cluster_roles: dialtone_kubeapi::defaults::cluster_roles(),
        ..Listed::default()
    };
    for object in projected {
        match object.to_object() {
            Managed::ClusterRole(o) => rbac.cluster_roles.push(o),
            Managed::ClusterRoleBinding(o) => rbac.cluster_role_bindings.push(o),
            Managed::RoleBinding(o) => rbac.role_bindings.push(o),
        }
    }
    rbac
}

/// Kubernetes requests worth asking: reads and writes of namespaced and cluster-wide
/// resources, in each of the cluster's namespaces and one the tree does not know.
fn kube_requests(namespaces: &[String]) -> Vec<Request> {
    let mut requests = Vec::new();
    let resources = [
        ("", "pods", true),
        ("apps", "deployments", true),
        ("", "secrets", true),
        ("rbac.authorization.k8s.io", "rolebindings", true),
        ("", "nodes", false),
        ("", "namespaces", false),
    ];
    let mut scopes: Vec<String> = namespaces.to_vec();
    scopes.push("default".into());
    for verb in ["get", "list", "create", "delete"] {
        for (group, resource, namespaced) in resources {
            let in_scopes: Vec<String> = if namespaced {
                scopes.clone()
            } else {
                vec![String::new()]
            };
            for namespace in in_scopes {
                requests.push(Request::Resource {
                    verb: verb.into(),
                    namespace,
                    api_group: group.into(),
                    resource: resource.into(),
                    subresource: String::new(),
                    name: String::new(),
                });
            }
        }
    }
    requests
}

/// The Kubernetes access the tree grants, from the bindings as written: cluster-level roles
/// on the cluster or above reach everywhere in it; namespace roles above a namespace reach
/// every namespace of the cluster; bindings on a namespace, that namespace.
fn tree_grants(model: &Model, cluster: NodeId, user: &str, request: &Request) -> bool {
    static DEFAULTS: OnceLock<Vec<ClusterRole>> = OnceLock::new();
    let defaults = DEFAULTS.get_or_init(dialtone_kubeapi::defaults::cluster_roles);
    let catalogue = &model.catalogue;
    let cluster_path = model.policies.path(cluster).to_string();
    let Request::Resource { namespace, .. } = request else {
        return false;
    };
    let namespaces: Vec<String> = model
        .policies
        .subtree(cluster, Level::Namespace)
        .into_iter()
        .map(|n| {
            model
                .policies
                .path(n)
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut paths = vec![cluster_path.clone()];
    if !namespace.is_empty() && namespaces.contains(namespace) {
        paths.push(format!("{cluster_path}/{namespace}"));
    }
    paths.iter().any(|path| {
        model.applicable(user, path).iter().any(|(at, binding)| {
            let role = catalogue.get(&binding.role).unwrap();
            let reaches = if role.level <= Level::Cluster {
                true
            } else {
                // A namespace role: only for requests inside a namespace of the tree.
                !namespace.is_empty() && namespaces.contains(namespace) && {
                    let bound_on_namespace = at.len() > cluster_path.len();
                    !bound_on_namespace || *at == format!("{cluster_path}/{namespace}")
                }
            };
            let KubeGrant::Upstream(upstream) = role.kube else {
                return false;
            };
            let rules = defaults
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(upstream))
                .and_then(|r| r.rules.clone())
                .unwrap_or_default();
            reaches && rules.iter().any(|rule| rbac::rule_allows(rule, request))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_check_the_projection_and_incremental_projection_agree_with_their_models(
        shape in shape(),
        edits in prop::collection::vec(edit(), 1..24),
    ) {
        let mut model = Model::new(&shape);
        let mut cache: HashMap<NodeId, Vec<Desired>> = model
            .of_level(Level::Cluster)
            .into_iter()
            .map(|c| (c, project(&model.policies, c)))
            .collect();
        for (step, edit) in edits.iter().enumerate() {
            for cluster in model.apply(edit) {
                cache.insert(cluster, project(&model.policies, cluster));
            }
            let clusters = model.of_level(Level::Cluster);
            cache.retain(|c, _| clusters.contains(c));

            // (a) The check equals the oracle, for every user, node and permission.
            for node in model.nodes() {
                let path = model.policies.path(node).to_string();
                for user in USERS {
                    for permission in permissions() {
                        prop_assert_eq!(
                            model.policies.allowed(user, permission, node),
                            model.allowed(user, permission, &path),
                            "{} {:?} on {}", user, permission, path
                        );
                    }
                }
            }
            for &cluster in &clusters {
                // (c) Incremental projection equals projection from scratch.
                let fresh = project(&model.policies, cluster);
                prop_assert_eq!(cache.get(&cluster), Some(&fresh), "{}", model.policies.path(cluster));
                // What a cluster holds reads back as what was projected: nothing to change.
                let read_back: Vec<Desired> = fresh
                    .iter()
                    .filter_map(|d| Desired::from_object(&d.to_object()))
                    .collect();
                prop_assert!(changes(&read_back, &fresh).is_empty());

                // (b) Upstream RBAC over the projection grants what the tree grants: every
                // few edits, and at the end.
                if step % 4 != 3 && step + 1 != edits.len() {
                    continue;
                }
                let rbac = cluster_rbac(&fresh);
                let index = rbac::RbacIndex::build(&rbac);
                let namespaces: Vec<String> = model
                    .policies
                    .subtree(cluster, Level::Namespace)
                    .into_iter()
                    .map(|n| model.policies.path(n).rsplit('/').next().unwrap().to_string())
                    .collect();
                for user in USERS {
                    let info = UserInfo { name: user.to_string(), groups: Vec::new() };
                    for request in kube_requests(&namespaces) {
                        let decision = rbac::authorize(&rbac, &info, &request);
                        prop_assert_eq!(
                            decision.allowed,
                            tree_grants(&model, cluster, user, &request),
                            "{} {:?} in {}", user, request, model.policies.path(cluster)
                        );
                        // The index a sim cluster authorizes with decides the same, for
                        // the same reason.
                        prop_assert_eq!(index.authorize(&info, &request), decision);
                    }
                }
            }
        }
    }
}

#[test]
fn bad_bindings_are_refused_whole() {
    let mut model = Model::new(&Shape(vec![vec![vec![1]]]));
    let folder = model.policies.node("acme/f0").unwrap();
    model
        .policies
        .set_bindings(
            folder,
            &[Binding {
                role: "cluster.view".into(),
                subject: Subject::User("alice".into()),
            }],
        )
        .unwrap();
    let problems = model
        .policies
        .set_bindings(
            folder,
            &[
                Binding {
                    role: "cluster.edit".into(),
                    subject: Subject::User("alice".into()),
                },
                Binding {
                    role: "nosuch.role".into(),
                    subject: Subject::User("alice".into()),
                },
                Binding {
                    role: "org.view".into(),
                    subject: Subject::User("mallory".into()),
                },
            ],
        )
        .unwrap_err();
    assert_eq!(
        problems,
        [
            "bindings[1].role: unknown role `nosuch.role`",
            "bindings[2].role: `org.view` reaches orgs and cannot be bound on a folder",
            "bindings[2].subject: unknown subject `user:mallory`",
        ]
    );
    // Nothing changed.
    assert_eq!(
        model.policies.bindings(folder),
        [Binding {
            role: "cluster.view".into(),
            subject: Subject::User("alice".into()),
        }]
    );
    let cluster = model.policies.node("acme/f0/p0/c0").unwrap();
    let get_pods_cluster = Permission::new(TreeVerb::Get, TreeResource::Clusters);
    let grants = model.policies.explain("alice", get_pods_cluster, cluster);
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].node, "acme/f0");
    assert_eq!(grants[0].role, "cluster.view");
    assert!(
        model
            .policies
            .explain(
                "alice",
                Permission::new(TreeVerb::Get, TreeResource::Folders),
                folder
            )
            .is_empty(),
        "cluster.view does not show the folder itself"
    );
}

#[test]
fn a_changed_role_is_created_before_the_old_binding_goes() {
    let mut model = Model::new(&Shape(vec![vec![vec![2]]]));
    let folder = model.policies.node("acme/f0").unwrap();
    let cluster = model.policies.node("acme/f0/p0/c0").unwrap();
    let bind = |model: &mut Model, role: &str| {
        let binding = Binding {
            role: role.into(),
            subject: Subject::User("alice".into()),
        };
        model.policies.set_bindings(folder, &[binding]).unwrap();
        project(&model.policies, cluster)
    };
    let before = bind(&mut model, "cluster.view");
    let after = bind(&mut model, "cluster.edit");
    let plan = changes(&before, &after);
    let names =
        |list: &[Desired]| -> Vec<String> { list.iter().map(|d| d.key.name.to_string()).collect() };
    assert_eq!(names(&plan.create), ["dialtone:cluster.edit@acme:f0"]);
    assert_eq!(
        plan.delete
            .iter()
            .map(|k| k.name.to_string())
            .collect::<Vec<_>>(),
        ["dialtone:cluster.view@acme:f0"]
    );
    assert!(plan.update.is_empty() && plan.replace.is_empty());
    let Managed::ClusterRoleBinding(crb) = after[0].to_object() else {
        panic!("a ClusterRoleBinding: {after:?}");
    };
    assert_eq!(crb.role_ref.name, "edit");
    let annotations = crb.metadata.annotations.unwrap();
    assert_eq!(annotations["dialtone.dev/granted-on"], "acme/f0");
    // Namespace roles on the folder: a RoleBinding in each of the cluster's namespaces.
    let namespaced = bind(&mut model, "namespace.view");
    let namespaces: Vec<&str> = namespaced.iter().map(|d| &*d.key.namespace).collect();
    assert_eq!(namespaces, ["ns0", "ns1"]);
}

#[test]
fn nobody_grants_more_than_they_hold() {
    let mut model = Model::new(&Shape(vec![vec![vec![1]]]));
    let project = model.policies.node("acme/f0/p0").unwrap();
    let cluster = model.policies.node("acme/f0/p0/c0").unwrap();
    let bind = |role: &str, user: &str| Binding {
        role: role.into(),
        subject: Subject::User(user.into()),
    };
    model
        .policies
        .set_bindings(
            project,
            &[bind("project.admin", "alice"), bind("cluster.edit", "bob")],
        )
        .unwrap();
    let catalogue = Catalogue::default();
    let role = |name: &str| catalogue.get(name).unwrap();
    // A project admin may grant anything up to project.admin on the project and below.
    for granted in ["project.view", "cluster.admin", "namespace.edit"] {
        assert_eq!(
            model.policies.escalation("alice", cluster, role(granted)),
            None,
            "{granted}"
        );
    }
    // But not folder roles (they reach the folder, which alice cannot touch).
    let refused = model
        .policies
        .escalation("alice", project, role("folder.view"));
    assert!(refused.unwrap().contains("get folders"));
    // A cluster editor may hand out cluster.view, not cluster.admin's cluster-admin.
    assert_eq!(
        model
            .policies
            .escalation("bob", cluster, role("cluster.view")),
        None
    );
    assert!(
        model
            .policies
            .escalation("bob", cluster, role("cluster.admin"))
            .is_some()
    );
    assert!(
        model
            .policies
            .escalation("carol", cluster, role("namespace.view"))
            .is_some()
    );
}

/// `acme/eng/web/prod`: an org, a folder, a project and a cluster, with no bindings.
fn one_cluster(catalogue: Catalogue) -> (Policies, [NodeId; 4]) {
    let mut policies = Policies::new(catalogue);
    let org = policies.add_node(None, "acme", Level::Org).unwrap();
    let folder = policies.add_node(Some(org), "eng", Level::Folder).unwrap();
    let project = policies
        .add_node(Some(folder), "web", Level::Project)
        .unwrap();
    let cluster = policies
        .add_node(Some(project), "prod", Level::Cluster)
        .unwrap();
    (policies, [org, folder, project, cluster])
}

#[test]
fn changes_say_what_to_create_update_replace_and_delete() {
    let mut model = Model::new(&Shape(vec![vec![vec![1]]]));
    let cluster = model.policies.node("acme/f0/p0/c0").unwrap();
    let mut set = |bindings: &[(&str, &str)]| {
        let bindings: Vec<Binding> = bindings
            .iter()
            .map(|(role, user)| Binding {
                role: role.to_string(),
                subject: Subject::User(user.to_string()),
            })
            .collect();
        model.policies.set_bindings(cluster, &bindings).unwrap();
        project(&model.policies, cluster)
    };
    let alice = set(&[("cluster.view", "alice")]);
    let shown: Vec<String> = alice.iter().map(|d| d.key.to_string()).collect();
    assert_eq!(
        shown,
        ["ClusterRoleBinding/dialtone:cluster.view@acme:f0:p0:c0"]
    );
    let both = set(&[("cluster.view", "alice"), ("cluster.view", "bob")]);
    let mut edit = alice.clone();
    edit[0].role_ref = Some("edit".into());

    let nothing = changes(&alice, &alice);
    assert!(nothing.is_empty(), "{nothing:?}");
    // Each kind of change alone makes the changes non-empty.
    let create = changes(&[], &alice);
    assert_eq!(create.create, alice);
    let update = changes(&alice, &both);
    assert_eq!(update.update, both, "another subject is an update in place");
    let replace = changes(&alice, &edit);
    assert_eq!(replace.replace, edit, "a roleRef cannot change in place");
    assert!(replace.update.is_empty());
    let delete = changes(&alice, &[]);
    assert_eq!(delete.delete, [alice[0].key.clone()]);
    for (what, plan) in [
        ("create", create),
        ("update", update),
        ("replace", replace),
        ("delete", delete),
    ] {
        assert!(!plan.is_empty(), "a plan that only has to {what}");
    }
}

#[test]
fn a_custom_role_is_cast_into_a_cluster_role_of_its_own() {
    let mut catalogue = Catalogue::default();
    let rules = vec![PolicyRule {
        api_groups: Some(vec!["apps".into()]),
        resources: Some(vec!["deployments".into()]),
        verbs: vec!["get".into(), "update".into()],
        ..Default::default()
    }];
    catalogue
        .add(Role {
            name: "deployer".into(),
            level: Level::Cluster,
            permissions: Permissions::default()
                .with(Permission::new(TreeVerb::Get, TreeResource::Clusters)),
            kube: KubeGrant::Rules(rules.clone()),
            description: "updates deployments".into(),
        })
        .unwrap();
    let (mut policies, [.., cluster]) = one_cluster(catalogue);
    policies.add_user("alice");
    policies
        .set_bindings(
            cluster,
            &[Binding {
                role: "deployer".into(),
                subject: Subject::User("alice".into()),
            }],
        )
        .unwrap();
    let objects = project(&policies, cluster);
    let role = objects
        .iter()
        .find(|d| d.key.kind == ObjectKind::ClusterRole)
        .expect("the custom role's ClusterRole");
    assert_eq!(&*role.key.name, "dialtone:role:deployer");
    assert_eq!(role.rules.as_deref(), Some(rules.as_slice()));
    let binding = objects
        .iter()
        .find(|d| d.key.kind == ObjectKind::ClusterRoleBinding)
        .expect("alice's binding");
    assert_eq!(binding.role_ref.as_deref(), Some("dialtone:role:deployer"));
    assert_eq!(&*binding.subjects, [std::sync::Arc::from("alice")]);
}

#[test]
fn the_tree_goes_down_one_level_at_a_time_and_forgets_what_is_removed() {
    let mut policies = Policies::new(Catalogue::default());
    let org = policies.add_node(None, "acme", Level::Org).unwrap();
    assert_eq!(
        policies.add_node(None, "eng", Level::Folder),
        Err("a folder needs a parent".to_string())
    );
    assert_eq!(
        policies.add_node(Some(org), "web", Level::Project),
        Err("a project cannot sit under a org".to_string())
    );
    let folder = policies.add_node(Some(org), "eng", Level::Folder).unwrap();
    assert_eq!(
        policies.add_node(Some(org), "eng", Level::Folder),
        Err("acme/eng already exists".to_string())
    );
    let project = policies
        .add_node(Some(folder), "web", Level::Project)
        .unwrap();
    let cluster = policies
        .add_node(Some(project), "prod", Level::Cluster)
        .unwrap();
    let namespace = policies
        .add_node(Some(cluster), "payments", Level::Namespace)
        .unwrap();
    assert_eq!(policies.path(namespace), "acme/eng/web/prod/payments");
    assert_eq!(policies.node("acme/eng/web/prod"), Some(cluster));
    assert_eq!(policies.level(cluster), Level::Cluster);
    assert_eq!(policies.parent(cluster), Some(project));
    assert_eq!(policies.parent(org), None);
    assert_eq!(policies.children(folder), [project]);
    assert_eq!(
        policies.ancestry(namespace).collect::<Vec<_>>(),
        [namespace, cluster, project, folder, org]
    );
    assert_eq!(policies.clusters_under(namespace), [cluster]);
    assert_eq!(policies.clusters_under(org), [cluster]);

    policies.add_user("alice");
    let view = Binding {
        role: "cluster.view".into(),
        subject: Subject::User("alice".into()),
    };
    policies
        .set_bindings(project, std::slice::from_ref(&view))
        .unwrap();
    let see_clusters = Permission::new(TreeVerb::Get, TreeResource::Clusters);
    assert!(policies.allowed("alice", see_clusters, cluster));
    policies.remove_node(project);
    assert_eq!(policies.node("acme/eng/web"), None);
    assert_eq!(policies.node("acme/eng/web/prod/payments"), None);
    assert!(policies.children(folder).is_empty());
    assert_eq!(policies.nodes().collect::<Vec<_>>(), [org, folder]);
    assert!(!policies.allowed("alice", see_clusters, cluster));
    assert!(policies.grants_on("alice", cluster).is_empty());
    assert_eq!(
        policies.add_node(Some(project), "again", Level::Cluster),
        Err("no such parent".to_string())
    );
    assert_eq!(
        policies.set_bindings(project, &[view]),
        Err(vec!["no such node".to_string()])
    );
    // The name is free again.
    let again = policies
        .add_node(Some(folder), "web", Level::Project)
        .unwrap();
    assert_ne!(again, project);
    assert!(
        policies.bindings(again).is_empty(),
        "a re-created node starts with no policy"
    );
}

#[test]
fn subjects_groups_and_custom_roles_are_checked_by_name() {
    assert_eq!(
        Subject::parse("user:alice"),
        Ok(Subject::User("alice".into()))
    );
    assert_eq!(
        Subject::parse("group:eng"),
        Ok(Subject::Group("eng".into()))
    );
    for bad in ["user:", "group:", "alice", "robot:r2", ""] {
        assert!(Subject::parse(bad).is_err(), "{bad}");
    }

    let mut catalogue = Catalogue::default();
    let custom = |name: &str| Role {
        name: name.into(),
        level: Level::Cluster,
        permissions: Permissions::default(),
        kube: KubeGrant::None,
        description: String::new(),
    };
    assert!(catalogue.add(custom("cluster.view")).is_err(), "built-in");
    catalogue.add(custom("auditor")).unwrap();
    assert!(catalogue.add(custom("auditor")).is_err(), "taken");
    assert_eq!(catalogue.roles().len(), 17);
    let policies = Policies::new(catalogue);
    assert!(policies.catalogue().get("auditor").is_some());

    let (mut policies, [org, .., cluster]) = one_cluster(Catalogue::default());
    assert_eq!(
        policies.set_members("eng", &["alice".into()]),
        Err("no group `eng`".to_string())
    );
    policies.add_group("eng");
    assert!(policies.knows(&Subject::Group("eng".into())));
    assert!(!policies.knows(&Subject::User("alice".into())));
    assert_eq!(
        policies.set_members("eng", &["alice".into()]),
        Err("no user `alice`".to_string())
    );
    policies.restore_members("eng", &["bob".into(), "alice".into(), "bob".into()]);
    assert_eq!(policies.members("eng"), ["alice", "bob"]);
    assert_eq!(policies.groups("alice"), ["group:eng"]);
    policies
        .set_bindings(
            org,
            &[Binding {
                role: "cluster.edit".into(),
                subject: Subject::Group("eng".into()),
            }],
        )
        .unwrap();
    assert_eq!(policies.clusters_reached_by("eng"), [cluster]);
    assert!(policies.clusters_reached_by("ops").is_empty());
    let edit = Permission::new(TreeVerb::Update, TreeResource::Clusters);
    assert!(policies.allowed("bob", edit, cluster));
    // Leaving the group takes the grant away, and nothing else.
    policies.set_members("eng", &["alice".into()]).unwrap();
    assert!(!policies.allowed("bob", edit, cluster));
    assert!(policies.groups("bob").is_empty());
    assert!(policies.allowed("alice", edit, cluster));
    assert_eq!(policies.effective("bob", cluster), Permissions::default());
    assert!(policies.effective("alice", cluster).has(edit));
}

#[test]
fn stored_bindings_are_restored_by_name_and_unknown_roles_grant_nothing() {
    let (mut policies, [_, folder, _, cluster]) = one_cluster(Catalogue::default());
    let ghost_views = Binding {
        role: "cluster.view".into(),
        subject: Subject::User("ghost".into()),
    };
    policies.restore_bindings(
        folder,
        &[
            ghost_views.clone(),
            Binding {
                role: "retired.role".into(),
                subject: Subject::User("ghost".into()),
            },
        ],
    );
    assert_eq!(
        policies.bindings(folder),
        std::slice::from_ref(&ghost_views)
    );
    assert_eq!(policies.all_bindings(), [(folder, ghost_views)]);
    // An identity re-created under the name gets the binding back, as upstream RBAC binds
    // by name.
    let see_clusters = Permission::new(TreeVerb::Get, TreeResource::Clusters);
    assert!(policies.allowed("ghost", see_clusters, cluster));
    assert_eq!(policies.explain("ghost", see_clusters, cluster).len(), 1);
}

#[test]
fn kubernetes_access_is_granted_only_by_someone_who_holds_it_as_strongly() {
    let mut catalogue = Catalogue::default();
    // Roles that give Kubernetes access and nothing of Dialtone's, so that only the
    // strength of that access decides.
    let kube_only = |name: &str, kube| Role {
        name: name.into(),
        level: Level::Cluster,
        permissions: Permissions::default(),
        kube,
        description: String::new(),
    };
    catalogue
        .add(kube_only("edits-everywhere", KubeGrant::Upstream("edit")))
        .unwrap();
    catalogue
        .add(kube_only("deployer", KubeGrant::Rules(Vec::new())))
        .unwrap();
    let (mut policies, [.., cluster]) = one_cluster(catalogue.clone());
    let mut bindings = Vec::new();
    for (user, role) in [
        ("alice", "namespace.edit"),
        ("bob", "cluster.edit"),
        ("carol", "cluster.admin"),
    ] {
        policies.add_user(user);
        bindings.push(Binding {
            role: role.into(),
            subject: Subject::User(user.into()),
        });
    }
    policies.set_bindings(cluster, &bindings).unwrap();
    let role = |name| catalogue.get(name).unwrap();
    let refused = |user, name| policies.escalation(user, cluster, role(name)).is_some();
    // Edit in every namespace outranks edit in each: alice may not hand it out, bob may.
    assert!(refused("alice", "edits-everywhere"));
    assert!(!refused("bob", "edits-everywhere"));
    // A custom role's rules rank with cluster-admin.
    assert!(refused("bob", "deployer"));
    assert!(!refused("carol", "deployer"));
    assert!(!refused("alice", "namespace.view"));
}
