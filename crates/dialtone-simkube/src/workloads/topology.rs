//! The scheduler's inter-pod rules, as upstream's InterPodAffinity and PodTopologySpread
//! plugins have them:
//!
//! - **required pod anti-affinity**, both ways: a pod joins no topology domain (a node, a
//!   zone) that runs a pod its terms select, nor one whose pods' terms select it;
//! - **topology spread constraints**: `DoNotSchedule` keeps a pod out of a domain where it
//!   would put the count of matching pods more than `maxSkew` above the least loaded
//!   domain's; domains are the values of the key over the nodes the pod's nodeSelector and
//!   node affinity allow, tainted ones included (upstream's default `nodeAffinityPolicy:
//!   Honor`, `nodeTaintsPolicy: Ignore`); every constraint, `ScheduleAnyway` too, prefers
//!   the least loaded domain.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::selectors::label_selector_matches;

/// The pods bound to nodes so far (the pass's own bindings included) and the nodes' labels.
pub(super) struct Bound<'a> {
    /// (pod, its node's name).
    pods: Vec<(&'a Value, String)>,
    labels: HashMap<String, &'a Value>,
    namespace_labels: HashMap<String, Value>,
}

/// Why a node is no place for a pod by the inter-pod rules, in upstream's words.
pub(super) const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub(super) const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub(super) const SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

