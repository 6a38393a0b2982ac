//! ControllerRevisions: the history of a stateful or daemon set's pod templates, as
//! upstream's controller history keeps it. Each template a set has had is a revision named
//! `{set}-{hash}`, owned by the set and numbered in the order the set took it; taking an
//! older template again gives its revision the next number. The data is the patch that
//! puts the template back, which is what `kubectl rollout undo` applies, and `kubectl
//! rollout history` lists them.

use super::*;

const HASH_LABEL: &str = "controller-revision-hash";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

fn number(revision: &Value) -> i64 {
    revision["revision"].as_i64().unwrap_or(0)
}

/// Records the set's template (whose hash is `hash`) as its newest revision, and drops the
/// oldest beyond `revisionHistoryLimit` that no pod in `in_use` still runs. The revision's
/// name.
pub(super) fn record(cluster: &ClusterApi, set: &Value, hash: &str, in_use: &[&str]) -> String {
    let set_name = name_of(set);
    let namespace = namespace_of(set);
    let name = format!("{set_name}-{hash}");
    let (all, _) = cluster.objects.list("controllerrevisions", Some(namespace));
    let mut owned: Vec<Arc<Value>> = owned_by(&all, set).into_iter().cloned().collect();
    let newest = owned.iter().map(|r| number(r)).max().unwrap_or(0);
    match owned.iter().find(|r| name_of(r) == name) {
        Some(current) if number(current) == newest => {}
        Some(current) => {
            let mut taken_again = (**current).clone();
            taken_again["revision"] = json!(newest + 1);
            if let Some(cause) = set["metadata"]["annotations"][CHANGE_CAUSE].as_str() {
                taken_again["metadata"]["annotations"][CHANGE_CAUSE] = json!(cause);
            }
            if let Ok(stored) = cluster
                .objects
                .update(&key("controllerrevisions", namespace, &name), taken_again)
            {
                owned.retain(|r| name_of(r) != name);
                owned.push(stored);
            }
        }
        None => {
            let mut template = set["spec"]["template"].clone();
            template["$patch"] = json!("replace");
            let mut labels = set["spec"]["selector"]["matchLabels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels[HASH_LABEL] = json!(hash);
            let mut metadata = json!({
                "name": name,
                "labels": labels,
                "ownerReferences": [{
                    "apiVersion": set["apiVersion"], "kind": set["kind"],
                    "name": set_name, "uid": set["metadata"]["uid"],
                    "controller": true, "blockOwnerDeletion": true,
                }],
            });
            if let Some(cause) = set["metadata"]["annotations"][CHANGE_CAUSE].as_str() {
                metadata["annotations"] = json!({ CHANGE_CAUSE: cause });
            }
            let revision = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": metadata,
                "data": {"spec": {"template": template}},
                "revision": newest + 1,
            });
            let revision = stamp_new(revision, by_plural("controllerrevisions"), namespace);
            if let Ok(stored) = cluster
                .objects
                .create(key("controllerrevisions", namespace, &name), revision)
            {
                owned.push(stored);
            }
        }
    }
    let limit = set["spec"]["revisionHistoryLimit"].as_u64().unwrap_or(10) as usize;
    owned.sort_by_key(|r| number(r));
    let removable: Vec<&Arc<Value>> = owned
        .iter()
        .filter(|r| name_of(r) != name && !in_use.contains(&name_of(r)))
        .collect();
    let excess = removable.len().saturating_sub(limit);
    for old in removable.into_iter().take(excess) {
        let _ = cluster
            .objects
            .delete(&key("controllerrevisions", namespace, name_of(old)));
    }
    name
}
