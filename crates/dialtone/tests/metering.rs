//! Usage metered to the second, exactly once: the real binary with the sim, whose own
//! instance lifetimes (`GET /v1/sim/lifetimes`) are what every total is checked against,
//! through scale events, deletion and `kill -9` of the server.

mod common;

use std::time::{Duration, Instant};

use common::{Api, cli_ok};
use dialtone_cloud::InstanceCatalog;
use dialtone_testkit::DevServer;
use serde_json::{Value, json};

/// Two-second periods, read five times a second: an hour's behaviour in seconds.
const METERING: [&str; 4] = ["--metering-period", "2", "--metering-interval-ms", "200"];

fn start() -> DevServer {
    let mut args = vec!["--sim-time-scale", "0.005"];
    args.extend(METERING);
    common::start_with(&args)
}

async fn tree(api: &Api) {
    api.create("/v1/orgs/demo/folders", "eng", json!({})).await;
    api.create("/v1/orgs/demo/folders/eng/projects", "web", json!({}))
        .await;
}

fn create_cluster(server: &DevServer, name: &str) {
    cli_ok(
        server,
        &[
            "cluster",
            "create",
            name,
            "--folder",
            "eng",
            "--project",
            "web",
            "--type",
            "developer",
            "--region",
            "us-east-1",
            "--wait",
        ],
    );
}

fn delete_cluster(server: &DevServer, name: &str) {
    let args = ["--folder", "eng", "--project", "web", "--wait", "--yes"];
    cli_ok(server, &[&["cluster", "delete", name][..], &args].concat());
}

async fn cluster_uid(api: &Api, name: &str) -> String {
    let (status, cluster) = api
        .get(&format!(
            "/v1/orgs/demo/folders/eng/projects/web/clusters/{name}"
        ))
        .await;
    assert_eq!(status, 200, "{cluster}");
    cluster["metadata"]["uid"].as_str().unwrap().to_string()
}

/// What the sim says the cluster's instances ran: (milli-vCPU-seconds, MiB-seconds), each
/// lifetime in whole seconds, its start rounded down and its end up.
async fn provider_usage(api: &Api, uid: &str) -> (i64, i64, usize) {
    let (status, list) = api.get("/v1/sim/lifetimes").await;
    assert_eq!(status, 200, "{list}");
    let catalog = InstanceCatalog::builtin();
    let mut totals = (0, 0, 0);
    for lifetime in list["items"].as_array().unwrap() {
        if lifetime["tags"]["dialtone.dev/cluster"] != uid {
            continue;
        }
        let time = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
        let start = time(&lifetime["startedAt"]);
        let end = time(&lifetime["endedAt"]);
        let ceil = end.as_second() + i64::from(end.subsec_nanosecond() > 0);
        let seconds = (ceil - start.as_second()).max(0);
        let facts = catalog
            .get(lifetime["instanceType"].as_str().unwrap())
            .unwrap();
        totals.0 += seconds * i64::from(facts.vcpus) * 1000;
        totals.1 += seconds * facts.memory_mib as i64;
        totals.2 += 1;
    }
    totals
}

/// The usage report over this year until tomorrow: whole days read from the day totals
/// (but by hour, which reads the records).
async fn usage(api: &Api, query: &str) -> Value {
    let tomorrow = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap();
    let (status, report) = api
        .get(&format!(
            "/v1/orgs/demo/usage?from=2026-01-01&to={tomorrow}&{query}"
        ))
        .await;
    assert_eq!(status, 200, "{report}");
    report
}

fn amount(row: &Value, part: &str, field: &str) -> i64 {
    row[part][field].as_i64().unwrap()
}

