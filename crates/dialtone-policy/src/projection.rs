//! A cluster's effective policy cast into native Kubernetes RBAC.
//!
//! For each node from the org down to the cluster, each role with Kubernetes access bound
//! there becomes one binding: a ClusterRoleBinding for roles of cluster level and above, a
//! RoleBinding in every namespace of the cluster for namespace roles; bindings on a
//! namespace node become RoleBindings in that namespace. Groups are expanded into their
//! members, so that a membership change takes effect through the projection (within
//! seconds) rather than when credentials expire. Custom roles' rules become ClusterRoles
//! of their own. Every object is labelled as managed by Dialtone, annotated with the node
//! and role that grant it, and named after them (`dialtone:cluster.view@acme:eng`), so the
//! same policy always gives the same objects, and a change of role is a new object.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject as KubeSubject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::roles::{KubeGrant, Level, Role};
use crate::tree::{NodeId, Policies};

/// The label on every object Dialtone manages, which the drift guard and the projection
/// recognise them by.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dialtone");
/// The tree node whose policy grants a managed object.
pub const GRANTED_ON: &str = "dialtone.dev/granted-on";
/// The role of the tree whose grant a managed object casts.
pub const ROLE: &str = "dialtone.dev/role";

/// What identifies a managed object in its cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Which RBAC kind it is.
    pub kind: ObjectKind,
    /// Empty for cluster-wide objects.
    pub namespace: Arc<str>,
    /// The object's name.
    pub name: Arc<str>,
}

/// `Kind/name` or `Kind/namespace/name`, as previews and logs show an object.
impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ObjectKind::ClusterRole => "ClusterRole",
            ObjectKind::ClusterRoleBinding => "ClusterRoleBinding",
            ObjectKind::RoleBinding => "RoleBinding",
        };
        match self.namespace.is_empty() {
            true => write!(f, "{kind}/{}", self.name),
            false => write!(f, "{kind}/{}/{}", self.namespace, self.name),
        }
    }
}

/// The RBAC kinds Dialtone writes into a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A custom role's rules.
    ClusterRole,
    /// A grant across the cluster (from a policy on the cluster or above it).
    ClusterRoleBinding,
    /// A grant in one namespace.
    RoleBinding,
}

/// One RBAC object Dialtone manages in a cluster, in a compact form that shares what many
/// objects have in common (a namespace role bound on a folder is one binding in each of a
/// cluster's namespaces): compared as is, turned into a Kubernetes object only when it has
/// to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Which object it is.
    pub key: Key,
    /// The bound ClusterRole, for bindings.
    pub role_ref: Option<Arc<str>>,
    /// The users bound, sorted.
    pub subjects: Arc<[Arc<str>]>,
    /// A custom role's rules, for its ClusterRole.
    pub rules: Option<Arc<[PolicyRule]>>,
    /// The tree node whose policy grants it (empty for a custom role's ClusterRole).
    pub granted_on: Arc<str>,
    /// The tree's role whose grant it casts.
    pub role: Arc<str>,
}

/// A Kubernetes RBAC object.
#[derive(Clone, Debug, PartialEq)]
pub enum Managed {
    /// See [`ObjectKind::ClusterRole`].
    ClusterRole(ClusterRole),
    /// See [`ObjectKind::ClusterRoleBinding`].
    ClusterRoleBinding(ClusterRoleBinding),
    /// See [`ObjectKind::RoleBinding`].
    RoleBinding(RoleBinding),
}

