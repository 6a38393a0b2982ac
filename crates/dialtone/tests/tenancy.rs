//! Tenant boundaries and credential lifecycles, tried as a hostile tenant would: names that
//! come back after a deletion, continue tokens, token lists, explain, free text, slow
//! clients, and random sequences of creations and deletions.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Api, start_with};
use serde_json::{Value, json};

async fn mint(admin: &Api, org: &str, identity: &str) -> String {
    let (status, token) = admin
        .post(
            &format!("/v1/orgs/{org}/identities/{identity}/tokens"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    token["token"].as_str().unwrap().to_string()
}

async fn whoami(admin: &Api, token: &str) -> u16 {
    admin.with_token(token).get("/v1/whoami").await.0
}

#[tokio::test]
async fn revoked_credentials_stay_revoked_when_names_come_back() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;

    // An identity deleted and created again: the old token does not come back.
    acme.create("/v1/orgs/acme/identities", "carol", json!({}))
        .await;
    let old = mint(&acme, "acme", "carol").await;
    assert_eq!(whoami(&admin, &old).await, 200);
    assert_eq!(acme.delete("/v1/orgs/acme/identities/carol").await.0, 200);
    assert_eq!(whoami(&admin, &old).await, 401);
    acme.create("/v1/orgs/acme/identities", "carol", json!({}))
        .await;
    assert_eq!(whoami(&admin, &old).await, 401, "the old carol's token");
    let new = mint(&acme, "acme", "carol").await;
    assert_eq!(whoami(&admin, &new).await, 200);
    let (_, tokens) = acme.get("/v1/orgs/acme/tokens").await;
    let listed: Vec<&str> = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["identity"] == "carol")
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "only the new carol's token: {tokens}");

    // An org deleted and created again: nothing of the old one passes to the new one.
    let tenant_x = admin.tenant("tenant-x").await;
    tenant_x
        .create("/v1/orgs/tenant-x/identities", "ops", json!({}))
        .await;
    let ops = mint(&tenant_x, "tenant-x", "ops").await;
    tenant_x
        .create("/v1/orgs/tenant-x/folders", "secret-plans", json!({}))
        .await;
    let (_, old_org) = admin.get("/v1/orgs/tenant-x").await;
    let request_ids = |audit: &Value| -> Vec<String> {
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requestId"].as_str().unwrap().to_string())
            .collect()
    };
    let old_records = request_ids(&tenant_x.get("/v1/orgs/tenant-x/audit").await.1);
    assert!(old_records.len() >= 3);
    let (status, _) = admin.delete("/v1/orgs/tenant-x?cascade=true").await;
    assert_eq!(status, 200);
    assert_eq!(whoami(&admin, &ops).await, 401);
    let tenant_x = admin.tenant("tenant-x").await;
    tenant_x
        .create("/v1/orgs/tenant-x/identities", "ops", json!({}))
        .await;
    assert_eq!(whoami(&admin, &ops).await, 401, "the old org's ops token");
    let (_, audit) = tenant_x.get("/v1/orgs/tenant-x/audit").await;
    let new_records = request_ids(&audit);
    assert!(
        old_records.iter().all(|id| !new_records.contains(id)),
        "the new org's audit shows the old one's records: {audit}"
    );
    let (_, tokens) = tenant_x.get("/v1/orgs/tenant-x/tokens").await;
    assert_eq!(
        tokens["items"].as_array().unwrap().len(),
        1,
        "only the new owner's token: {tokens}"
    );
    // The old org's records are kept by its uid, for platform admins alone.
    let uid = old_org["metadata"]["uid"].as_str().unwrap();
    let (status, retired) = admin.get("/v1/retiredorgs").await;
    assert_eq!(status, 200, "{retired}");
    assert!(
        retired["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["uid"] == uid && o["name"] == "tenant-x"),
        "{retired}"
    );
    let (_, kept) = admin.get(&format!("/v1/retiredorgs/{uid}/audit")).await;
    assert!(
        old_records.iter().all(|id| request_ids(&kept).contains(id)),
        "{kept}"
    );
    let (_, kept) = admin.get(&format!("/v1/retiredorgs/{uid}/tokens")).await;
    assert!(kept.to_string().contains("\"ops\""), "{kept}");
    for path in [
        "/v1/retiredorgs".to_string(),
        format!("/v1/retiredorgs/{uid}/audit"),
    ] {
        assert_eq!(tenant_x.get(&path).await.0, 403, "{path}");
    }

    // An identity named like its org owns its own tokens, not the org's list.
    acme.create("/v1/orgs/acme/identities", "acme", json!({}))
        .await;
    let namesake = admin.with_token(&mint(&acme, "acme", "acme").await);
    let (status, list) = namesake.get("/v1/orgs/acme/tokens").await;
    assert!(matches!(status, 403 | 404), "{status}: {list}");
    let own = namesake
        .post("/v1/orgs/acme/identities/acme/tokens", json!({}))
        .await;
    assert_eq!(own.0, 201, "{}", own.1);
    // Nor may it revoke another's token, and that answers as a missing one does.
    let carol_id = listed[0];
    let (status, _) = namesake
        .delete(&format!("/v1/orgs/acme/tokens/{carol_id}"))
        .await;
    let (missing, _) = namesake
        .delete("/v1/orgs/acme/tokens/0123456789abcdef")
        .await;
    assert_eq!((status, missing), (404, 404));
    assert_eq!(whoami(&admin, &new).await, 200);
}

