//! Audit policy (`audit.k8s.io/v1` `Policy`) as upstream's API server reads and applies it:
//! the first rule that matches a request decides how much of it the audit log keeps.
//! Sim clusters' API servers log with it; Dialtone writes the policy its plan decides and
//! reads a cluster's back to find drift.

use serde::{Deserialize, Serialize};

/// The API group and version of audit policies and events.
pub const API_VERSION: &str = "audit.k8s.io/v1";

/// The namespace and name of the ConfigMap that holds a cluster's audit policy, uploaded at
/// boot as kubeadm uploads its configuration, under [`POLICY_KEY`].
pub const POLICY_CONFIGMAP: (&str, &str) = ("kube-system", "audit-policy");
/// The key of the policy's YAML in [`POLICY_CONFIGMAP`].
pub const POLICY_KEY: &str = "policy.yaml";

/// Where the API server's `/logs/` handler (which serves the node's `/var/log`) answers
/// with the audit log: `--audit-log-path=/var/log/kubernetes/audit/audit.log`.
pub const LOG_PATH: &str = "/logs/kubernetes/audit/audit.log";

/// How much of a request the log keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// Nothing.
    None,
    /// Who, what, when and the answer's code.
    Metadata,
    /// And the request's body.
    Request,
    /// And the response's body.
    RequestResponse,
}

/// A group's resources a rule names; `resources` may be `*`, `pods/log`, `*/scale`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    /// The API group; `""` is the core group.
    #[serde(default)]
    pub group: String,
    /// Its resources; none is every resource of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The objects' names; none is every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// One rule: the requests it matches (every list empty matches anything) and their level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// How much of a matching request the log keeps.
    pub level: Level,
    /// The users it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// The groups it applies to: any of the user's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
    /// The verbs it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    /// The resources it applies to; a rule that names any matches no non-resource path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<GroupResources>,
    /// The namespaces it applies to; `""` is the cluster scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The paths it applies to, a trailing `*` a prefix; a rule that names any matches no resource.
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
    /// Stages not logged for it, beside the policy's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omit_stages: Vec<String>,
}

impl Rule {
    /// A rule that matches every request.
    pub fn at(level: Level) -> Self {
        Rule {
            level,
            users: Vec::new(),
            user_groups: Vec::new(),
            verbs: Vec::new(),
            resources: Vec::new(),
            namespaces: Vec::new(),
            non_resource_urls: Vec::new(),
            omit_stages: Vec::new(),
        }
    }
}

/// An audit policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// `audit.k8s.io/v1`.
    pub api_version: String,
    /// `Policy`.
    pub kind: String,
    /// Ignored, as upstream ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Stages never logged (`RequestReceived`, `ResponseStarted`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omit_stages: Vec<String>,
    /// In order: the first that matches decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// What the policy is asked about one request.
pub struct Attributes<'a> {
    /// Who made the request.
    pub user: &'a str,
    /// Their groups.
    pub groups: &'a [String],
    /// `get`, `list`, `create`, …; a non-resource request's is its method in lower case.
    pub verb: &'a str,
    /// What it is for.
    pub target: Target<'a>,
}

/// What a request is for.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// An object or its kind.
    Resource {
        /// `""` for the core group.
        group: &'a str,
        /// `pods`.
        resource: &'a str,
        /// `log`, or `""`.
        subresource: &'a str,
        /// `""` at the cluster scope.
        namespace: &'a str,
        /// `""` when the request names no object (a list).
        name: &'a str,
    },
    /// A path such as `/healthz`.
    NonResource {
        /// The request's path.
        path: &'a str,
    },
}

impl Policy {
    /// A policy of `rules`.
    pub fn new(omit_stages: Vec<String>, rules: Vec<Rule>) -> Self {
        Policy {
            api_version: API_VERSION.into(),
            kind: "Policy".into(),
            metadata: None,
            omit_stages,
            rules,
        }
    }

    /// Reads a policy file (YAML or JSON), refusing what upstream's loader refuses: another
    /// kind or version, unknown fields, a policy without rules.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Policy = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if policy.api_version != API_VERSION || policy.kind != "Policy" {
            return Err(format!(
                "not an audit policy: apiVersion {:?}, kind {:?} (want {API_VERSION}, Policy)",
                policy.api_version, policy.kind
            ));
        }
        if policy.rules.is_empty() {
            return Err("an audit policy needs at least one rule".into());
        }
        Ok(policy)
    }

    /// The policy as a policy file holds it.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a policy serializes")
    }

    /// How much of the request the log keeps: the first matching rule's level, `None` when
    /// no rule matches.
    pub fn level(&self, request: &Attributes) -> Level {
        self.rules
            .iter()
            .find(|rule| matches(rule, request))
            .map_or(Level::None, |rule| rule.level)
    }

    /// The rules in a line: `None for watch by system:kube-proxy; Metadata for everything`.
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(describe_rule)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn describe_rule(rule: &Rule) -> String {
    let mut scope = Vec::new();
    if !rule.verbs.is_empty() {
        scope.push(rule.verbs.join(","));
    }
    let resources: Vec<String> = rule
        .resources
        .iter()
        .flat_map(|g| {
            let names: Vec<String> = if g.resources.is_empty() {
                vec!["*".into()]
            } else {
                g.resources.clone()
            };
            names.into_iter().map(move |r| match g.group.as_str() {
                "" => r,
                group => format!("{r}.{group}"),
            })
        })
        .collect();
    if !resources.is_empty() {
        scope.push(resources.join(","));
    }
    if !rule.non_resource_urls.is_empty() {
        scope.push(rule.non_resource_urls.join(","));
    }
    if !rule.namespaces.is_empty() {
        scope.push(format!("in {}", rule.namespaces.join(",")));
    }
    let who: Vec<String> = rule
        .users
        .iter()
        .chain(&rule.user_groups)
        .cloned()
        .collect();
    if !who.is_empty() {
        scope.push(format!("by {}", who.join(",")));
    }
    if scope.is_empty() {
        scope.push("everything".into());
    }
    format!("{:?} for {}", rule.level, scope.join(" "))
}