fn anti_affinity_terms(pod: &Value) -> &[Value] {
    pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn spread_constraints(pod: &Value) -> &[Value] {
    pod["spec"]["topologySpreadConstraints"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn namespace_of(pod: &Value) -> &str {
    pod["metadata"]["namespace"].as_str().unwrap_or("")
}

/// Whether a pod has any rule this module checks.
pub(super) fn has_rules(pod: &Value) -> bool {
    !anti_affinity_terms(pod).is_empty() || !spread_constraints(pod).is_empty()
}

impl<'a> Bound<'a> {
    pub(super) fn new(
        pods: Vec<(&'a Value, String)>,
        nodes: &'a [std::sync::Arc<Value>],
        namespaces: &[std::sync::Arc<Value>],
    ) -> Self {
        Bound {
            pods,
            labels: nodes
                .iter()
                .map(|n| {
                    let name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
                    (name, &n["metadata"]["labels"])
                })
                .collect(),
            namespace_labels: namespaces
                .iter()
                .map(|n| {
                    let name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
                    (name, n["metadata"]["labels"].clone())
                })
                .collect(),
        }
    }

    pub(super) fn bind(&mut self, pod: &'a Value, node: String) {
        self.pods.push((pod, node));
    }

    /// The node's value for a topology key.
    fn domain(&self, node: &str, key: &str) -> Option<&'a str> {
        self.labels.get(node)?.get(key)?.as_str()
    }

    /// Whether the anti-affinity term of a pod in `owner_namespace` selects `other`: in the
    /// term's namespaces (its own by default), by its label selector (none selects none).
    fn term_selects(&self, term: &Value, owner_namespace: &str, other: &Value) -> bool {
        let namespace = namespace_of(other);
        let listed: Vec<&str> = term["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let by_selector = term["namespaceSelector"].is_object()
            && label_selector_matches(
                &term["namespaceSelector"],
                self.namespace_labels.get(namespace).unwrap_or(&Value::Null),
            );
        let in_namespaces = if listed.is_empty() && !term["namespaceSelector"].is_object() {
            namespace == owner_namespace
        } else {
            listed.contains(&namespace) || by_selector
        };
        in_namespaces
            && term["labelSelector"].is_object()
            && label_selector_matches(&term["labelSelector"], &other["metadata"]["labels"])
    }

    /// The pod's spread constraints, counted over the nodes its placement allows.
    pub(super) fn spreads(&self, pod: &Value, eligible: &[&Value]) -> Vec<Spread<'a>> {
        spread_constraints(pod)
            .iter()
            .map(|constraint| {
                let counts = self.spread_counts(pod, constraint, eligible);
                let min_domains = constraint["minDomains"].as_u64().unwrap_or(1) as usize;
                Spread {
                    key: constraint["topologyKey"].as_str().unwrap_or("").to_string(),
                    max_skew: constraint["maxSkew"].as_u64().unwrap_or(1),
                    required: constraint["whenUnsatisfiable"].as_str() != Some("ScheduleAnyway"),
                    counts_itself: label_selector_matches(
                        &constraint["labelSelector"],
                        &pod["metadata"]["labels"],
                    ),
                    least: if counts.len() < min_domains {
                        0
                    } else {
                        counts.values().copied().min().unwrap_or(0)
                    },
                    counts,
                }
            })
            .collect()
    }

    /// The inter-pod rule that keeps `pod` off `node`, if one does.
    pub(super) fn refuses(
        &self,
        pod: &Value,
        node: &Value,
        spreads: &[Spread],
    ) -> Option<&'static str> {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        for spread in spreads.iter().filter(|s| s.required) {
            let Some(domain) = self.domain(name, &spread.key) else {
                return Some(SPREAD_LABEL);
            };
            let skew =
                (spread.count(domain) + spread.counts_itself as u32).saturating_sub(spread.least);
            if u64::from(skew) > spread.max_skew {
                return Some(SPREAD);
            }
        }
        self.anti_affinity_refuses(pod, name)
            .then_some(ANTI_AFFINITY)
    }

    /// How crowded the node's domains are by the pod's spread constraints: the scheduler
    /// prefers the least.
    pub(super) fn crowding(&self, node: &Value, spreads: &[Spread]) -> u32 {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        spreads
            .iter()
            .filter_map(|s| Some(s.count(self.domain(name, &s.key)?)))
            .sum()
    }

    fn anti_affinity_refuses(&self, pod: &Value, node: &str) -> bool {
        let uid = &pod["metadata"]["uid"];
        let same_domain = |key: &str, other: &str| {
            self.domain(node, key)
                .is_some_and(|d| self.domain(other, key) == Some(d))
        };
        self.pods
            .iter()
            .filter(|(other, _)| other["metadata"]["uid"] != *uid)
            .any(|(other, on)| {
                let its = anti_affinity_terms(pod).iter().any(|term| {
                    same_domain(term["topologyKey"].as_str().unwrap_or(""), on)
                        && self.term_selects(term, namespace_of(pod), other)
                });
                let theirs = anti_affinity_terms(other).iter().any(|term| {
                    same_domain(term["topologyKey"].as_str().unwrap_or(""), on)
                        && self.term_selects(term, namespace_of(other), pod)
                });
                its || theirs
            })
    }

    /// How many pods a spread constraint selects, by domain, over the eligible nodes
    /// (every domain present, at zero if it runs none).
    fn spread_counts(
        &self,
        pod: &Value,
        constraint: &Value,
        eligible: &[&Value],
    ) -> BTreeMap<&'a str, u32> {
        let key = constraint["topologyKey"].as_str().unwrap_or("");
        let eligible_names: BTreeSet<&str> = eligible
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str())
            .collect();
        let mut counts: BTreeMap<&str, u32> = eligible_names
            .iter()
            .filter_map(|n| self.domain(n, key))
            .map(|d| (d, 0))
            .collect();
        for (other, on) in &self.pods {
            if namespace_of(other) == namespace_of(pod)
                && eligible_names.contains(on.as_str())
                && label_selector_matches(
                    &constraint["labelSelector"],
                    &other["metadata"]["labels"],
                )
                && let Some(d) = self.domain(on, key)
            {
                *counts.entry(d).or_default() += 1;
            }
        }
        counts
    }
}

/// One spread constraint of a pending pod, counted.
pub(super) struct Spread<'a> {
    key: String,
    max_skew: u64,
    /// `DoNotSchedule`: a filter, not only a preference.
    required: bool,
    /// The pod's own labels match the constraint's selector.
    counts_itself: bool,
    /// The least count over the domains (zero below `minDomains` domains).
    least: u32,
    counts: BTreeMap<&'a str, u32>,
}

