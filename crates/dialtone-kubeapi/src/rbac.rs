//! The RBAC authorizer, with upstream semantics: rules are only additive; a ClusterRoleBinding
//! grants its ClusterRole everywhere; a RoleBinding grants its Role or ClusterRole in its own
//! namespace only; resourceNames narrow a rule to named objects (so never list or create);
//! nonResourceURLs apply to paths, with a trailing `*` as a prefix; `*` matches any verb,
//! group or resource, and `*/sub` any resource's subresource. Escalation prevention: a role
//! may only be written by someone who holds every rule in it (or may `escalate`), and a
//! binding only by someone who holds the bound role (or may `bind` it).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's name (a certificate's CN, a token's identity).
    pub name: String,
    /// The groups the user is in (a certificate's O values).
    pub groups: Vec<String>,
}

/// What is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A verb on a resource, as the API server's request info names it.
    Resource {
        /// `get`, `list`, `create`, …
        verb: String,
        /// Empty for cluster-scoped resources and requests across namespaces.
        namespace: String,
        /// Empty for the core group.
        api_group: String,
        /// The plural, `pods`.
        resource: String,
        /// `status`, `eviction`, … or empty.
        subresource: String,
        /// The object's name, empty for a collection.
        name: String,
    },
    /// A verb on a path outside the resource tree (`/healthz`, `/version`).
    NonResource {
        /// The HTTP method as a verb (`get`, `post`, …).
        verb: String,
        /// The request's path.
        path: String,
    },
}

impl Request {
    /// The request's verb.
    pub fn verb(&self) -> &str {
        match self {
            Request::Resource { verb, .. } | Request::NonResource { verb, .. } => verb,
        }
    }
}

/// Where the authorizer reads roles and bindings from.
pub trait RbacSource {
    /// Every ClusterRoleBinding.
    fn cluster_role_bindings(&self) -> Vec<ClusterRoleBinding>;
    /// The RoleBindings of `namespace`.
    fn role_bindings(&self, namespace: &str) -> Vec<RoleBinding>;
    /// Every namespace's RoleBindings, by namespace and name.
    fn all_role_bindings(&self) -> Vec<RoleBinding>;
    /// The ClusterRole named `name`.
    fn cluster_role(&self, name: &str) -> Option<ClusterRole>;
    /// The Role `name` of `namespace`.
    fn role(&self, namespace: &str, name: &str) -> Option<Role>;
}

/// Roles and bindings held in lists, for evaluating RBAC outside a cluster.
#[derive(Clone, Debug, Default)]
pub struct Listed {
    /// The ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// The ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// The Roles of every namespace.
    pub roles: Vec<Role>,
    /// The RoleBindings of every namespace.
    pub role_bindings: Vec<RoleBinding>,
}

impl RbacSource for Listed {
    fn cluster_role_bindings(&self) -> Vec<ClusterRoleBinding> {
        self.cluster_role_bindings.clone()
    }
    fn role_bindings(&self, namespace: &str) -> Vec<RoleBinding> {
        self.role_bindings
            .iter()
            .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }
    fn all_role_bindings(&self) -> Vec<RoleBinding> {
        let mut all = self.role_bindings.clone();
        all.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        all
    }
    fn cluster_role(&self, name: &str) -> Option<ClusterRole> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .cloned()
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Role> {
        self.roles
            .iter()
            .find(|r| {
                r.metadata.namespace.as_deref() == Some(namespace)
                    && r.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }
}

/// Whether a request is allowed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether some binding grants it.
    pub allowed: bool,
    /// Which binding allowed it, worded as upstream does.
    pub reason: String,
}

fn has(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v == "*" || v == wanted)
}

fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == combined
            || (!subresource.is_empty()
                && r.strip_prefix("*/").is_some_and(|sub| sub == subresource))
    })
}

/// Upstream's `NonResourceURLMatches`: a trailing `*` (or several) makes a prefix.
fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || (rule_url.ends_with('*') && path.starts_with(rule_url.trim_end_matches('*')))
}

