//! The CLI against the real server: short paths from contexts, output formats, watch,
//! tokens, contexts and completions.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::start;
use serde_json::Value;

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn fails(output: std::process::Output) -> String {
    assert!(
        !output.status.success(),
        "should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn the_tree_with_short_paths_contexts_and_formats() {
    let server = start();
    let cli = |args: &[&str]| server.cli(args);
    assert!(ok(cli(&["whoami"])).contains("admin@demo (platform admin)"));
    assert!(
        ok(cli(&[
            "folder",
            "create",
            "eng",
            "--display-name",
            "Engineering"
        ]))
        .contains("orgs/demo/folders/eng created")
    );
    ok(cli(&[
        "project", "create", "web", "--folder", "eng", "-l", "tier=web",
    ]));
    ok(cli(&["project", "create", "demo/eng/api"]));
    let error = fails(cli(&["project", "list"]));
    assert!(
        error.contains("--folder"),
        "a missing default says how to give it: {error}"
    );
    ok(cli(&["config", "set-context", "--folder", "eng"]));
    let table = ok(cli(&["project", "list"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("web") && table.contains("tier=web") && table.contains("api"),
        "{table}"
    );
    // kubectl's conventions: -l selects, lists print as a List, and -o takes name, wide,
    // jsonpath and custom-columns.
    let selected = ok(cli(&["project", "list", "-l", "tier=web", "-o", "json"]));
    let selected: Value = serde_json::from_str(&selected).unwrap();
    assert_eq!(selected["kind"], "ProjectList");
    assert_eq!(selected["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        ok(cli(&["project", "list", "-l", "tier=web", "-o", "name"])),
        "project/web\n"
    );
    assert_eq!(
        ok(cli(&[
            "project",
            "list",
            "-o",
            "jsonpath={.items[*].metadata.name}"
        ])),
        "api web\n"
    );
    let columns = ok(cli(&[
        "project",
        "list",
        "-o",
        "custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier",
    ]));
    assert_eq!(
        columns
            .lines()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            .collect::<Vec<_>>(),
        [
            vec!["NAME", "TIER"],
            vec!["api", "<none>"],
            vec!["web", "web"]
        ],
        "{columns}"
    );
    ok(cli(&["folder", "create", "ops"]));
    ok(cli(&["project", "create", "db", "--folder", "ops"]));
    let everywhere = ok(cli(&["project", "list", "-A"]));
    let rows: Vec<Vec<&str>> = everywhere
        .lines()
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["PARENT", "NAME"],
            vec!["orgs/demo/folders/eng", "api"],
            vec!["orgs/demo/folders/eng", "web"],
            vec!["orgs/demo/folders/ops", "db"]
        ],
        "{everywhere}"
    );
    let named = ok(cli(&[
        "project", "list", "-A", "-l", "tier=web", "-o", "name",
    ]));
    assert_eq!(named, "project/web\n");
    let wide = ok(cli(&["project", "list", "-o", "wide"]));
    assert!(
        wide.lines().next().unwrap().contains("PATH")
            && wide.contains("orgs/demo/folders/eng/projects/web"),
        "{wide}"
    );
    // The shell completes existing objects' names from the server.
    ok(cli(&["folder", "create", "edge"]));
    let completed = std::process::Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["--", "dialtone", "folder", "get", "e"])
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "3")
        .env("DIALTONE_CONFIG", server.config_path())
        .env_remove("DIALTONE_CONTEXT")
        .output()
        .unwrap();
    let completed = String::from_utf8_lossy(&completed.stdout).to_string();
    let mut names: Vec<&str> = completed
        .split(['\n', '\u{b}'])
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    assert_eq!(names, ["edge", "eng"], "{completed:?}");
    ok(cli(&["folder", "delete", "edge"]));

    // A flag that means nothing for a noun is refused, not ignored, and not offered.
    let error = fails(cli(&["project", "list", "--cluster", "x"]));
    assert!(
        error.contains("--cluster means nothing for projects"),
        "{error}"
    );
    let error = fails(cli(&["cluster", "get", "dev", "--cluster", "x"]));
    assert!(error.contains("--org, --folder, --project"), "{error}");
    let help = ok(cli(&["project", "list", "--help"]));
    assert!(
        help.contains("--folder") && !help.contains("--cluster"),
        "{help}"
    );
    let error = fails(cli(&["project", "list", "-o", "table2"]));
    assert!(
        error.contains("valid formats: wide, name, json, yaml"),
        "{error}"
    );
    let error = fails(cli(&["project", "list", "-o", "jsonpath={.items[x]}"]));
    assert!(error.contains("not a path"), "{error}");
    let json: Value =
        serde_json::from_str(&ok(cli(&["project", "get", "web", "-o", "json"]))).unwrap();
    assert_eq!(json["metadata"]["labels"]["tier"], "web");
    let yaml = ok(cli(&["folder", "get", "eng", "-o", "yaml"]));
    let yaml: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(yaml["spec"]["displayName"], "Engineering");
    let described = ok(cli(&["folder", "describe", "eng"]));
    assert!(
        described.contains("Path:") && described.contains("orgs/demo/folders/eng"),
        "{described}"
    );
    assert!(described.contains("2 projects"), "{described}");

    let error = fails(cli(&["folder", "delete", "eng"]));
    assert!(
        error.contains("cascade") && error.contains("Conflict"),
        "{error}"
    );
    let error = fails(cli(&["folder", "create", "Bad_Name"]));
    assert!(
        error.contains("metadata.name") && error.contains("DNS-1123"),
        "every bad field is shown: {error}"
    );
    ok(cli(&["folder", "delete", "eng", "--cascade"]));
    let error = fails(cli(&["project", "get", "web"]));
    assert!(error.contains("not found"), "{error}");
    let orgs: Value = serde_json::from_str(&ok(cli(&["org", "list", "-o", "json"]))).unwrap();
    assert_eq!(orgs["items"][0]["metadata"]["name"], "demo");
    let audit = ok(cli(&["audit", "list", "--tail", "2"]));
    assert!(
        audit.contains("DELETE") && audit.contains("/v1/orgs/demo/folders/eng"),
        "{audit}"
    );
}