#[tokio::test]
async fn continue_tokens_carry_only_what_the_caller_saw_and_cannot_be_forged() {
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;
    admin.tenant("zeta").await;
    for name in ["a", "b", "c"] {
        acme.create("/v1/orgs/acme/folders", name, json!({})).await;
    }
    // acme sees one org; a page of one must not point at the next org it cannot see.
    let (status, page) = acme.get("/v1/orgs?limit=1").await;
    assert_eq!(status, 200, "{page}");
    if let Some(token) = page["metadata"]["continue"].as_str() {
        let payload = token.split('.').next().unwrap();
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let text = String::from_utf8_lossy(&decoded);
        assert!(!text.contains("zeta"), "{text}");
        let (_, rest) = acme
            .get(&format!("/v1/orgs?limit=1&continue={token}"))
            .await;
        assert_eq!(rest["items"], json!([]), "{rest}");
    }
    // Pages of folders walk through all three; the tokens work for their holder only.
    let (_, first) = acme.get("/v1/orgs/acme/folders?limit=2").await;
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let (status, second) = acme
        .get(&format!("/v1/orgs/acme/folders?limit=2&continue={token}"))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["items"][0]["metadata"]["name"], "c");
    let (status, _) = admin
        .get(&format!("/v1/orgs/acme/folders?limit=2&continue={token}"))
        .await;
    assert_eq!(status, 400, "another caller's token");
    let (status, _) = acme
        .get(&format!(
            "/v1/orgs/acme/identities?limit=2&continue={token}"
        ))
        .await;
    assert_eq!(status, 400, "another list's token");
    let (payload, tag) = token.split_once('.').unwrap();
    let mut position: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    position["start"] = json!(b"/o/orgs/zeta".to_vec());
    let forged = format!(
        "{}.{tag}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&position).unwrap())
    );
    let (status, _) = acme
        .get(&format!("/v1/orgs/acme/folders?limit=2&continue={forged}"))
        .await;
    assert_eq!(status, 400, "a forged position");
}

#[tokio::test]
async fn free_text_is_bounded_explain_shows_what_the_caller_may_read_and_slow_clients_are_cut_off()
{
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let acme = admin.tenant("acme").await;

    // Control characters and unbounded descriptions are refused.
    for description in ["\u{1b}]0;owned\u{7}", &"x".repeat(1_000_000)] {
        let (status, error) = acme
            .post(
                "/v1/orgs/acme/identities/owner/tokens",
                json!({"description": description}),
            )
            .await;
        assert!(matches!(status, 413 | 422), "{status}: {error}");
    }
    let (_, tokens) = acme.get("/v1/orgs/acme/tokens").await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1);

    // dana may read the policy of folder f only; the org.admin binding on acme that lets
    // the owner act is not hers to see, nor are the owner's groups.
    acme.create("/v1/orgs/acme/folders", "f", json!({})).await;
    acme.create("/v1/orgs/acme/identities", "dana", json!({}))
        .await;
    let dana = admin.with_token(&mint(&acme, "acme", "dana").await);
    let (status, _) = acme
        .put_policy(
            "/v1/orgs/acme/folders/f/policy",
            json!([{"role": "folder.admin", "subjects": ["user:dana"]}]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, explained) = dana
        .get("/v1/orgs/acme/explain?identity=owner&verb=delete&resource=projects&node=acme/f")
        .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["allowed"], true);
    assert!(
        explained["grantedBy"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["node"] != "acme"),
        "{explained}"
    );
    assert_eq!(explained["groups"], json!([]));
    let (_, own) = acme
        .get("/v1/orgs/acme/explain?verb=delete&resource=projects&node=acme/f")
        .await;
    assert_eq!(own["grantedBy"][0]["node"], "acme", "{own}");

    // A request whose headers stop half-way is closed, not held open.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(server.ca_pem())
        .unwrap_or_else(|_| server.ca_pem().into_bytes());
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let address = server.endpoint().trim_start_matches("https://").to_string();
    let tcp = std::net::TcpStream::connect(&address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
        .unwrap();
    tls.flush().unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let _ = tls.read_to_end(&mut buffer);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "held for {waited:?}: {}",
        String::from_utf8_lossy(&buffer)
    );
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

