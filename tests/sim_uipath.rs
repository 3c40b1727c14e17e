//! The UiPath Identity simulator against the API reference, over real HTTP: authentication and
//! scopes, the bare-array list, error bodies, status codes, validation, the switchable answers
//! the reference leaves open, and fault injection.

use std::time::Duration;

use reqwest::StatusCode;
use roster::sim::control::SimControl as _;
use roster::sim::faults::Faults;
use roster::sim::uipath::{Behaviour, DuplicateName, SearchType, Strictness, UnknownUser};
use roster::sim::{self, RunningSim, SimKind};
use serde_json::{Value, json};

const P: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";

struct Sim {
    run: RunningSim,
    http: reqwest::Client,
}

async fn start(body: &str) -> Sim {
    let text = format!(
        "[uipath]\norganization = \"acme\"\nclient_id = \"app\"\nclient_secret = \"shh\"\n\
         users = [\"alice\", \"bob\", \"carol\"]\n\
         [[uipath.user]]\nname = \"dan\"\nemail = \"Dan.Brown@corp.example\"\nsource = \"aad\"\n{body}"
    );
    let seed = sim::parse_seed(&text, "test").expect("seed");
    let run = sim::start(seed, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start");
    Sim {
        run,
        http: reqwest::Client::new(),
    }
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}/identity_{path}", self.run.url_of(SimKind::UiPath))
    }

    async fn token_with(&self, scope: Option<&str>) -> (StatusCode, Value) {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "shh"),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let resp = self
            .http
            .post(self.url("/connect/token"))
            .form(&form)
            .send()
            .await
            .expect("send");
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self) -> String {
        let (status, v) = self.token_with(None).await;
        assert_eq!(status, 200, "{v}");
        v["access_token"].as_str().expect("token").to_owned()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.text().await.expect("body"))
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, _, text) = self.call(method, path, Some(token), body).await;
        (s, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn id(&self, group: &str) -> String {
        self.run.uipath.group(group).expect("group").id
    }

    fn user(&self, name: &str) -> String {
        self.run.uipath.user_id(name).expect("user")
    }
}

use reqwest::Method as M;

#[tokio::test]
async fn tokens_follow_the_client_credentials_grant() {
    let s = start("").await;
    let (status, v) = s.token_with(Some("PM.Group.Read PM.Directory")).await;
    assert_eq!(status, 200);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["scope"], "PM.Directory PM.Group.Read");
    assert!(v["access_token"].as_str().is_some_and(|t| t.len() > 20));

    let (status, v) = s.token_with(Some("PM.Group.Read OR.Jobs")).await;
    assert_eq!(
        (status, v),
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_scope"}))
    );

    let resp = s
        .http
        .post(s.url("/connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "no"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "invalid_client"})
    );

    // Newer Cloud organizations refuse the token endpoint without the organization.
    let host = format!(
        "http://{}/identity_/connect/token",
        s.run.addr(SimKind::UiPath)
    );
    let resp = s
        .http
        .post(host)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "shh"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(s.run.uipath.token_requests(), 3);
    assert!(
        s.run.uipath.calls().is_empty(),
        "token requests are not API calls"
    );
}