/// Whether one rule allows the request.
pub fn rule_allows(rule: &PolicyRule, request: &Request) -> bool {
    match request {
        Request::Resource {
            verb,
            api_group,
            resource,
            subresource,
            name,
            ..
        } => {
            has(&rule.verbs, verb)
                && has(rule.api_groups.as_deref().unwrap_or_default(), api_group)
                && resource_matches(rule, resource, subresource)
                && rule
                    .resource_names
                    .as_ref()
                    .is_none_or(|names| names.is_empty() || names.contains(name))
        }
        Request::NonResource { verb, path } => {
            has(&rule.verbs, verb)
                && rule
                    .non_resource_urls
                    .iter()
                    .flatten()
                    .any(|url| url_matches(url, path))
        }
    }
}

fn subject_matches(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{namespace}:{}", subject.name)
        }
        _ => false,
    }
}

fn describe_subject(subject: &Subject) -> String {
    format!("{} \"{}\"", subject.kind, subject.name)
}

/// Every grant that applies to `user` in `namespace` (cluster-wide grants only when it is
/// empty): the rules with the binding that grants them.
pub fn grants(
    source: &dyn RbacSource,
    user: &UserInfo,
    namespace: &str,
) -> Vec<(PolicyRule, String)> {
    let mut grants = Vec::new();
    for binding in source.cluster_role_bindings() {
        let Some(subject) = binding
            .subjects
            .iter()
            .flatten()
            .find(|s| subject_matches(s, user, ""))
        else {
            continue;
        };
        let name = binding.metadata.name.clone().unwrap_or_default();
        if binding.role_ref.kind != "ClusterRole" {
            continue;
        }
        if let Some(role) = source.cluster_role(&binding.role_ref.name) {
            let why = format!(
                "ClusterRoleBinding \"{name}\" of ClusterRole \"{}\" to {}",
                binding.role_ref.name,
                describe_subject(subject)
            );
            grants.extend(role.rules.into_iter().flatten().map(|r| (r, why.clone())));
        }
    }
    if namespace.is_empty() {
        return grants;
    }
    for binding in source.role_bindings(namespace) {
        let Some(subject) = binding
            .subjects
            .iter()
            .flatten()
            .find(|s| subject_matches(s, user, namespace))
        else {
            continue;
        };
        let name = binding.metadata.name.clone().unwrap_or_default();
        let rules = match binding.role_ref.kind.as_str() {
            "ClusterRole" => source
                .cluster_role(&binding.role_ref.name)
                .and_then(|r| r.rules),
            "Role" => source
                .role(namespace, &binding.role_ref.name)
                .and_then(|r| r.rules),
            _ => None,
        };
        let why = format!(
            "RoleBinding \"{name}/{namespace}\" of {} \"{}\" to {}",
            binding.role_ref.kind,
            binding.role_ref.name,
            describe_subject(subject)
        );
        grants.extend(rules.into_iter().flatten().map(|r| (r, why.clone())));
    }
    grants
}

/// Decides `request` by `user` as upstream's RBAC authorizer does, scanning every binding
/// (see [`RbacIndex`] for the same decision by lookup).
pub fn authorize(source: &dyn RbacSource, user: &UserInfo, request: &Request) -> Decision {
    let namespace = match request {
        Request::Resource { namespace, .. } => namespace.as_str(),
        // Non-resource URLs are cluster-wide: only ClusterRoleBindings grant them.
        Request::NonResource { .. } => "",
    };
    match grants(source, user, namespace)
        .into_iter()
        .find(|(rule, _)| rule_allows(rule, request))
    {
        Some((_, why)) => Decision {
            allowed: true,
            reason: format!("RBAC: allowed by {why}"),
        },
        None => Decision {
            allowed: false,
            reason: String::new(),
        },
    }
}

/// The authorizer's bindings indexed by subject, as upstream's authorizer resolves them:
/// built once per change of the cluster's RBAC objects, so that a request looks up its
/// user's and groups' grants instead of decoding and scanning every binding.
#[derive(Debug, Default)]
pub struct RbacIndex {
    by_user: HashMap<String, Vec<Grant>>,
    by_group: HashMap<String, Vec<Grant>>,
}

/// What one subject of one binding grants.
#[derive(Debug)]
struct Grant {
    /// (binding, subject) in the order the scan meets them, so that the decision names
    /// the same binding and subject as [`authorize`].
    order: (usize, usize),
    /// The RoleBinding's namespace; `None` for a ClusterRoleBinding, which grants everywhere.
    namespace: Option<String>,
    rules: Arc<[PolicyRule]>,
    /// The binding, for the decision's reason, without the subject.
    binding: Arc<str>,
    subject: String,
}

