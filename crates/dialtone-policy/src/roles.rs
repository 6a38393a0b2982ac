//! The role catalogue: built-in roles per level, as Tanzu Mission Control and GCP name them
//! (`org.admin|edit|view`, `folder.*`, `project.*`, `cluster.*`, `namespace.*`), and custom
//! roles.
//!
//! A role of level L is bound on a node of level L or above and reaches the resources of
//! level L and below in that node's subtree: `cluster.view` on a folder lets its subjects
//! see every cluster under the folder, not the folder itself. Cluster and namespace access
//! is cast into the upstream user-facing roles (cluster-admin, admin, edit, view).

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::{Deserialize, Serialize};

/// A level of the tree, top down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A tenant, the root of its tree.
    Org,
    /// A grouping of projects (and of other folders' projects) under an org.
    Folder,
    /// The unit that owns clusters.
    Project,
    /// A Smart Cluster.
    Cluster,
    /// A namespace of a cluster, the leaf.
    Namespace,
}

impl Level {
    /// Every level, top down.
    pub const ALL: [Level; 5] = [
        Level::Org,
        Level::Folder,
        Level::Project,
        Level::Cluster,
        Level::Namespace,
    ];

    /// The level as roles and messages spell it: `org`, `folder`, …
    pub fn name(self) -> &'static str {
        match self {
            Level::Org => "org",
            Level::Folder => "folder",
            Level::Project => "project",
            Level::Cluster => "cluster",
            Level::Namespace => "namespace",
        }
    }

    /// The resource the nodes of this level are.
    pub fn resource(self) -> TreeResource {
        match self {
            Level::Org => TreeResource::Orgs,
            Level::Folder => TreeResource::Folders,
            Level::Project => TreeResource::Projects,
            Level::Cluster => TreeResource::Clusters,
            Level::Namespace => TreeResource::Namespaces,
        }
    }
}

/// What Dialtone's API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TreeResource {
    /// Orgs themselves.
    Orgs,
    /// Folders.
    Folders,
    /// Projects.
    Projects,
    /// Smart Clusters.
    Clusters,
    /// Namespaces of clusters.
    Namespaces,
    /// A node's access policy.
    Policies,
    /// Kubernetes credentials for a cluster.
    Credentials,
    /// An org's identities (users and service accounts).
    Identities,
    /// An org's groups and their members.
    Groups,
    /// API tokens.
    Tokens,
    /// The org's audit log.
    Audit,
    /// Clusters' connections (VPC peerings with customers' networks).
    Connections,
    /// Usage and what it costs (`billing.view` is get and list on it).
    Billing,
}

impl TreeResource {
    /// Every resource, in the order permissions are numbered.
    pub const ALL: [TreeResource; 13] = [
        TreeResource::Orgs,
        TreeResource::Folders,
        TreeResource::Projects,
        TreeResource::Clusters,
        TreeResource::Namespaces,
        TreeResource::Policies,
        TreeResource::Credentials,
        TreeResource::Identities,
        TreeResource::Groups,
        TreeResource::Tokens,
        TreeResource::Audit,
        TreeResource::Connections,
        TreeResource::Billing,
    ];

    /// The resource as the API's paths spell it: `orgs`, `clusters`, …
    pub fn name(self) -> &'static str {
        match self {
            TreeResource::Orgs => "orgs",
            TreeResource::Folders => "folders",
            TreeResource::Projects => "projects",
            TreeResource::Clusters => "clusters",
            TreeResource::Namespaces => "namespaces",
            TreeResource::Policies => "policies",
            TreeResource::Credentials => "credentials",
            TreeResource::Identities => "identities",
            TreeResource::Groups => "groups",
            TreeResource::Tokens => "tokens",
            TreeResource::Audit => "audit",
            TreeResource::Connections => "connections",
            TreeResource::Billing => "billing",
        }
    }

    /// The resource the API spells `name`.
    pub fn parse(name: &str) -> Option<TreeResource> {
        TreeResource::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// What a request does to a resource, as Kubernetes names its verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TreeVerb {
    /// Read one object.
    Get,
    /// Read a collection.
    List,
    /// Follow a collection's changes.
    Watch,
    /// Make an object.
    Create,
    /// Change an object (a replace or a patch).
    Update,
    /// Remove an object.
    Delete,
}

impl TreeVerb {
    /// Every verb, in the order permissions are numbered.
    pub const ALL: [TreeVerb; 6] = [
        TreeVerb::Get,
        TreeVerb::List,
        TreeVerb::Watch,
        TreeVerb::Create,
        TreeVerb::Update,
        TreeVerb::Delete,
    ];

