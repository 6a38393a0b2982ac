//! The HTTP API of the real binary: the tree's CRUD, optimistic concurrency, finalizers,
//! pagination, label selectors, watch, tokens, tenancy, the audit log and bad input.

mod common;

use common::{Api, error_fields, event, next_event, start, start_with};
use serde_json::{Value, json};

#[tokio::test]
async fn tree_crud_with_optimistic_concurrency() {
    let server = start();
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    acme.create("/v1/orgs/acme/folders", "eng", json!({})).await;
    let web = acme
        .create(
            "/v1/orgs/acme/folders/eng/projects",
            "web",
            json!({"tier": "web"}),
        )
        .await;
    assert_eq!(web["kind"], "Project");
    assert_eq!(web["metadata"]["parent"], "orgs/acme/folders/eng");
    assert_eq!(web["metadata"]["generation"], 1);
    assert_eq!(web["metadata"]["homeRegion"], "local");
    assert!(web["metadata"]["uid"].as_str().unwrap().len() >= 32);

    let path = "/v1/orgs/acme/folders/eng/projects/web";
    let (status, got) = acme.get(path).await;
    assert_eq!((status, &got), (200, &web));

    // A spec change bumps the generation; a label change does not.
    let mut changed = got.clone();
    changed["spec"]["description"] = json!("the storefront");
    let (status, v2) = acme.put(path, changed).await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(v2["metadata"]["generation"], 2);
    let mut relabelled = v2.clone();
    relabelled["metadata"]["labels"]["team"] = json!("shop");
    let (status, v3) = acme.put(path, relabelled).await;
    assert_eq!(status, 200, "{v3}");
    assert_eq!(v3["metadata"]["generation"], 2);

    // Writing over a newer version with an old one is refused and changes nothing.
    let mut stale = v2.clone();
    stale["spec"]["description"] = json!("stale write");
    let (status, error) = acme.put(path, stale).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["reason"], "Conflict");
    assert_eq!(acme.get(path).await.1, v3);

    // The status subresource changes status only; a spec update ignores status.
    let mut with_status = v3.clone();
    with_status["status"] = json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True", "reason": "Fine", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    with_status["spec"]["description"] = json!("ignored by /status");
    let (status, v4) = acme
        .put(&format!("{path}/status"), with_status.clone())
        .await;
    assert_eq!(status, 200, "{v4}");
    assert_eq!(v4["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(v4["spec"]["description"], "the storefront");
    assert_eq!(v4["metadata"]["generation"], 2);
    let mut spec_update = v4.clone();
    spec_update["status"] = json!({});
    let (_, v5) = acme.put(path, spec_update).await;
    assert_eq!(
        v5["status"]["conditions"][0]["type"], "Ready",
        "a spec update keeps the status"
    );

    // Duplicates, missing parents, and deleting a parent with children.
    let (status, error) = acme
        .post(
            "/v1/orgs/acme/folders/eng/projects",
            json!({"metadata": {"name": "web"}}),
        )
        .await;
    assert_eq!(
        (status, error["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let (status, error) = acme
        .post(
            "/v1/orgs/acme/folders/nope/projects",
            json!({"metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(error["message"], "parent orgs/acme/folders/nope not found");
    let (status, error) = acme.delete("/v1/orgs/acme/folders/eng").await;
    assert_eq!(status, 409, "{error}");
    assert!(error["message"].as_str().unwrap().contains("cascade"));
    assert_eq!(
        acme.names("/v1/orgs/acme/folders/eng/projects").await,
        ["web"]
    );
    let (status, _) = acme.delete("/v1/orgs/acme/folders/eng?cascade=true").await;
    assert_eq!(status, 200);
    assert_eq!(acme.get(path).await.0, 404);
    assert!(acme.names("/v1/orgs/acme/folders").await.is_empty());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = start();
    let acme = Api::admin(&server).tenant("acme").await;
    let (status, folder) = acme
        .post(
            "/v1/orgs/acme/folders",
            json!({"metadata": {"name": "eng", "finalizers": ["example.com/backup"]}}),
        )
        .await;
    assert_eq!(status, 201, "{folder}");
    let (status, pending) = acme.delete("/v1/orgs/acme/folders/eng").await;
    assert_eq!(status, 202, "{pending}");
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        acme.get("/v1/orgs/acme/folders/eng").await.0,
        200,
        "still there while the finalizer holds it"
    );
    // Nothing can be created inside a node being deleted, and no finalizer can be added.
    let (status, error) = acme
        .post(
            "/v1/orgs/acme/folders/eng/projects",
            json!({"metadata": {"name": "late"}}),
        )
        .await;
    assert_eq!(status, 409, "{error}");
    let mut more = pending.clone();
    more["metadata"]["finalizers"] = json!(["example.com/backup", "example.com/other"]);
    assert_eq!(acme.put("/v1/orgs/acme/folders/eng", more).await.0, 422);
    let mut released = pending.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (status, body) = acme.put("/v1/orgs/acme/folders/eng", released).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        acme.get("/v1/orgs/acme/folders/eng").await.0,
        404,
        "gone once the last finalizer is removed"
    );
}

#[tokio::test]
async fn cascade_waits_for_held_children() {
    let server = start();
    let acme = Api::admin(&server).tenant("acme").await;
    acme.create("/v1/orgs/acme/folders", "eng", json!({})).await;
    let (status, _) = acme
        .post(
            "/v1/orgs/acme/folders/eng/projects",
            json!({"metadata": {"name": "db", "finalizers": ["example.com/snapshot"]}}),
        )
        .await;
    assert_eq!(status, 201);
    acme.create("/v1/orgs/acme/folders/eng/projects", "web", json!({}))
        .await;
    let (status, folder) = acme.delete("/v1/orgs/acme/folders/eng?cascade=true").await;
    assert_eq!(status, 202, "{folder}");
    assert_eq!(
        acme.names("/v1/orgs/acme/folders/eng/projects").await,
        ["db"],
        "free children go at once"
    );
    let (_, db) = acme.get("/v1/orgs/acme/folders/eng/projects/db").await;
    let mut released = db.clone();
    released["metadata"]["finalizers"] = json!([]);
    assert_eq!(
        acme.put("/v1/orgs/acme/folders/eng/projects/db", released)
            .await
            .0,
        200
    );
    // The deletion controller finishes the folder once its last child is gone.
    let mut gone = false;
    for _ in 0..100 {
        if acme.get("/v1/orgs/acme/folders/eng").await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the folder is removed after its held child");
    assert_eq!(acme.get("/v1/orgs/acme").await.0, 200, "the org stays");
}

#[tokio::test]
async fn pagination_is_consistent_and_selectors_filter() {
    let server = start();
    let acme = Api::admin(&server).tenant("acme").await;
    acme.create("/v1/orgs/acme/folders", "eng", json!({})).await;
    let projects = "/v1/orgs/acme/folders/eng/projects";
    for i in 0..25 {
        let labels = if i % 2 == 0 {
            json!({"tier": "web"})
        } else {
            json!({"tier": "db", "legacy": "yes"})
        };
        acme.create(projects, &format!("p{i:02}"), labels).await;
    }
    let mut seen = Vec::new();
    let (status, page) = acme.get(&format!("{projects}?limit=10")).await;
    assert_eq!(status, 200);
    let list_revision = page["metadata"]["resourceVersion"].clone();
    let mut page = page;
    // A project created between pages belongs to a later revision: the pages don't show it.
    acme.create(projects, "p99-late", json!({"tier": "web"}))
        .await;
    loop {
        assert_eq!(
            page["metadata"]["resourceVersion"], list_revision,
            "every page is read at the first page's revision"
        );
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        seen.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        let Some(token) = page["metadata"]["continue"].as_str() else {
            break;
        };
        let (status, next) = acme
            .get(&format!("{projects}?limit=10&continue={token}"))
            .await;
        assert_eq!(status, 200, "{next}");
        page = next;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    assert_eq!(seen, expected, "every object once, in order");

    let web = acme
        .names(&format!("{projects}?labelSelector=tier%3Dweb"))
        .await;
    assert_eq!(web.len(), 14);
    assert!(web.contains(&"p99-late".to_string()));
    let not_legacy = acme
        .names(&format!("{projects}?labelSelector=%21legacy"))
        .await;
    assert_eq!(not_legacy, web);
    let in_set = acme
        .names(&format!(
            "{projects}?labelSelector=tier+in+%28db%29,legacy%3Dyes&limit=100"
        ))
        .await;
    assert_eq!(in_set.len(), 12);

    for (query, fragment) in [
        ("labelSelector=tier+in+web", "label selector"),
        ("continue=garbage", "continue"),
        ("limit=-1", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, error) = acme.get(&format!("{projects}?{query}")).await;
        assert_eq!(status, 400, "{query}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(fragment),
            "{query}: {error}"
        );
    }
}

#[tokio::test]
async fn watch_streams_changes_and_resumes_from_a_revision() {
    let server = start_with(&["--compaction-interval", "1"]);
    let acme = Api::admin(&server).tenant("acme").await;
    acme.create("/v1/orgs/acme/folders", "existing", json!({}))
        .await;
    let (status, mut watch) = acme.watch("/v1/orgs/acme/folders?watch=true").await;
    assert_eq!(status, 200);
    assert_eq!(
        event(&next_event(&mut watch).await),
        ("ADDED".into(), "existing".into())
    );
    let created = acme.create("/v1/orgs/acme/folders", "eng", json!({})).await;
    let mut changed = created.clone();
    changed["metadata"]["labels"] = json!({"team": "core"});
    let (_, modified) = acme.put("/v1/orgs/acme/folders/eng", changed).await;
    acme.delete("/v1/orgs/acme/folders/eng").await;
    acme.create("/v1/orgs/acme/folders", "ops", json!({})).await;
    let mut received = Vec::new();
    for _ in 0..4 {
        received.push(next_event(&mut watch).await);
    }
    let kinds: Vec<_> = received.iter().map(event).collect();
    assert_eq!(
        kinds,
        [
            ("ADDED".into(), "eng".into()),
            ("MODIFIED".into(), "eng".into()),
            ("DELETED".into(), "eng".into()),
            ("ADDED".into(), "ops".into())
        ]
    );
    let versions: Vec<i64> = received
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "events come in revision order: {versions:?}"
    );
    assert_eq!(received[1]["object"]["metadata"]["labels"]["team"], "core");

    // Resuming after the MODIFIED event replays exactly what came after it.
    let resume_at = modified["metadata"]["resourceVersion"].as_str().unwrap();
    let (status, mut resumed) = acme
        .watch(&format!(
            "/v1/orgs/acme/folders?watch=true&resourceVersion={resume_at}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        event(&next_event(&mut resumed).await),
        ("DELETED".into(), "eng".into())
    );
    assert_eq!(
        event(&next_event(&mut resumed).await),
        ("ADDED".into(), "ops".into())
    );

    // Once compacted away, an old revision is 410 Gone.
    let mut gone = false;
    for _ in 0..60 {
        acme.create(
            "/v1/orgs/acme/folders",
            &format!("churn-{}", rand_suffix()),
            json!({}),
        )
        .await;
        // Only the status: a watch that is still valid streams for ever.
        let (status, mut body) = acme
            .watch("/v1/orgs/acme/folders?watch=true&resourceVersion=2")
            .await;
        if status == 410 {
            assert_eq!(next_event(&mut body).await["reason"], "Gone");
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "a compacted resourceVersion gets 410");
}

fn rand_suffix() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

#[tokio::test]
async fn tokens_authenticate_and_revocation_is_immediate() {
    let server = start();
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    acme.create("/v1/orgs/acme/identities", "alice", json!({}))
        .await;
    let (status, issued) = acme
        .post(
            "/v1/orgs/acme/identities/alice/tokens",
            json!({"description": "laptop", "ttlSeconds": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let secret = issued["token"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("dt_") && secret.len() >= 3 + 16 + 1 + 43,
        "at least 128 random bits: {secret}"
    );
    let alice = acme.with_token(&secret);
    let (status, me) = alice.get("/v1/whoami").await;
    assert_eq!(
        (
            status,
            me["identity"].as_str(),
            me["platformAdmin"].as_bool()
        ),
        (200, Some("alice"), Some(false))
    );

    let (_, tokens) = acme.get("/v1/orgs/acme/tokens").await;
    let listed = serde_json::to_string(&tokens).unwrap();
    // `dt_{id}_{secret}`: the secret is base64url, and may hold `_` itself.
    let secret_part = secret.splitn(3, '_').nth(2).unwrap();
    assert!(
        !listed.contains(secret_part),
        "a listing never shows a secret"
    );
    assert!(!listed.contains("sha256"), "nor its hash");
    let id = issued["info"]["id"].as_str().unwrap();
    assert!(listed.contains(id));

    let (status, _) = acme.delete(&format!("/v1/orgs/acme/tokens/{id}")).await;
    assert_eq!(status, 200);
    let (status, error) = alice.get("/v1/whoami").await;
    assert_eq!(
        (status, error["reason"].as_str()),
        (401, Some("Unauthorized"))
    );

    // Missing, malformed and forged tokens.
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    for auth in [
        None,
        Some("Basic abc".to_string()),
        Some("Bearer nope".into()),
        Some(format!("Bearer {forged}")),
    ] {
        let (status, body) = admin.send("GET", "/v1/orgs", None, auth.clone()).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body["kind"], "Status");
    }
    let (status, error) = acme
        .post(
            "/v1/orgs/acme/identities/alice/tokens",
            json!({"ttlSeconds": 1}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let server = start();
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    let globex = admin.tenant("globex").await;
    globex
        .create("/v1/orgs/globex/folders", "secret-plans", json!({}))
        .await;
    let (_, mut org_watch) = acme.watch("/v1/orgs?watch=true").await;
    assert_eq!(
        event(&next_event(&mut org_watch).await),
        ("ADDED".into(), "acme".into())
    );

    // Another org's objects answer exactly as missing ones do.
    let pairs = [
        ("GET", "/v1/orgs/globex", "/v1/orgs/nosuch"),
        (
            "GET",
            "/v1/orgs/globex/folders/secret-plans",
            "/v1/orgs/acme/folders/nosuch",
        ),
        ("GET", "/v1/orgs/globex/folders", "/v1/orgs/nosuch/folders"),
        (
            "GET",
            "/v1/orgs/globex/folders?watch=true",
            "/v1/orgs/nosuch/folders?watch=true",
        ),
        (
            "DELETE",
            "/v1/orgs/globex/folders/secret-plans",
            "/v1/orgs/acme/folders/nosuch",
        ),
        ("GET", "/v1/orgs/globex/audit", "/v1/orgs/nosuch/audit"),
        ("GET", "/v1/orgs/globex/tokens", "/v1/orgs/nosuch/tokens"),
    ];
    for (method, theirs, missing) in pairs {
        let (status_theirs, body_theirs) = acme.call(method, theirs, None).await;
        let (status_missing, body_missing) = acme.call(method, missing, None).await;
        assert_eq!(
            (status_theirs, status_missing),
            (404, 404),
            "{method} {theirs}: {body_theirs}"
        );
        let shape =
            |body: &Value, path: &str| body["message"].as_str().unwrap().replace(path, "<name>");
        assert_eq!(
            shape(
                &body_theirs,
                if theirs.contains("secret-plans") {
                    "orgs/globex/folders/secret-plans"
                } else {
                    "orgs/globex"
                }
            ),
            shape(
                &body_missing,
                if missing.contains("acme/folders/nosuch") {
                    "orgs/acme/folders/nosuch"
                } else {
                    "orgs/nosuch"
                }
            ),
            "{method} {theirs} must read like {missing}"
        );
    }
    let (status, body) = acme
        .post(
            "/v1/orgs/globex/folders",
            json!({"metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("parent orgs/globex not found"))
    );
    let (_, body) = acme
        .post(
            "/v1/orgs/nosuch/folders",
            json!({"metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(body["message"], "parent orgs/nosuch not found");

    assert_eq!(
        acme.names("/v1/orgs").await,
        ["acme"],
        "a tenant lists only its own org"
    );
    assert_eq!(
        globex.names("/v1/orgs/globex/folders").await,
        ["secret-plans"],
        "and nothing of theirs changed"
    );
    let (status, _) = acme
        .post("/v1/orgs", json!({"metadata": {"name": "acme2"}}))
        .await;
    assert_eq!(status, 403, "only platform admins create orgs");
    let (status, _) = acme
        .post(
            "/v1/orgs/acme/identities",
            json!({"metadata": {"name": "root"}, "spec": {"platformAdmin": true}}),
        )
        .await;
    assert_eq!(status, 403, "a tenant cannot make a platform admin");

    // The org watch shows changes to its own org only.
    let mut changed = admin.get("/v1/orgs/globex").await.1;
    changed["metadata"]["labels"] = json!({"x": "y"});
    assert_eq!(admin.put("/v1/orgs/globex", changed).await.0, 200);
    admin.create("/v1/orgs", "initech", json!({})).await;
    let mut mine = admin.get("/v1/orgs/acme").await.1;
    mine["metadata"]["labels"] = json!({"mine": "yes"});
    assert_eq!(admin.put("/v1/orgs/acme", mine).await.0, 200);
    assert_eq!(
        event(&next_event(&mut org_watch).await),
        ("MODIFIED".into(), "acme".into()),
        "globex and initech never show"
    );

    // acme's failed attempts on globex are in acme's audit log, and globex's log knows nothing.
    let (_, acme_audit) = acme.get("/v1/orgs/acme/audit").await;
    assert!(
        serde_json::to_string(&acme_audit)
            .unwrap()
            .contains("/v1/orgs/globex/folders/secret-plans")
    );
    let (_, globex_audit) = globex.get("/v1/orgs/globex/audit").await;
    assert!(
        !serde_json::to_string(&globex_audit)
            .unwrap()
            .contains("owner@acme")
    );
}

#[tokio::test]
async fn the_audit_log_records_every_mutation() {
    let server = start();
    let acme = Api::admin(&server).tenant("acme").await;
    acme.create("/v1/orgs/acme/folders", "eng", json!({})).await;
    acme.post(
        "/v1/orgs/acme/folders",
        json!({"metadata": {"name": "eng"}}),
    )
    .await;
    acme.get("/v1/orgs/acme/folders/eng").await;
    acme.delete("/v1/orgs/acme/folders/eng").await;
    let (status, audit) = acme.get("/v1/orgs/acme/audit").await;
    assert_eq!(status, 200);
    let rows: Vec<(String, String, String, u64, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| -> (String, String, String, u64, String) {
            (
                r["actor"].as_str().unwrap().into(),
                r["method"].as_str().unwrap().into(),
                r["path"].as_str().unwrap().into(),
                r["status"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().into(),
            )
        })
        .filter(|r| r.2.starts_with("/v1/orgs/acme/folders"))
        .collect();
    let owner = "owner@acme".to_string();
    assert_eq!(
        rows,
        [
            (
                owner.clone(),
                "POST".into(),
                "/v1/orgs/acme/folders".into(),
                201,
                "success".into()
            ),
            (
                owner.clone(),
                "POST".into(),
                "/v1/orgs/acme/folders".into(),
                409,
                "Conflict".into()
            ),
            (
                owner,
                "DELETE".into(),
                "/v1/orgs/acme/folders/eng".into(),
                200,
                "success".into()
            ),
        ],
        "mutations are recorded with their outcome; reads are not"
    );
    assert!(audit["items"][0]["time"].is_string() && audit["items"][0]["requestId"].is_string());
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let server = start();
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    acme.create("/v1/orgs/acme/folders", "eng", json!({})).await;
    let (_, before) = acme.get("/v1/orgs/acme/folders").await;
    let auth = Some(format!("Bearer {}", acme.token));
    let post = |body: Vec<u8>| acme.send("POST", "/v1/orgs/acme/folders", Some(body), auth.clone());

    let (status, error) = post(b"{not json".to_vec()).await;
    assert_eq!(
        (status, error["reason"].as_str()),
        (400, Some("BadRequest")),
        "{error}"
    );

    let (status, error) =
        post(br#"{"metadata":{"name":"ok","colour":"red"},"spec":{"size":3}}"#.to_vec()).await;
    assert_eq!(status, 422, "{error}");
    let fields = error_fields(&error);
    assert_eq!(
        fields,
        ["metadata.colour", "spec.size"],
        "every unknown field is named"
    );

    let (status, error) = post(serde_json::to_vec(&json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "-bad"}}, "spec": {"displayName": "x".repeat(300)}})).unwrap()).await;
    assert_eq!(status, 422, "{error}");
    let fields = error_fields(&error);
    assert_eq!(
        fields,
        ["metadata.name", "metadata.labels.ok", "spec.displayName"],
        "every bad field at once"
    );

    let (status, error) =
        post(serde_json::to_vec(&json!({"metadata": {"name": "a".repeat(64)}})).unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(error["details"]["causes"][0]["reason"], "FieldValueTooLong");

    let (status, error) =
        post(serde_json::to_vec(&json!({"kind": "Project", "metadata": {"name": "x"}})).unwrap())
            .await;
    assert_eq!(
        (status, error["details"]["causes"][0]["field"].as_str()),
        (422, Some("kind"))
    );

    let huge = serde_json::to_vec(
        &json!({"metadata": {"name": "big"}, "spec": {"description": "x".repeat(2 * 1024 * 1024)}}),
    )
    .unwrap();
    let (status, error) = post(huge).await;
    assert_eq!(
        (status, error["reason"].as_str()),
        (413, Some("RequestEntityTooLarge")),
        "{error}"
    );

    let (status, error) = acme.get("/v1/no/such/path").await;
    assert_eq!((status, error["kind"].as_str()), (404, Some("Status")));
    let (status, error) = acme
        .call("PUT", "/v1/orgs/acme/folders", Some(json!({})))
        .await;
    assert_eq!((status, error["kind"].as_str()), (405, Some("Status")));
    let (status, error) = acme
        .call("PATCH", "/v1/orgs/acme/folders/eng", Some(json!({})))
        .await;
    assert_eq!(
        (status, error["reason"].as_str()),
        (415, Some("UnsupportedMediaType")),
        "a PATCH must say it is a merge patch: {error}"
    );
    let (status, _) = acme.get("/v1/orgs/acme/folders/Not_A_Name").await;
    assert_eq!(status, 404);

    let (_, after) = acme.get("/v1/orgs/acme/folders").await;
    assert_eq!(
        before["items"], after["items"],
        "no bad request changed anything"
    );
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let server = start();
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = admin.send("GET", path, None, None).await;
        assert_eq!(
            (status, body.as_str()),
            (200, Some("ok\n")),
            "{path} needs no token"
        );
    }
    assert_eq!(admin.send("GET", "/metrics", None, None).await.0, 401);
    assert_eq!(
        acme.get("/metrics").await.0,
        403,
        "metrics span tenants: operators only"
    );
    let (status, metrics) = admin.get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    for metric in [
        "dialtone_http_requests_total{",
        "dialtone_http_request_duration_seconds_bucket{",
        "dialtone_store_operation_duration_seconds_bucket{",
        "dialtone_watches ",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
    assert!(
        text.contains("route=\"/v1/orgs/{org}/identities\""),
        "requests are labelled by route, not raw path"
    );
    let (status, version) = admin.send("GET", "/version", None, None).await;
    assert_eq!(status, 200, "/version needs no token: {version}");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["store"], "embedded");
    assert_eq!(version["provider"], "sim", "{version}");
    let (status, content_type, _) = admin.get_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let (status, openapi) = acme.get("/openapi.json").await;
    assert_eq!(status, 200);
    let project = &openapi["paths"]["/v1/orgs/{org}/folders/{folder}/projects/{project}"];
    assert!(project["put"].is_object() && project["patch"].is_object());
    // Schemas are named after their kinds, as Kubernetes names them.
    let schemas = &openapi["components"]["schemas"];
    for name in [
        "Cluster",
        "ClusterSpec",
        "ClusterStatus",
        "ClusterList",
        "Project",
        "ProjectList",
    ] {
        assert!(schemas[name].is_object(), "no schema {name}");
    }
    assert_eq!(
        project["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Project"
    );
}

#[tokio::test]
async fn merge_patches_change_only_what_they_name() {
    let server = start();
    let api = Api::admin(&server);
    api.create(
        "/v1/orgs/demo/folders",
        "eng",
        json!({"team": "core", "tier": "1"}),
    )
    .await;
    let folder = "/v1/orgs/demo/folders/eng";
    let patch = |body: &str, content_type: &'static str| {
        api.send_as("PATCH", folder, body.as_bytes().to_vec(), content_type)
    };
    let (status, patched) = patch(
        r#"{"metadata": {"labels": {"tier": "2", "team": null}}, "spec": {"displayName": "Engineering"}}"#,
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"], json!({"tier": "2"}));
    assert_eq!(patched["spec"]["displayName"], "Engineering");

    // Bad patches: a clear error each, and the folder as it was.
    let stale = r#"{"metadata": {"resourceVersion": "1"}, "spec": {"displayName": "X"}}"#;
    for (body, content_type, code, says) in [
        (
            r#"{"spec": {"displayNme": "X"}}"#,
            "application/merge-patch+json",
            422,
            "displayNme",
        ),
        ("[]", "application/merge-patch+json", 400, "merge patch"),
        ("{", "application/merge-patch+json", 400, "merge patch"),
        (
            r#"{"spec": {}}"#,
            "application/json-patch+json",
            415,
            "merge-patch",
        ),
        (stale, "application/merge-patch+json", 409, "changed since"),
    ] {
        let (status, error) = patch(body, content_type).await;
        assert_eq!(status, code, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{body}: {error}"
        );
    }
    let (_, after) = api.get(folder).await;
    assert_eq!(after["spec"], patched["spec"]);
    assert_eq!(after["metadata"]["labels"], patched["metadata"]["labels"]);
}