impl RbacIndex {
    /// Indexes every binding of `source`.
    pub fn build(source: &dyn RbacSource) -> Self {
        let mut index = RbacIndex::default();
        let mut order = 0;
        for binding in source.cluster_role_bindings() {
            order += 1;
            if binding.role_ref.kind != "ClusterRole" {
                continue;
            }
            let Some(role) = source.cluster_role(&binding.role_ref.name) else {
                continue;
            };
            let name = binding.metadata.name.clone().unwrap_or_default();
            let why: Arc<str> = format!(
                "ClusterRoleBinding \"{name}\" of ClusterRole \"{}\"",
                binding.role_ref.name
            )
            .into();
            let rules: Arc<[PolicyRule]> = role.rules.unwrap_or_default().into();
            index.add(&binding.subjects, "", order, None, &rules, &why);
        }
        for binding in source.all_role_bindings() {
            order += 1;
            let namespace = binding.metadata.namespace.clone().unwrap_or_default();
            let rules = match binding.role_ref.kind.as_str() {
                "ClusterRole" => source
                    .cluster_role(&binding.role_ref.name)
                    .and_then(|r| r.rules),
                "Role" => source
                    .role(&namespace, &binding.role_ref.name)
                    .and_then(|r| r.rules),
                _ => None,
            };
            let name = binding.metadata.name.clone().unwrap_or_default();
            let why: Arc<str> = format!(
                "RoleBinding \"{name}/{namespace}\" of {} \"{}\"",
                binding.role_ref.kind, binding.role_ref.name
            )
            .into();
            let rules: Arc<[PolicyRule]> = rules.unwrap_or_default().into();
            index.add(
                &binding.subjects,
                &namespace,
                order,
                Some(&namespace),
                &rules,
                &why,
            );
        }
        index
    }

    fn add(
        &mut self,
        subjects: &Option<Vec<Subject>>,
        binding_namespace: &str,
        order: usize,
        namespace: Option<&str>,
        rules: &Arc<[PolicyRule]>,
        binding: &Arc<str>,
    ) {
        for (position, subject) in subjects.iter().flatten().enumerate() {
            let (map, name) = match subject.kind.as_str() {
                "User" => (&mut self.by_user, subject.name.clone()),
                "Group" => (&mut self.by_group, subject.name.clone()),
                "ServiceAccount" => {
                    let sa_namespace = subject
                        .namespace
                        .as_deref()
                        .filter(|ns| !ns.is_empty())
                        .unwrap_or(binding_namespace);
                    (
                        &mut self.by_user,
                        format!("system:serviceaccount:{sa_namespace}:{}", subject.name),
                    )
                }
                _ => continue,
            };
            map.entry(name).or_default().push(Grant {
                order: (order, position),
                namespace: namespace.map(str::to_string),
                rules: rules.clone(),
                binding: binding.clone(),
                subject: describe_subject(subject),
            });
        }
    }

    /// What [`authorize`] decides over the indexed source, with the same reason.
    pub fn authorize(&self, user: &UserInfo, request: &Request) -> Decision {
        let namespace = match request {
            Request::Resource { namespace, .. } => namespace.as_str(),
            Request::NonResource { .. } => "",
        };
        let grants = self
            .by_user
            .get(&user.name)
            .into_iter()
            .chain(user.groups.iter().filter_map(|g| self.by_group.get(g)))
            .flatten()
            .filter(|grant| match &grant.namespace {
                None => true,
                Some(ns) => !namespace.is_empty() && ns == namespace,
            });
        let mut first: Option<&Grant> = None;
        for grant in grants {
            if first.is_some_and(|f| f.order <= grant.order) {
                continue;
            }
            if grant.rules.iter().any(|rule| rule_allows(rule, request)) {
                first = Some(grant);
            }
        }
        match first {
            Some(grant) => Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {} to {}", grant.binding, grant.subject),
            },
            None => Decision {
                allowed: false,
                reason: String::new(),
            },
        }
    }
}

