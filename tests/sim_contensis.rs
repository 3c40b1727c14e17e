//! The Contensis simulator over real HTTP: started in-process on `127.0.0.1:0` with
//! `roster::sim::start`, driven with reqwest, and inspected through its handle. These tests pin
//! what the API reference says (paths, statuses, envelopes, auth) and the simulator's switches
//! and faults, so that connector tests built on it stand on something checked.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use roster::sim::contensis::{AddExisting, Behaviour, BulkExisting, BulkUnknown, PutMode};
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::sim::{RunningSim, parse_seed, start};
use serde_json::{Value, json};

const GUID_LEN: usize = 36;

/// A started simulator, an HTTP client and an admin token.
struct Env {
    sim: RunningSim,
    http: Client,
    token: String,
}

impl Env {
    async fn new(seed: &str) -> Self {
        let seed = parse_seed(seed, "test-seed").unwrap();
        let sim = start(seed, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = Client::new();
        let token = client_token(&http, &sim.url(), "roster", "roster-secret")
            .await
            .unwrap();
        Self { sim, http, token }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.url())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("accept", "application/json");
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    /// The names of the groups the simulator's state holds, as `/_sim/state` lists them.
    async fn state_group_names(&self) -> Vec<String> {
        let (status, state) = self.get("/_sim/state").await;
        assert_eq!(status, StatusCode::OK);
        state["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
}

async fn client_token(http: &Client, base: &str, id: &str, secret: &str) -> Result<String, Value> {
    let resp = http
        .post(format!("{base}/authenticate/connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "Security_Administrator"),
        ])
        .send()
        .await
        .unwrap();
    let ok = resp.status() == StatusCode::OK;
    let body: Value = resp.json().await.unwrap();
    if ok {
        Ok(body["access_token"].as_str().unwrap().to_owned())
    } else {
        Err(body)
    }
}

async fn password_token(env: &Env, username: &str, password: &str) -> (StatusCode, Value) {
    let resp = env
        .http
        .post(env.url("/authenticate/connect/token"))
        .form(&[
            ("grant_type", "contensis_classic"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Asserts the Error envelope: fresh GUID `logId`, the message, `type` "error".
fn assert_envelope(body: &Value, message: &str) {
    assert_eq!(body["message"], message, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["logId"].as_str().unwrap().len(), GUID_LEN, "{body}");
    assert!(body.get("data").is_some(), "{body}");
}

#[tokio::test]
async fn token_flow_and_401s() {
    let env = Env::new("").await;
    let base = env.sim.url();

    // The token answer's shape.
    let resp = env
        .http
        .post(env.url("/authenticate/connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "roster"),
            ("client_secret", "roster-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().unwrap().len() > 20);

    // Bad credentials and grants.
    let err = client_token(&env.http, &base, "roster", "wrong")
        .await
        .unwrap_err();
    assert_eq!(err, json!({"error": "invalid_client"}));
    let resp = env
        .http
        .post(env.url("/authenticate/connect/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    // No token, a made-up token, then a good one with a lowercase scheme.
    let resp = env
        .http
        .get(env.url("/api/security/groups"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "Authorization has been denied for this request."})
    );
    let (status, _) = env
        .call_as("not-a-token", Method::GET, "/api/security/groups", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = env
        .http
        .get(env.url("/api/security/groups"))
        .header("authorization", format!("bearer {}", env.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_expire_by_ttl_and_by_fault() {
    let env = Env::new("[contensis]\ntoken_ttl = \"300ms\"").await;
    assert_eq!(env.get("/api/security/groups").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        env.get("/api/security/groups").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Expiry in the middle of a run: two calls pass, then every token is dead, once.
    let base = env.sim.url();
    let token = client_token(&env.http, &base, "roster", "roster-secret")
        .await
        .unwrap();
    env.sim.contensis.set_faults(Faults {
        expire_tokens_after: 2,
        ..Faults::default()
    });
    let get = |t: String| {
        let env = &env;
        async move {
            env.call_as(&t, Method::GET, "/api/security/groups", None)
                .await
                .0
        }
    };
    assert_eq!(get(token.clone()).await, StatusCode::OK);
    assert_eq!(get(token.clone()).await, StatusCode::OK);
    assert_eq!(get(token.clone()).await, StatusCode::UNAUTHORIZED);
    let fresh = client_token(&env.http, &base, "roster", "roster-secret")
        .await
        .unwrap();
    assert_eq!(get(fresh.clone()).await, StatusCode::OK);
    assert_eq!(get(fresh).await, StatusCode::OK);
}

#[tokio::test]
async fn non_admins_get_403() {
    let env = Env::new(
        r#"
        [contensis]
        client_is_admin = false
        [[contensis.login]]
        username = "admin"
        password = "pw"
        [[contensis.login]]
        username = "pleb"
        password = "pw"
        [[contensis.group]]
        name = "Admins by proxy"
        members = ["admin"]
        [[contensis.group]]
        name = "System Administrators"
        type = "sys"
        children = ["Admins by proxy"]
        "#,
    )
    .await;
    let (status, body) = env.get("/api/security/groups").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "error");
    assert_eq!(body["logId"].as_str().unwrap().len(), GUID_LEN);

    // A password user who is an administrator through a child group.
    let (status, body) = password_token(&env, "admin", "pw").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["refresh_token"].is_string());
    let admin = body["access_token"].as_str().unwrap().to_owned();
    let (status, list) = env
        .call_as(&admin, Method::GET, "/api/security/groups", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["totalCount"], 2);

    // Someone else: 403 on groups, but may read themself.
    let (_, body) = password_token(&env, "pleb", "pw").await;
    let pleb = body["access_token"].as_str().unwrap().to_owned();
    let (status, _) = env
        .call_as(&pleb, Method::GET, "/api/security/groups", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, me) = env
        .call_as(&pleb, Method::GET, "/api/security/users/@current", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "pleb");
    assert_eq!(me["email"], "pleb@example.com");

    let (status, body) = password_token(&env, "pleb", "wrong").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn groups_are_paged_sorted_and_filtered() {
    let env = Env::new("").await;
    for i in 0..60 {
        env.sim
            .contensis
            .insert_group(&format!("g{i:02}"), None, &[], &[]);
    }
    let mut seen = Vec::new();
    for page in 0..3 {
        let (status, body) = env
            .get(&format!(
                "/api/security/groups?pageIndex={page}&pageSize=25&order=name"
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["pageIndex"], page);
        assert_eq!(body["pageSize"], 25);
        assert_eq!(body["totalCount"], 61);
        assert_eq!(body["pageCount"], 3);
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), if page == 2 { 11 } else { 25 });
        seen.extend(items.iter().map(|g| g["name"].as_str().unwrap().to_owned()));
    }
    let mut expected: Vec<String> = (0..60).map(|i| format!("g{i:02}")).collect();
    expected.push("System Administrators".into());
    assert_eq!(seen, expected);

    // The group model.
    let (_, body) = env.get("/api/security/groups?pageSize=1").await;
    let g = &body["items"][0];
    assert_eq!(g["name"], "g00");
    assert_eq!(g["description"], Value::Null);
    assert_eq!(g["type"], "contensis");
    assert_eq!(g["custom"], json!({}));
    assert_eq!(g["userCount"], 0);
    assert_eq!(g["childGroupCount"], 0);
    assert_eq!(g["autoMembershipEmailDomains"], Value::Null);

    // Defaults, descending order, clamping, q.
    let (_, body) = env.get("/api/security/groups").await;
    assert_eq!(body["pageSize"], 25);
    assert_eq!(body["items"].as_array().unwrap().len(), 25);
    let (_, body) = env.get("/api/security/groups?order=-name&pageSize=2").await;
    assert_eq!(body["items"][0]["name"], "System Administrators");
    assert_eq!(body["items"][1]["name"], "g59");
    let (_, body) = env.get("/api/security/groups?pageSize=5000").await;
    assert_eq!(body["pageSize"], 1000);
    assert_eq!(body["pageCount"], 1);
    let (_, body) = env.get("/api/security/groups?q=G1").await;
    assert_eq!(body["totalCount"], 10);
    let (_, body) = env.get("/api/security/groups?pageIndex=9").await;
    assert_eq!(body["items"], json!([]));
    let (status, _) = env.get("/api/security/groups?zenQL=name%3D%22g00%22").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "filters are refused, not ignored"
    );
    let (status, body) = env.get("/api/security/groups?pageSize=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "error");
}

#[tokio::test]
async fn create_update_delete() {
    let env = Env::new("").await;
    let (status, g) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": "Paper Street", "Description": "Soap", "custom": {"clientId": "PSSC"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(g["id"].as_str().unwrap().len(), GUID_LEN);
    assert_eq!(g["description"], "Soap");
    assert_eq!(g["custom"], json!({"clientId": "PSSC"}));
    let id = g["id"].as_str().unwrap().to_owned();

    // Names are unique without regard to case by default.
    let (status, body) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": "PAPER street"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&body, "Resource already exists in target location");
    env.sim.contensis.set_behaviour(Behaviour {
        case_insensitive_names: false,
        ..Behaviour::default()
    });
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups/",
            Some(json!({"name": "PAPER street"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = env
        .call(Method::DELETE, "/api/security/groups/PAPER%20street", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(env.sim.contensis.group("Paper Street").is_some());
    env.sim.contensis.set_behaviour(Behaviour::default());

    // By id or by name.
    let (status, by_name) = env.get("/api/security/groups/paper%20street").await;
    assert_eq!(status, StatusCode::OK);
    let (_, by_id) = env.get(&format!("/api/security/groups/{id}")).await;
    assert_eq!(by_name, by_id);
    let (status, body) = env.get("/api/security/groups/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "Group not found");

    // PUT replaces by default: omitted fields are cleared; a rename frees the old name.
    let path = format!("/api/security/groups/{id}");
    let (status, g) = env
        .call(
            Method::PUT,
            &path,
            Some(json!({"name": "Soap Co", "type": "contensis"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["name"], "Soap Co");
    assert_eq!(g["description"], Value::Null);
    assert_eq!(g["custom"], json!({}));
    assert!(env.sim.contensis.group("Paper Street").is_none());
    let (status, _) = env
        .call(Method::PUT, &path, Some(json!({"description": "x"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Merge keeps what is omitted.
    env.sim.contensis.set_behaviour(Behaviour {
        put_mode: PutMode::Merge,
        ..Behaviour::default()
    });
    let (status, g) = env
        .call(Method::PUT, &path, Some(json!({"custom": {"k": "v"}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["name"], "Soap Co");
    assert_eq!(g["custom"], json!({"k": "v"}));
    // Renaming onto another group's name conflicts.
    env.sim.contensis.insert_group("Taken", None, &[], &[]);
    let (status, _) = env
        .call(Method::PUT, &path, Some(json!({"name": "TAKEN"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // System groups are protected.
    let (status, body) = env
        .call(
            Method::DELETE,
            "/api/security/groups/System%20Administrators",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "error");

    // DELETE removes the group from its parents.
    env.sim
        .contensis
        .insert_group("Parent", None, &[], &["Soap Co"]);
    let (status, body) = env.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    assert!(
        env.sim
            .contensis
            .group("Parent")
            .unwrap()
            .children
            .is_empty()
    );
    assert_eq!(
        env.call(Method::DELETE, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn validation_errors_are_422() {
    let env = Env::new(
        r#"
        [[contensis.group]]
        name = "A"
        children = ["B"]
        [[contensis.group]]
        name = "B"
        "#,
    )
    .await;
    let (status, body) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": " "})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope(&body, "Validation error");
    assert_eq!(body["data"][0]["field"], "name");
    let long = "x".repeat(256);
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": long})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = env
        .call(Method::PUT, "/api/security/groups/A/groups/A", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["data"][0]["message"]
            .as_str()
            .unwrap()
            .contains("itself")
    );
    let (status, body) = env
        .call(Method::PUT, "/api/security/groups/B/groups/a", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["data"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cycle")
    );
    assert!(env.sim.contensis.group("B").unwrap().children.is_empty());

    env.sim.contensis.set_behaviour(Behaviour {
        reject_cycles: false,
        ..Behaviour::default()
    });
    let (status, _) = env
        .call(Method::PUT, "/api/security/groups/B/groups/A", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Reading a cycle terminates.
    let (status, body) = env
        .get("/api/security/groups/A/groups?includeInherited=true")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["totalCount"], 1);
}

#[tokio::test]
async fn membership_of_users_and_children() {
    let env = Env::new(
        r#"
        [contensis]
        users = ["alice", "bob", "carol"]
        [[contensis.group]]
        name = "Eng"
        members = ["alice"]
        children = ["Ops"]
        [[contensis.group]]
        name = "Ops"
        members = ["carol"]
        [[contensis.group]]
        name = "Other"
        "#,
    )
    .await;
    let sim = &env.sim.contensis;

    // Add by username, email, id; already a member is 204 by default.
    assert_eq!(
        env.call(Method::PUT, "/api/security/groups/Eng/users/BOB", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.call(
            Method::PUT,
            "/api/security/groups/eng/users/bob@example.com",
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let writes = sim.writes();
    sim.set_behaviour(Behaviour {
        add_existing: AddExisting::Conflict,
        ..Behaviour::default()
    });
    let (status, body) = env
        .call(Method::PUT, "/api/security/groups/Eng/users/bob", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_envelope(&body, "Resource already exists in target location");
    let (status, _) = env
        .call(Method::PUT, "/api/security/groups/Eng/groups/Ops", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(sim.writes(), writes);
    sim.set_behaviour(Behaviour::default());

    // 404s name their cause.
    let (status, body) = env
        .call(Method::PUT, "/api/security/groups/Nope/users/bob", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "Group not found");
    let (_, body) = env
        .call(Method::PUT, "/api/security/groups/Eng/users/zed", None)
        .await;
    assert_envelope(&body, "User not found");
    let (status, body) = env
        .call(Method::DELETE, "/api/security/groups/Other/users/bob", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "User not in group");

    // Direct and inherited reads.
    let (_, body) = env.get("/api/security/groups/Eng/users").await;
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let user = &body["items"][0];
    assert_eq!(user["email"], "alice@example.com");
    assert!(user["firstName"].is_string() && user["lastName"].is_string());
    assert_eq!(user["id"].as_str().unwrap().len(), GUID_LEN);
    let (_, body) = env
        .get("/api/security/groups/Eng/users?includeInherited=true")
        .await;
    assert_eq!(body["totalCount"], 3);
    let (_, body) = env
        .get("/api/security/groups/Eng/groups?includeSelf=true")
        .await;
    assert_eq!(body["totalCount"], 2);
    let (_, body) = env.get("/api/security/users/carol/groups").await;
    assert_eq!(body["totalCount"], 1);
    let (_, body) = env
        .get("/api/security/users/carol/groups?includeInherited=true")
        .await;
    assert_eq!(body["totalCount"], 2);

    // HEAD counts inherited membership.
    let head = |path: &'static str| {
        let env = &env;
        async move { env.call(Method::HEAD, path, None).await.0 }
    };
    assert_eq!(
        head("/api/security/groups/Eng/users/carol").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        head("/api/security/groups/Other/users/carol").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        head("/api/security/users/carol/groups/Other,Eng").await,
        StatusCode::NO_CONTENT
    );

    // Bulk adds take GUIDs only.
    let bob = sim.user_id("bob").unwrap();
    let carol = sim.user_id("carol").unwrap();
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups/Other/users",
            Some(json!([bob, carol])),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.group("Other").unwrap().members.len(), 2);
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups/Other/users",
            Some(json!(["alice"])),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let ops = sim.group("Ops").unwrap().id;
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups/Other/groups",
            Some(json!([ops])),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(sim.group("Other").unwrap().children.contains("Ops"));

    // Removing children and users.
    let (status, body) = env
        .call(Method::DELETE, "/api/security/groups/Ops/groups/Eng", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, "Child group not found");
    assert_eq!(
        env.call(Method::DELETE, "/api/security/groups/Eng/groups/Ops", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.call(Method::DELETE, "/api/security/groups/Eng/users/bob", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let eng = sim.group("Eng").unwrap();
    assert_eq!(eng.members.iter().collect::<Vec<_>>(), ["alice"]);
    assert!(eng.children.is_empty());
}

#[tokio::test]
async fn names_are_percent_decoded() {
    let env = Env::new("[contensis]\nusers = [\"alice\"]").await;
    for name in ["a/b, c", "50% off?", "x#y", "plus+sign"] {
        let (status, _) = env
            .call(
                Method::POST,
                "/api/security/groups",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{name}");
    }
    let (status, g) = env.get("/api/security/groups/a%2Fb%2C%20c").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["name"], "a/b, c");
    assert_eq!(
        env.call(
            Method::PUT,
            "/api/security/groups/a%2Fb%2C%20c/users/alice",
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert!(
        env.sim
            .contensis
            .group("a/b, c")
            .unwrap()
            .members
            .contains("alice")
    );
    assert_eq!(
        env.get("/api/security/groups/50%25%20off%3F").await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/security/groups/x%23y").await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/security/groups/plus%2Bsign").await.0,
        StatusCode::OK
    );
    // The call log keeps the path as sent.
    assert!(
        env.sim
            .contensis
            .calls()
            .contains(&"PUT /api/security/groups/a%2Fb%2C%20c/users/alice".to_owned())
    );
}

#[tokio::test]
async fn dropped_connection_after_a_write() {
    let env = Env::new("[contensis]\nusers = [\"alice\"]").await;
    env.sim.contensis.set_faults(Faults {
        drop_after_write: 2,
        ..Faults::default()
    });
    // A read is not a write: answered.
    assert_eq!(env.get("/api/security/groups").await.0, StatusCode::OK);

    let create = env
        .http
        .post(env.url("/api/security/groups"))
        .bearer_auth(&env.token)
        .json(&json!({"name": "Lost"}))
        .send()
        .await;
    assert!(
        create.is_err(),
        "expected a broken connection, got {create:?}"
    );
    let lost = env
        .sim
        .contensis
        .group("Lost")
        .expect("the create was applied");

    let add = env
        .http
        .put(env.url(&format!("/api/security/groups/{}/users/alice", lost.id)))
        .bearer_auth(&env.token)
        .send()
        .await;
    assert!(add.is_err(), "expected a broken connection, got {add:?}");
    assert!(
        env.sim
            .contensis
            .group("Lost")
            .unwrap()
            .members
            .contains("alice")
    );
    assert_eq!(env.sim.contensis.writes(), 2);
    assert_eq!(env.sim.contensis.faults().drop_after_write, 0);

    // The counter is spent: the next write is answered.
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": "Kept"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn throttling_and_errors() {
    let env = Env::new("").await;
    let sim = &env.sim.contensis;
    sim.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_millis(1500),
        ..Faults::default()
    });
    let resp = env
        .http
        .get(env.url("/api/security/groups"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "2");
    // Token calls are never throttled.
    client_token(&env.http, &env.sim.url(), "roster", "roster-secret")
        .await
        .unwrap();

    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let (status, body) = env.get("/api/security/groups").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_envelope(&body, "Internal Server Error");

    // Only matching paths fail; 503 on request.
    sim.set_faults(Faults {
        error_rate: 1.0,
        error_status: 503,
        fail_path: Some("pageIndex=1".into()),
        ..Faults::default()
    });
    assert_eq!(
        env.get("/api/security/groups?pageIndex=0").await.0,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/security/groups?pageIndex=1").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A failed write is not applied; the next one is.
    sim.set_faults(Faults {
        fail_writes: 1,
        ..Faults::default()
    });
    let body = Some(json!({"name": "W"}));
    let (status, _) = env
        .call(Method::POST, "/api/security/groups", body.clone())
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(sim.group("W").is_none());
    let (status, _) = env.call(Method::POST, "/api/security/groups", body).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_quota_set_at_run_time_answers_429_beyond_it_and_frees_up_with_time() {
    let env = Env::new("").await;
    // As a user sets it on a running simulator: JSON on the control endpoint.
    let r = env
        .http
        .put(env.url("/_sim/faults"))
        .json(&json!({"quota": {"rate": "10/s", "burst": 4}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = env
            .http
            .get(env.url("/api/security/groups"))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(resp.headers()["retry-after"], "1");
            let body: Value = resp.json().await.unwrap();
            assert_envelope(&body, "Too Many Requests");
        }
        statuses.push(status.as_u16());
    }
    // The burst passes; what follows at once is over the quota (a call frees up every 100 ms,
    // so one more may pass on a slow machine).
    assert_eq!(&statuses[..4], [200; 4], "{statuses:?}");
    assert!(
        statuses[4..].contains(&429),
        "nothing was over the quota: {statuses:?}"
    );
    // Token calls are not counted.
    client_token(&env.http, &env.sim.url(), "roster", "roster-secret")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(env.get("/api/security/groups").await.0, StatusCode::OK);
}

#[tokio::test]
async fn latency_calls_and_control_endpoints() {
    let env = Env::new("").await;
    let sim = &env.sim.contensis;
    sim.clear_calls();
    // Faults through the control endpoint.
    let resp = env
        .http
        .put(env.url("/_sim/faults"))
        .json(&json!({"latency": "60ms"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.faults().latency, Some(Duration::from_millis(60)));
    let started = Instant::now();
    assert_eq!(env.get("/api/security/groups?q=x").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(60));
    let resp = env
        .http
        .put(env.url("/_sim/faults"))
        .json(&json!({"latncy": "60ms"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    env.call(
        Method::POST,
        "/api/security/groups",
        Some(json!({"name": "N"})),
    )
    .await;
    assert_eq!(
        sim.calls(),
        ["GET /api/security/groups?q=x", "POST /api/security/groups"]
    );
    assert_eq!(sim.writes(), 1);
    // Three calls at once, each held by the latency: the peak the stats report.
    let (a, b, c) = tokio::join!(
        env.get("/api/security/groups?q=a"),
        env.get("/api/security/groups?q=b"),
        env.get("/api/security/groups?q=c"),
    );
    assert_eq!([a.0, b.0, c.0], [StatusCode::OK; 3]);
    let (status, stats) = env.get("/_sim/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["throttled"], 0);
    assert_eq!(stats["peak_in_flight"], 3);
    // The five API calls since the faults were set, as the simulator timed its answers: each
    // left once its latency had passed, and not another latency later.
    let late = &stats["late"];
    assert_eq!(late["answers"], 5, "{stats}");
    let ms = |k: &str| late[k].as_f64().unwrap();
    assert!(
        ms("p50_ms") <= ms("p99_ms") && ms("p99_ms") <= ms("max_ms") && ms("max_ms") < 60.0,
        "{stats}"
    );

    assert_eq!(
        env.state_group_names().await,
        ["N", "System Administrators"]
    );
    let (status, calls) = env.get("/_sim/calls").await;
    assert_eq!(status, StatusCode::OK);
    // The two above and the three at once.
    assert_eq!(calls.as_array().unwrap().len(), 5);

    // Unknown API paths answer with the envelope.
    let (status, body) = env.get("/api/security/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "error");
    env.sim.shutdown().await;
}

/// A latency is the server's whole answer time: the request reaches it half way through, so a
/// client that gives up before then has written nothing, and one that gives up after has a
/// write that landed and was never answered (as a remote server's would).
#[tokio::test]
async fn a_write_reaches_the_server_half_way_through_the_latency() {
    let env = Env::new("").await;
    let sim = &env.sim.contensis;
    sim.set_faults(Faults {
        latency: Some(Duration::from_millis(600)),
        ..Faults::default()
    });
    let create = |name: &'static str, give_up: u64| {
        env.http
            .post(env.url("/api/security/groups"))
            .bearer_auth(&env.token)
            .timeout(Duration::from_millis(give_up))
            .json(&json!({ "name": name }))
            .send()
    };
    let early = create("Early", 100).await;
    assert!(early.is_err_and(|e| e.is_timeout()));
    let late = create("Late", 450).await;
    assert!(late.is_err_and(|e| e.is_timeout()));
    // The early request was dropped on its way; let the late one's handling finish for sure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.set_faults(Faults::default());
    assert_eq!(
        env.state_group_names().await,
        ["Late", "System Administrators"]
    );
    // A call that waits gets its answer no sooner than the whole latency.
    sim.set_faults(Faults {
        latency: Some(Duration::from_millis(200)),
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, _) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": "Whole"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(200));
    env.sim.shutdown().await;
}
/// The call log tells which roster instance sent each call (two daemons, one simulator): with
/// `?agent=true` each line carries the request's `User-Agent`, and roster's own client names its
/// instance there.
#[tokio::test]
async fn the_call_log_records_each_call_s_user_agent() {
    let env = Env::new("").await;
    env.sim.contensis.clear_calls();
    let token = env.token.clone();
    let get_as = |agent: &str| {
        let agent = agent.to_owned();
        let req = Client::builder()
            .user_agent(agent)
            .build()
            .unwrap()
            .get(env.url("/api/security/groups?q=x"))
            .bearer_auth(&token);
        async move { assert_eq!(req.send().await.unwrap().status(), StatusCode::OK) }
    };
    get_as("roster/0.1.0 (db1:41)").await;
    get_as("roster/0.1.0 (db2:42)").await;
    // roster's client, as every connector builds it.
    let roster_http = roster::target::http::client(Duration::from_secs(5), None).unwrap();
    let resp = roster_http
        .get(env.url("/api/security/groups"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let calls = |query: &'static str| {
        let req = env.http.get(env.url(&format!("/_sim/calls{query}")));
        async move {
            req.send()
                .await
                .unwrap()
                .json::<Vec<String>>()
                .await
                .unwrap()
        }
    };
    let ours = roster::instance::user_agent();
    assert!(ours.contains(roster::instance::id()), "{ours}");
    assert_eq!(
        calls("?agent=true").await,
        [
            "GET /api/security/groups?q=x\troster/0.1.0 (db1:41)".to_owned(),
            "GET /api/security/groups?q=x\troster/0.1.0 (db2:42)".to_owned(),
            format!("GET /api/security/groups\t{ours}"),
        ]
    );
    // The plain form is unchanged, and so is the handle's.
    let plain = [
        "GET /api/security/groups?q=x",
        "GET /api/security/groups?q=x",
        "GET /api/security/groups",
    ];
    assert_eq!(calls("").await, plain);
    assert_eq!(calls("?agent=false").await, plain);
    assert_eq!(env.sim.contensis.calls(), plain);
    assert_eq!(
        env.sim.contensis.calls_with_agent()[2],
        format!("GET /api/security/groups\t{ours}")
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn seed_file_errors_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.toml");
    std::fs::write(
        &path,
        "[contensis]\nusers = [\"a\"]\n\n[[contensis.group]]\nnam = \"x\"\n",
    )
    .unwrap();
    let err = roster::sim::load_seed(&path).unwrap_err().to_string();
    let prefix = format!("{}:5:1: ", path.display());
    assert!(err.starts_with(&prefix), "{err}");
    assert!(err.contains("nam"), "{err}");

    std::fs::write(&path, "[contensis]\ntoken_ttl = \"soon\"\n").unwrap();
    let err = roster::sim::load_seed(&path).unwrap_err().to_string();
    assert!(err.contains(":2:"), "{err}");
    assert!(err.contains("soon"), "{err}");

    let missing = roster::sim::load_seed(&dir.path().join("none.toml")).unwrap_err();
    assert!(missing.to_string().contains("none.toml"), "{missing}");

    std::fs::write(
        &path,
        "[contensis.behaviour]\nadd_existing = \"conflict\"\nput_mode = \"merge\"\n\
         [contensis.faults]\nlatency = \"5ms\"\nseed = 3\n",
    )
    .unwrap();
    let seed = roster::sim::load_seed(&path).unwrap();
    let c = seed.contensis.unwrap();
    assert_eq!(c.behaviour.add_existing, AddExisting::Conflict);
    assert_eq!(c.faults.latency, Some(Duration::from_millis(5)));
    assert_eq!(c.client_id, "roster");
}

#[tokio::test]
async fn groups_carry_extra_fields_that_a_replacing_put_clears_and_a_merging_put_keeps() {
    let env = Env::new(
        "[contensis]\n[[contensis.group]]\nname = \"G\"\ndescription = \"d\"\n\
         auto_membership_email_domains = [\"fightclub.example\"]\n\
         [contensis.group.extra]\nnotificationEmail = \"ops@fightclub.example\"\n\
         [[contensis.group]]\nname = \"Plain\"\n",
    )
    .await;
    let (status, g) = env.get("/api/security/groups/G").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        g["autoMembershipEmailDomains"],
        json!(["fightclub.example"])
    );
    assert_eq!(g["notificationEmail"], "ops@fightclub.example");
    // Every group carries the domains field, null when unset; lists carry the same fields.
    let (_, plain) = env.get("/api/security/groups/Plain").await;
    assert_eq!(plain["autoMembershipEmailDomains"], Value::Null);
    let (_, list) = env.get("/api/security/groups?q=G").await;
    assert_eq!(list["items"][0], g);

    // Sent back as read (with a new description), everything stays.
    let mut body = g.clone();
    body["description"] = json!("new");
    let (status, put) = env
        .call(Method::PUT, "/api/security/groups/G", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        put["autoMembershipEmailDomains"],
        json!(["fightclub.example"])
    );
    assert_eq!(put["notificationEmail"], "ops@fightclub.example");
    // Merge keeps what a PUT omits.
    env.sim.contensis.set_behaviour(Behaviour {
        put_mode: PutMode::Merge,
        ..Behaviour::default()
    });
    let slim = json!({"name": "G", "description": "x", "type": "contensis", "custom": {}});
    let (_, put) = env
        .call(Method::PUT, "/api/security/groups/G", Some(slim.clone()))
        .await;
    assert_eq!(
        put["autoMembershipEmailDomains"],
        json!(["fightclub.example"])
    );
    assert_eq!(put["notificationEmail"], "ops@fightclub.example");
    // Replace (the default) clears them.
    env.sim.contensis.set_behaviour(Behaviour::default());
    let (_, put) = env
        .call(Method::PUT, "/api/security/groups/G", Some(slim))
        .await;
    assert_eq!(put["autoMembershipEmailDomains"], Value::Null);
    assert_eq!(put["notificationEmail"], Value::Null);
    // The domains must be an array of strings.
    let (status, _) = env
        .call(
            Method::PUT,
            "/api/security/groups/G",
            Some(json!({"name": "G", "autoMembershipEmailDomains": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn bulk_adds_answer_an_existing_or_unknown_id_as_switched() {
    let env = Env::new(
        "[contensis]\nusers = [\"alice\", \"bob\", \"carol\"]\n\
         [[contensis.group]]\nname = \"G\"\nmembers = [\"alice\"]\n",
    )
    .await;
    let sim = &env.sim.contensis;
    let id = |u: &str| sim.user_id(u).unwrap();
    let reset = || sim.insert_group("G", None, &["alice"], &[]);
    let post = |ids: Value| env.call(Method::POST, "/api/security/groups/G/users", Some(ids));
    let members = || sim.group("G").unwrap().members.len();
    let cases = [
        (BulkExisting::Ignore, true, StatusCode::NO_CONTENT, 2),
        (BulkExisting::Conflict, true, StatusCode::CONFLICT, 2),
        (BulkExisting::Conflict, false, StatusCode::CONFLICT, 1),
        (BulkExisting::BadRequest, true, StatusCode::BAD_REQUEST, 2),
        (BulkExisting::BadRequest, false, StatusCode::BAD_REQUEST, 1),
    ];
    for (existing, partial, status, after) in cases {
        reset();
        sim.set_behaviour(Behaviour {
            bulk_add_existing: existing,
            bulk_add_partial: partial,
            ..Behaviour::default()
        });
        let (got, body) = post(json!([id("alice"), id("bob")])).await;
        assert_eq!(got, status, "{existing:?} {partial}: {body}");
        assert_eq!(members(), after, "{existing:?} {partial}");
    }
    let ghost = "0b0e4a5c-1111-4222-8333-944445555666";
    let cases = [
        (BulkUnknown::Ignore, true, StatusCode::NO_CONTENT, 2),
        (BulkUnknown::NotFound, true, StatusCode::NOT_FOUND, 2),
        (BulkUnknown::NotFound, false, StatusCode::NOT_FOUND, 1),
    ];
    for (unknown, partial, status, after) in cases {
        reset();
        sim.set_behaviour(Behaviour {
            bulk_add_unknown: unknown,
            bulk_add_partial: partial,
            ..Behaviour::default()
        });
        let (got, body) = post(json!([id("carol"), ghost])).await;
        assert_eq!(got, status, "{unknown:?} {partial}: {body}");
        if status == StatusCode::NOT_FOUND {
            assert_envelope(&body, "User not found");
        }
        assert_eq!(members(), after, "{unknown:?} {partial}");
    }
    // Child groups: an existing child under the default (409, the others still added).
    sim.set_behaviour(Behaviour::default());
    let a = sim.insert_group("A", None, &[], &[]);
    let b = sim.insert_group("B", None, &[], &[]);
    let p = sim.insert_group("P", None, &[], &["A"]);
    let (got, _) = env
        .call(
            Method::POST,
            &format!("/api/security/groups/{p}/groups"),
            Some(json!([a, b])),
        )
        .await;
    assert_eq!(got, StatusCode::CONFLICT);
    assert_eq!(sim.group("P").unwrap().children.len(), 2);
    // Behaviour switches are read from a seed.
    let seed = roster::sim::parse_seed(
        "[contensis.behaviour]\nbulk_add_existing = \"bad_request\"\n\
         bulk_add_unknown = \"ignore\"\nbulk_add_partial = false\n",
        "t",
    )
    .unwrap();
    let b = seed.contensis.unwrap().behaviour;
    assert_eq!(
        (b.bulk_add_existing, b.bulk_add_unknown, b.bulk_add_partial),
        (BulkExisting::BadRequest, BulkUnknown::Ignore, false)
    );
}

/// Puts the name switch in force over the control endpoint, as a test harness would.
async fn names_ignore_case(env: &Env, on: bool) {
    let resp = env
        .http
        .put(env.url("/_sim/behaviour"))
        .json(&json!({ "case_insensitive_names": on }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn names_follow_renames_deletes_and_the_case_switch_flipped_at_run_time() {
    let env = Env::new("[[contensis.group]]\nname = \"Ops\"\n").await;
    let (s, g) = env.get("/api/security/groups/ops").await;
    assert_eq!(s, StatusCode::OK);
    let id = g["id"].as_str().unwrap().to_owned();
    let path = format!("/api/security/groups/{id}");
    let (s, _) = env
        .call(Method::PUT, &path, Some(json!({"name": "Platform"})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        env.get("/api/security/groups/Ops").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(env.get("/api/security/groups/PLATFORM").await.1["id"], id);

    // Exact names from now on: a name differing by case is another group's.
    names_ignore_case(&env, false).await;
    assert_eq!(
        env.get("/api/security/groups/PLATFORM").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, other) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": "PLATFORM"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other}");
    assert_eq!(env.get("/api/security/groups/Platform").await.1["id"], id);
    assert_eq!(
        env.get("/api/security/groups/PLATFORM").await.1["id"],
        other["id"]
    );
    let (_, list) = env.get("/api/security/groups").await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["PLATFORM", "Platform", "System Administrators"]);

    // Back to ignoring case: an exact match still wins.
    names_ignore_case(&env, true).await;
    assert_eq!(env.get("/api/security/groups/Platform").await.1["id"], id);
    assert_eq!(
        env.get("/api/security/groups/PLATFORM").await.1["id"],
        other["id"]
    );

    // Deleted, then created again under the same name: the name finds the new group.
    for gone in [
        path,
        format!("/api/security/groups/{}", other["id"].as_str().unwrap()),
    ] {
        assert_eq!(
            env.call(Method::DELETE, &gone, None).await.0,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        env.get("/api/security/groups/platform").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, again) = env
        .call(
            Method::POST,
            "/api/security/groups",
            Some(json!({"name": "Platform"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(again["id"], id);
    assert_eq!(
        env.get("/api/security/groups/Platform").await.1["id"],
        again["id"]
    );
}

#[tokio::test]
async fn pages_are_written_as_a_json_value_would_write_them() {
    let env = Env::new(
        "[contensis]\nusers = [\"alice\", \"bob\"]\n\
         [[contensis.group]]\nname = \"Ops\"\nmembers = [\"alice\", \"bob\"]\n",
    )
    .await;
    let id = env.sim.contensis.group("Ops").unwrap().id;
    for path in [
        "/api/security/groups?pageSize=1".to_owned(),
        format!("/api/security/groups/{id}/users"),
        "/api/security/users".to_owned(),
    ] {
        let resp = env
            .http
            .get(env.url(&path))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, value.to_string(), "{path}: fields in a map's order");
    }
}
