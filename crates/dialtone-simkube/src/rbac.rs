//! The RBAC authorizer, with upstream semantics: rules are only additive; a ClusterRoleBinding
//! grants its ClusterRole everywhere; a RoleBinding grants its Role or ClusterRole in its own
//! namespace only; resourceNames narrow a rule to named objects (so never list or create);
//! nonResourceURLs apply to paths, with a trailing `*` as a prefix; `*` matches any verb,
//! group or resource, and `*/sub` any resource's subresource. Escalation prevention: a role
//! may only be written by someone who holds every rule in it (or may `escalate`), and a
//! binding only by someone who holds the bound role (or may `bind` it).

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// What is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Resource {
        verb: String,
        namespace: String,
        api_group: String,
        resource: String,
        subresource: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Request {
    pub fn verb(&self) -> &str {
        match self {
            Request::Resource { verb, .. } | Request::NonResource { verb, .. } => verb,
        }
    }
}

/// Where the authorizer reads roles and bindings from.
pub trait RbacSource {
    fn cluster_role_bindings(&self) -> Vec<ClusterRoleBinding>;
    fn role_bindings(&self, namespace: &str) -> Vec<RoleBinding>;
    fn cluster_role(&self, name: &str) -> Option<ClusterRole>;
    fn role(&self, namespace: &str, name: &str) -> Option<Role>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
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

fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
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

/// Whether `owner` holds everything `wanted` grants: each atom (one verb, group, resource,
/// name or URL) of every wanted rule must be in some owner rule; a wanted `*` needs an owner
/// `*`, as upstream's `Covers` requires.
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut missing = Vec::new();
    for rule in wanted {
        for verb in &rule.verbs {
            for url in rule.non_resource_urls.iter().flatten() {
                let covered = owner.iter().any(|o| {
                    has(&o.verbs, verb)
                        && o.non_resource_urls.iter().flatten().any(|u| {
                            u == "*"
                                || u == url
                                || (u.ends_with('*') && url.starts_with(u.trim_end_matches('*')))
                        })
                });
                if !covered {
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
                    for name in names {
                        let covered = owner.iter().any(|o| {
                            has(&o.verbs, verb)
                                && has(o.api_groups.as_deref().unwrap_or_default(), group)
                                && o.resources.iter().flatten().any(|r| {
                                    r == "*"
                                        || r == resource
                                        || resource.split_once('/').is_some_and(|(_, sub)| {
                                            r.strip_prefix("*/") == Some(sub)
                                        })
                                })
                                && match (o.resource_names.as_deref(), name) {
                                    (None | Some([]), _) => true,
                                    (Some(names), Some(name)) => names.contains(name),
                                    (Some(_), None) => false,
                                }
                        });
                        if !covered {
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