    /// The verb as roles and messages spell it: `get`, `list`, …
    pub fn name(self) -> &'static str {
        match self {
            TreeVerb::Get => "get",
            TreeVerb::List => "list",
            TreeVerb::Watch => "watch",
            TreeVerb::Create => "create",
            TreeVerb::Update => "update",
            TreeVerb::Delete => "delete",
        }
    }

    /// The verb spelled `name`.
    pub fn parse(name: &str) -> Option<TreeVerb> {
        TreeVerb::ALL.into_iter().find(|v| v.name() == name)
    }

    const READ: [TreeVerb; 3] = [TreeVerb::Get, TreeVerb::List, TreeVerb::Watch];
    const WRITE: [TreeVerb; 3] = [TreeVerb::Create, TreeVerb::Update, TreeVerb::Delete];
}

/// One verb on one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permission {
    /// What is done.
    pub verb: TreeVerb,
    /// What it is done to.
    pub resource: TreeResource,
}

impl Permission {
    /// `verb` on `resource`.
    pub fn new(verb: TreeVerb, resource: TreeResource) -> Self {
        Permission { verb, resource }
    }

    fn bit(self) -> u128 {
        1 << (self.resource as u32 * TreeVerb::ALL.len() as u32 + self.verb as u32)
    }
}

/// A set of permissions, one bit each, so a check is one AND.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u128);

impl Permissions {
    /// Whether the set holds `p`.
    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// The set with `p` added.
    pub fn with(mut self, p: Permission) -> Self {
        self.0 |= p.bit();
        self
    }

    /// Every permission of either set.
    pub fn union(self, other: Permissions) -> Self {
        Permissions(self.0 | other.0)
    }

    /// Whether every permission of `other` is in the set.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The permissions of the set, resource by resource.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        TreeResource::ALL.into_iter().flat_map(move |resource| {
            TreeVerb::ALL
                .into_iter()
                .map(move |verb| Permission { verb, resource })
                .filter(move |p| self.has(*p))
        })
    }

    fn grant(self, verbs: &[TreeVerb], resources: &[TreeResource]) -> Self {
        let mut set = self;
        for &resource in resources {
            for &verb in verbs {
                set = set.with(Permission { verb, resource });
            }
        }
        set
    }
}

/// The Kubernetes access a role carries into clusters.
#[derive(Clone, Debug, PartialEq)]
pub enum KubeGrant {
    /// No access inside clusters (a role about the tree only).
    None,
    /// An upstream ClusterRole every cluster has: `cluster-admin`, `admin`, `edit`, `view`.
    Upstream(&'static str),
    /// A custom role's own rules, cast into a ClusterRole of Dialtone's.
    Rules(Vec<PolicyRule>),
}

/// A named set of permissions on the tree, and the Kubernetes access it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    /// `cluster.view`, or a custom role's name.
    pub name: String,
    /// The lowest level it reaches; it may be bound there or above.
    pub level: Level,
    /// What it allows on the tree's resources.
    pub permissions: Permissions,
    /// Granted cluster-wide for roles of cluster level and above, in each namespace for
    /// namespace roles.
    pub kube: KubeGrant,
    /// What it is for, in one line, as `role list` shows it.
    pub description: String,
}

impl Role {
    /// Whether a binding of this role may sit on a node of `level`.
    pub fn bindable_at(&self, level: Level) -> bool {
        level <= self.level
    }
}

/// The tree resources at `level` and below.
fn tree_below(level: Level) -> Vec<TreeResource> {
    Level::ALL
        .into_iter()
        .filter(|l| *l >= level && *l != Level::Org)
        .map(Level::resource)
        .collect()
}

