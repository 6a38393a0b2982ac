//! The tree with its bindings, indexed for the authorization check.
//!
//! Nodes, subjects and roles are interned as small integers. Each node keeps its own
//! bindings sorted by subject, so a check walks at most five ancestors and, at each, looks
//! the caller and each of its groups up by binary search: a handful of cache-friendly reads
//! whatever the size of the tree, and no allocation.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::roles::{Catalogue, Level, Permission, Permissions, Role};

/// A node of the tree, interned; stable while the node lives.
pub type NodeId = u32;
type SubjectId = u32;
type RoleId = u16;

/// Who a binding is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Subject {
    /// One identity, by name.
    User(String),
    /// Every member of a group, by the group's name.
    Group(String),
}

impl Subject {
    /// `user:alice` or `group:eng`.
    pub fn parse(text: &str) -> Result<Subject, String> {
        match text.split_once(':') {
            Some(("user", name)) if !name.is_empty() => Ok(Subject::User(name.to_string())),
            Some(("group", name)) if !name.is_empty() => Ok(Subject::Group(name.to_string())),
            _ => Err(format!(
                "subject `{text}` must be `user:<identity>` or `group:<group>`"
            )),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(name) => write!(f, "user:{name}"),
            Subject::Group(name) => write!(f, "group:{name}"),
        }
    }
}

/// One role binding of a node's policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Binding {
    /// The role granted, by the catalogue's name (`cluster.admin`).
    pub role: String,
    /// Who is granted it.
    pub subject: Subject,
}

/// A binding that grants something, and where it sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The node's path, `acme/eng/web`.
    pub node: String,
    /// The role the binding grants.
    pub role: String,
    /// Who the binding names: the caller or one of its groups.
    pub subject: Subject,
}

#[derive(Clone, Debug)]
struct Node {
    path: String,
    level: Level,
    parent: Option<NodeId>,
    children: Vec<NodeId>,
    removed: bool,
}

const NO_PARENT: NodeId = NodeId::MAX;

/// What the check reads of a node, kept apart from the rest so that one cache line holds
/// it.
#[derive(Clone, Debug)]
struct Hot {
    parent: NodeId,
    live: bool,
    /// (subject, role), sorted.
    bindings: Box<[(SubjectId, RoleId)]>,
}

/// A user and its groups, interned.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    user: SubjectId,
    groups: &'a [SubjectId],
}

/// The tree, its policies and group memberships of one org.
#[derive(Clone, Debug)]
pub struct Policies {
    catalogue: Catalogue,
    nodes: Vec<Node>,
    hot: Vec<Hot>,
    /// Each role's permissions, by role id, contiguous for the check.
    role_permissions: Vec<Permissions>,
    by_path: HashMap<String, NodeId>,
    subjects: Vec<Subject>,
    /// Each subject's name, shared by every projected binding that names it.
    names: Vec<Arc<str>>,
    subject_ids: HashMap<Subject, SubjectId>,
    /// Users by name, so that a check looks its caller up without building a `Subject`.
    user_ids: HashMap<String, SubjectId>,
    /// A user's groups, sorted.
    groups_of: HashMap<SubjectId, Vec<SubjectId>>,
    /// A group's members, sorted.
    members_of: HashMap<SubjectId, Vec<SubjectId>>,
}

impl Policies {
    /// An empty tree whose bindings name roles of `catalogue`.
    pub fn new(catalogue: Catalogue) -> Self {
        Policies {
            role_permissions: catalogue.roles().iter().map(|r| r.permissions).collect(),
            catalogue,
            nodes: Vec::new(),
            hot: Vec::new(),
            by_path: HashMap::new(),
            subjects: Vec::new(),
            names: Vec::new(),
            subject_ids: HashMap::new(),
            user_ids: HashMap::new(),
            groups_of: HashMap::new(),
            members_of: HashMap::new(),
        }
    }

    /// The roles bindings may name.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    // --- the tree ---