/// A small deterministic generator, so that a failing sequence can be run again from its
/// seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// What the model knows of one token.
struct Minted {
    token: String,
    org: &'static str,
    identity: &'static str,
    /// Which life of that identity minted it.
    life: u32,
}

#[tokio::test]
async fn credentials_authenticate_exactly_while_their_identity_lives() {
    let seed: u64 = std::env::var("DIALTONE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("sequence seed: {seed} (run again with DIALTONE_SEED={seed})");
    let server = start_with(&["--sim-time-scale", "0"]);
    let admin = Api::admin(&server);
    let mut rng = Rng(seed);
    const ORGS: [&str; 2] = ["t1", "t2"];
    const IDENTITIES: [&str; 2] = ["ops", "dev"];
    // Live orgs, with each org's creation time; live identities with their life number.
    let mut orgs: BTreeMap<&str, String> = BTreeMap::new();
    let mut lives: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut alive: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    let mut groups: BTreeMap<&str, bool> = BTreeMap::new();
    let mut minted: Vec<Minted> = Vec::new();
    let mut step = 0;
    while step < 80 {
        let (org, identity) = (ORGS[rng.below(2)], IDENTITIES[rng.below(2)]);
        let org_path = format!("/v1/orgs/{org}");
        let done = match rng.below(8) {
            0 if !orgs.contains_key(org) => {
                let (_, created) = admin
                    .post("/v1/orgs", json!({"metadata": {"name": org}}))
                    .await;
                let time = created["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap()
                    .to_string();
                orgs.insert(org, time);
                format!("create org {org}")
            }
            1 if orgs.contains_key(org) => {
                let (status, body) = admin.delete(&format!("{org_path}?cascade=true")).await;
                assert_eq!(status, 200, "seed {seed} step {step}: {body}");
                orgs.remove(org);
                groups.remove(org);
                for i in IDENTITIES {
                    alive.insert((org, i), false);
                }
                format!("delete org {org}")
            }
            2 | 3
                if orgs.contains_key(org)
                    && !alive.get(&(org, identity)).copied().unwrap_or(false) =>
            {
                admin
                    .create(&format!("{org_path}/identities"), identity, json!({}))
                    .await;
                *lives.entry((org, identity)).or_default() += 1;
                alive.insert((org, identity), true);
                format!("create identity {org}/{identity}")
            }
            4 if alive.get(&(org, identity)).copied().unwrap_or(false) => {
                let (status, body) = admin
                    .delete(&format!("{org_path}/identities/{identity}"))
                    .await;
                assert_eq!(status, 200, "seed {seed} step {step}: {body}");
                alive.insert((org, identity), false);
                format!("delete identity {org}/{identity}")
            }
            5 | 6 if alive.get(&(org, identity)).copied().unwrap_or(false) => {
                minted.push(Minted {
                    token: mint(&admin, org, identity).await,
                    org,
                    identity,
                    life: lives[&(org, identity)],
                });
                format!("mint a token for {org}/{identity}")
            }
            7 if orgs.contains_key(org) => {
                let members: Vec<&str> = IDENTITIES
                    .into_iter()
                    .filter(|i| alive.get(&(org, *i)).copied().unwrap_or(false))
                    .collect();
                let exists = groups.get(org).copied().unwrap_or(false);
                let (status, body) =
                    match exists {
                        true => admin.delete(&format!("{org_path}/groups/team")).await,
                        false => admin
                            .post(
                                &format!("{org_path}/groups"),
                                json!({"metadata": {"name": "team"}, "spec": {"members": members}}),
                            )
                            .await,
                    };
                assert!(status < 300, "seed {seed} step {step}: {body}");
                groups.insert(org, !exists);
                format!(
                    "{} group {org}/team",
                    if exists { "delete" } else { "create" }
                )
            }
            _ => continue,
        };
        step += 1;
        // Every credential authenticates exactly while the life of the identity that
        // minted it goes on.
        for m in &minted {
            let live = alive.get(&(m.org, m.identity)).copied().unwrap_or(false)
                && lives[&(m.org, m.identity)] == m.life;
            let status = whoami(&admin, &m.token).await;
            assert_eq!(
                status,
                if live { 200 } else { 401 },
                "seed {seed}, step {step} ({done}): the token of {}/{} (life {}, now {})",
                m.org,
                m.identity,
                m.life,
                lives[&(m.org, m.identity)]
            );
        }
        // Nothing of an org's earlier life is visible in its present one.
        for (org, created) in &orgs {
            let created: jiff::Timestamp = created.parse().unwrap();
            let (_, audit) = admin.get(&format!("/v1/orgs/{org}/audit")).await;
            for record in audit["items"].as_array().unwrap() {
                let time: jiff::Timestamp = record["time"].as_str().unwrap().parse().unwrap();
                assert!(
                    time >= created,
                    "seed {seed}, step {step} ({done}): {org}'s audit shows a record from before it was created: {record}"
                );
            }
            let (_, tokens) = admin.get(&format!("/v1/orgs/{org}/tokens")).await;
            for token in tokens["items"].as_array().unwrap() {
                let identity = token["identity"].as_str().unwrap();
                let current = minted.iter().any(|m| {
                    m.org == *org
                        && m.identity == identity
                        && m.token.contains(token["id"].as_str().unwrap())
                        && alive.get(&(m.org, m.identity)).copied().unwrap_or(false)
                        && lives[&(m.org, m.identity)] == m.life
                });
                assert!(
                    current,
                    "seed {seed}, step {step} ({done}): {org} lists a token of an earlier life: {token}"
                );
            }
        }
    }
}

/// Servers keep verified tokens in memory; a revocation or a deletion through one server
/// reaches the others through the store's watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_or_whose_identity_goes_on_one_server_fails_on_every_server() {
    let etcd = dialtone_testkit::EtcdCluster::start(1).expect("etcd");
    let store = etcd.url();
    let a = start_with(&["--store", &store]);
    let b = start_with(&["--store", &store]);
    let admin_a = Api::admin(&a);
    let admin_b = Api::new(&b, &admin_a.token);
    for identity in ["alice", "bob"] {
        let (status, body) = admin_a
            .post(
                "/v1/orgs/demo/identities",
                json!({"metadata": {"name": identity}, "spec": {}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let alice = mint(&admin_a, "demo", "alice").await;
    let bob = mint(&admin_a, "demo", "bob").await;
    // Both servers have verified both tokens, and keep them.
    for _ in 0..3 {
        for token in [&alice, &bob] {
            assert_eq!(whoami(&admin_a, token).await, 200);
            assert_eq!(whoami(&admin_b, token).await, 200);
        }
    }

    // Revoked through A: refused by A at once, and by B once B's watch brings the delete.
    let alice_id = alice.split('_').nth(1).unwrap();
    let (status, body) = admin_a
        .delete(&format!("/v1/orgs/demo/tokens/{alice_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        whoami(&admin_a, &alice).await,
        401,
        "refused at once where revoked"
    );
    let refused_on_b = refused_within(&admin_b, &alice, Duration::from_secs(5)).await;

    // Bob deleted through B: refused by B at once, and by A within the watch's delay.
    let (status, body) = admin_b.delete("/v1/orgs/demo/identities/bob").await;
    assert!(status == 200 || status == 202, "{status} {body}");
    assert_eq!(
        whoami(&admin_b, &bob).await,
        401,
        "refused at once where deleted"
    );
    let refused_on_a = refused_within(&admin_a, &bob, Duration::from_secs(5)).await;
    assert!(
        refused_on_b < Duration::from_secs(2) && refused_on_a < Duration::from_secs(2),
        "the other server took {refused_on_b:?} and {refused_on_a:?}"
    );
    // The admin's own token, verified by both, still works on both.
    assert_eq!(admin_a.get("/v1/whoami").await.0, 200);
    assert_eq!(admin_b.get("/v1/whoami").await.0, 200);
}

/// How long until `token` is refused, polling; fails past `limit`.
async fn refused_within(api: &Api, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match whoami(api, token).await {
            401 => return started.elapsed(),
            200 => assert!(started.elapsed() < limit, "still accepted after {limit:?}"),
            other => panic!("whoami answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
