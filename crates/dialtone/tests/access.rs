//! Access policies through the real binary's API: the cross-tenant harness over every
//! route, lists filtered by policy, and the policy API's bad input.

mod common;

use common::{Api, error_fields, start_with};
use serde_json::{Value, json};

/// An identity of `org` without any binding, and an Api acting as it.
async fn identity(admin: &Api, org: &str, name: &str) -> Api {
    admin
        .create(&format!("/v1/orgs/{org}/identities"), name, json!({}))
        .await;
    let (status, token) = admin
        .post(
            &format!("/v1/orgs/{org}/identities/{name}/tokens"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    admin.with_token(token["token"].as_str().unwrap())
}

/// A tree in `org`: folder f, project p, cluster c1 with namespace ns1, production cluster
/// c2 with connection db, identity bob, group team; returns the id of a token of bob's.
async fn populate(admin: &Api, org: &str) -> String {
    let base = format!("/v1/orgs/{org}");
    admin
        .create(&format!("{base}/folders"), "f", json!({}))
        .await;
    admin
        .create(&format!("{base}/folders/f/projects"), "p", json!({}))
        .await;
    let (status, cluster) = admin
        .post(
            &format!("{base}/folders/f/projects/p/clusters"),
            json!({"metadata": {"name": "c1"}, "spec": {"type": "developer", "region": "us-east-1"}}),
        )
        .await;
    assert_eq!(status, 201, "{cluster}");
    admin
        .create(
            &format!("{base}/folders/f/projects/p/clusters/c1/namespaces"),
            "ns1",
            json!({}),
        )
        .await;
    let (status, cluster) = admin
        .post(
            &format!("{base}/folders/f/projects/p/clusters"),
            json!({"metadata": {"name": "c2"}, "spec": {"type": "production", "region": "us-east-1"}}),
        )
        .await;
    assert_eq!(status, 201, "{cluster}");
    let (status, connection) = admin
        .post(
            &format!("{base}/folders/f/projects/p/clusters/c2/connections"),
            connection("db"),
        )
        .await;
    assert_eq!(status, 201, "{connection}");
    admin
        .create(&format!("{base}/identities"), "bob", json!({}))
        .await;
    admin
        .create(&format!("{base}/groups"), "team", json!({}))
        .await;
    let (_, token) = admin
        .post(&format!("{base}/identities/bob/tokens"), json!({}))
        .await;
    token["info"]["id"].as_str().unwrap().to_string()
}

/// A connection of a production cluster to a customer's VPC.
fn connection(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "peerAccount": "111122223333", "peerVpc": "vpc-0a1b2c3d",
        "peerRegion": "us-east-1", "peerCidrs": ["192.168.0.0/16"]}})
}

/// A probe: (level of the probed object, method, path, body).
type Route = (usize, &'static str, String, Option<Value>);

/// The names probed at each level: org, folder, project, cluster, namespace, identity,
/// group, token, connection.
fn real_names<'a>(org: &'a str, token_id: &'a str) -> [&'a str; 9] {
    [org, "f", "p", "c1", "ns1", "bob", "team", token_id, "db"]
}

const MISSING: [&str; 9] = [
    "zz",
    "zz",
    "zz",
    "zz",
    "zz",
    "zz",
    "zz",
    "0123456789abcdef",
    "zz",
];