fn builtin(level: Level, strength: &str) -> Role {
    let below = tree_below(level);
    let mut read = below.clone();
    read.push(TreeResource::Policies);
    if level == Level::Org {
        read.extend([
            TreeResource::Orgs,
            TreeResource::Identities,
            TreeResource::Groups,
        ]);
    }
    let mut permissions = Permissions::default().grant(&TreeVerb::READ, &read);
    if level <= Level::Cluster {
        // Seeing a cluster includes reaching its Kubernetes API, as its RBAC allows, and
        // seeing its connections.
        permissions = permissions
            .with(Permission::new(TreeVerb::Create, TreeResource::Credentials))
            .grant(&TreeVerb::READ, &[TreeResource::Connections]);
    }
    if strength != "view" {
        permissions = permissions.grant(&TreeVerb::WRITE, &below);
    }
    if strength == "admin" {
        permissions = permissions.with(Permission::new(TreeVerb::Update, TreeResource::Policies));
        if level <= Level::Cluster {
            // A connection opens the cluster's network to another: an admin's decision.
            permissions = permissions.grant(&TreeVerb::WRITE, &[TreeResource::Connections]);
        }
        if level == Level::Org {
            let people = [
                TreeResource::Identities,
                TreeResource::Groups,
                TreeResource::Tokens,
            ];
            permissions = permissions
                .grant(&TreeVerb::ALL, &people)
                .grant(
                    &TreeVerb::READ,
                    &[TreeResource::Audit, TreeResource::Billing],
                )
                .with(Permission::new(TreeVerb::Update, TreeResource::Orgs));
        }
    }
    let kube = match (level, strength) {
        (Level::Namespace, upstream) => KubeGrant::Upstream(match upstream {
            "admin" => "admin",
            "edit" => "edit",
            _ => "view",
        }),
        (_, "admin") => KubeGrant::Upstream("cluster-admin"),
        (_, "edit") => KubeGrant::Upstream("edit"),
        _ => KubeGrant::Upstream("view"),
    };
    let reach = match level {
        Level::Namespace => "its namespaces",
        Level::Cluster => "its clusters and their namespaces",
        _ => "everything under it",
    };
    let description = match strength {
        "admin" => format!("everything on {reach}, including its access policies"),
        "edit" => format!("create, change and delete {reach}"),
        _ => format!("see {reach}"),
    };
    Role {
        name: format!("{}.{strength}", level.name()),
        level,
        permissions,
        kube,
        description,
    }
}

/// `org.billing`: usage and cost of everything in the org, and nothing else but the org
/// itself, for finance.
fn billing() -> Role {
    Role {
        name: "org.billing".into(),
        level: Level::Org,
        permissions: Permissions::default()
            .grant(&[TreeVerb::Get], &[TreeResource::Orgs])
            .grant(&TreeVerb::READ, &[TreeResource::Billing]),
        kube: KubeGrant::None,
        description: "see the usage and cost of everything under it".into(),
    }
}

/// Why a binding cannot name a role on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unbindable {
    /// No role of that name.
    Unknown(String),
    /// The role reaches a lower level than the node's.
    WrongLevel {
        /// The role's name.
        role: String,
        /// The level the role reaches.
        reaches: Level,
        /// The level of the node the binding is on.
        node: Level,
    },
}

impl std::fmt::Display for Unbindable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unbindable::Unknown(name) => write!(f, "unknown role `{name}`"),
            Unbindable::WrongLevel {
                role,
                reaches,
                node,
            } => write!(
                f,
                "`{role}` reaches {}s and cannot be bound on a {}",
                reaches.name(),
                node.name()
            ),
        }
    }
}

/// The roles bindings may name: the built-in ones, then custom ones.
#[derive(Clone, Debug)]
pub struct Catalogue {
    roles: Vec<Role>,
}

impl Default for Catalogue {
    fn default() -> Self {
        let mut roles: Vec<Role> = Level::ALL
            .into_iter()
            .flat_map(|level| ["admin", "edit", "view"].map(|s| builtin(level, s)))
            .collect();
        roles.push(billing());
        Catalogue { roles }
    }
}

impl Catalogue {
    /// The role `name` and its index, if a binding on a node of `level` may name it.
    pub fn bindable(&self, name: &str, level: Level) -> Result<(usize, &Role), Unbindable> {
        let index = self
            .index(name)
            .ok_or_else(|| Unbindable::Unknown(name.to_string()))?;
        let role = &self.roles[index];
        match role.bindable_at(level) {
            true => Ok((index, role)),
            false => Err(Unbindable::WrongLevel {
                role: role.name.clone(),
                reaches: role.level,
                node: level,
            }),
        }
    }

    /// Adds a custom role; its name must not be taken (built-in names have a dot, so a
    /// custom name without one never is).
    pub fn add(&mut self, role: Role) -> Result<(), String> {
        if self.get(&role.name).is_some() {
            return Err(format!("role `{}` already exists", role.name));
        }
        self.roles.push(role);
        Ok(())
    }

    /// The role named `name`.
    pub fn get(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The position of the role named `name`, which bindings are interned by.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.roles.iter().position(|r| r.name == name)
    }