impl Desired {
    /// The Kubernetes object.
    pub fn to_object(&self) -> Managed {
        let namespace = (!self.key.namespace.is_empty()).then(|| self.key.namespace.to_string());
        let metadata = ObjectMeta {
            name: Some(self.key.name.to_string()),
            namespace,
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (GRANTED_ON.to_string(), self.granted_on.to_string()),
                (ROLE.to_string(), self.role.to_string()),
            ])),
            ..Default::default()
        };
        let role_ref = RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: self.role_ref.as_deref().unwrap_or_default().to_string(),
        };
        let subjects = Some(
            self.subjects
                .iter()
                .map(|user| KubeSubject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name: user.to_string(),
                    namespace: None,
                })
                .collect(),
        );
        match self.key.kind {
            ObjectKind::ClusterRole => Managed::ClusterRole(ClusterRole {
                metadata,
                rules: self.rules.as_deref().map(<[PolicyRule]>::to_vec),
                aggregation_rule: None,
            }),
            ObjectKind::ClusterRoleBinding => Managed::ClusterRoleBinding(ClusterRoleBinding {
                metadata,
                role_ref,
                subjects,
            }),
            ObjectKind::RoleBinding => Managed::RoleBinding(RoleBinding {
                metadata,
                role_ref,
                subjects,
            }),
        }
    }

    /// What a managed object found in a cluster stands for; `None` for objects Dialtone
    /// does not manage.
    pub fn from_object(object: &Managed) -> Option<Desired> {
        let (kind, metadata, role_ref, subjects, rules) = match object {
            Managed::ClusterRole(o) => (
                ObjectKind::ClusterRole,
                &o.metadata,
                None,
                &None,
                o.rules.clone(),
            ),
            Managed::ClusterRoleBinding(o) => (
                ObjectKind::ClusterRoleBinding,
                &o.metadata,
                Some(&o.role_ref),
                &o.subjects,
                None,
            ),
            Managed::RoleBinding(o) => (
                ObjectKind::RoleBinding,
                &o.metadata,
                Some(&o.role_ref),
                &o.subjects,
                None,
            ),
        };
        let labels = metadata.labels.as_ref()?;
        if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1) {
            return None;
        }
        let annotation = |key: &str| -> Arc<str> {
            metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .map_or("", String::as_str)
                .into()
        };
        Some(Desired {
            key: Key {
                kind,
                namespace: metadata.namespace.as_deref().unwrap_or_default().into(),
                name: metadata.name.as_deref().unwrap_or_default().into(),
            },
            role_ref: role_ref.map(|r| r.name.as_str().into()),
            subjects: subjects
                .iter()
                .flatten()
                .map(|s| Arc::from(s.name.as_str()))
                .collect::<Vec<_>>()
                .into(),
            rules: rules.map(Into::into),
            granted_on: annotation(GRANTED_ON),
            role: annotation(ROLE),
        })
    }
}

/// How every name of an object the projection makes starts; such names are Dialtone's
/// alone in every cluster.
pub const NAME_PREFIX: &str = "dialtone:";

/// The name of the ClusterRole a custom role is cast into.
pub fn custom_cluster_role(role: &str) -> String {
    format!("{NAME_PREFIX}role:{role}")
}

fn binding_name(role: &Role, node_path: &str) -> String {
    format!("{NAME_PREFIX}{}@{}", role.name, node_path.replace('/', ":"))
}

fn role_ref(role: &Role) -> Option<Arc<str>> {
    match &role.kube {
        KubeGrant::None => None,
        KubeGrant::Upstream(name) => Some((*name).into()),
        KubeGrant::Rules(_) => Some(custom_cluster_role(&role.name).into()),
    }
}