/// Whether `owner` holds everything `wanted` grants: each atom (one verb, group, resource,
/// name or URL) of every wanted rule must be in some owner rule; a wanted `*` needs an owner
/// `*`, as upstream's `Covers` requires.
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    // Each atom is checked with the authorizer's own matching; a literal `*` in the wanted
    // rule only matches an owner's `*`, since `has` and `resource_matches` compare names.
    let covered = |atom: &Request, unnamed: bool| {
        owner.iter().any(|o| {
            rule_allows(o, atom)
                && (!unnamed || o.resource_names.as_deref().is_none_or(<[String]>::is_empty))
        })
    };
    let mut missing = Vec::new();
    for rule in wanted {
        for verb in &rule.verbs {
            for url in rule.non_resource_urls.iter().flatten() {
                let atom = Request::NonResource {
                    verb: verb.clone(),
                    path: url.clone(),
                };
                if !covered(&atom, false) {
                    missing.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        non_resource_urls: Some(vec![url.clone()]),
                        ..Default::default()
                    });
                }
            }
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    let names: Vec<Option<&String>> = match rule.resource_names.as_deref() {
                        None | Some([]) => vec![None],
                        Some(names) => names.iter().map(Some).collect(),
                    };
                    let (plural, subresource) = resource.split_once('/').unwrap_or((resource, ""));
                    for name in names {
                        let atom = Request::Resource {
                            verb: verb.clone(),
                            namespace: String::new(),
                            api_group: group.clone(),
                            resource: plural.to_string(),
                            subresource: subresource.to_string(),
                            name: name.cloned().unwrap_or_default(),
                        };
                        if !covered(&atom, name.is_none()) {
                            missing.push(PolicyRule {
                                verbs: vec![verb.clone()],
                                api_groups: Some(vec![group.clone()]),
                                resources: Some(vec![resource.clone()]),
                                resource_names: name.map(|n| vec![n.clone()]),
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
    }
    missing
}

/// The rules a role reference stands for, in `namespace` for a Role.
pub fn role_rules(
    source: &dyn RbacSource,
    namespace: &str,
    role_ref: &RoleRef,
) -> Option<Vec<PolicyRule>> {
    match role_ref.kind.as_str() {
        "ClusterRole" => source
            .cluster_role(&role_ref.name)
            .map(|r| r.rules.unwrap_or_default()),
        "Role" => source
            .role(namespace, &role_ref.name)
            .map(|r| r.rules.unwrap_or_default()),
        _ => None,
    }
}

/// Upstream's wording of an attempted escalation.
pub fn escalation_message(user: &UserInfo, missing: &[PolicyRule]) -> String {
    let rules: Vec<String> = missing
        .iter()
        .map(|r| {
            if let Some(urls) = &r.non_resource_urls {
                format!("{{NonResourceURLs:{urls:?}, Verbs:{:?}}}", r.verbs)
            } else {
                format!(
                    "{{APIGroups:{:?}, Resources:{:?}{}, Verbs:{:?}}}",
                    r.api_groups.clone().unwrap_or_default(),
                    r.resources.clone().unwrap_or_default(),
                    r.resource_names
                        .as_ref()
                        .map(|n| format!(", ResourceNames:{n:?}"))
                        .unwrap_or_default(),
                    r.verbs
                )
            }
        })
        .collect();
    format!(
        "user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        user.groups,
        rules.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: strings(verbs),
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            resource_names: (!names.is_empty()).then(|| strings(names)),
            ..Default::default()
        }
    }

    #[test]
    fn the_index_decides_as_the_scan_does_for_the_same_reason() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let namespaces = ["", "a", "b"];
        // Few names, so that a user often matches several subjects of several bindings.
        let names = ["ann", "ops", "builder"];
        let rules = [
            rule(&["get"], &[""], &["pods"], &[]),
            rule(&["*"], &["*"], &["*"], &[]),
            rule(&["list", "watch"], &["apps"], &["deployments"], &[]),
            rule(&["get"], &[""], &["secrets"], &["token"]),
        ];
        for _ in 0..200 {
            let mut source = Listed::default();
            for (i, rule) in rules.iter().enumerate() {
                source.cluster_roles.push(ClusterRole {
                    metadata: ObjectMeta {
                        name: Some(format!("r{i}")),
                        ..Default::default()
                    },
                    rules: Some(vec![rule.clone()]),
                    ..Default::default()
                });
                source.roles.push(Role {
                    metadata: ObjectMeta {
                        name: Some(format!("r{i}")),
                        namespace: Some("a".into()),
                        ..Default::default()
                    },
                    rules: Some(vec![rule.clone()]),
                });
            }
            let subjects = |rng: &mut rand::rngs::StdRng| {
                (0..rng.random_range(0..4))
                    .map(|_| Subject {
                        kind: ["User", "Group", "ServiceAccount", "Other"][rng.random_range(0..4)]
                            .into(),
                        name: names[rng.random_range(0..names.len())].into(),
                        namespace: Some(namespaces[rng.random_range(0..3)].into()),
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
            };
            for i in 0..rng.random_range(0..4) {
                source.cluster_role_bindings.push(ClusterRoleBinding {
                    metadata: ObjectMeta {
                        name: Some(format!("crb{i}")),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        kind: ["ClusterRole", "Role"][rng.random_range(0..2)].into(),
                        name: format!("r{}", rng.random_range(0..5)),
                        api_group: "rbac.authorization.k8s.io".into(),
                    },
                    subjects: Some(subjects(&mut rng)),
                });
            }
            for i in 0..rng.random_range(0..6) {
                source.role_bindings.push(RoleBinding {
                    metadata: ObjectMeta {
                        name: Some(format!("rb{i}")),
                        namespace: Some(namespaces[rng.random_range(1..3)].into()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        kind: ["ClusterRole", "Role"][rng.random_range(0..2)].into(),
                        name: format!("r{}", rng.random_range(0..5)),
                        api_group: "rbac.authorization.k8s.io".into(),
                    },
                    subjects: Some(subjects(&mut rng)),
                });
            }
            let index = RbacIndex::build(&source);
            for _ in 0..20 {
                let user = UserInfo {
                    name: match rng.random_range(0..3) {
                        0 => format!(
                            "system:serviceaccount:{}:{}",
                            namespaces[rng.random_range(0..3)],
                            names[rng.random_range(0..names.len())]
                        ),
                        _ => names[rng.random_range(0..names.len())].into(),
                    },
                    groups: vec![names[rng.random_range(0..names.len())].into()],
                };
                let request = Request::Resource {
                    verb: ["get", "list", "delete"][rng.random_range(0..3)].into(),
                    namespace: namespaces[rng.random_range(0..3)].into(),
                    api_group: ["", "apps"][rng.random_range(0..2)].into(),
                    resource: ["pods", "deployments", "secrets"][rng.random_range(0..3)].into(),
                    subresource: String::new(),
                    name: ["", "token"][rng.random_range(0..2)].into(),
                };
                assert_eq!(
                    index.authorize(&user, &request),
                    authorize(&source, &user, &request),
                    "{user:?} {request:?} over {source:#?}"
                );
            }
        }
    }

    #[test]
    fn a_role_is_covered_only_by_rules_that_hold_each_of_its_atoms() {
        let owner = [
            rule(&["get", "list"], &[""], &["pods"], &[]),
            rule(&["update"], &["apps"], &["*/scale"], &[]),
            rule(&["delete"], &[""], &["secrets"], &["db"]),
            PolicyRule {
                verbs: vec!["get".into()],
                non_resource_urls: Some(vec!["/healthz*".into()]),
                ..Default::default()
            },
        ];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["pods"], &["web"])]).is_empty());
        assert!(
            uncovered(
                &owner,
                &[rule(&["update"], &["apps"], &["deployments/scale"], &[])]
            )
            .is_empty()
        );
        assert!(uncovered(&owner, &[rule(&["delete"], &[""], &["secrets"], &["db"])]).is_empty());
        // A named grant does not cover every name, and `*` is only covered by `*`.
        assert_eq!(
            uncovered(&owner, &[rule(&["delete"], &[""], &["secrets"], &[])]).len(),
            1
        );
        assert_eq!(
            uncovered(&owner, &[rule(&["*"], &[""], &["pods"], &[])]).len(),
            1
        );
        assert_eq!(
            uncovered(&owner, &[rule(&["get", "watch"], &[""], &["pods"], &[])]).len(),
            1
        );
        let url = |path: &str| PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec![path.into()]),
            ..Default::default()
        };
        assert!(uncovered(&owner, &[url("/healthz/etcd")]).is_empty());
        assert_eq!(uncovered(&owner, &[url("/metrics")]).len(), 1);
    }
}