impl Spread<'_> {
    fn count(&self, domain: &str) -> u32 {
        self.counts.get(domain).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn node(name: &str, zone: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone,
        }}}))
    }

    fn pod(name: &str, app: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "uid": name, "namespace": "shop", "labels": {"app": app}},
               "spec": spec})
    }

    fn away_from(app: &str, key: &str) -> Value {
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}},
        ]}}})
    }

    fn spread(app: &str, key: &str, when: &str) -> Value {
        json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": key,
            "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": app}}}]})
    }

    #[test]
    fn anti_affinity_keeps_pods_apart_both_ways_by_node_or_zone() {
        let nodes = vec![node("a1", "a"), node("a2", "a"), node("b1", "b")];
        let running = pod("web-0", "web", away_from("web", "kubernetes.io/hostname"));
        let bound = Bound::new(vec![(&running, "a1".to_string())], &nodes, &[]);
        let next = pod("web-1", "web", away_from("web", "kubernetes.io/hostname"));
        let refused = |p: &Value, n: usize| bound.refuses(p, &nodes[n], &[]);
        assert_eq!(refused(&next, 0), Some(ANTI_AFFINITY));
        assert_eq!(refused(&next, 1), None);
        // A pod with no rules of its own is still kept off by the running pod's terms.
        let plain = pod("web-2", "web", json!({}));
        assert_eq!(refused(&plain, 0), Some(ANTI_AFFINITY));
        let other_app = pod("db-0", "db", json!({}));
        assert_eq!(refused(&other_app, 0), None);
        // By zone, the whole zone is taken.
        let zonal = pod(
            "web-3",
            "web",
            away_from("web", "topology.kubernetes.io/zone"),
        );
        assert_eq!(refused(&zonal, 1), Some(ANTI_AFFINITY));
        assert_eq!(refused(&zonal, 2), None);
        // Another namespace is not selected unless the term names it.
        let mut elsewhere = pod("web-4", "web", away_from("web", "kubernetes.io/hostname"));
        elsewhere["metadata"]["namespace"] = json!("other");
        let bound_plain = Bound::new(vec![(&other_app, "a1".to_string())], &nodes, &[]);
        assert_eq!(bound_plain.refuses(&elsewhere, &nodes[0], &[]), None);
    }

    #[test]
    fn spreads_hold_the_skew_and_prefer_the_emptiest_domain() {
        let nodes = vec![node("a1", "a"), node("b1", "b"), node("c1", "c")];
        let eligible: Vec<&Value> = nodes.iter().map(|n| &**n).collect();
        let zone = "topology.kubernetes.io/zone";
        let placed = [
            pod("web-0", "web", json!({})),
            pod("web-1", "web", json!({})),
            pod("web-2", "web", json!({})),
        ];
        let bound = Bound::new(
            vec![
                (&placed[0], "a1".to_string()),
                (&placed[1], "a1".to_string()),
                (&placed[2], "b1".to_string()),
            ],
            &nodes,
            &[],
        );
        let next = pod("web-3", "web", spread("web", zone, "DoNotSchedule"));
        let spreads = bound.spreads(&next, &eligible);
        // a has 2, b 1, c 0: only c keeps the skew within 1.
        assert_eq!(bound.refuses(&next, &nodes[0], &spreads), Some(SPREAD));
        assert_eq!(bound.refuses(&next, &nodes[1], &spreads), Some(SPREAD));
        assert_eq!(bound.refuses(&next, &nodes[2], &spreads), None);
        // ScheduleAnyway refuses nothing, but the emptiest zone is preferred.
        let soft = pod("web-4", "web", spread("web", zone, "ScheduleAnyway"));
        let spreads = bound.spreads(&soft, &eligible);
        assert!(
            nodes
                .iter()
                .all(|n| bound.refuses(&soft, n, &spreads).is_none())
        );
        let crowding: Vec<u32> = nodes.iter().map(|n| bound.crowding(n, &spreads)).collect();
        assert_eq!(crowding, [2, 1, 0]);
        // A node without the key is no domain.
        let bare = Arc::new(json!({"metadata": {"name": "x", "labels": {}}}));
        let hard = bound.spreads(&next, &eligible);
        assert_eq!(bound.refuses(&next, &bare, &hard), Some(SPREAD_LABEL));
    }
}