#[test]
fn tokens_and_contexts() {
    let server = start();
    let cli = |args: &[&str]| server.cli(args);
    ok(cli(&["identity", "create", "bob"]));
    let error = fails(cli(&["folder", "create", "x", "--platform-admin"]));
    assert!(error.contains("identities only"), "{error}");
    let token = ok(cli(&[
        "token",
        "create",
        "--identity",
        "bob",
        "--ttl",
        "2h",
        "--description",
        "ci",
    ]))
    .trim()
    .to_string();
    assert!(token.starts_with("dt_"), "{token}");
    let listed = ok(cli(&["token", "list"]));
    assert!(
        listed.contains("bob")
            && listed.contains("ci")
            // The secret is what follows `dt_ID_` (it may hold `_` itself).
            && !listed.contains(token.splitn(3, '_').nth(2).unwrap()),
        "{listed}"
    );

    // `dialtone login` checks before it saves: a wrong token changes nothing; bob's token
    // signs in and becomes the current context.
    let dir = tempfile::tempdir().unwrap();
    let (ca, token_file, bad_file) = (
        dir.path().join("ca.pem"),
        dir.path().join("token"),
        dir.path().join("bad"),
    );
    std::fs::write(&ca, server.ca_pem()).unwrap();
    std::fs::write(&token_file, &token).unwrap();
    std::fs::write(&bad_file, "dt_0000000000000000_nope").unwrap();
    let config = dir.path().join("config.yaml");
    let login = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dialtone"))
            .args(["login", &server.endpoint(), "--certificate-authority"])
            .arg(&ca)
            .arg("--token-file")
            .arg(file)
            .env("DIALTONE_CONFIG", &config)
            .env_remove("DIALTONE_TOKEN")
            .output()
            .unwrap()
    };
    let error = fails(login(&bad_file));
    assert!(error.contains("Unauthorized"), "{error}");
    assert!(!config.exists(), "a failed login writes nothing");
    assert!(ok(login(&token_file)).contains("as bob@demo"));
    let whoami = std::process::Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .arg("whoami")
        .env("DIALTONE_CONFIG", &config)
        .output()
        .unwrap();
    assert!(ok(whoami).starts_with("bob@demo"));

    // A second context for bob, next to the dev one.
    let path = server.config_path();
    let mut config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut bob = config["contexts"][0].clone();
    bob["name"] = "bob".into();
    bob["token"] = token.clone().into();
    config["contexts"].as_array_mut().unwrap().push(bob);
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    assert!(ok(cli(&["--context", "bob", "whoami"])).starts_with("bob@demo"));
    assert!(ok(cli(&["config", "get-contexts"])).contains("bob"));
    ok(cli(&["config", "use-context", "bob"]));
    assert_eq!(ok(cli(&["config", "current-context"])).trim(), "bob");
    let error = fails(cli(&["config", "use-context", "nosuch"]));
    assert!(error.contains("nosuch"), "{error}");
    ok(cli(&["config", "use-context", "dev"]));

    let id = token
        .trim_start_matches("dt_")
        .split('_')
        .next()
        .unwrap()
        .to_string();
    assert!(ok(cli(&["token", "revoke", &id])).contains("revoked"));
    let error = fails(cli(&["--context", "bob", "whoami"]));
    assert!(
        error.contains("Unauthorized"),
        "a revoked token stops working at once: {error}"
    );
}