/// Every route of the API over the objects of `org`, the object at each level named as
/// `names` says.
fn routes(org: &str, names: [&str; 9]) -> Vec<Route> {
    let org_path = format!("/v1/orgs/{org}");
    let objects = [
        format!("/v1/orgs/{}", names[0]),
        format!("{org_path}/folders/{}", names[1]),
        format!("{org_path}/folders/f/projects/{}", names[2]),
        format!("{org_path}/folders/f/projects/p/clusters/{}", names[3]),
        format!(
            "{org_path}/folders/f/projects/p/clusters/c1/namespaces/{}",
            names[4]
        ),
        format!("{org_path}/identities/{}", names[5]),
        format!("{org_path}/groups/{}", names[6]),
        // Level 7 is a token's, probed below.
        String::new(),
        format!(
            "{org_path}/folders/f/projects/p/clusters/c2/connections/{}",
            names[8]
        ),
    ];
    let mut routes: Vec<Route> = Vec::new();
    for (level, object) in objects.iter().enumerate() {
        if object.is_empty() {
            continue;
        }
        let body = Some(json!({"metadata": {"name": names[level]}}));
        routes.push((level, "GET", object.clone(), None));
        routes.push((level, "PUT", object.clone(), body.clone()));
        routes.push((level, "DELETE", object.clone(), None));
        routes.push((level, "GET", format!("{object}/status"), None));
        routes.push((level, "PUT", format!("{object}/status"), body.clone()));
        if level <= 4 {
            routes.push((level, "GET", format!("{object}/policy"), None));
            routes.push((
                level,
                "PUT",
                format!("{object}/policy"),
                Some(json!({"bindings": []})),
            ));
        }
        // The collections under it, listed, watched and created in.
        for child in [
            "folders",
            "projects",
            "clusters",
            "namespaces",
            "identities",
            "groups",
            "connections",
        ] {
            let collection = format!("{object}/{child}");
            if collection_exists(&collection) {
                routes.push((level, "GET", collection.clone(), None));
                routes.push((level, "GET", format!("{collection}?watch=true"), None));
                routes.push((
                    level,
                    "POST",
                    collection,
                    Some(json!({"metadata": {"name": "x"}})),
                ));
            }
        }
    }
    routes.push((
        3,
        "POST",
        format!("{}/credentials", objects[3]),
        Some(json!({})),
    ));
    routes.push((5, "POST", format!("{}/tokens", objects[5]), Some(json!({}))));
    routes.push((0, "GET", format!("{}/tokens", objects[0]), None));
    routes.push((0, "GET", format!("{}/audit", objects[0]), None));
    routes.push((7, "DELETE", format!("{org_path}/tokens/{}", names[7]), None));
    let node = format!("{org}/f/p/{}", names[3]);
    routes.push((
        3,
        "GET",
        format!("{org_path}/explain?verb=get&resource=pods&node={node}"),
        None,
    ));
    routes.push((
        3,
        "POST",
        format!("{org_path}/whatif"),
        Some(json!({"node": node, "policy": {"bindings": []}})),
    ));
    routes
}

/// Whether the API serves a collection at this path (kinds sit under one parent kind).
fn collection_exists(collection: &str) -> bool {
    let parts: Vec<&str> = collection.trim_start_matches("/v1/").split('/').collect();
    let kinds: Vec<&str> = parts.iter().step_by(2).copied().collect();
    matches!(
        kinds.as_slice(),
        ["orgs", "folders"]
            | ["orgs", "identities"]
            | ["orgs", "groups"]
            | ["orgs", "folders", "projects"]
            | ["orgs", "folders", "projects", "clusters"]
            | ["orgs", "folders", "projects", "clusters", "namespaces"]
            | ["orgs", "folders", "projects", "clusters", "connections"]
    )
}

/// The message with the probed name made generic wherever it stands as a whole word (a
/// path segment, a query value, a word).
fn generic(body: &Value, name: &str) -> String {
    let message = body["message"].as_str().unwrap_or_default();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find(name) {
        let before = out.chars().last().or(rest[..at].chars().last());
        let before = rest[..at].chars().last().or(before);
        let after = rest[at + name.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_none_or(|c| !is_word(c)) && after.is_none_or(|c| !is_word(c)) {
            out.push_str("<name>");
        } else {
            out.push_str(name);
        }
        rest = &rest[at + name.len()..];
    }
    out.push_str(rest);
    out
}

/// Probes every route as `caller`, over objects that exist and over the same routes with
/// a name that does not: each answer is a 404, and the two read the same.
async fn probe_everything(caller: &Api, org: &str, token_id: &str) -> usize {
    let real = real_names(org, token_id);
    let existing = routes(org, real);
    let missing = routes(org, MISSING);
    for ((level, method, path, body), (_, _, missing_path, missing_body)) in
        existing.iter().zip(&missing)
    {
        let (status, answer) = caller.call(method, path, body.clone()).await;
        let (missing_status, missing_answer) = caller
            .call(method, missing_path, missing_body.clone())
            .await;
        assert_eq!(
            (status, missing_status),
            (404, 404),
            "{method} {path}: {answer} / {missing_path}: {missing_answer}"
        );
        assert_eq!(
            generic(&answer, real[*level]),
            generic(&missing_answer, MISSING[*level]),
            "{method} {path} reads like {missing_path}"
        );
    }
    existing.len()
}

#[tokio::test]
async fn no_route_shows_another_tenant_or_an_unbound_identity_anything() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    let _globex_owner = admin.tenant("globex").await;
    let globex_token = populate(&admin, "globex").await;
    let acme_token = populate(&admin, "acme").await;

    // acme's org admin, over globex.
    let probes = probe_everything(&acme, "globex", &globex_token).await;
    assert!(probes > 60, "every route was probed: {probes}");
    // An acme identity without bindings, over acme itself.
    let nobody = identity(&admin, "acme", "nobody").await;
    probe_everything(&nobody, "acme", &acme_token).await;

    // And nothing of globex changed.
    let (_, folders) = admin.get("/v1/orgs/globex/folders").await;
    assert_eq!(folders["items"].as_array().unwrap().len(), 1);
    let (_, policy) = admin.get("/v1/orgs/globex/folders/f/policy").await;
    assert_eq!(policy["bindings"], json!([]));
}