/// Waits until every second of the cluster's lifetimes is recorded (nothing provisional
/// left) and returns the usage report by cluster.
async fn settled_usage(api: &Api, uid: &str) -> (Value, (i64, i64, usize)) {
    let start = Instant::now();
    loop {
        let expected = provider_usage(api, uid).await;
        let report = usage(api, "by=cluster").await;
        let total = &report["total"];
        if amount(total, "provisional", "cpuMilliSeconds") == 0
            && amount(total, "recorded", "cpuMilliSeconds") == expected.0
        {
            return (report, expected);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "usage never matched the provider's lifetimes {expected:?}: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rows of a report add up to its total, exactly, in every unit of what is billed.
fn rows_sum_to_total(report: &Value) {
    parts_sum_to_total(report, &["recorded", "provisional"]);
}

/// The rows' `parts` add up to the total's, exactly, in every unit.
fn parts_sum_to_total(report: &Value, parts: &[&str]) {
    for part in parts {
        for field in ["cpuMilliSeconds", "memoryMibSeconds", "costMicros"] {
            let sum: i64 = report["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| amount(r, part, field))
                .sum();
            assert_eq!(
                sum,
                amount(&report["total"], part, field),
                "{part}.{field}: {report:#}"
            );
        }
    }
}

#[tokio::test]
async fn a_clusters_usage_equals_its_instances_lifetimes_to_the_second_through_a_scale_event() {
    let server = start();
    let api = Api::admin(&server);
    tree(&api).await;
    create_cluster(&server, "dev");
    let uid = cluster_uid(&api, "dev").await;
    // While it runs, what it used shows as provisional and closed periods as records.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running = usage(&api, "by=cluster").await;
    assert!(
        amount(&running["total"], "recorded", "cpuMilliSeconds") > 0,
        "{running:#}"
    );
    assert_eq!(running["rows"][0]["group"], "eng/web/dev");
    // A scale event in the middle of a period.
    cli_ok(
        &server,
        &[
            "cluster",
            "update",
            "dev",
            "--folder",
            "eng",
            "--project",
            "web",
            "--min-nodes",
            "2",
            "--max-nodes",
            "2",
            "--wait",
        ],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // What it burns per hour is in /metrics; what it cost this month, in describe.
    let (status, _, metrics) = api.get_text("/metrics").await;
    assert_eq!(status, 200);
    let burn = |series: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    let org_burn = burn("dialtone_org_burn_rate_usd_per_hour{org=\"demo\"}");
    let cluster_burn =
        burn("dialtone_cluster_burn_rate_usd_per_hour{org=\"demo\",cluster=\"eng/web/dev\"}");
    assert!(
        org_burn > 0.0 && (org_burn - cluster_burn).abs() < 1e-9,
        "{metrics}"
    );
    let described = cli_ok(
        &server,
        &[
            "cluster",
            "describe",
            "dev",
            "--folder",
            "eng",
            "--project",
            "web",
        ],
    );
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("Cost:") && l.contains("this month (UTC)")),
        "{described}"
    );
    delete_cluster(&server, "dev");
    let (report, (cpu, memory, instances)) = settled_usage(&api, &uid).await;
    assert!(instances >= 3, "a control plane and two workers ran");
    let total = &report["total"];
    assert_eq!(amount(total, "recorded", "cpuMilliSeconds"), cpu);
    assert_eq!(amount(total, "recorded", "memoryMibSeconds"), memory);
    assert!(amount(total, "recorded", "costMicros") > 0);
    rows_sum_to_total(&report);
    // Any grouping adds up to the same total.
    for by in ["none", "folder", "project", "day", "hour"] {
        let grouped = usage(&api, &format!("by={by}")).await;
        rows_sum_to_total(&grouped);
        assert_eq!(grouped["total"], report["total"], "by {by}");
    }
    // This month's invoice: one line for the cluster, equal to its records; still open.
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let (status, invoice) = api.get(&format!("/v1/orgs/demo/invoices/{month}")).await;
    assert_eq!(status, 200, "{invoice}");
    assert_eq!(invoice["status"], "open");
    let lines = invoice["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{invoice:#}");
    assert_eq!(lines[0]["cluster"], "eng/web/dev");
    assert_eq!(lines[0]["clusterUid"], uid.as_str());
    assert_eq!(lines[0]["amounts"], total["recorded"]);
    assert_eq!(invoice["total"], total["recorded"]);
    // A month long past, with nothing in it, is closed and empty.
    let (status, old) = api.get("/v1/orgs/demo/invoices/2026-01").await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(
        (
            old["status"].as_str(),
            old["lines"].as_array().map(Vec::len)
        ),
        (Some("closed"), Some(0))
    );
    for bad in ["2026-13", "december", "2099-01"] {
        let (status, error) = api.get(&format!("/v1/orgs/demo/invoices/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {error}");
    }
    // The CLI shows it; CSV carries the exact integers.
    let table = cli_ok(
        &server,
        &["usage", "--by", "cluster", "--from", "2026-01-01"],
    );
    assert!(table.contains("eng/web/dev"), "{table}");
    let csv = cli_ok(
        &server,
        &[
            "usage",
            "--by",
            "cluster",
            "--from",
            "2026-01-01",
            "-o",
            "csv",
        ],
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("eng/web/dev,{cpu},{memory},"))),
        "{csv}"
    );
}

#[tokio::test]
async fn kill_9_of_the_server_while_it_meters_leaves_neither_a_gap_nor_a_double_count() {
    let mut server = start();
    let api = Api::admin(&server);
    tree(&api).await;
    create_cluster(&server, "dev");
    let uid = cluster_uid(&api, "dev").await;
    // Killed at a different point of its metering each time, by seed.
    let mut seed: u64 = 0x5eed;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(150 + (seed >> 33) % 1200);
        tokio::time::sleep(delay).await;
        server.kill9();
        // Down long enough for periods to close unrecorded.
        tokio::time::sleep(Duration::from_millis((seed >> 40) % 2500)).await;
        server.start_again().unwrap();
    }
    let api = Api::admin(&server);
    delete_cluster(&server, "dev");
    let (report, (_, memory, _)) = settled_usage(&api, &uid).await;
    assert_eq!(
        amount(&report["total"], "recorded", "memoryMibSeconds"),
        memory
    );
    rows_sum_to_total(&report);
}

#[tokio::test]
async fn money_is_seen_by_org_admins_and_billing_only_and_bad_ranges_are_refused() {
    let server = start();
    let admin = Api::admin(&server);
    tree(&admin).await;
    for who in ["finance", "dev"] {
        admin
            .create("/v1/orgs/demo/identities", who, json!({}))
            .await;
    }
    let (status, policy) = admin
        .put_policy(
            "/v1/orgs/demo/policy",
            json!([
                {"role": "org.billing", "subjects": ["user:finance"]},
                {"role": "folder.admin", "subjects": ["user:dev"]},
            ]),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let token = |who: &'static str| {
        let admin = &admin;
        async move {
            let (status, token) = admin
                .post(&format!("/v1/orgs/demo/identities/{who}/tokens"), json!({}))
                .await;
            assert_eq!(status, 201, "{token}");
            admin.with_token(token["token"].as_str().unwrap())
        }
    };
    let (finance, dev) = (token("finance").await, token("dev").await);
    let (status, report) = finance.get("/v1/orgs/demo/usage?by=cluster").await;
    assert_eq!(status, 200, "{report}");
    let (status, report) = finance
        .get("/v1/orgs/demo/usage?folder=eng&project=web")
        .await;
    assert_eq!(status, 200, "{report}");
    // A folder admin sees the folder, not its money: 403 where it can see, 404 above.
    let (status, error) = dev.get("/v1/orgs/demo/usage?folder=eng").await;
    assert_eq!(status, 403, "{error}");
    let (status, error) = dev.get("/v1/orgs/demo/usage").await;
    assert_eq!(status, 404, "{error}");
    // Another tenant's org is not there at all, for anyone of this one.
    admin.tenant("other").await;
    let (status, error) = finance.get("/v1/orgs/other/usage").await;
    assert_eq!(status, 404, "{error}");
    // Bad input: a clear 400 naming what is valid.
    for (query, says) in [
        ("from=2026-12-08&to=2026-12-01", "inverted"),
        ("from=2020-01-01&to=2026-01-01", "more than 400 days"),
        (
            "by=galaxy",
            "valid: none, folder, project, cluster, day, hour",
        ),
        ("from=yesterday", "give a day (2026-12-07)"),
        ("project=web", "give every level above it"),
        ("currency=eur", "unknown query parameter"),
    ] {
        let (status, error) = admin.get(&format!("/v1/orgs/demo/usage?{query}")).await;
        assert_eq!(status, 400, "{query}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{query}: {error}"
        );
    }
}

/// A pod of `cpu` milli-vCPUs and `memory` MiB requested, in `default`.
fn pod_manifest(name: &str, cpu: u32, memory: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  containers:\n  - name: app\n    image: nginx\n    resources:\n      requests:\n        cpu: {cpu}m\n        memory: {memory}Mi\n"
    )
}