/// Upstream's `ruleMatches`: every list the rule fills must hold the request.
fn matches(rule: &Rule, request: &Attributes) -> bool {
    if !rule.users.is_empty() && !rule.users.iter().any(|u| u == request.user) {
        return false;
    }
    if !rule.user_groups.is_empty() && !rule.user_groups.iter().any(|g| request.groups.contains(g))
    {
        return false;
    }
    if !rule.verbs.is_empty() && !rule.verbs.iter().any(|v| v == request.verb) {
        return false;
    }
    match &request.target {
        Target::Resource {
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            if !rule.non_resource_urls.is_empty() {
                return false;
            }
            if !rule.namespaces.is_empty() && !rule.namespaces.iter().any(|n| n == namespace) {
                return false;
            }
            rule.resources.is_empty()
                || rule.resources.iter().any(|g| {
                    g.group == *group
                        && (g.resources.is_empty()
                            || g.resources
                                .iter()
                                .any(|r| resource_matches(r, resource, subresource)))
                        && (g.resource_names.is_empty()
                            || g.resource_names.iter().any(|n| n == name))
                })
        }
        Target::NonResource { path } => {
            if !rule.resources.is_empty() || !rule.namespaces.is_empty() {
                return false;
            }
            rule.non_resource_urls.is_empty()
                || rule
                    .non_resource_urls
                    .iter()
                    .any(|url| match url.strip_suffix('*') {
                        Some(prefix) => path.starts_with(prefix),
                        None => url == path,
                    })
        }
    }
}

/// `pods` matches pods only; `pods/log` its subresource; `pods/*` and `*/log` either side;
/// `*` every resource and no subresource.
fn resource_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    let (want_resource, want_sub) = pattern.split_once('/').unwrap_or((pattern, ""));
    let resource_ok = want_resource == "*" || want_resource == resource;
    match (want_sub, subresource) {
        ("", "") => resource_ok,
        ("", _) => false,
        ("*", _) => resource_ok && !subresource.is_empty(),
        (want, sub) => resource_ok && want == sub,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(resource: &'static str, subresource: &'static str) -> Attributes<'static> {
        Attributes {
            user: "alice",
            groups: &[],
            verb: "get",
            target: Target::Resource {
                group: "",
                resource,
                subresource,
                namespace: "default",
                name: "x",
            },
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_none_is_the_level_of_no_match() {
        let policy = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n\
             - level: None\n  nonResourceURLs: ['/healthz*']\n\
             - level: Metadata\n  resources: [{group: '', resources: [secrets]}]\n\
             - level: RequestResponse\n  verbs: [create]\n",
        )
        .unwrap();
        assert_eq!(policy.level(&get("secrets", "")), Level::Metadata);
        // A subresource is not its resource.
        assert_eq!(policy.level(&get("secrets", "status")), Level::None);
        let health = Attributes {
            user: "alice",
            groups: &[],
            verb: "get",
            target: Target::NonResource {
                path: "/healthz/etcd",
            },
        };
        assert_eq!(policy.level(&health), Level::None);
        let create = Attributes {
            verb: "create",
            ..get("configmaps", "")
        };
        assert_eq!(policy.level(&create), Level::RequestResponse);
        assert_eq!(
            policy.describe(),
            "None for /healthz*; Metadata for secrets; RequestResponse for create"
        );
    }

    #[test]
    fn subresource_patterns_match_as_upstream_documents() {
        assert!(resource_matches("pods/log", "pods", "log"));
        assert!(resource_matches("pods/*", "pods", "log"));
        assert!(!resource_matches("pods/*", "pods", ""));
        assert!(resource_matches("*/scale", "deployments", "scale"));
        assert!(resource_matches("*", "deployments", ""));
        assert!(!resource_matches("*", "deployments", "scale"));
    }

    #[test]
    fn a_file_of_another_kind_or_with_unknown_fields_or_no_rules_is_refused() {
        assert!(Policy::parse("apiVersion: v1\nkind: ConfigMap\nrules: [{level: None}]").is_err());
        assert!(
            Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]")
                .is_err()
        );
        assert!(
            Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrulez: [{level: None}]")
                .is_err()
        );
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []").is_err());
        let round = Policy::new(
            vec!["RequestReceived".into()],
            vec![Rule::at(Level::Metadata)],
        );
        assert_eq!(Policy::parse(&round.to_yaml()).unwrap(), round);
    }
}