#[test]
fn list_watch_prints_changes_as_they_happen() {
    let server = start();
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["folder", "list", "--watch", "-o", "json"])
        .env("DIALTONE_CONFIG", server.config_path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    ok(server.cli(&["folder", "create", "eng"]));
    let event: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("eng"))
    );
    ok(server.cli(&["folder", "delete", "eng"]));
    let event: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(event["type"], "DELETED");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[test]
fn completions_and_the_openapi_document() {
    let server = start();
    let bash = ok(server.cli(&["completion", "bash"]));
    assert!(bash.contains("_dialtone") && bash.contains("use-context"));
    // Types, regions and versions complete; the server still judges what is sent.
    for values in [
        "developer production",
        "us-east-1 us-west-2 eu-west-1",
        "1.32 1.33 1.34 1.35 1.36 1.37",
    ] {
        assert!(bash.contains(values), "{values} do not complete");
    }
    let error = fails(server.cli(&[
        "cluster",
        "create",
        "x",
        "--project",
        "web",
        "--folder",
        "eng",
        "--type",
        "huge",
        "--region",
        "mars-1",
    ]));
    assert!(
        !error.contains("invalid value") && error.contains("valid types: developer, production"),
        "the CLI sends it and the server answers: {error}"
    );
    let generated = ok(server.cli(&["openapi"]));
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap_or_default();
    assert!(
        generated.trim() == committed.trim(),
        "docs/openapi.json is stale: regenerate it with `cargo run -q -p dialtone -- openapi > docs/openapi.json`"
    );
}

#[test]
fn cluster_types_show_every_decision_with_its_reason() {
    let server = start();
    let list = ok(server.cli(&["cluster-types", "list"]));
    assert!(
        list.contains("developer") && list.contains("production"),
        "{list}"
    );
    let production: Value = serde_json::from_str(&ok(server.cli(&[
        "cluster-types",
        "describe",
        "production",
        "-o",
        "json",
    ])))
    .unwrap();
    let decisions = production["decisions"].as_array().unwrap();
    assert!(decisions.len() > 50, "{} decisions", decisions.len());
    assert!(
        decisions
            .iter()
            .all(|d| !d["reason"].as_str().unwrap().is_empty())
    );
    let nodes = decisions
        .iter()
        .find(|d| d["key"] == "controlPlane.nodes")
        .unwrap();
    assert_eq!(nodes["value"], "3");
    // Each row is enforced, naming what it builds, or advisory; the counts add up.
    let enforced = decisions
        .iter()
        .filter(|d| d["enforces"].is_string())
        .count();
    assert_eq!(production["enforced"], enforced);
    assert_eq!(production["advisory"], decisions.len() - enforced);
    let table = ok(server.cli(&["cluster-types", "describe", "developer"]));
    assert!(
        table.contains("network.vpc")
            && table.contains("shared by the project's developer clusters"),
        "{table}"
    );
    let disk = table
        .lines()
        .find(|l| l.starts_with("workers.diskType"))
        .unwrap();
    assert!(disk.contains("enforced"), "{disk}");
    let advisory = table
        .lines()
        .find(|l| l.starts_with("monitoring."))
        .unwrap();
    assert!(advisory.contains("advisory"), "{advisory}");
    assert!(
        table.contains(&format!(
            "{enforced} enforced: something built or checked follows from each; {} advisory",
            decisions.len() - enforced
        )),
        "{table}"
    );
    let wide = ok(server.cli(&["cluster-types", "describe", "production", "-o", "wide"]));
    assert!(
        wide.contains("BUILDS OR CHECKS") && wide.contains("the workers' root volume type"),
        "{wide}"
    );
    let error = fails(server.cli(&["cluster-types", "describe", "staging"]));
    assert!(
        error.contains("valid types: developer, production"),
        "{error}"
    );
}

