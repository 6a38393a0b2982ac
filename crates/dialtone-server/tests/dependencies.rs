//! The server and the controllers know no cloud: the sim, like any provider, is a backend
//! the binary builds (`dialtone-backend`) and hands them. Checked over the workspace's own
//! manifests, so that a dependency added by mistake fails here, not in review.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace crate's normal (not dev or build) dependencies within the workspace.
fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let dependencies = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|name| members.contains(name))
                .map(String::from)
                .collect();
            (p["name"].as_str().unwrap().to_string(), dependencies)
        })
        .collect()
}

/// Every workspace crate `root` builds on, directly or not.
fn closure<'a>(graph: &'a BTreeMap<String, Vec<String>>, root: &'a str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut next = vec![root];
    while let Some(name) = next.pop() {
        for dependency in &graph[name] {
            if seen.insert(dependency.as_str()) {
                next.push(dependency);
            }
        }
    }
    seen
}

#[test]
fn the_server_and_the_controllers_depend_on_no_cloud() {
    let graph = workspace_dependencies();
    for crate_name in ["dialtone-server", "dialtone-controllers"] {
        let reached = closure(&graph, crate_name);
        for cloud in ["dialtone-sim", "dialtone-simkube", "dialtone-backend"] {
            assert!(
                !reached.contains(cloud),
                "{crate_name} depends on {cloud}: {reached:?}"
            );
        }
    }
    // The check sees what it should: the binary does reach the sim, through its backends.
    let binary = closure(&graph, "dialtone");
    assert!(binary.contains("dialtone-backend") && binary.contains("dialtone-sim"));
}
