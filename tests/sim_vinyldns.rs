//! The VinylDNS simulator against the API reference and the server code, over real HTTP: SigV4
//! authentication (good, missing, unparsable, unknown key, bad signature), plain-text error
//! bodies, status codes, paging, validation, the non-idempotent create, and fault injection.

use std::net::SocketAddr;
use std::time::Duration;

use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::target::vinyldns::sigv4;
use roster::target::vinyldns::sim::{AuthStatuses, VinylDnsSeed, VinylDnsSim};
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
async fn a_good_signature_passes_and_each_bad_one_fails_as_documented() {
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
    assert_eq!(garbage.status(), 403);

    let (status, body) = api
        .send_as(("nobody", "x"), "GET", "/groups", &[], None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Account with accessKey nobody specified was not found"));

    let (status, body) = api
        .send_as((AK, "wrong"), "GET", "/groups", &[], None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        "Authentication Failed: Request signature could not be validated"
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
    for (k, v) in signed {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.expect("send").status(), 403);

    // The server's own directive answers 401 for every failure: the switch shows it.
    let mut b = api.sim.behaviour();
    b.auth_statuses = AuthStatuses::Server;
    api.sim.set_behaviour(b);
    let (status, _) = api
        .send_as((AK, "wrong"), "GET", "/groups", &[], None)
        .await;
    assert_eq!(status, 401);
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

    for bad in ["0", "101"] {
        let (status, body) = api
            .send("GET", "/groups", &q(&[("maxItems", bad)]), None)
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("maxItems must be between 0 exclusive and 100"),
            "{body}"
        );
    }
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
        .send("GET", &path, &q(&[("maxItems", "101")]), None)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn users_are_found_by_id_or_name() {
    let api = start(SEED).await;
    let alice = api.id("alice");
    let by_name = api.json("GET", "/users/alice", &[], None).await;
    assert_eq!(by_name["id"], alice.as_str());
    let by_id = api.json("GET", &format!("/users/{alice}"), &[], None).await;
    assert_eq!(by_id["userName"], "alice");
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
        .json(&json!({ "repeat_group_pages": true, "auth_statuses": "server" }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    let b = api.sim.behaviour();
    assert!(b.repeat_group_pages);
    assert_eq!(b.auth_statuses, AuthStatuses::Server);
    assert!(
        b.creator_becomes_admin,
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