#[tokio::test]
async fn a_missing_or_bad_bearer_is_401_and_a_missing_scope_403() {
    let s = start("").await;
    for token in [None, Some("nonsense")] {
        let (status, headers, body) = s
            .call(M::GET, &format!("/api/Group/{P}"), token, None)
            .await;
        assert_eq!(status, 401);
        assert!(body.is_empty());
        assert_eq!(
            headers["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    let (_, v) = s.token_with(Some("PM.Group.Read")).await;
    let read_only = v["access_token"].as_str().expect("token").to_owned();
    let (status, _) = s
        .json(M::GET, &format!("/api/Group/{P}"), &read_only, None)
        .await;
    assert_eq!(status, 200);
    let (status, v) = s
        .json(
            M::POST,
            "/api/Group",
            &read_only,
            Some(json!({"partitionGlobalId": P, "name": "x"})),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(v["status"], 403);
    assert!(
        v["detail"]
            .as_str()
            .expect("detail")
            .contains("PM.Group.Write"),
        "{v}"
    );
    let (status, _) = s
        .json(
            M::GET,
            &format!("/api/Directory/Search/{P}?startsWith=a"),
            &read_only,
            None,
        )
        .await;
    assert_eq!(status, 403);

    s.run.uipath.expire_tokens();
    let (status, _, _) = s
        .call(M::GET, &format!("/api/Group/{P}"), Some(&read_only), None)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn groups_list_as_a_bare_array_and_one_group_has_its_members() {
    let s = start("[[uipath.group]]\nname = \"Robots\"\nmembers = [\"alice\", \"dan\"]\n").await;
    let t = s.token().await;
    let (status, v) = s.json(M::GET, &format!("/api/Group/{P}"), &t, None).await;
    assert_eq!(status, 200);
    let list = v.as_array().expect("a bare array");
    let names: Vec<(&str, i64)> = list
        .iter()
        .map(|g| {
            (
                g["name"].as_str().expect("name"),
                g["type"].as_i64().expect("type"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("Administrators", 0), ("Everyone", 0), ("Robots", 1)]
    );
    assert!(
        list.iter()
            .all(|g| g.get("members").is_none() && g["id"].is_string())
    );

    let id = s.id("Robots");
    let (status, g) = s
        .json(M::GET, &format!("/api/Group/{P}/{id}"), &t, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(g["name"], "Robots");
    let members = g["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    let dan = members.iter().find(|m| m["name"] == "dan").expect("dan");
    assert_eq!(dan["objectType"], "DirectoryUser");
    assert_eq!(dan["source"], "aad");
    assert_eq!(dan["email"], "Dan.Brown@corp.example");
    assert_eq!(dan["identifier"], s.user("dan"));

    let (status, v) = s
        .json(M::GET, &format!("/api/Group/{P}/no-such-group"), &t, None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(v["title"], "Not Found");
    assert!(v["traceId"].is_string());
    let (status, _) = s
        .json(
            M::GET,
            "/api/Group/00000000-0000-0000-0000-000000000000",
            &t,
            None,
        )
        .await;
    assert_eq!(status, 404, "another partition");
}

#[tokio::test]
async fn create_needs_a_client_id_validates_and_a_duplicate_name_is_409_or_400() {
    let s = start("").await;
    let t = s.token().await;
    let alice = s.user("alice");
    // The service wants the client to choose the id: without one it is a validation 400.
    let (status, v) = s
        .json(
            M::POST,
            "/api/Group",
            &t,
            Some(json!({"partitionGlobalId": P, "name": "Robots", "directoryUserMemberIDs": [alice]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"]["Id"][0], "The Id field is required.", "{v}");
    let (status, _) = s
        .json(
            M::POST,
            "/api/Group",
            &t,
            Some(json!({"id": "not-a-guid", "partitionGlobalId": P, "name": "Robots"})),
        )
        .await;
    assert_eq!(status, 400, "the id is a GUID");
    assert_eq!(s.run.uipath.writes(), 0);
    let id = "6f1c1d3e-8a4b-4c5d-9e6f-7a8b9c0d1e2f";
    let (status, g) = s
        .json(
            M::POST,
            "/api/Group",
            &t,
            Some(json!({"id": id, "partitionGlobalId": P, "name": "Robots", "directoryUserMemberIDs": [alice]})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(g["id"], id);
    assert_eq!(g["type"], 1);
    assert_eq!(g["members"][0]["name"], "alice");
    assert_eq!(s.run.uipath.writes(), 1);
    assert_eq!(s.id("Robots"), id);
    // The same id again is taken, whatever the name.
    let (status, _) = s
        .json(
            M::POST,
            "/api/Group",
            &t,
            Some(json!({"id": id, "partitionGlobalId": P, "name": "Other"})),
        )
        .await;
    assert_eq!(status, 409);

    let dup = json!({"id": "0b7e3c52-52a4-4f31-9a43-3f0f7d1c2b11", "partitionGlobalId": P, "name": "ROBOTS"});
    let (status, v) = s.json(M::POST, "/api/Group", &t, Some(dup.clone())).await;
    assert_eq!(status, 409);
    assert!(
        v["detail"]
            .as_str()
            .expect("detail")
            .contains("already exists")
    );
    s.run.uipath.set_behaviour(Behaviour {
        duplicate_name: DuplicateName::BadRequest,
        ..Behaviour::default()
    });
    let (status, _) = s.json(M::POST, "/api/Group", &t, Some(dup)).await;
    assert_eq!(status, 400);

    let (status, v) = s
        .json(
            M::POST,
            "/api/Group",
            &t,
            Some(json!({"id": "1b7e3c52-52a4-4f31-9a43-3f0f7d1c2b11", "partitionGlobalId": P})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"]["Name"][0], "The Name field is required.");
    let (status, _) = s
        .json(
            M::POST,
            "/api/Group",
            &t,
            Some(
                json!({"id": "2b7e3c52-52a4-4f31-9a43-3f0f7d1c2b11", "partitionGlobalId": P, "name": "x", "directoryUserMemberIDs": ["nobody"]}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .json(M::POST, "/api/Group", &t, Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, 400, "partitionGlobalId is required");
    let (status, _, _) = s.call(M::POST, "/api/Group", Some(&t), None).await;
    assert_eq!(status, 400, "no body");
    assert_eq!(s.run.uipath.writes(), 1);
}

#[tokio::test]
async fn update_takes_deltas_at_the_group_id_path_only_and_strictness_is_switchable() {
    let s = start("[[uipath.group]]\nname = \"G\"\nmembers = [\"alice\", \"bob\"]\n").await;
    let t = s.token().await;
    let (id, alice, bob, carol) = (s.id("G"), s.user("alice"), s.user("bob"), s.user("carol"));
    let body = |name: &str, add: &[&String], remove: &[&String]| {
        Some(
            json!({"partitionGlobalId": P, "name": name, "directoryUserIDsToAdd": add, "directoryUserIDsToRemove": remove}),
        )
    };
    let (status, g) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            body("Renamed", &[&carol], &[&alice]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(g["name"], "Renamed");
    let names: Vec<&str> = g["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"bob") && names.contains(&"carol"));

    // The docs' example puts the partition before the id: that path allows GET and DELETE only.
    let (status, _) = s
        .json(
            M::PUT,
            &format!("/api/Group/{P}/{id}"),
            &t,
            body("Renamed", &[&carol], &[&alice]),
        )
        .await;
    assert_eq!(status, 405);
    // Repeats are ignored.
    let (status, _) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            body("Renamed", &[&carol], &[&alice]),
        )
        .await;
    assert_eq!(status, 200);
    let writes = s.run.uipath.writes();
    s.run.uipath.set_behaviour(Behaviour {
        add_existing: Strictness::Reject,
        remove_missing: Strictness::Reject,
        ..Behaviour::default()
    });
    let (status, v) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            body("Renamed", &[&carol], &[]),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        v["detail"]
            .as_str()
            .expect("detail")
            .contains("already a member"),
        "{v}"
    );
    let (status, v) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            body("Renamed", &[], &[&alice]),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        v["detail"]
            .as_str()
            .expect("detail")
            .contains("not a member"),
        "{v}"
    );
    assert_eq!(
        s.run.uipath.writes(),
        writes,
        "a refused PUT changes nothing"
    );
    let (status, _) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            body("Renamed", &[&bob], &[&bob]),
        )
        .await;
    assert_eq!(status, 400);

    let (status, _) = s
        .json(M::PUT, "/api/Group/no-such-id", &t, body("x", &[], &[]))
        .await;
    assert_eq!(status, 404);
    let (status, v) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            Some(json!({"partitionGlobalId": P})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(v["errors"]["Name"].is_array());
    let everyone = s.id("Everyone");
    let (status, _) = s
        .json(
            M::PUT,
            &format!("/api/Group/{everyone}"),
            &t,
            body("Everyone", &[&bob], &[]),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .json(
            M::PUT,
            &format!("/api/Group/{id}"),
            &t,
            body("everyone", &[], &[]),
        )
        .await;
    assert_eq!(status, 409, "a rename onto a taken name");
}

#[tokio::test]
async fn delete_is_204_then_404_and_built_in_groups_are_protected() {
    let s = start("[[uipath.group]]\nname = \"G\"\n").await;
    let t = s.token().await;
    let id = s.id("G");
    let (status, _, body) = s
        .call(M::DELETE, &format!("/api/Group/{P}/{id}"), Some(&t), None)
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let (status, _, _) = s
        .call(M::DELETE, &format!("/api/Group/{P}/{id}"), Some(&t), None)
        .await;
    assert_eq!(status, 404);
    let admins = s.id("Administrators");
    let (status, _, _) = s
        .call(
            M::DELETE,
            &format!("/api/Group/{P}/{admins}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn directory_search_matches_prefixes_of_name_email_and_display_name() {
    let s = start("[uipath.behaviour]\nsearch_limit = 2\n").await;
    let t = s.token().await;
    let search = |q: &str| format!("/api/Directory/Search/{P}?{q}");
    let (status, v) = s
        .json(
            M::GET,
            &search("startsWith=DAN.brown&sourceFilter=DirectoryUsers"),
            &t,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!([{
            "source": "aad",
            "identifier": s.user("dan"),
            "identityName": "dan",
            "displayName": "dan",
            "email": "Dan.Brown@corp.example",
            "type": 0,
            "objectType": "DirectoryUser",
        }])
    );
    let (_, v) = s
        .json(
            M::GET,
            &search("startsWith=dan&sourceFilter=LocalUsers"),
            &t,
            None,
        )
        .await;
    assert_eq!(v, json!([]), "an AAD user is not a local one");
    // Every user's e-mail starts with its name; the limit cuts the answer.
    s.run.uipath.add_user("alicia");
    let (_, v) = s
        .json(M::GET, &search("startsWith=a&entityType=User"), &t, None)
        .await;
    assert_eq!(v.as_array().expect("array").len(), 2);
    let (_, v) = s
        .json(
            M::GET,
            &search("startsWith=Admin&sourceFilter=LocalGroups"),
            &t,
            None,
        )
        .await;
    assert_eq!(v[0]["type"], 1);
    // The Swagger's string form, behind a switch.
    s.run.uipath.set_behaviour(Behaviour {
        search_type: SearchType::String,
        search_limit: 2,
        ..Behaviour::default()
    });
    let (_, v) = s
        .json(
            M::GET,
            &search("startsWith=Admin&sourceFilter=LocalGroups"),
            &t,
            None,
        )
        .await;
    assert_eq!(v[0]["type"], "Group");
    let (_, v) = s.json(M::GET, &search("startsWith=dan"), &t, None).await;
    assert_eq!(v[0]["type"], "User");

    let (status, v) = s
        .json(M::GET, &search("sourceFilter=LocalUsers"), &t, None)
        .await;
    assert_eq!(status, 400);
    assert!(v["errors"]["startsWith"].is_array());
    let (status, _) = s
        .json(
            M::GET,
            &search("startsWith=a&entityType=User&sourceFilter=LocalUsers"),
            &t,
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .json(
            M::GET,
            &search("startsWith=a&sourceFilter=Robots"),
            &t,
            None,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bulk_resolve_by_name_answers_every_name_exactly_twenty_at_most() {
    let s = start("[[uipath.user]]\nname = \"r2d2\"\nkind = \"robot\"\n").await;
    let t = s.token().await;
    let path = format!("/api/Directory/BulkResolveByName/{P}");
    let ask =
        |names: &[&str]| Some(json!({"entityNames": names, "entityType": "User", "scope": null}));
    let (status, v) = s
        .json(
            M::POST,
            &path,
            &t,
            ask(&["alice", "Dan.Brown@corp.example", "ALICE", "ghost", "r2d2"]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["alice"]["identifier"], s.user("alice"));
    assert_eq!(v["alice"]["objectType"], "DirectoryUser");
    assert_eq!(v["alice"]["name"], "alice");
    assert_eq!(
        v["Dan.Brown@corp.example"]["name"], "dan",
        "an e-mail resolves"
    );
    assert_eq!(v["ALICE"], Value::Null, "names are compared exactly");
    assert_eq!(v["ghost"], Value::Null);
    assert_eq!(v["r2d2"], Value::Null, "robot accounts are not resolved");
    assert_eq!(v.as_object().expect("object").len(), 5);
    s.run.uipath.set_behaviour(Behaviour {
        bulk_resolve_ignores_case: true,
        ..Behaviour::default()
    });
    let (_, v) = s.json(M::POST, &path, &t, ask(&["ALICE"])).await;
    assert_eq!(v["ALICE"]["name"], "alice");

    let many: Vec<String> = (0..21).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _) = s.json(M::POST, &path, &t, ask(&many)).await;
    assert_eq!(status, 400, "21 names");
    let (status, _) = s.json(M::POST, &path, &t, ask(&many[..20])).await;
    assert_eq!(status, 200, "20 names");
    let (status, v) = s
        .json(M::POST, &path, &t, Some(json!({"entityNames": ["alice"]})))
        .await;
    assert_eq!(status, 400);
    assert!(v["errors"]["EntityType"].is_array(), "{v}");
    let (status, _) = s
        .json(
            M::POST,
            &path,
            &t,
            Some(json!({"entityNames": ["Everyone"], "entityType": "Group"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, reader) = s.token_with(Some("PM.Group.Read")).await;
    let reader = reader["access_token"].as_str().expect("token");
    let (status, _) = s.json(M::POST, &path, reader, ask(&["alice"])).await;
    assert_eq!(status, 403, "PM.Directory is needed");

    // By id: one type per id.
    let by_id = format!("/api/Directory/BulkResolve/{P}");
    let alice = s.user("alice");
    let (status, v) = s
        .json(
            M::POST,
            &by_id,
            &t,
            Some(json!({"entityIds": [alice, "nobody"], "entityTypes": ["User", "User"]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v[alice.as_str()]["name"], "alice");
    assert_eq!(v["nobody"], Value::Null);
    let (status, _) = s
        .json(
            M::POST,
            &by_id,
            &t,
            Some(json!({"entityIds": [alice], "entityTypes": []})),
        )
        .await;
    assert_eq!(status, 400, "a type per id");
    let ids: Vec<String> = (0..21).map(|i| format!("id{i}")).collect();
    let (status, _) = s
        .json(
            M::POST,
            &by_id,
            &t,
            Some(json!({"entityIds": ids, "entityTypes": vec!["User"; 21]})),
        )
        .await;
    assert_eq!(status, 400, "21 ids");
}

#[tokio::test]
async fn members_come_inline_or_only_from_the_members_call_with_account_types() {
    let s = start(
        "[[uipath.user]]\nname = \"r2d2\"\nkind = \"robot\"\n\
         [[uipath.group]]\nname = \"G\"\nmembers = [\"alice\", \"dan\", \"r2d2\"]\n",
    )
    .await;
    let t = s.token().await;
    let id = s.id("G");
    let (status, g) = s
        .json(M::GET, &format!("/api/Group/{P}/{id}"), &t, None)
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = g["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["objectType"].as_str())
        .collect();
    assert_eq!(kinds.len(), 3);
    assert!(kinds.contains(&"DirectoryRobotUser"), "{kinds:?}");

    let members = format!("/api/Group/{P}/{id}/Members");
    let (status, v) = s.json(M::GET, &members, &t, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["totalCount"], 3);
    let mut types: Vec<(String, i64)> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().expect("id").to_owned(),
                m["type"].as_i64().expect("type"),
            )
        })
        .collect();
    types.sort_by_key(|(_, t)| *t);
    assert_eq!(
        types,
        [
            (s.user("alice"), 0),
            (s.user("dan"), 2),
            (s.user("r2d2"), 4)
        ]
    );
    let (_, v) = s
        .json(M::GET, &format!("{members}?top=2&skip=2"), &t, None)
        .await;
    assert_eq!(v["results"].as_array().expect("results").len(), 1);
    assert_eq!(v["totalCount"], 3);

    s.run.uipath.set_behaviour(Behaviour {
        members_inline: false,
        ..Behaviour::default()
    });
    let (_, g) = s
        .json(M::GET, &format!("/api/Group/{P}/{id}"), &t, None)
        .await;
    assert_eq!(g["members"], json!([]));
    let (_, v) = s.json(M::GET, &members, &t, None).await;
    assert_eq!(v["totalCount"], 3);
}

#[tokio::test]
async fn an_unknown_member_id_is_a_400_a_404_or_ignored_as_switched() {
    let s = start("[[uipath.group]]\nname = \"G\"\nmembers = [\"alice\"]\n").await;
    let t = s.token().await;
    let (id, bob) = (s.id("G"), s.user("bob"));
    let body =
        json!({"partitionGlobalId": P, "name": "G", "directoryUserIDsToAdd": [bob, "nobody"]});
    for (answer, status) in [
        (UnknownUser::BadRequest, 400),
        (UnknownUser::NotFound, 404),
        (UnknownUser::Ignore, 200),
    ] {
        s.run.uipath.set_behaviour(Behaviour {
            unknown_user: answer,
            ..Behaviour::default()
        });
        let (got, v) = s
            .json(M::PUT, &format!("/api/Group/{id}"), &t, Some(body.clone()))
            .await;
        assert_eq!(got, status, "{answer:?}: {v}");
        let members = s.run.uipath.group("G").expect("G").members;
        assert_eq!(members.contains("bob"), status == 200, "{answer:?}");
    }
}

#[tokio::test]
async fn the_automation_suite_path_is_served_too() {
    let s = start("").await;
    let t = s.token().await;
    let url = format!("{}/identity/api/Group/{P}", s.run.url_of(SimKind::UiPath));
    let resp = s.http.get(url).bearer_auth(&t).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(s.run.uipath.base_path(), "/acme");
}

#[tokio::test]
async fn faults_throttle_fail_and_drop_api_calls_but_not_token_calls() {
    let s = start("[[uipath.group]]\nname = \"G\"\n").await;
    let t = s.token().await;
    s.run.uipath.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_millis(1500),
        ..Faults::default()
    });
    let (status, headers, body) = s
        .call(M::GET, &format!("/api/Group/{P}"), Some(&t), None)
        .await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["status"],
        429
    );
    let (status, _) = s.token_with(None).await;
    assert_eq!(status, 200, "token calls are never faulted");

    s.run.uipath.set_faults(Faults {
        error_rate: 1.0,
        error_status: 503,
        ..Faults::default()
    });
    let (status, _, _) = s
        .call(M::GET, &format!("/api/Group/{P}"), Some(&t), None)
        .await;
    assert_eq!(status, 503);

    // A write that is applied and then loses its answer.
    s.run.uipath.set_faults(Faults {
        drop_after_write: 1,
        ..Faults::default()
    });
    let id = s.id("G");
    let bob = s.user("bob");
    let sent = s
        .http
        .put(s.url(&format!("/api/Group/{id}")))
        .bearer_auth(&t)
        .json(&json!({"partitionGlobalId": P, "name": "G", "directoryUserIDsToAdd": [bob]}))
        .send()
        .await;
    assert!(
        sent.is_err(),
        "the connection should have dropped: {sent:?}"
    );
    assert!(s.run.uipath.group("G").expect("G").members.contains("bob"));

    s.run.uipath.set_faults(Faults {
        expire_tokens_after: 1,
        ..Faults::default()
    });
    let (status, _, _) = s
        .call(M::GET, &format!("/api/Group/{P}"), Some(&t), None)
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = s
        .call(M::GET, &format!("/api/Group/{P}"), Some(&t), None)
        .await;
    assert_eq!(status, 401, "tokens expire after the set number of calls");
    assert!(s.run.uipath.calls().iter().all(|c| c.contains("/api/")));
}

#[tokio::test]
async fn control_endpoints_show_and_switch_state() {
    let s = start("").await;
    let base = format!("http://{}", s.run.addr(SimKind::UiPath));
    let state: Value = s
        .http
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(state["groups"].as_array().expect("groups").len(), 2);
    let b: Value = s
        .http
        .put(format!("{base}/_sim/behaviour"))
        .json(&json!({"duplicate_name": "bad_request"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(b["duplicate_name"], "bad_request");
    assert_eq!(
        s.run.uipath.behaviour().duplicate_name,
        DuplicateName::BadRequest
    );
    let f = s
        .http
        .put(format!("{base}/_sim/faults"))
        .json(&json!({"error_rte": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(f.status(), 400, "unknown fault keys are refused");
}

#[tokio::test]
async fn names_follow_renames_deletes_and_the_case_switch_flipped_at_run_time() {
    let s = start("[[uipath.group]]\nname = \"Ops\"\n").await;
    let t = s.token().await;
    let id = s.id("ops");
    let create = |name: &str| {
        Some(json!({"id": uuid::Uuid::new_v4().to_string(), "partitionGlobalId": P, "name": name}))
    };
    let rename = |name: &str| Some(json!({"partitionGlobalId": P, "name": name}));
    let (status, _) = s
        .json(M::PUT, &format!("/api/Group/{id}"), &t, rename("Platform"))
        .await;
    assert_eq!(status, 200);
    assert!(s.run.uipath.group("Ops").is_none());
    assert_eq!(s.id("PLATFORM"), id);
    // The new name is taken, the old one free.
    let (status, _) = s.json(M::POST, "/api/Group", &t, create("platform")).await;
    assert_eq!(status, 409);
    let (status, _) = s.json(M::POST, "/api/Group", &t, create("OPS")).await;
    assert_eq!(status, 201);

    // Exact names from now on: a name differing by case is another group's.
    let base = format!("http://{}", s.run.addr(SimKind::UiPath));
    let flip = |on: bool| {
        s.http
            .put(format!("{base}/_sim/behaviour"))
            .json(&json!({ "case_insensitive_names": on }))
            .send()
    };
    assert_eq!(flip(false).await.expect("send").status(), 200);
    assert!(s.run.uipath.group("PLATFORM").is_none());
    let (status, other) = s.json(M::POST, "/api/Group", &t, create("PLATFORM")).await;
    assert_eq!(status, 201);
    assert_eq!(s.id("Platform"), id);
    assert_eq!(s.id("PLATFORM"), other["id"].as_str().expect("id"));
    let (_, list) = s.json(M::GET, &format!("/api/Group/{P}"), &t, None).await;
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Administrators", "Everyone", "OPS", "PLATFORM", "Platform"]
    );
    assert_eq!(flip(true).await.expect("send").status(), 200);
    assert_eq!(s.id("Platform"), id, "an exact match still wins");

    // Deleted (with PLATFORM, which holds the name too while names ignore case), then created
    // again under the same name.
    let other = other["id"].as_str().expect("id").to_owned();
    for gone in [&id, &other] {
        let (status, _, _) = s
            .call(M::DELETE, &format!("/api/Group/{P}/{gone}"), Some(&t), None)
            .await;
        assert_eq!(status, 204);
    }
    assert!(s.run.uipath.group("platform").is_none());
    let (status, _) = s
        .json(M::GET, &format!("/api/Group/{P}/{id}"), &t, None)
        .await;
    assert_eq!(status, 404);
    let (status, again) = s.json(M::POST, "/api/Group", &t, create("Platform")).await;
    assert_eq!(status, 201);
    assert_eq!(s.id("Platform"), again["id"].as_str().expect("id"));
}

#[tokio::test]
async fn the_group_list_is_written_as_a_json_value_would_write_it() {
    let s = start("[[uipath.group]]\nname = \"Ops\"\n").await;
    let t = s.token().await;
    let (status, _, text) = s
        .call(M::GET, &format!("/api/Group/{P}"), Some(&t), None)
        .await;
    assert_eq!(status, 200);
    let value: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(text, value.to_string(), "fields in a map's order");
    assert_eq!(value.as_array().expect("list").len(), 3);
}