#[test]
fn piping_into_a_reader_that_stops_early_is_not_a_crash() {
    let server = start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dialtone"))
        .args(["cluster-types", "describe", "production"])
        .env("DIALTONE_CONFIG", server.config_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the CLI has its answer from the server, as with `| true`.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "ends by SIGPIPE, quietly: {:?}",
        output.status
    );
}

#[test]
fn a_connection_from_the_cli_as_its_user_and_its_customer_would_make_it() {
    let server = common::start_with(&["--sim-time-scale", "0"]);
    let cli = |args: &[&str]| server.cli(args);
    ok(cli(&["folder", "create", "eng"]));
    ok(cli(&["project", "create", "web", "--folder", "eng"]));
    ok(cli(&[
        "config",
        "set-context",
        "--folder",
        "eng",
        "--project",
        "web",
    ]));
    ok(cli(&[
        "cluster",
        "create",
        "prod-1",
        "--type",
        "production",
        "--region",
        "us-east-1",
        "--wait",
        "--timeout",
        "2m",
    ]));
    let account = ok(cli(&["sim", "account", "create", "-o", "jsonpath={.id}"]))
        .trim()
        .to_string();
    let vpc = ok(cli(&[
        "sim",
        "vpc",
        "create",
        "--account",
        &account,
        "--cidr",
        "192.168.0.0/16",
        "-o",
        "jsonpath={.id}",
    ]))
    .trim()
    .to_string();
    let create = |region: &str| {
        cli(&[
            "connection",
            "create",
            "db",
            "--cluster",
            "prod-1",
            "--peer-account",
            &account,
            "--peer-vpc",
            &vpc,
            "--peer-cidr",
            "192.168.0.0/16",
            "--peer-region",
            region,
        ])
    };
    let error = fails(create("mars-1"));
    assert!(error.contains("us-east-1"), "the valid regions: {error}");
    assert!(ok(create("us-east-1")).contains("connections/db created"));
    // The controller asks for the peering once it sees the connection.
    let mut peering = String::new();
    for _ in 0..200 {
        peering = ok(cli(&[
            "connection",
            "get",
            "db",
            "--cluster",
            "prod-1",
            "-o",
            "jsonpath={.status.peeringId}",
        ]))
        .trim()
        .to_string();
        if !peering.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(peering.starts_with("pcx-"), "{peering}");
    let mut described = String::new();
    for _ in 0..200 {
        described = ok(cli(&[
            "connection",
            "describe",
            "db",
            "--cluster",
            "prod-1",
        ]));
        if described.contains("pending-acceptance") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        described.contains("pending-acceptance")
            && described.contains(&format!(
                "dialtone sim peering accept {peering} --account {account}"
            )),
        "the next step, with its command: {described}"
    );
    ok(cli(&[
        "sim",
        "peering",
        "accept",
        &peering,
        "--account",
        &account,
    ]));
    let mut active = String::new();
    for _ in 0..100 {
        active = ok(cli(&["connection", "list", "--cluster", "prod-1"]));
        if active.contains("active") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        active.starts_with("NAME") && active.contains("active"),
        "{active}"
    );
    assert_eq!(
        ok(cli(&["connection", "list", "-A", "-o", "name"])).trim(),
        "connection/db"
    );
    let error = fails(cli(&["cluster", "delete", "prod-1", "--yes"]));
    assert!(error.contains("deletion protection"), "{error}");
    ok(cli(&[
        "connection",
        "delete",
        "db",
        "--cluster",
        "prod-1",
        "--wait",
        "--timeout",
        "1m",
    ]));
    let left = ok(cli(&["sim", "resources", "-o", "json"]));
    assert!(!left.contains("vpcPeering"), "the peering is gone: {left}");
}