    /// Every role: the built-in ones level by level, then custom ones in the order added.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roles_reach_their_level_and_below() {
        let catalogue = Catalogue::default();
        assert_eq!(catalogue.roles().len(), 16);
        let view = catalogue.get("cluster.view").unwrap();
        let get = |r| Permission::new(TreeVerb::Get, r);
        assert!(view.permissions.has(get(TreeResource::Clusters)));
        assert!(view.permissions.has(get(TreeResource::Namespaces)));
        assert!(!view.permissions.has(get(TreeResource::Projects)));
        assert!(
            !view
                .permissions
                .has(Permission::new(TreeVerb::Delete, TreeResource::Clusters))
        );
        assert_eq!(view.kube, KubeGrant::Upstream("view"));
        let admin = catalogue.get("org.admin").unwrap();
        assert!(admin.permissions.contains(view.permissions));
        assert!(
            admin
                .permissions
                .has(Permission::new(TreeVerb::Update, TreeResource::Policies))
        );
        assert!(
            !catalogue
                .get("project.edit")
                .unwrap()
                .permissions
                .has(Permission::new(TreeVerb::Update, TreeResource::Policies))
        );
        assert_eq!(
            catalogue.get("namespace.admin").unwrap().kube,
            KubeGrant::Upstream("admin")
        );
        assert!(view.bindable_at(Level::Folder) && !view.bindable_at(Level::Namespace));
    }

    #[test]
    fn each_built_in_role_casts_its_upstream_role_and_says_what_it_reaches() {
        let catalogue = Catalogue::default();
        let role = |name| catalogue.get(name).unwrap();
        for (name, kube, description) in [
            (
                "org.admin",
                "cluster-admin",
                "everything on everything under it, including its access policies",
            ),
            (
                "folder.edit",
                "edit",
                "create, change and delete everything under it",
            ),
            (
                "cluster.admin",
                "cluster-admin",
                "everything on its clusters and their namespaces, including its access policies",
            ),
            (
                "cluster.view",
                "view",
                "see its clusters and their namespaces",
            ),
            (
                "namespace.admin",
                "admin",
                "everything on its namespaces, including its access policies",
            ),
            (
                "namespace.edit",
                "edit",
                "create, change and delete its namespaces",
            ),
            ("namespace.view", "view", "see its namespaces"),
        ] {
            assert_eq!(role(name).kube, KubeGrant::Upstream(kube), "{name}");
            assert_eq!(role(name).description, description, "{name}");
        }
        // Only an org's admins manage its people, its tokens, its audit log and the org.
        for org_only in [
            Permission::new(TreeVerb::Create, TreeResource::Identities),
            Permission::new(TreeVerb::Delete, TreeResource::Tokens),
            Permission::new(TreeVerb::Get, TreeResource::Audit),
            Permission::new(TreeVerb::Update, TreeResource::Orgs),
            Permission::new(TreeVerb::Get, TreeResource::Billing),
        ] {
            assert!(role("org.admin").permissions.has(org_only), "{org_only:?}");
            for other in ["org.edit", "folder.admin"] {
                assert!(
                    !role(other).permissions.has(org_only),
                    "{other}: {org_only:?}"
                );
            }
        }
        // Finance sees money and the org, and nothing of its clusters or people.
        let billing = role("org.billing");
        assert!(
            billing
                .permissions
                .has(Permission::new(TreeVerb::List, TreeResource::Billing))
        );
        for hidden in [
            TreeResource::Folders,
            TreeResource::Clusters,
            TreeResource::Audit,
        ] {
            assert!(
                !billing
                    .permissions
                    .has(Permission::new(TreeVerb::Get, hidden))
            );
        }
        assert_eq!(billing.kube, KubeGrant::None);
    }

    #[test]
    fn permission_sets_union_contain_and_list_their_members() {
        let on_clusters = |verb| Permission::new(verb, TreeResource::Clusters);
        let (get, list, delete) = (
            on_clusters(TreeVerb::Get),
            on_clusters(TreeVerb::List),
            on_clusters(TreeVerb::Delete),
        );
        let read = Permissions::default().with(get).with(list);
        let prune = Permissions::default().with(list).with(delete);
        let both = read.union(prune);
        assert_eq!(both.iter().collect::<Vec<_>>(), [get, list, delete]);
        assert!(both.contains(read) && both.contains(prune));
        assert!(!read.contains(prune), "read lacks delete");
        assert!(!read.has(delete));
    }

    #[test]
    fn resources_and_verbs_are_named_as_the_api_spells_them() {
        let resources: Vec<&str> = TreeResource::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            resources,
            [
                "orgs",
                "folders",
                "projects",
                "clusters",
                "namespaces",
                "policies",
                "credentials",
                "identities",
                "groups",
                "tokens",
                "audit",
                "connections",
                "billing"
            ]
        );
        for resource in TreeResource::ALL {
            assert_eq!(TreeResource::parse(resource.name()), Some(resource));
        }
        assert_eq!(TreeResource::parse("pods"), None);
        let verbs: Vec<&str> = TreeVerb::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(
            verbs,
            ["get", "list", "watch", "create", "update", "delete"]
        );
        for verb in TreeVerb::ALL {
            assert_eq!(TreeVerb::parse(verb.name()), Some(verb));
        }
        assert_eq!(TreeVerb::parse("patch"), None);
    }
}