#[tokio::test]
async fn lists_show_what_policies_grant_and_policy_edits_are_checked() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    populate(&admin, "acme").await;
    acme.create("/v1/orgs/acme/folders", "g", json!({})).await;
    acme.create("/v1/orgs/acme/folders/g/projects", "q", json!({}))
        .await;
    let carol = identity(&admin, "acme", "carol").await;

    // project.edit on folder f: carol sees f's projects, not g's, nor the folders.
    let (status, set) = acme
        .put_policy(
            "/v1/orgs/acme/folders/f/policy",
            json!([{"role": "project.edit", "subjects": ["user:carol"]}]),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(carol.names("/v1/orgs/acme/folders/f/projects").await, ["p"]);
    assert_eq!(carol.get("/v1/orgs/acme/folders/g/projects").await.0, 404);
    assert_eq!(carol.get("/v1/orgs/acme/folders/f").await.0, 404);
    let (status, created) = carol
        .post(
            "/v1/orgs/acme/folders/f/projects",
            json!({"metadata": {"name": "p2"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // Visible, not changeable: 403 with what is missing.
    let (status, error) = carol
        .delete("/v1/orgs/acme/folders/f/projects/p/policy")
        .await;
    assert_eq!(status, 405, "{error}");
    let (status, error) = carol
        .put(
            "/v1/orgs/acme/folders/f/projects/p/policy",
            json!({"bindings": []}),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("update policies"),
        "{error}"
    );

    // Bad input: every problem at once, and nothing changes.
    let (_, before) = acme.get("/v1/orgs/acme/folders/f/policy").await;
    let (status, error) = acme
        .put(
            "/v1/orgs/acme/folders/f/policy",
            json!({"bindings": [
                {"role": "cluster.owner", "subjects": ["user:carol"]},
                {"role": "org.view", "subjects": ["user:nosuch", "team", "group:team"]}
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    let fields = error_fields(&error);
    assert_eq!(
        fields,
        [
            "bindings[0].role",
            "bindings[1].role",
            "bindings[1].subjects[0]",
            "bindings[1].subjects[1]"
        ],
        "{error}"
    );
    assert_eq!(acme.get("/v1/orgs/acme/folders/f/policy").await.1, before);
    let (status, _) = acme
        .put("/v1/orgs/acme/folders/f/policy", json!({"bindings": 3}))
        .await;
    assert_eq!(status, 422);

    // Optimistic concurrency: a stale etag is a 409.
    let etag = before["etag"].as_str().unwrap();
    let grant = |etag: &str| {
        json!({"etag": etag, "bindings": [
            {"role": "cluster.view", "subjects": ["group:team"]},
            {"role": "project.edit", "subjects": ["user:carol"]}
        ]})
    };
    let (status, fresh) = acme
        .put("/v1/orgs/acme/folders/f/policy", grant(etag))
        .await;
    assert_eq!(status, 200, "{fresh}");
    let (status, error) = acme
        .put("/v1/orgs/acme/folders/f/policy", grant(etag))
        .await;
    assert_eq!(status, 409, "{error}");

    // A policy put without its etag, or in the wrong shape, is refused and changes nothing.
    let f = "/v1/orgs/acme/folders/f/policy";
    let (status, error) = acme.put(f, json!({"bindings": []})).await;
    assert_eq!(status, 428, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("etag"),
        "{error}"
    );
    let (status, error) = acme.put(f, json!([])).await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = acme
        .put(
            f,
            json!({"etag": fresh["etag"], "bindings": [["org.view", ["user:carol"]]]}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error_fields(&error), ["bindings[0]"], "{error}");
    let (status, error) = acme
        .put(
            f,
            json!({"etag": fresh["etag"], "bindings": [{"role": "org.view", "subjects": "user:carol"}]}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(acme.get(f).await.1["etag"], fresh["etag"]);
    // The etag may come as an If-Match header instead; a stale one is a 409 there too.
    let bindings = json!({"bindings": fresh["bindings"]});
    let etag = fresh["etag"].as_str().unwrap();
    let (status, body) = acme.put_if_match(f, bindings.clone(), etag).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(acme.put_if_match(f, bindings, etag).await.0, 409);
    for path in [
        "/v1/orgs/acme/identities/carol/tokens",
        "/v1/orgs/acme/folders/f/projects/p/clusters/c1/credentials",
    ] {
        let (status, error) = acme.post(path, json!([])).await;
        assert_eq!(status, 400, "{path}: {error}");
    }

    // Escalation: namespace.admin bound on a cluster lets carol edit the cluster's policy,
    // but not grant more than she holds there (403), nor a role of the wrong level (422);
    // the policy is as it was.
    let c1 = "/v1/orgs/acme/folders/f/projects/p/clusters/c1/policy";
    let (status, _) = acme
        .put_policy(
            c1,
            json!([{"role": "namespace.admin", "subjects": ["user:carol"]}]),
        )
        .await;
    assert_eq!(status, 200);
    let (_, before) = carol.get(c1).await;
    let (status, error) = carol
        .put(
            c1,
            json!({"bindings": [{"role": "org.admin", "subjects": ["user:carol"]}]}),
        )
        .await;
    assert_eq!(
        status, 422,
        "org.admin is not bindable on a cluster: {error}"
    );
    let (status, error) = carol
        .put(
            c1,
            json!({"bindings": [
                {"role": "namespace.admin", "subjects": ["user:carol"]},
                {"role": "cluster.admin", "subjects": ["user:bob"]}
            ]}),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("cluster.admin"),
        "{error}"
    );
    let (status, _) = carol
        .put_policy(
            c1,
            json!([{"role": "namespace.admin", "subjects": ["user:carol", "user:bob"]}]),
        )
        .await;
    assert_eq!(status, 200, "what she holds she may grant");
    let (_, after) = carol.get(c1).await;
    assert_ne!(before["etag"], after["etag"]);
    assert_eq!(
        after["bindings"],
        json!([{"role": "namespace.admin", "subjects": ["user:bob", "user:carol"]}])
    );

    // Explain names the binding; a malformed query is a 400.
    let (status, explained) = carol
        .get("/v1/orgs/acme/explain?verb=create&resource=projects&node=acme/f")
        .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["allowed"], true);
    assert_eq!(
        explained["grantedBy"],
        json!([{"node": "acme/f", "role": "project.edit", "subject": "user:carol"}])
    );
    let (status, _) = carol
        .get("/v1/orgs/acme/explain?verb=fly&resource=projects&node=acme/f")
        .await;
    assert_eq!(status, 400);
    let (status, _) = carol
        .get("/v1/orgs/acme/explain?verb=get&node=acme/f")
        .await;
    assert_eq!(status, 400);
}

/// The names a watch shows before `marker` arrives: its initial listing and every change
/// made before the marker, which the caller is known to see.
async fn watched_until(caller: &Api, path: &str, make_marker: impl AsyncFnOnce()) -> Vec<String> {
    let (status, mut events) = caller.watch(path).await;
    assert_eq!(status, 200, "watch {path}");
    make_marker().await;
    let mut names = Vec::new();
    loop {
        let name = common::event(&common::next_event(&mut events).await).1;
        if name == "marker" {
            return names;
        }
        names.push(name);
    }
}

#[tokio::test]
async fn lists_and_watches_show_each_caller_exactly_what_it_may_get() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    admin.tenant("globex").await;
    populate(&admin, "acme").await;
    acme.create("/v1/orgs/acme/folders", "g", json!({})).await;
    acme.create("/v1/orgs/acme/folders/g/projects", "q", json!({}))
        .await;
    let nobody = identity(&admin, "acme", "nobody").await;
    let carol = identity(&admin, "acme", "carol").await;
    let (status, _) = acme
        .put_policy(
            "/v1/orgs/acme/folders/f/policy",
            json!([{"role": "project.edit", "subjects": ["user:carol"]}]),
        )
        .await;
    assert_eq!(status, 200);

    // The orgs: a tenant's admin sees its own, an identity bound below the org or not at
    // all sees none, however the list is paged.
    assert_eq!(acme.names("/v1/orgs").await, ["acme"]);
    assert_eq!(acme.names("/v1/orgs?limit=1").await, ["acme"]);
    for caller in [&nobody, &carol] {
        assert_eq!(caller.names("/v1/orgs").await, Vec::<String>::new());
        assert_eq!(caller.names("/v1/orgs?limit=1").await, Vec::<String>::new());
    }
    // A collection mixing what carol may and may not get: f's projects are hers, g's not.
    acme.create("/v1/orgs/acme/folders/f/projects", "p2", json!({}))
        .await;
    assert_eq!(
        carol.names("/v1/orgs/acme/folders/f/projects").await,
        ["p", "p2"]
    );
    for path in [
        "/v1/orgs/acme/folders",
        "/v1/orgs/acme/folders/g/projects",
        "/v1/orgs/acme/identities",
    ] {
        let (status, body) = carol.get(path).await;
        assert!(
            status == 404 || body["items"] == json!([]),
            "{path}: {status} {body}"
        );
    }

    // Watches, from their initial listing on: an org created elsewhere never shows up.
    let (status, mut events) = acme.watch("/v1/orgs?watch=true").await;
    assert_eq!(status, 200);
    admin.create("/v1/orgs", "other", json!({})).await;
    // A change to acme, which its admin sees, closes the window.
    acme.put(
        "/v1/orgs/acme",
        json!({"metadata": {"name": "acme", "labels": {"watched": "yes"}}}),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = common::next_event(&mut events).await;
        seen.push(common::event(&e));
    }
    assert_eq!(
        seen,
        [
            ("ADDED".to_string(), "acme".to_string()),
            ("MODIFIED".to_string(), "acme".to_string())
        ],
        "acme's admin watches acme alone"
    );
    let (status, mut events) = nobody.watch("/v1/orgs?watch=true").await;
    assert_eq!(status, 200);
    admin.create("/v1/orgs", "another", json!({})).await;
    acme.create("/v1/orgs/acme/folders", "h", json!({})).await;
    let leaked = tokio::time::timeout(std::time::Duration::from_secs(2), events.recv()).await;
    assert!(leaked.is_err(), "an unbound identity saw {leaked:?}");
    let projects = "/v1/orgs/acme/folders/f/projects?watch=true";
    let names = watched_until(&carol, projects, async || {
        acme.create("/v1/orgs/acme/folders/g/projects", "hidden", json!({}))
            .await;
        acme.create("/v1/orgs/acme/folders/f/projects", "marker", json!({}))
            .await;
    })
    .await;
    assert_eq!(names, ["p", "p2"], "carol's watch of f's projects");
}

#[tokio::test]
async fn connections_are_changed_by_cluster_admins_and_seen_by_whoever_sees_the_cluster() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    admin.tenant("acme").await;
    populate(&admin, "acme").await;
    let c2 = "/v1/orgs/acme/folders/f/projects/p/clusters/c2";
    let connections = format!("{c2}/connections");
    let viewer = identity(&admin, "acme", "vera").await;
    let editor = identity(&admin, "acme", "ed").await;
    let owner = identity(&admin, "acme", "ada").await;
    let (status, body) = admin
        .put_policy(
            &format!("{c2}/policy"),
            json!([
                {"role": "cluster.view", "subjects": ["user:vera"]},
                {"role": "cluster.edit", "subjects": ["user:ed"]},
                {"role": "cluster.admin", "subjects": ["user:ada"]},
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (who, caller) in [("viewer", &viewer), ("editor", &editor)] {
        let (status, seen) = caller.get(&format!("{connections}/db")).await;
        assert_eq!(status, 200, "the {who} sees the connection: {seen}");
        let (status, refused) = caller.post(&connections, connection("cache")).await;
        assert_eq!(
            status, 403,
            "the {who} may not connect the cluster: {refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains("connections"),
            "{refused}"
        );
        let (status, refused) = caller.delete(&format!("{connections}/db")).await;
        assert_eq!(status, 403, "the {who} may not disconnect it: {refused}");
    }
    assert_eq!(viewer.names(&connections).await, ["db"]);
    let mut second = connection("cache");
    second["spec"]["peerCidrs"] = json!(["172.31.0.0/16"]);
    let (status, created) = owner.post(&connections, second).await;
    assert_eq!(status, 201, "{created}");
    let (status, deleted) = owner.delete(&format!("{connections}/cache")).await;
    assert!(status == 200 || status == 202, "{deleted}");

    // Explain knows the resource: the admin's grant, and the viewer's lack of one.
    let explain = |who: &str, verb: &str| {
        format!(
            "/v1/orgs/acme/explain?verb={verb}&resource=connections&node=acme/f/p/c2&identity={who}"
        )
    };
    let (status, why) = admin.get(&explain("ada", "create")).await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["allowed"], true, "{why}");
    let (status, why) = admin.get(&explain("vera", "create")).await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["allowed"], false, "{why}");
}
