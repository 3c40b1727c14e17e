//! The VinylDNS simulator against the API reference and the server code, over real HTTP: SigV4
//! authentication (good, missing, unparsable, unknown key, bad signature), plain-text error
//! bodies, status codes, paging, validation, the non-idempotent create, and fault injection.

use std::net::SocketAddr;
use std::time::Duration;

use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::sim::vinyldns::auth::{self as sim_auth, AuthFailure, Incoming};
use roster::sim::vinyldns::{VinylDnsSeed, VinylDnsSim};
use roster::target::vinyldns::sigv4;
use serde_json::{Value, json};

const AK: &str = "roster-access";
const SK: &str = "roster-secret";

struct Api {
    sim: VinylDnsSim,
    addr: SocketAddr,
    http: reqwest::Client,
}

async fn start(seed: &str) -> Api {
    let seed: VinylDnsSeed = toml::from_str(seed).expect("seed");
    seed.validate().expect("valid seed");
    let sim = VinylDnsSim::new(seed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Api {
        sim,
        addr,
        http: reqwest::Client::new(),
    }
}

const SEED: &str = r#"
users = ["alice", "bob", "carol"]
super_users = ["roster"]
locked_users = ["lee"]

[[credentials]]
access_key = "lee-access"
secret_key = "lee-secret"
user = "lee"

[[credentials]]
access_key = "roster-access"
secret_key = "roster-secret"
user = "roster"

[[credentials]]
access_key = "bob-access"
secret_key = "bob-secret"
user = "bob"

[[group]]
name = "ops"
email = "ops@example.com"
description = "Operations"
members = ["alice", "bob"]
admins = ["alice"]
"#;

impl Api {
    async fn send_as(
        &self,
        keys: (&str, &str),
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> (u16, String) {
        let mut url = format!("http://{}{path}", self.addr);
        if !query.is_empty() {
            url = format!("{url}?{}", sigv4::query(query));
        }
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let ct = [("content-type", "application/json")];
        let headers: &[(&str, &str)] = if bytes.is_some() { &ct } else { &[] };
        let signed = sigv4::sign(
            method,
            &url,
            headers,
            bytes.as_deref().unwrap_or_default(),
            keys.0,
            keys.1,
            sigv4::now(),
        )
        .expect("sign");
        let mut req = self.http.request(method.parse().expect("method"), &url);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        if let Some(b) = bytes {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> (u16, String) {
        self.send_as((AK, SK), method, path, query, body).await
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Value {
        let (status, text) = self.send(method, path, query, body).await;
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).expect("json body")
    }

    fn id(&self, user: &str) -> String {
        self.sim.user_id(user).expect("user")
    }
}

fn q(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

#[tokio::test]
async fn every_authentication_failure_is_a_401_and_a_locked_account_a_403() {
    let api = start(SEED).await;
    let (status, _) = api.send("GET", "/groups", &[], None).await;
    assert_eq!(status, 200);

    let url = format!("http://{}/groups", api.addr);
    let missing = api.http.get(&url).send().await.expect("send");
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.text().await.expect("body"),
        "Authentication Failed: Authorization header not found"
    );
    let garbage = api
        .http
        .get(&url)
        .header("authorization", "Bearer abc")
        .send()
        .await
        .expect("send");
    assert_eq!(garbage.status(), 401);
    assert_eq!(
        garbage.text().await.expect("body"),
        "Authentication Failed: Authorization header could not be parsed"
    );

    let (status, body) = api
        .send_as(("nobody", "x"), "GET", "/groups", &[], None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Account with accessKey nobody specified was not found"));

    let (status, body) = api
        .send_as((AK, "wrong"), "GET", "/groups", &[], None)
        .await;
    assert_eq!(
        (status, body.as_str()),
        (
            401,
            "Authentication Failed: Request signature could not be validated"
        )
    );

    // A signature over other query parameters than those sent does not validate.
    let signed = sigv4::sign(
        "GET",
        &format!("{url}?maxItems=5"),
        &[],
        b"",
        AK,
        SK,
        sigv4::now(),
    )
    .expect("sign");
    let mut req = api.http.get(format!("{url}?maxItems=6"));
    for (k, v) in &signed {
        req = req.header(*k, v);
    }
    assert_eq!(req.send().await.expect("send").status(), 401);

    // Without X-Amz-Date (or Date) the server fails inside: 500.
    let mut req = api.http.get(format!("{url}?maxItems=5"));
    for (k, v) in signed.iter().filter(|(k, _)| *k == "authorization") {
        req = req.header(*k, v);
    }
    assert_eq!(req.send().await.expect("send").status(), 500);

    let (status, body) = api
        .send_as(("lee-access", "lee-secret"), "GET", "/groups", &[], None)
        .await;
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "Authentication Failed: Account with username lee is locked"
        )
    );
}

#[tokio::test]
async fn the_path_is_signed_as_the_server_renders_it() {
    let api = start(SEED).await;
    api.sim.add_user("jane@corp.com");
    // Sent and signed with the @ literal, as the server renders the path: accepted.
    let (status, body) = api.send("GET", "/users/jane@corp.com", &[], None).await;
    assert_eq!(status, 200, "{body}");
    // Sent with %40 and signed as sent: the server signs "@", not "%40".
    let (status, body) = api.send("GET", "/users/jane%40corp.com", &[], None).await;
    assert_eq!(status, 401, "{body}");
    // A space must be encoded; signed as sent it validates.
    api.sim.add_user("mary ann");
    let (status, body) = api.send("GET", "/users/mary%20ann", &[], None).await;
    assert_eq!(status, 200, "{body}");
}

fn vectors() -> Vec<Value> {
    let file: Value = serde_json::from_str(include_str!("fixtures/vinyldns/botocore_vectors.json"))
        .expect("vectors");
    file["vectors"].as_array().expect("vectors").clone()
}

fn vector_headers(v: &Value) -> Vec<(String, String)> {
    v["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, x)| (k.clone(), x.as_str().expect("header").to_owned()))
        .collect()
}

/// The verifier accepts what botocore signs with the path as sent, refuses what botocore's
/// default signer (which encodes the path a second time) signs wherever that changes the path,
/// and refuses every vector once tampered with.
#[test]
fn the_verifier_checks_botocore_signatures_as_the_server_does() {
    let all = vectors();
    assert_eq!(all.len(), 16);
    for v in &all {
        let s = |k: &str| v[k].as_str().expect("field").to_owned();
        let headers = vector_headers(v);
        let (path, query, body) = (s("path"), s("query"), s("body"));
        let req = Incoming {
            method: v["method"].as_str().expect("method"),
            path: &path,
            query: (!query.is_empty()).then_some(query.as_str()),
            headers: &headers,
            body: body.as_bytes(),
        };
        let secret = |ak: &str| (ak == s("access_key")).then(|| s("secret_key"));
        let verdict = sim_auth::authenticate(&req, secret);
        let name = format!("{} ({})", s("name"), s("signer"));
        if v["server_accepts"] == true {
            assert_eq!(verdict, Ok(s("access_key")), "{name}");
        } else {
            assert_eq!(verdict, Err(AuthFailure::BadSignature), "{name}");
        }
        // Tampered: another signature, another path, another body.
        let mut forged = headers.clone();
        for (k, val) in &mut forged {
            if k == "authorization" {
                let last = if val.ends_with('0') { '1' } else { '0' };
                val.pop();
                val.push(last);
            }
        }
        let t = Incoming {
            headers: &forged,
            ..req
        };
        assert_eq!(
            sim_auth::authenticate(&t, secret),
            Err(AuthFailure::BadSignature),
            "{name}"
        );
        let other = format!("{path}x");
        let t = Incoming {
            path: &other,
            ..req
        };
        assert_eq!(
            sim_auth::authenticate(&t, secret),
            Err(AuthFailure::BadSignature),
            "{name}"
        );
        let t = Incoming { body: b"{}", ..req };
        assert_eq!(
            sim_auth::authenticate(&t, secret),
            Err(AuthFailure::BadSignature),
            "{name}"
        );
    }
}

/// The same vectors over HTTP: the simulator answers 401 exactly where the server would.
#[tokio::test]
async fn botocore_vectors_sent_over_http() {
    let seed = format!(
        "{SEED}\n[[credentials]]\naccess_key = \"AKIDROSTER\"\nsecret_key = \"roster/secret+key\"\nuser = \"boto\"\n"
    );
    let api = start(&seed).await;
    for v in vectors() {
        let mut url = format!("http://{}{}", api.addr, v["path"].as_str().expect("path"));
        let query = v["query"].as_str().expect("query");
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let method: reqwest::Method = v["method"].as_str().expect("method").parse().expect("m");
        let mut req = api.http.request(method, &url);
        for (k, val) in vector_headers(&v) {
            req = req.header(k, val);
        }
        let resp = req
            .body(v["body"].as_str().expect("body").to_owned())
            .send()
            .await
            .expect("send");
        let name = format!("{} ({})", v["name"], v["signer"]);
        if v["server_accepts"] == true {
            assert_ne!(resp.status(), 401, "{name}");
        } else {
            assert_eq!(resp.status(), 401, "{name}");
        }
    }
}

#[tokio::test]
async fn groups_list_pages_by_next_id_and_checks_max_items() {
    let mut seed = SEED.to_owned();
    for i in 0..5 {
        seed += &format!(
            "\n[[group]]\nname = \"g{i}\"\nemail = \"g@example.com\"\nmembers = [\"carol\"]\nadmins = [\"carol\"]\n"
        );
    }
    let api = start(&seed).await;
    let first = api
        .json(
            "GET",
            "/groups",
            &q(&[("maxItems", "4"), ("ignoreAccess", "true")]),
            None,
        )
        .await;
    let names: Vec<&str> = first["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["g0", "g1", "g2", "g3"]);
    assert_eq!(first["maxItems"], 4);
    assert_eq!(first["ignoreAccess"], true);
    let next = first["nextId"].as_str().expect("nextId").to_owned();
    let second = api
        .json(
            "GET",
            "/groups",
            &q(&[
                ("maxItems", "4"),
                ("ignoreAccess", "true"),
                ("startFrom", &next),
            ]),
            None,
        )
        .await;
    let names: Vec<&str> = second["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["g4", "ops"]);
    assert!(second.get("nextId").is_none(), "{second}");
    assert_eq!(second["startFrom"], next.as_str());
    let g = &second["groups"][1];
    assert_eq!(g["email"], "ops@example.com");
    assert_eq!(g["status"], "Active");
    assert_eq!(g["members"].as_array().expect("members").len(), 2);
    assert_eq!(g["admins"], json!([{ "id": api.id("alice") }]));

    for bad in ["0", "3001"] {
        let (status, body) = api
            .send("GET", "/groups", &q(&[("maxItems", bad)]), None)
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("maxItems must be between 0 exclusive"),
            "{body}"
        );
        assert!(body.contains("and 3000 inclusive"), "{body}");
    }
    let (status, _) = api
        .send("GET", "/groups", &q(&[("maxItems", "3000")]), None)
        .await;
    assert_eq!(status, 200);
    // A filter matches names without regard to case.
    let f = api
        .json(
            "GET",
            "/groups",
            &q(&[("groupNameFilter", "OP"), ("ignoreAccess", "true")]),
            None,
        )
        .await;
    assert_eq!(f["groups"].as_array().expect("groups").len(), 1);
    assert_eq!(f["groupNameFilter"], "OP");
}

#[tokio::test]
async fn ignore_access_decides_what_a_normal_user_sees() {
    let mut seed = SEED.to_owned();
    seed += "\n[[group]]\nname = \"other\"\nemail = \"o@example.com\"\nmembers = [\"carol\"]\nadmins = [\"carol\"]\n";
    let api = start(&seed).await;
    let bob = ("bob-access", "bob-secret");
    let (_, mine) = api.send_as(bob, "GET", "/groups", &[], None).await;
    let mine: Value = serde_json::from_str(&mine).expect("json");
    assert_eq!(mine["groups"].as_array().expect("groups").len(), 1);
    let (_, all) = api
        .send_as(bob, "GET", "/groups", &q(&[("ignoreAccess", "true")]), None)
        .await;
    let all: Value = serde_json::from_str(&all).expect("json");
    assert_eq!(all["groups"].as_array().expect("groups").len(), 2);
}

#[tokio::test]
async fn create_validates_and_makes_the_creator_an_admin() {
    let api = start(SEED).await;
    let alice = api.id("alice");
    // email is required: the JSON protocol names the missing field.
    let (status, body) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(json!({"name": "x", "members": [], "admins": []})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, r#"{"errors":["Missing Group.email"]}"#);
    let (status, body) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(json!({"name": "x", "email": "a@example.com"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"errors":["Missing Group.members","Missing Group.admins"]}"#
    );
    let (status, body) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(
                json!({"name": "two words", "email": "a@example.com", "members": [], "admins": []}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Unknown user ids: 404, as the server's UserNotFoundError.
    let (status, body) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(json!({"name": "x", "email": "a@example.com", "members": [{"id": "ghost"}], "admins": []})),
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (404, "Users [ ghost ] were not found")
    );
    // A duplicate name, whatever its case: 409, with a plain-text message.
    let (status, body) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(json!({"name": "OPS", "email": "a@example.com", "members": [], "admins": []})),
        )
        .await;
    assert_eq!(status, 409);
    assert!(
        body.starts_with("Group with name OPS already exists."),
        "{body}"
    );

    let created = api
        .json(
            "POST",
            "/groups",
            &[],
            Some(json!({"name": "dev", "email": "dev@example.com",
                        "members": [{"id": alice}], "admins": [{"id": alice}]})),
        )
        .await;
    assert!(created.get("description").is_none(), "{created}");
    assert_eq!(api.sim.admin_names("dev"), ["alice", "roster"]);
    assert_eq!(api.sim.member_names("dev"), ["alice", "roster"]);
    // The same create again is not idempotent: it conflicts.
    let (status, _) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(json!({"name": "dev", "email": "dev@example.com",
                        "members": [{"id": alice}], "admins": [{"id": alice}]})),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn update_is_a_full_replace_that_only_admins_and_super_users_may_make() {
    let api = start(SEED).await;
    let g = api.sim.group("ops").expect("ops");
    let (alice, carol) = (api.id("alice"), api.id("carol"));
    let body = json!({"id": g.id, "name": "ops", "email": "ops@example.com",
                      "members": [{"id": carol}], "admins": [{"id": alice}]});
    // bob is a member but no admin: 403.
    let (status, text) = api
        .send_as(
            ("bob-access", "bob-secret"),
            "PUT",
            &format!("/groups/{}", g.id),
            &[],
            Some(body.clone()),
        )
        .await;
    assert_eq!((status, text.as_str()), (403, "Not authorized"));
    let updated = api
        .json("PUT", &format!("/groups/{}", g.id), &[], Some(body))
        .await;
    assert_eq!(updated["members"].as_array().expect("members").len(), 2);
    // Admins are always members; the description was left out, so it is gone.
    assert_eq!(api.sim.member_names("ops"), ["alice", "carol"]);
    assert!(api.sim.group("ops").expect("ops").description.is_none());
    // No admin at all: 400.
    let (status, text) = api
        .send(
            "PUT",
            &format!("/groups/{}", g.id),
            &[],
            Some(
                json!({"id": g.id, "name": "ops", "email": "ops@example.com",
                        "members": [{"id": carol}], "admins": []}),
            ),
        )
        .await;
    assert_eq!(
        (status, text.as_str()),
        (400, "Group must have at least one member and one admin")
    );
    // An unknown group: 404.
    let (status, text) = api
        .send(
            "PUT",
            "/groups/nope",
            &[],
            Some(json!({"id": "nope", "name": "x", "email": "x@example.com", "members": [], "admins": []})),
        )
        .await;
    assert_eq!(
        (status, text.as_str()),
        (404, "Group with ID nope was not found")
    );
}

#[tokio::test]
async fn delete_answers_the_deleted_group_then_404() {
    let api = start(SEED).await;
    let id = api.sim.group("ops").expect("ops").id;
    let deleted = api
        .json("DELETE", &format!("/groups/{id}"), &[], None)
        .await;
    assert_eq!(deleted["status"], "Deleted");
    let (status, _) = api
        .send("DELETE", &format!("/groups/{id}"), &[], None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = api.send("GET", &format!("/groups/{id}"), &[], None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn members_page_by_user_id_and_mark_admins() {
    let api = start(SEED).await;
    let id = api.sim.group("ops").expect("ops").id;
    let path = format!("/groups/{id}/members");
    let first = api.json("GET", &path, &q(&[("maxItems", "1")]), None).await;
    assert_eq!(first["members"].as_array().expect("members").len(), 1);
    let next = first["nextId"].as_str().expect("nextId").to_owned();
    let second = api
        .json(
            "GET",
            &path,
            &q(&[("maxItems", "1"), ("startFrom", &next)]),
            None,
        )
        .await;
    assert!(second.get("nextId").is_none(), "{second}");
    let mut seen: Vec<(String, bool)> = [&first, &second]
        .iter()
        .map(|p| {
            let m = &p["members"][0];
            (
                m["userName"].as_str().expect("name").to_owned(),
                m["isAdmin"] == true,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("alice".to_owned(), true), ("bob".to_owned(), false)]
    );
    let admins = api
        .json("GET", &format!("/groups/{id}/admins"), &[], None)
        .await;
    assert_eq!(admins["admins"][0]["userName"], "alice");
    let (status, _) = api
        .send("GET", &path, &q(&[("maxItems", "1001")]), None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .send("GET", &path, &q(&[("maxItems", "1000")]), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn users_are_found_by_id_or_name() {
    let api = start(SEED).await;
    let alice = api.id("alice");
    let by_name = api.json("GET", "/users/alice", &[], None).await;
    assert_eq!(by_name["id"], alice.as_str());
    let by_id = api.json("GET", &format!("/users/{alice}"), &[], None).await;
    assert_eq!(by_id["userName"], "alice");
    // Without regard to case, by name and by id.
    let upper = api.json("GET", "/users/ALICE", &[], None).await;
    assert_eq!(upper["id"], alice.as_str());
    let upper = api
        .json(
            "GET",
            &format!("/users/{}", alice.to_uppercase()),
            &[],
            None,
        )
        .await;
    assert_eq!(upper["userName"], "alice");
    let (status, body) = api.send("GET", "/users/ghost", &[], None).await;
    assert_eq!((status, body.as_str()), (404, "User ghost was not found"));
}

#[tokio::test]
async fn faults_are_injected_after_authentication_is_logged() {
    let api = start(SEED).await;
    api.sim.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_secs(2),
        fail_path: Some("/users/".into()),
        ..Faults::default()
    });
    let url = format!("http://{}/users/alice", api.addr);
    let resp = api.http.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    api.sim.set_faults(Faults {
        fail_writes: 1,
        ..Faults::default()
    });
    let id = api.sim.group("ops").expect("ops").id;
    let (status, _) = api
        .send("DELETE", &format!("/groups/{id}"), &[], None)
        .await;
    assert_eq!(status, 500);
    assert!(api.sim.group("ops").is_some(), "a failed write was applied");
    let calls = api.sim.calls();
    assert_eq!(
        calls,
        [
            "GET /users/alice".to_owned(),
            format!("DELETE /groups/{id}"),
        ]
    );
    // The control endpoints need no signature and are not logged as API calls.
    let state: Value = api
        .http
        .get(format!("http://{}/_sim/state", api.addr))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(state["groups"].as_array().expect("groups").len(), 1);
    assert_eq!(api.sim.calls().len(), 2);
}

#[test]
fn an_invalid_seed_is_reported() {
    let seed: VinylDnsSeed = toml::from_str(
        "[[group]]\nname = \"a\"\nemail = \"\"\nmembers = [\"ghost\"]\n\n[[group]]\nname = \"A\"\nemail = \"a@b.c\"\nadmins = [\"x\"]\n",
    )
    .expect("parses");
    let problems = seed.validate().expect_err("invalid");
    assert!(
        problems.iter().any(|p| p.contains("has no email")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unknown user \"ghost\"")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("listed twice")),
        "{problems:?}"
    );
    assert!(toml::from_str::<VinylDnsSeed>("usrs = []").is_err());
}

#[tokio::test]
async fn behaviour_is_put_as_json_only() {
    let api = start(SEED).await;
    let url = format!("http://{}/_sim/behaviour", api.addr);
    assert!(!api.sim.behaviour().repeat_group_pages);
    let resp = api
        .http
        .put(&url)
        .json(&json!({ "repeat_group_pages": true, "email_dots": 3 }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    let b = api.sim.behaviour();
    assert!(b.repeat_group_pages);
    assert_eq!(b.email_dots, 3);
    assert!(
        b.valid_email_domains.is_empty(),
        "fields left out take their defaults"
    );
    let shown: Value = api
        .http
        .get(&url)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["repeat_group_pages"], true);
    // The same body without a JSON content type is refused and changes nothing.
    let resp = api
        .http
        .put(&url)
        .body(r#"{ "repeat_group_pages": false }"#)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 415);
    assert!(api.sim.behaviour().repeat_group_pages);
}

#[tokio::test]
async fn email_and_description_rules_apply_to_every_create_and_update() {
    let seed =
        format!("{SEED}\n[behaviour]\nvalid_email_domains = [\"example.com\", \"*.corp.net\"]\n");
    let api = start(&seed).await;
    let domains = api.json("GET", "/groups/valid/domains", &[], None).await;
    assert_eq!(domains, json!(["example.com", "*.corp.net"]));
    let alice = api.id("alice");
    let create = |email: &str, description: Option<String>| {
        let mut b = json!({"name": "dev", "email": email,
                           "members": [{"id": alice}], "admins": [{"id": alice}]});
        if let Some(d) = description {
            b["description"] = d.into();
        }
        b
    };
    for (email, want) in [
        ("not-an-email", "Please enter a valid Email."),
        ("a..b@example.com", "Please enter a valid Email."),
        ("a@localhost", "Please enter a valid Email."),
        ("o'neil@example.com", "Please enter a valid Email."),
        (
            "a@x.y.example.com",
            "Please enter a valid Email. Number of dots allowed after @ is 2",
        ),
        (
            "a@other.org",
            "Please enter a valid Email. Valid domains should end with example.com,.corp.net",
        ),
    ] {
        let (status, body) = api
            .send("POST", "/groups", &[], Some(create(email, None)))
            .await;
        assert_eq!((status, body.as_str()), (400, want), "{email}");
    }
    let (status, body) = api
        .send(
            "POST",
            "/groups",
            &[],
            Some(create("a@eu.corp.net", Some("d".repeat(257)))),
        )
        .await;
    assert_eq!(status, 500, "{body}");
    let created = api
        .json(
            "POST",
            "/groups",
            &[],
            Some(create("a@eu.corp.net", Some("d".repeat(256)))),
        )
        .await;
    // An update re-sends the e-mail, which must pass the rule as it stands.
    let mut b = api.sim.behaviour();
    b.email_dots = 1;
    api.sim.set_behaviour(b);
    let mut body = created.clone();
    body["members"] = json!([{"id": alice}, {"id": api.id("bob")}]);
    let (status, text) = api
        .send(
            "PUT",
            &format!("/groups/{}", created["id"].as_str().expect("id")),
            &[],
            Some(body),
        )
        .await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            "Please enter a valid Email. Number of dots allowed after @ is 1"
        )
    );
}

#[tokio::test]
async fn unknown_admin_ids_are_stored_and_left_out_of_the_members_list() {
    let api = start(SEED).await;
    let g = api.sim.group("ops").expect("ops");
    let alice = api.id("alice");
    let path = format!("/groups/{}", g.id);
    // An unknown admin id is stored unchecked.
    let body = json!({"id": g.id, "name": "ops", "email": "ops@example.com",
                      "members": [{"id": alice}], "admins": [{"id": alice}, {"id": "ghost"}]});
    let stored = api.json("PUT", &path, &[], Some(body)).await;
    assert_eq!(stored["admins"].as_array().expect("admins").len(), 2);
    assert!(api.sim.member_ids("ops").contains("ghost"));
    // The members list leaves it out.
    let members = api.json("GET", &format!("{path}/members"), &[], None).await;
    assert_eq!(members["members"].as_array().expect("members").len(), 1);
    // A newly added non-admin member is checked: 404.
    let body = json!({"id": g.id, "name": "ops", "email": "ops@example.com",
                      "members": [{"id": alice}, {"id": "nobody"}],
                      "admins": [{"id": alice}, {"id": "ghost"}]});
    let (status, text) = api.send("PUT", &path, &[], Some(body)).await;
    assert_eq!(
        (status, text.as_str()),
        (404, "Users [ nobody ] were not found")
    );
    // An unknown admin turned into a plain member is checked too.
    let body = json!({"id": g.id, "name": "ops", "email": "ops@example.com",
                      "members": [{"id": alice}, {"id": "ghost"}], "admins": [{"id": alice}]});
    let (status, _) = api.send("PUT", &path, &[], Some(body)).await;
    assert_eq!(status, 404);
    // Admins list users with their super-user flag.
    let admins = api.json("GET", &format!("{path}/admins"), &[], None).await;
    assert_eq!(admins["admins"][0]["isSuper"], false);
}

#[tokio::test]
async fn an_abridged_list_shows_only_the_callers_own_entries() {
    let api = start(SEED).await;
    let bob = ("bob-access", "bob-secret");
    let (_, text) = api
        .send_as(
            bob,
            "GET",
            "/groups",
            &q(&[("abridged", "true"), ("ignoreAccess", "true")]),
            None,
        )
        .await;
    let page: Value = serde_json::from_str(&text).expect("json");
    let ops = &page["groups"][0];
    assert_eq!(ops["members"], json!([{ "id": api.id("bob") }]));
    assert_eq!(ops["admins"], json!([]));
}

#[tokio::test]
async fn a_group_that_administers_a_zone_or_is_named_in_one_cannot_be_deleted() {
    let mut seed = SEED.to_owned();
    for g in ["zadmin", "acl", "owner"] {
        seed += &format!(
            "\n[[group]]\nname = \"{g}\"\nemail = \"{g}@example.com\"\nmembers = [\"carol\"]\nadmins = [\"carol\"]\n"
        );
    }
    seed += "\n[[zone]]\nname = \"example.com.\"\nadmin_group = \"zadmin\"\nacl_groups = [\"acl\"]\nrecord_owners = [\"owner\"]\n";
    let api = start(&seed).await;
    let zones = api
        .json("GET", "/zones", &q(&[("ignoreAccess", "true")]), None)
        .await;
    let z = &zones["zones"][0];
    assert_eq!(
        z["adminGroupId"],
        api.sim.group("zadmin").expect("g").id.as_str()
    );
    assert_eq!(
        z["acl"]["rules"][0]["groupId"],
        api.sim.group("acl").expect("g").id.as_str()
    );
    for (g, says) in [
        ("zadmin", "zadmin is the admin of a zone. Cannot delete."),
        ("acl", "acl has an ACL rule for a zone including"),
        ("owner", "owner is the owner for a record set including"),
    ] {
        let id = api.sim.group(g).expect("g").id;
        let (status, body) = api
            .send("DELETE", &format!("/groups/{id}"), &[], None)
            .await;
        assert_eq!(status, 400, "{g}: {body}");
        assert!(body.starts_with(says), "{body}");
    }
    let (status, _) = api
        .send("GET", "/zones", &q(&[("maxItems", "101")]), None)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn names_follow_updates_deletes_and_the_case_switch_flipped_at_run_time() {
    let api = start(SEED).await;
    let alice = api.id("alice");
    let ops = api.sim.group("ops").expect("ops").id;
    let body = |id: Option<&str>, name: &str| {
        let mut b = json!({
            "name": name,
            "email": "team@example.com",
            "members": [{"id": alice}],
            "admins": [{"id": alice}],
        });
        if let Some(id) = id {
            b["id"] = json!(id);
        }
        Some(b)
    };
    let names = |v: &Value| -> Vec<String> {
        v["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (status, _) = api
        .send(
            "PUT",
            &format!("/groups/{ops}"),
            &[],
            body(Some(&ops), "platform"),
        )
        .await;
    assert_eq!(status, 200);
    let found = api
        .json("GET", "/groups", &q(&[("groupNameFilter", "PLAT")]), None)
        .await;
    assert_eq!(names(&found), ["platform"]);
    // The new name is taken (regardless of case), the old one free.
    let (status, _) = api
        .send("POST", "/groups", &[], body(None, "Platform"))
        .await;
    assert_eq!(status, 409);
    let (status, _) = api.send("POST", "/groups", &[], body(None, "OPS")).await;
    assert_eq!(status, 200);

    // Exact names from now on: a name differing by case is another group.
    let url = format!("http://{}/_sim/behaviour", api.addr);
    let flip = |on: bool| {
        api.http
            .put(&url)
            .json(&json!({ "case_insensitive_names": on }))
            .send()
    };
    assert!(flip(false).await.expect("send").status().is_success());
    let (status, _) = api
        .send("POST", "/groups", &[], body(None, "Platform"))
        .await;
    assert_eq!(status, 200);
    assert!(flip(true).await.expect("send").status().is_success());
    let found = api
        .json(
            "GET",
            "/groups",
            &q(&[("groupNameFilter", "platform")]),
            None,
        )
        .await;
    let mut both = names(&found);
    both.sort();
    assert_eq!(both, ["Platform", "platform"]);
    // The user's groups follow its memberships.
    let user = api.json("GET", "/users/ALICE", &[], None).await;
    assert_eq!(user["groupId"].as_array().expect("groups").len(), 3);

    // Deleted, then created again under the same name.
    let (status, _) = api
        .send("DELETE", &format!("/groups/{ops}"), &[], None)
        .await;
    assert_eq!(status, 200);
    let user = api.json("GET", "/users/alice", &[], None).await;
    assert_eq!(user["groupId"].as_array().expect("groups").len(), 2);
    let (status, _) = api.send("POST", "/groups", &[], body(None, "ops")).await;
    assert_eq!(
        status, 409,
        "OPS, made above, holds the name regardless of case"
    );
    let (status, _) = api
        .send(
            "DELETE",
            &format!("/groups/{}", api.sim.group("OPS").expect("OPS").id),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, again) = api.send("POST", "/groups", &[], body(None, "ops")).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(api.sim.group("ops").expect("ops").id, ops);
}

#[tokio::test]
async fn group_pages_are_written_as_a_json_value_would_write_them() {
    let api = start(SEED).await;
    for query in [
        q(&[("groupNameFilter", "o"), ("maxItems", "1")]),
        q(&[("abridged", "true")]),
    ] {
        let (status, text) = api.send("GET", "/groups", &query, None).await;
        assert_eq!(status, 200, "{text}");
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(text, value.to_string(), "fields in a map's order");
    }
}