/// Creates the pod and waits until a kubelet started it: its `startTime`.
async fn started_pod(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    cpu: u32,
    memory: u32,
) -> jiff::Timestamp {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, pod_manifest(name, cpu, memory)).unwrap();
    common::kubectl_ok(kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
    let begun = Instant::now();
    loop {
        let pod: Value = serde_json::from_str(&common::kubectl_ok(
            kubeconfig,
            &["get", "pod", name, "-o", "json"],
        ))
        .unwrap();
        if let Some(started) = pod["status"]["startTime"].as_str() {
            return started.parse().unwrap();
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "{name} never started: {pod:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row<'a>(report: &'a Value, group: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == group)
        .unwrap_or_else(|| panic!("no row {group}: {report:#}"))
}

/// Every amount of the rows adds up to the total's.
fn every_side_sums_to_total(report: &Value) {
    parts_sum_to_total(
        report,
        &["recorded", "provisional", "capacity", "requests", "idle"],
    );
}

#[tokio::test]
async fn pods_requests_are_metered_to_the_second_and_an_org_billed_by_requests_pays_them() {
    let server = start();
    let api = Api::admin(&server);
    tree(&api).await;
    // Billed by requests at $1 a vCPU-second and nothing for memory, so that a cost shows
    // the org's own prices were used: a milli-vCPU-second costs 1,000 micro-dollars.
    let (status, billing) = api
        .put(
            "/v1/orgs/demo/billing",
            json!({"mode": "requests", "rates": {"us-east-1": {"vcpuHourMicros": 3_600_000_000i64, "gibHourMicros": 0}}}),
        )
        .await;
    assert_eq!(status, 200, "{billing}");
    assert_eq!(billing["mode"], "requests");
    let east = billing["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "us-east-1")
        .unwrap();
    assert_eq!(
        (
            east["vcpuHourMicros"].as_i64(),
            east["overridden"].as_bool()
        ),
        (Some(3_600_000_000), Some(true))
    );
    create_cluster(&server, "dev");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    common::credentials(&server, "dev", &kubeconfig);
    // One pod deleted as soon as it started, one that runs a few seconds.
    let steady_start = started_pod(&kubeconfig, dir.path(), "steady", 250, 64).await;
    started_pod(&kubeconfig, dir.path(), "blink", 100, 128).await;
    common::kubectl_ok(&kubeconfig, &["delete", "pod", "blink", "--wait=false"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = jiff::Timestamp::now();
    common::kubectl_ok(&kubeconfig, &["delete", "pod", "steady", "--wait=false"]);
    let after = jiff::Timestamp::now();
    // Both pods' seconds are recorded once nothing of `default` is provisional.
    let begun = Instant::now();
    let report = loop {
        let report = usage(&api, "by=namespace").await;
        let settled = report["rows"].as_array().unwrap().iter().any(|r| {
            r["group"] == "eng/web/dev/default"
                && amount(r, "provisional", "cpuMilliSeconds") == 0
                && amount(r, "recorded", "cpuMilliSeconds") > 0
        });
        if settled {
            break report;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "the pods' usage never settled: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let default = row(&report, "eng/web/dev/default");
    let (cpu, memory) = (
        amount(default, "requests", "cpuMilliSeconds"),
        amount(default, "requests", "memoryMibSeconds"),
    );
    // 250 a + 100 b = cpu and 64 a + 128 b = memory, for a and b the pods' seconds.
    let steady = (128 * cpu - 100 * memory) / 25_600;
    let blink = (memory - 64 * steady) / 128;
    assert_eq!(
        (250 * steady + 100 * blink, 64 * steady + 128 * blink),
        (cpu, memory),
        "{default:#}"
    );
    assert!(
        (1..=2).contains(&blink),
        "a pod deleted as it started counts its second: {blink}"
    );
    let ceil = |t: jiff::Timestamp| t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    assert!(
        (before.as_second() - steady_start.as_second()
            ..=ceil(after) + 1 - steady_start.as_second())
            .contains(&steady),
        "steady ran {steady} s, from {steady_start} until it was deleted between {before} and {after}"
    );
    // Billed by requests, at the org's own prices; the namespace's share of the capacity
    // is what it requested, and what nobody requested is `(idle)`.
    assert_eq!(default["recorded"], default["requests"]);
    assert_eq!(amount(default, "requests", "costMicros"), 1000 * cpu);
    assert_eq!(amount(default, "idle", "cpuMilliSeconds"), 0);
    let idle = row(&report, "eng/web/dev/(idle)");
    assert_eq!(idle["idle"], idle["capacity"]);
    assert_eq!(
        amount(idle, "recorded", "costMicros"),
        0,
        "idle capacity is not billed by requests"
    );
    every_side_sums_to_total(&report);
    // The cluster deleted, its pods end with it; the invoice bills the requests' records.
    let uid = cluster_uid(&api, "dev").await;
    delete_cluster(&server, "dev");
    let begun = Instant::now();
    let settled = loop {
        let (capacity, _, _) = provider_usage(&api, &uid).await;
        let report = usage(&api, "by=cluster").await;
        let total = &report["total"];
        if amount(total, "provisional", "cpuMilliSeconds") == 0
            && amount(total, "capacity", "cpuMilliSeconds") == capacity
        {
            break report;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "never settled: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    every_side_sums_to_total(&settled);
    let by_namespace = usage(&api, "by=namespace").await;
    every_side_sums_to_total(&by_namespace);
    assert_eq!(
        by_namespace["total"], settled["total"],
        "every grouping sums to one total"
    );
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let (status, invoice) = api.get(&format!("/v1/orgs/demo/invoices/{month}")).await;
    assert_eq!(status, 200, "{invoice}");
    assert_eq!(invoice["mode"], "requests");
    assert_eq!(
        invoice["total"], settled["total"]["recorded"],
        "{invoice:#}"
    );
}

#[tokio::test]
async fn only_platform_admins_set_an_orgs_billing_and_bad_prices_change_nothing() {
    let server = start();
    let admin = Api::admin(&server);
    admin
        .create("/v1/orgs/demo/identities", "owner", json!({}))
        .await;
    let (status, policy) = admin
        .put_policy(
            "/v1/orgs/demo/policy",
            json!([{"role": "org.admin", "subjects": ["user:owner"]}]),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let (status, token) = admin
        .post("/v1/orgs/demo/identities/owner/tokens", json!({}))
        .await;
    assert_eq!(status, 201, "{token}");
    let owner = admin.with_token(token["token"].as_str().unwrap());
    let (status, before) = owner.get("/v1/orgs/demo/billing").await;
    assert_eq!(status, 200, "an org admin sees the org's prices: {before}");
    assert_eq!(before["mode"], "capacity");
    let (status, error) = owner
        .put("/v1/orgs/demo/billing", json!({"mode": "requests"}))
        .await;
    assert_eq!(
        status, 403,
        "an org admin cannot set its own prices: {error}"
    );
    for (body, code, says) in [
        (
            json!({"mode": "free"}),
            400,
            "expected `capacity` or `requests`",
        ),
        (
            json!({"rates": {"us-east-1": {"vcpuHourMicros": -1, "gibHourMicros": 0}}}),
            422,
            "cannot be negative",
        ),
        (
            json!({"rates": {"us-east-1": {"vcpuHourMicros": 1}}}),
            400,
            "gibHourMicros",
        ),
        (
            json!({"rates": {"mars-1": {"vcpuHourMicros": 1, "gibHourMicros": 1}}}),
            422,
            "valid: us-east-1",
        ),
        (json!({"currency": "eur"}), 400, "unknown field"),
    ] {
        let (status, error) = admin.put("/v1/orgs/demo/billing", body.clone()).await;
        assert_eq!(status, code, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{body}: {error}"
        );
    }
    let (_, after) = owner.get("/v1/orgs/demo/billing").await;
    assert_eq!(after, before, "a refused change changed nothing");
    // The CLI sets and shows them.
    cli_ok(
        &server,
        &[
            "billing",
            "set",
            "--mode",
            "requests",
            "--rate",
            "us-east-1=0.05,0.005",
        ],
    );
    let shown = cli_ok(&server, &["billing", "get"]);
    assert!(
        shown.contains("$0.050000")
            && shown.contains("org's own")
            && shown.contains("billed by requests"),
        "{shown}"
    );
    let out = server.cli(&["billing", "set", "--mode", "free"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid: capacity, requests"));
    // Another tenant's billing is not there.
    admin.tenant("other").await;
    let (status, error) = owner.get("/v1/orgs/other/billing").await;
    assert_eq!(status, 404, "{error}");
}