/// The RBAC objects cluster `cluster` must hold, sorted by key.
pub fn project(policies: &Policies, cluster: NodeId) -> Vec<Desired> {
    let namespace_nodes = policies.subtree(cluster, Level::Namespace);
    let namespaces: Vec<Arc<str>> = namespace_nodes
        .iter()
        .map(|&ns| namespace_name(policies, ns).into())
        .collect();
    let mut objects: Vec<Desired> = Vec::new();
    let mut custom: BTreeMap<String, &Role> = BTreeMap::new();
    let ancestry: Vec<NodeId> = policies.ancestry(cluster).collect();
    for &node in ancestry.iter().rev().chain(&namespace_nodes) {
        let path: Arc<str> = policies.path(node).into();
        for (role, users) in policies.users_by_role(node) {
            let Some(role_ref) = role_ref(role) else {
                continue;
            };
            if let KubeGrant::Rules(_) = role.kube {
                custom.insert(role.name.clone(), role);
            }
            let role_name: Arc<str> = role.name.as_str().into();
            let binding =
                |kind, namespace: &Arc<str>, name: &Arc<str>, subjects: &Arc<[Arc<str>]>| Desired {
                    key: Key {
                        kind,
                        namespace: namespace.clone(),
                        name: name.clone(),
                    },
                    role_ref: Some(role_ref.clone()),
                    subjects: subjects.clone(),
                    rules: None,
                    granted_on: path.clone(),
                    role: role_name.clone(),
                };
            let name: Arc<str> = binding_name(role, &path).into();
            let subjects: Arc<[Arc<str>]> = users.into();
            if policies.level(node) == Level::Namespace {
                let namespace: Arc<str> = namespace_name(policies, node).into();
                objects.push(binding(
                    ObjectKind::RoleBinding,
                    &namespace,
                    &name,
                    &subjects,
                ));
            } else if role.level == Level::Namespace {
                for namespace in &namespaces {
                    objects.push(binding(
                        ObjectKind::RoleBinding,
                        namespace,
                        &name,
                        &subjects,
                    ));
                }
            } else {
                objects.push(binding(
                    ObjectKind::ClusterRoleBinding,
                    &"".into(),
                    &name,
                    &subjects,
                ));
            }
        }
    }
    for (name, role) in custom {
        let KubeGrant::Rules(rules) = &role.kube else {
            continue;
        };
        objects.push(Desired {
            key: Key {
                kind: ObjectKind::ClusterRole,
                namespace: "".into(),
                name: custom_cluster_role(&name).into(),
            },
            role_ref: None,
            subjects: Vec::new().into(),
            rules: Some(rules.clone().into()),
            granted_on: "".into(),
            role: name.as_str().into(),
        });
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    objects
}

/// A namespace node's Kubernetes name: the last part of its path.
pub fn namespace_name(policies: &Policies, namespace: NodeId) -> &str {
    let path = policies.path(namespace);
    path.rsplit('/').next().unwrap_or(path)
}

/// What to do to a cluster holding `current` managed objects so that it holds `desired`,
/// in the order to do it: creations first (a binding for a new role is a new name, so it
/// exists before the one it replaces goes), then updates, then deletions. An object of the
/// same name whose roleRef differs (Kubernetes does not let a roleRef change) is in
/// `replace`: deleted, then created again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Objects the cluster lacks.
    pub create: Vec<Desired>,
    /// Objects whose subjects, rules or labels differ.
    pub update: Vec<Desired>,
    /// Bindings whose roleRef differs.
    pub replace: Vec<Desired>,
    /// Managed objects no policy grants any more.
    pub delete: Vec<Key>,
}

impl Changes {
    /// Whether the cluster already holds what it should.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.update.is_empty()
            && self.replace.is_empty()
            && self.delete.is_empty()
    }
}

/// The changes from `current` to `desired`.
pub fn changes(current: &[Desired], desired: &[Desired]) -> Changes {
    let current: BTreeMap<&Key, &Desired> = current.iter().map(|d| (&d.key, d)).collect();
    let wanted: BTreeMap<&Key, &Desired> = desired.iter().map(|d| (&d.key, d)).collect();
    let mut changes = Changes::default();
    for (key, &object) in &wanted {
        match current.get(key) {
            None => changes.create.push(object.clone()),
            Some(&existing) if existing.role_ref != object.role_ref => {
                changes.replace.push(object.clone())
            }
            Some(&existing) if existing != object => changes.update.push(object.clone()),
            Some(_) => {}
        }
    }
    changes.delete.extend(
        current
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .map(|key| (*key).clone()),
    );
    changes
}