    /// Adds a node under `parent` (`None` for the org); levels go down one step at a time.
    pub fn add_node(
        &mut self,
        parent: Option<NodeId>,
        name: &str,
        level: Level,
    ) -> Result<NodeId, String> {
        let path = match parent {
            None if level == Level::Org => name.to_string(),
            None => return Err(format!("a {} needs a parent", level.name())),
            Some(p) => {
                let parent = self.live(p).ok_or("no such parent")?;
                let expected = Level::ALL.get(parent.level as usize + 1).copied();
                if expected != Some(level) {
                    return Err(format!(
                        "a {} cannot sit under a {}",
                        level.name(),
                        parent.level.name()
                    ));
                }
                format!("{}/{name}", parent.path)
            }
        };
        if self.by_path.contains_key(&path) {
            return Err(format!("{path} already exists"));
        }
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            path: path.clone(),
            level,
            parent,
            children: Vec::new(),
            removed: false,
        });
        self.hot.push(Hot {
            parent: parent.unwrap_or(NO_PARENT),
            live: true,
            bindings: Box::default(),
        });
        if let Some(p) = parent {
            self.nodes[p as usize].children.push(id);
        }
        self.by_path.insert(path, id);
        Ok(id)
    }

    /// Removes a node and everything under it, with their bindings.
    pub fn remove_node(&mut self, id: NodeId) {
        let Some(node) = self.live(id) else { return };
        let (children, parent) = (node.children.clone(), node.parent);
        for child in children {
            self.remove_node(child);
        }
        let node = &mut self.nodes[id as usize];
        node.removed = true;
        self.hot[id as usize] = Hot {
            parent: NO_PARENT,
            live: false,
            bindings: Box::default(),
        };
        let path = std::mem::take(&mut node.path);
        self.by_path.remove(&path);
        if let Some(p) = parent {
            self.nodes[p as usize].children.retain(|c| *c != id);
        }
    }

    fn live(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize).filter(|n| !n.removed)
    }

    /// The node at `path` (`acme/eng/web`), if the tree has it.
    pub fn node(&self, path: &str) -> Option<NodeId> {
        self.by_path.get(path).copied()
    }

    /// The node's path, `acme/eng/web`.
    pub fn path(&self, id: NodeId) -> &str {
        &self.nodes[id as usize].path
    }

    /// Whether the node is an org, folder, project, cluster or namespace.
    pub fn level(&self, id: NodeId) -> Level {
        self.nodes[id as usize].level
    }

    /// The node's parent; `None` for an org.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.nodes[id as usize].parent
    }

    /// The node's live children.
    pub fn children(&self, id: NodeId) -> &[NodeId] {
        &self.nodes[id as usize].children
    }

    /// The node and its ancestors, bottom up.
    pub fn ancestry(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::successors(Some(id), |&n| self.nodes[n as usize].parent)
    }

    /// Every live node of `level` in the subtree of `id`, itself included.
    pub fn subtree(&self, id: NodeId, level: Level) -> Vec<NodeId> {
        let mut found = Vec::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            if node.removed {
                continue;
            }
            if node.level == level {
                found.push(n);
            } else if node.level < level {
                stack.extend(node.children.iter().copied());
            }
        }
        found.sort_unstable();
        found
    }

    /// Every live node.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len() as NodeId).filter(|&n| !self.nodes[n as usize].removed)
    }

    // --- identities ---

    fn intern(&mut self, subject: Subject) -> SubjectId {
        if let Some(&id) = self.subject_ids.get(&subject) {
            return id;
        }
        let id = self.subjects.len() as SubjectId;
        let (Subject::User(name) | Subject::Group(name)) = &subject;
        if let Subject::User(_) = &subject {
            self.user_ids.insert(name.clone(), id);
        }
        self.names.push(name.as_str().into());
        self.subjects.push(subject.clone());
        self.subject_ids.insert(subject, id);
        id
    }

    /// Makes `name` a user bindings may name.
    pub fn add_user(&mut self, name: &str) {
        self.intern(Subject::User(name.to_string()));
    }

    /// Makes `name` a group bindings may name, with no members yet.
    pub fn add_group(&mut self, name: &str) {
        self.intern(Subject::Group(name.to_string()));
    }

    /// Whether `subject` was added, so that a binding may name it.
    pub fn knows(&self, subject: &Subject) -> bool {
        self.subject_ids.contains_key(subject)
    }

    /// Replaces a group's members as stored: members are known as users from then on.
    pub fn restore_members(&mut self, group: &str, users: &[String]) {
        self.add_group(group);
        for user in users {
            self.add_user(user);
        }
        self.set_members(group, users)
            .expect("the group and its members were just added");
    }

    /// Replaces a group's members (users Dialtone knows; the caller checks).
    pub fn set_members(&mut self, group: &str, users: &[String]) -> Result<(), String> {
        let g = *self
            .subject_ids
            .get(&Subject::Group(group.to_string()))
            .ok_or_else(|| format!("no group `{group}`"))?;
        let mut ids = Vec::new();
        for user in users {
            let id = *self
                .subject_ids
                .get(&Subject::User(user.clone()))
                .ok_or_else(|| format!("no user `{user}`"))?;
            ids.push(id);
        }
        ids.sort_unstable();
        ids.dedup();
        for former in self.members_of.remove(&g).unwrap_or_default() {
            if let Some(groups) = self.groups_of.get_mut(&former) {
                groups.retain(|x| *x != g);
            }
        }
        for &id in &ids {
            let groups = self.groups_of.entry(id).or_default();
            if let Err(at) = groups.binary_search(&g) {
                groups.insert(at, g);
            }
        }
        self.members_of.insert(g, ids);
        Ok(())
    }

    /// The members of a group, sorted.
    pub fn members(&self, group: &str) -> Vec<String> {
        let Some(&g) = self.subject_ids.get(&Subject::Group(group.to_string())) else {
            return Vec::new();
        };
        let mut users: Vec<String> = self
            .members_of
            .get(&g)
            .into_iter()
            .flatten()
            .map(|&u| self.names[u as usize].to_string())
            .collect();
        users.sort();
        users
    }

    /// The groups a user is in, sorted.
    pub fn groups(&self, user: &str) -> Vec<String> {
        let Some(&u) = self.subject_ids.get(&Subject::User(user.to_string())) else {
            return Vec::new();
        };
        let mut names: Vec<String> = self
            .groups_of
            .get(&u)
            .into_iter()
            .flatten()
            .map(|&g| self.subjects[g as usize].to_string())
            .collect();
        names.sort();
        names
    }

    // --- policies ---

    /// Replaces a node's own bindings. Every problem is reported at once, and nothing
    /// changes unless there is none.
    pub fn set_bindings(&mut self, id: NodeId, bindings: &[Binding]) -> Result<(), Vec<String>> {
        let Some(node) = self.live(id) else {
            return Err(vec!["no such node".to_string()]);
        };
        let level = node.level;
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        for (i, binding) in bindings.iter().enumerate() {
            let role = match self.catalogue.bindable(&binding.role, level) {
                Ok((index, _)) => Some(index),
                Err(why) => {
                    problems.push(format!("bindings[{i}].role: {why}"));
                    None
                }
            };
            let subject = self.subject_ids.get(&binding.subject);
            if subject.is_none() {
                problems.push(format!(
                    "bindings[{i}].subject: unknown subject `{}`",
                    binding.subject
                ));
            }
            if let (Some(role), Some(&subject)) = (role, subject) {
                entries.push((subject, role as RoleId));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        entries.sort_unstable();
        entries.dedup();
        self.hot[id as usize].bindings = entries.into();
        Ok(())
    }

    /// Replaces a node's own bindings as they were stored: subjects that no longer exist
    /// are kept by name (a re-created identity gets them back, as upstream RBAC binds by
    /// name), and roles no longer in the catalogue grant nothing. The server checks
    /// bindings with [`Policies::set_bindings`]'s rules before storing them.
    pub fn restore_bindings(&mut self, id: NodeId, bindings: &[Binding]) {
        if self.live(id).is_none() {
            return;
        }
        let mut entries: Vec<(SubjectId, RoleId)> = bindings
            .iter()
            .filter_map(|b| {
                let role = self.catalogue.index(&b.role)?;
                Some((self.intern(b.subject.clone()), role as RoleId))
            })
            .collect();
        entries.sort_unstable();
        entries.dedup();
        self.hot[id as usize].bindings = entries.into();
    }

    /// A node's own bindings, in a stable order.
    pub fn bindings(&self, id: NodeId) -> Vec<Binding> {
        let mut bindings: Vec<Binding> = self.hot[id as usize]
            .bindings
            .iter()
            .map(|&(s, r)| Binding {
                role: self.catalogue.roles()[r as usize].name.clone(),
                subject: self.subjects[s as usize].clone(),
            })
            .collect();
        bindings.sort();
        bindings
    }

    /// The caller and its groups, interned; `None` for an unknown user.
    fn principal(&self, user: &str) -> Option<(SubjectId, &[SubjectId])> {
        let u = *self.user_ids.get(user)?;
        Some((u, self.groups_of.get(&u).map_or(&[], Vec::as_slice)))
    }

    /// The bindings on `id` and its ancestors that name `user` or one of its groups.
    fn applicable<'a>(
        &'a self,
        user: SubjectId,
        groups: &'a [SubjectId],
        id: NodeId,
    ) -> impl Iterator<Item = (NodeId, SubjectId, RoleId)> + 'a {
        self.ancestry(id).flat_map(move |n| {
            let bindings = &self.hot[n as usize].bindings;
            std::iter::once(user)
                .chain(groups.iter().copied())
                .flat_map(move |s| {
                    let start = bindings.partition_point(|&(b, _)| b < s);
                    bindings[start..]
                        .iter()
                        .take_while(move |&&(b, _)| b == s)
                        .map(move |&(b, r)| (n, b, r))
                })
        })
    }

    /// The caller of a request, resolved once for all the checks the request makes.
    pub fn caller(&self, user: &str) -> Option<Caller<'_>> {
        self.principal(user)
            .map(|(user, groups)| Caller { user, groups })
    }

    /// Whether `user` holds `permission` on node `id`: the authorization check.
    pub fn allowed(&self, user: &str, permission: Permission, id: NodeId) -> bool {
        self.caller(user)
            .is_some_and(|caller| self.allows(&caller, permission, id))
    }

    /// [`Policies::allowed`] for a resolved caller.
    pub fn allows(&self, caller: &Caller<'_>, permission: Permission, id: NodeId) -> bool {
        let (u, groups) = (caller.user, caller.groups);
        if !self.hot.get(id as usize).is_some_and(|h| h.live) {
            return false;
        }
        let mut node = id;
        loop {
            let hot = &self.hot[node as usize];
            for subject in std::iter::once(u).chain(groups.iter().copied()) {
                let bindings = &hot.bindings;
                let mut i = bindings.partition_point(|&(s, _)| s < subject);
                while let Some(&(s, role)) = bindings.get(i) {
                    if s != subject {
                        break;
                    }
                    if self.role_permissions[role as usize].has(permission) {
                        return true;
                    }
                    i += 1;
                }
            }
            if hot.parent == NO_PARENT {
                return false;
            }
            node = hot.parent;
        }
    }

    /// The bindings that grant `user` the permission on `id`, nearest first.
    pub fn explain(&self, user: &str, permission: Permission, id: NodeId) -> Vec<Grant> {
        self.grants_on(user, id)
            .into_iter()
            .filter(|(_, role)| role.permissions.has(permission))
            .map(|(grant, _)| grant)
            .collect()
    }

    /// Every binding that applies to `user` on `id`, nearest first, with its role.
    pub fn grants_on(&self, user: &str, id: NodeId) -> Vec<(Grant, &Role)> {
        let Some((u, groups)) = self.principal(user) else {
            return Vec::new();
        };
        if self.live(id).is_none() {
            return Vec::new();
        }
        self.applicable(u, groups, id)
            .map(|(n, s, r)| {
                let role = &self.catalogue.roles()[r as usize];
                (
                    Grant {
                        node: self.path(n).to_string(),
                        role: role.name.clone(),
                        subject: self.subjects[s as usize].clone(),
                    },
                    role,
                )
            })
            .collect()
    }

    /// What `user` lacks to grant `role` on `id`, if anything: nobody grants more than
    /// they hold there (upstream RBAC's escalation rule, applied to the tree). Dialtone
    /// permissions must all be held; Kubernetes access must be held at least as strongly
    /// (a custom role's rules only by a cluster admin).
    pub fn escalation(&self, user: &str, id: NodeId, role: &Role) -> Option<String> {
        let grants = self.grants_on(user, id);
        let held = grants.iter().fold(Permissions::default(), |all, (_, r)| {
            all.union(r.permissions)
        });
        let missing: Vec<String> = role
            .permissions
            .iter()
            .filter(|p| !held.has(*p))
            .map(|p| format!("{:?} {:?}", p.verb, p.resource).to_lowercase())
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "granting `{}` needs what it grants; you lack: {}",
                role.name,
                missing.join(", ")
            ));
        }
        let strongest = grants
            .iter()
            .map(|(_, r)| kube_strength(r))
            .max()
            .unwrap_or(0);
        (kube_strength(role) > strongest).then(|| {
            format!(
                "granting `{}` needs Kubernetes access at least as strong as it gives",
                role.name
            )
        })
    }

    /// Everything `user` may do on `id`.
    pub fn effective(&self, user: &str, id: NodeId) -> Permissions {
        self.grants_on(user, id)
            .iter()
            .fold(Permissions::default(), |all, (_, role)| {
                all.union(role.permissions)
            })
    }

    /// The users a node's bindings of one role reach, groups expanded: (role, users), roles
    /// in catalogue order, users sorted; roles that reach nobody are left out.
    pub(crate) fn users_by_role(&self, id: NodeId) -> Vec<(&Role, Vec<Arc<str>>)> {
        let mut by_role: Vec<(RoleId, Vec<SubjectId>)> = Vec::new();
        for (s, r) in &self.hot[id as usize].bindings {
            let users: &[SubjectId] = match &self.subjects[*s as usize] {
                Subject::User(_) => std::slice::from_ref(s),
                Subject::Group(_) => self.members_of.get(s).map_or(&[], Vec::as_slice),
            };
            match by_role.iter_mut().find(|(role, _)| role == r) {
                Some((_, ids)) => ids.extend_from_slice(users),
                None => by_role.push((*r, users.to_vec())),
            }
        }
        by_role.sort_by_key(|(r, _)| *r);
        by_role
            .into_iter()
            .filter(|(_, users)| !users.is_empty())
            .map(|(r, mut ids)| {
                ids.sort_unstable();
                ids.dedup();
                let mut names: Vec<Arc<str>> = ids
                    .iter()
                    .map(|&u| self.names[u as usize].clone())
                    .collect();
                names.sort_unstable();
                (&self.catalogue.roles()[r as usize], names)
            })
            .collect()
    }

    /// Every (node, binding) of the tree: for oracles and exports.
    pub fn all_bindings(&self) -> Vec<(NodeId, Binding)> {
        self.nodes()
            .flat_map(|n| self.bindings(n).into_iter().map(move |b| (n, b)))
            .collect()
    }

    /// The clusters whose projection a change on node `id` (its policy, or the node itself
    /// coming or going) can alter: those in its subtree, or the one a namespace is in.
    pub fn clusters_under(&self, id: NodeId) -> Vec<NodeId> {
        match self.level(id) {
            Level::Namespace => self.parent(id).into_iter().collect(),
            _ => self.subtree(id, Level::Cluster),
        }
    }

    /// The clusters whose projection a change of `group`'s members can alter.
    pub fn clusters_reached_by(&self, group: &str) -> Vec<NodeId> {
        let Some(&g) = self.subject_ids.get(&Subject::Group(group.to_string())) else {
            return Vec::new();
        };
        let mut clusters: Vec<NodeId> = self
            .nodes()
            .filter(|&n| self.hot[n as usize].bindings.iter().any(|&(s, _)| s == g))
            .flat_map(|n| self.clusters_under(n))
            .collect();
        clusters.sort_unstable();
        clusters.dedup();
        clusters
    }
}

/// How much Kubernetes access a role gives: a cluster-wide grant outranks a namespace one
/// of the same upstream role, and custom rules rank with cluster-admin.
fn kube_strength(role: &Role) -> u8 {
    use crate::roles::KubeGrant;
    let base = match &role.kube {
        KubeGrant::None => return 0,
        KubeGrant::Upstream("view") => 1,
        KubeGrant::Upstream("edit") => 3,
        KubeGrant::Upstream("admin") => 5,
        KubeGrant::Upstream(_) | KubeGrant::Rules(_) => return 8,
    };
    if role.level == Level::Namespace {
        base
    } else {
        base + 1
    }
}
