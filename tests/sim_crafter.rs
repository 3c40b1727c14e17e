//! The Crafter Studio simulator over real HTTP: started in-process on `127.0.0.1:0` with
//! `roster::sim::start`, driven with reqwest (redirects off), and inspected through its handle.
//! These tests pin what the API reference says (paths, statuses, envelopes, codes, auth, paging,
//! validation, the non-idempotent API 1 answers) and the simulator's switches and faults, so that
//! the connector tests built on it stand on something checked.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Client, Method, StatusCode, header};
use roster::sim::control::SimControl as _;
use roster::sim::crafter::{Behaviour, PatchShape, UnknownFields};
use roster::sim::faults::Faults;
use roster::sim::{RunningSim, SimKind, parse_seed, start};
use serde_json::{Value, json};

const TOKEN: &str = "roster-token";

struct Env {
    sim: RunningSim,
    http: Client,
}

impl Env {
    async fn new(seed: &str) -> Self {
        let seed = parse_seed(seed, "test-seed").unwrap();
        let sim = start(seed, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { sim, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.url_of(SimKind::Crafter))
    }

    async fn send(
        &self,
        auth: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, v)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(Some(&format!("Bearer {TOKEN}")), method, path, body)
            .await
    }
}

/// Asserts the flat API 2 envelope with this code and message (all four strings present).
fn assert_response(body: &Value, code: i64, message: &str) {
    let r = &body["response"];
    assert_eq!(r["code"], code, "{body}");
    assert_eq!(r["message"], message, "{body}");
    assert!(r["remedialAction"].is_string(), "{body}");
    assert_eq!(r["documentationUrl"], "", "{body}");
}

const SEED: &str = r#"
[crafter]
users = ["alice", "bob", "carol"]
[[crafter.group]]
name = "docs"
description = "Writers"
members = ["alice"]
[[crafter.group]]
name = "ldap_editors"
externally_managed = true
"#;

#[tokio::test]
async fn api_2_auth_good_missing_bad_and_unprivileged() {
    let env = Env::new(SEED).await;
    let (s, v) = env.call(Method::GET, "/api/2/groups", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_response(&v, 0, "OK");
    // The scheme is checked case-insensitively.
    let (s, _) = env
        .send(
            Some(&format!("bearer {TOKEN}")),
            Method::GET,
            "/api/2/groups",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for auth in [None, Some("Bearer nope"), Some("Basic YWRtaW46YWRtaW4=")] {
        let (s, v) = env.send(auth, Method::GET, "/api/2/groups", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_response(&v, 2000, "Unauthenticated");
        assert_eq!(v["response"]["remedialAction"], "Please login first");
    }
    let (s, v) = env
        .send(
            Some("Bearer no-permissions-token"),
            Method::POST,
            "/api/2/groups",
            Some(json!({"name": "abc"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_response(&v, 2001, "Unauthorized");
    assert!(env.sim.crafter.group("abc").is_none());
    // Studio 4.x has no API 1 group scripts and no API 1 login.
    let (s, _) = env
        .call(
            Method::GET,
            "/api/1/services/api/1/group/get-per-site.json?site_id=mysite",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a1_pages_by_offset_and_limit_is_the_count_returned() {
    let mut seed = String::from("[crafter]\n");
    for i in 0..25 {
        seed += &format!("[[crafter.group]]\nname = \"g{i:02}\"\n");
    }
    let env = Env::new(&seed).await;
    let (s, v) = env
        .call(Method::GET, "/api/2/groups?offset=0&limit=10", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 31, "25 + the six built-in groups");
    assert_eq!(v["limit"], 10);
    assert_eq!(v["groups"][0]["name"], "g00", "sorted by group_name");
    let (_, v) = env
        .call(Method::GET, "/api/2/groups?offset=30&limit=10", None)
        .await;
    assert_eq!(v["limit"], 1, "limit is the number returned");
    assert_eq!(v["offset"], 30);
    // Defaults: offset 0, limit 10.
    let (_, v) = env.call(Method::GET, "/api/2/groups", None).await;
    assert_eq!(v["groups"].as_array().unwrap().len(), 10);
    let g = &v["groups"][0];
    assert!(
        g["id"].is_i64() && g["desc"].is_null() && g["externallyManaged"] == false,
        "{g}"
    );
    // keyword is a substring match on names, case-insensitive under the default collation.
    let (_, v) = env
        .call(Method::GET, "/api/2/groups?keyword=G1&limit=100", None)
        .await;
    assert_eq!(v["total"], 10);
    for bad in [
        "offset=-1",
        "limit=x",
        "sort=name%20asc",
        "sort=group_name%20up",
    ] {
        let (s, v) = env
            .call(Method::GET, &format!("/api/2/groups?{bad}"), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v["response"]["code"], 1001, "{bad}");
    }
    let (s, _) = env
        .call(Method::GET, "/api/2/groups?sort=id%20desc,group_name", None)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a6_limit_echoes_the_request_and_a5_reads_one_group() {
    let env = Env::new(SEED).await;
    let id = env.sim.crafter.group("docs").unwrap().id;
    let (s, v) = env
        .call(
            Method::GET,
            &format!("/api/2/groups/{id}/members?offset=0&limit=100"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["total"].clone(), v["limit"].clone()),
        (json!(1), json!(100))
    );
    let u = &v["users"][0];
    assert_eq!(u["username"], "alice");
    for k in [
        "id",
        "firstName",
        "lastName",
        "email",
        "enabled",
        "externallyManaged",
    ] {
        assert!(u.get(k).is_some(), "{k} missing: {u}");
    }
    assert!(u.get("password").is_none());
    let (s, v) = env
        .call(Method::GET, &format!("/api/2/groups/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["group"]["desc"], "Writers");
    let (s, v) = env
        .call(Method::GET, "/api/2/groups/999/members", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 4000, "Group not found");
    let (s, _) = env.call(Method::GET, "/api/2/groups/abc", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a2_creates_validates_names_and_answers_409_4001_for_a_duplicate() {
    let env = Env::new(SEED).await;
    let (s, v) = env
        .call(
            Method::POST,
            "/api/2/groups",
            Some(json!({"name": "new.team_1", "desc": "d", "id": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_response(&v, 1, "Created");
    assert_eq!(v["group"]["name"], "new.team_1");
    assert_eq!(v["group"]["externallyManaged"], false);
    assert_ne!(v["group"]["id"], 1, "a client id is ignored");
    let (s, v) = env
        .call(
            Method::POST,
            "/api/2/groups",
            Some(json!({"name": "NEW.team_1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_response(&v, 4001, "Group already exists");
    assert_eq!(
        v["response"]["remedialAction"],
        "Try a different group name"
    );
    // ^[a-zA-Z][\w.\-]*$, 3 to 512 characters.
    for bad in [
        "CMS Editors",
        "9team",
        "_team",
        ".team",
        "ab",
        "Café",
        "team@x",
        &format!("a{}", "b".repeat(512)),
    ] {
        let (s, v) = env
            .call(Method::POST, "/api/2/groups", Some(json!({"name": bad})))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_response(&v, 1001, "Invalid parameter(s)");
        assert_eq!(v["validationErrors"][0]["field"], "groupName", "{v}");
    }
    for good in [
        "dev-team",
        "abc",
        "A.b-c_9",
        &format!("a{}", "b".repeat(511)),
    ] {
        let (s, v) = env
            .call(Method::POST, "/api/2/groups", Some(json!({"name": good})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{good}: {v}");
    }
    let (s, v) = env
        .call(
            Method::POST,
            "/api/2/groups",
            Some(json!({"name": "long_desc", "desc": "x".repeat(1025)})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // Switches: the field name, and the pre-2023 releases without the rule.
    env.sim.crafter.set_behaviour(Behaviour {
        validation_field: "name".into(),
        ..Behaviour::default()
    });
    let (_, v) = env
        .call(Method::POST, "/api/2/groups", Some(json!({"name": "a b"})))
        .await;
    assert_eq!(v["validationErrors"][0]["field"], "name");
    env.sim.crafter.set_behaviour(Behaviour {
        name_rules: false,
        ..Behaviour::default()
    });
    let (s, _) = env
        .call(Method::POST, "/api/2/groups", Some(json!({"name": "a b"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = env
        .call(Method::POST, "/api/2/groups", Some(json!({"desc": "x"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["validationErrors"].is_array());
}

#[tokio::test]
async fn a3_replaces_the_description_and_guards_external_groups() {
    let env = Env::new(SEED).await;
    let id = env.sim.crafter.group("docs").unwrap().id;
    let (s, v) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "desc": "new"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_response(&v, 0, "OK");
    assert_eq!(v["group"]["desc"], "new");
    // Omitting desc nulls it: the update is a replace.
    let (_, v) = env
        .call(Method::PATCH, "/api/2/groups", Some(json!({"id": id})))
        .await;
    assert!(v["group"]["desc"].is_null(), "{v}");
    // `name` is not part of a 4.x update: ignored, or refused with the switch; never applied.
    let (s, _) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "name": "renamed", "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(env.sim.crafter.group("docs").is_some());
    env.sim.crafter.set_behaviour(Behaviour {
        unknown_fields: UnknownFields::Reject,
        ..Behaviour::default()
    });
    let (s, v) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "name": "docs", "desc": "y"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["response"]["code"], 1001);
    assert_eq!(
        env.sim
            .crafter
            .group("docs")
            .unwrap()
            .description
            .as_deref(),
        Some("x")
    );
    let ext = env.sim.crafter.group("ldap_editors").unwrap().id;
    let (s, v) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": ext, "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_response(&v, 4002, "Group is externally managed");
    let (s, v) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": 999, "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 4000, "Group not found");
}

#[tokio::test]
async fn a3_on_4_0_0_to_4_0_2_replaces_the_whole_group() {
    let env = Env::new(SEED).await;
    env.sim.crafter.set_behaviour(Behaviour {
        patch: PatchShape::WholeGroup,
        ..Behaviour::default()
    });
    let id = env.sim.crafter.group("docs").unwrap().id;
    // Without a name the group's name would be nulled: the database refuses.
    let (s, v) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["response"]["code"], 1000);
    assert_eq!(
        env.sim
            .crafter
            .group("docs")
            .unwrap()
            .description
            .as_deref(),
        Some("Writers")
    );
    // With it, both are replaced: a different name renames the group.
    let (s, _) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "name": "docs2", "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(env.sim.crafter.group("docs").is_none());
    assert_eq!(
        env.sim
            .crafter
            .group("docs2")
            .unwrap()
            .description
            .as_deref(),
        Some("x")
    );
    // `name` is a field of the whole group: never an unknown field there.
    env.sim.crafter.set_behaviour(Behaviour {
        patch: PatchShape::WholeGroup,
        unknown_fields: UnknownFields::Reject,
        ..Behaviour::default()
    });
    let (s, _) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "name": "docs", "desc": "y"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a4_deletes_all_or_nothing_and_guards_system_admin() {
    let env = Env::new(SEED).await;
    let docs = env.sim.crafter.group("docs").unwrap().id;
    let (s, v) = env
        .call(
            Method::DELETE,
            &format!("/api/2/groups?id={docs}&id=999"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 4000, "Group not found");
    assert!(
        env.sim.crafter.group("docs").is_some(),
        "nothing is deleted"
    );
    let (s, v) = env.call(Method::DELETE, "/api/2/groups?id=1", None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["response"]["code"], 1000);
    assert!(
        v["response"]["message"]
            .as_str()
            .unwrap()
            .ends_with("Deleting the System Admin group is not allowed.")
    );
    let ext = env.sim.crafter.group("ldap_editors").unwrap().id;
    let (s, _) = env
        .call(Method::DELETE, &format!("/api/2/groups?id={ext}"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = env
        .call(Method::DELETE, &format!("/api/2/groups?id={docs}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_response(&v, 2, "Deleted");
    // Not idempotent: the same delete again is a 404.
    let (s, _) = env
        .call(Method::DELETE, &format!("/api/2/groups?id={docs}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a7_and_a8_are_bulk_all_or_nothing_and_idempotent_for_known_users() {
    let env = Env::new(SEED).await;
    let id = env.sim.crafter.group("docs").unwrap().id;
    let path = format!("/api/2/groups/{id}/members");
    let (s, v) = env
        .call(
            Method::POST,
            &path,
            Some(json!({"usernames": ["bob", "ghost"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 6000, "User not found");
    assert_eq!(
        env.sim.crafter.group("docs").unwrap().members.len(),
        1,
        "nothing added"
    );
    let (s, v) = env
        .call(
            Method::POST,
            &path,
            Some(json!({"usernames": ["alice", "bob"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "adding an existing member is a no-op");
    assert_eq!(v["users"].as_array().unwrap().len(), 2);
    let (s, v) = env
        .call(Method::POST, &path, Some(json!({"usernames": []})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["response"]["message"]
            .as_str()
            .unwrap()
            .contains("Both 'userIds' and 'usernames' are empty")
    );
    for bad in ["bad name", "9lives", "_x", "j"] {
        let (s, _) = env
            .call(Method::POST, &path, Some(json!({"usernames": [bad]})))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    // ^[a-zA-Z][\w.\-@+]+$: e-mail-like and hyphenated usernames are usernames.
    env.sim.crafter.add_user("jane@corp.com");
    env.sim.crafter.add_user("jane-doe");
    let (s, v) = env
        .call(
            Method::POST,
            &path,
            Some(json!({"usernames": ["jane@corp.com", "jane-doe"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = env
        .call(
            Method::DELETE,
            &format!("{path}?username=jane%40corp.com&username=jane-doe"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // `username` values are validated, `userId` values are not (an unknown id is still 404).
    let (s, v) = env
        .call(Method::DELETE, &format!("{path}?username=9lives"), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let bob = env.sim.crafter.user_id("bob").unwrap();
    let (s, _) = env
        .call(Method::POST, &path, Some(json!({"ids": [bob]})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .call(Method::DELETE, &format!("{path}?userId={bob}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !env.sim
            .crafter
            .group("docs")
            .unwrap()
            .members
            .contains("bob")
    );
    let (s, v) = env
        .call(Method::DELETE, &format!("{path}?userId=99999"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 6000, "User not found");
    let (s, v) = env
        .call(
            Method::DELETE,
            &format!("{path}?username=bob&username=carol"),
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "removing a non-member (carol) is a no-op"
    );
    assert_response(&v, 2, "Deleted");
    assert_eq!(env.sim.crafter.group("docs").unwrap().members.len(), 1);
    let (s, v) = env
        .call(Method::DELETE, &format!("{path}?username=ghost"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 6000, "User not found");
    let (s, v) = env.call(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["response"]["message"]
            .as_str()
            .unwrap()
            .contains("All parameters are empty or null")
    );
    // The last member of system_admin cannot be removed.
    let (s, _) = env
        .call(
            Method::DELETE,
            "/api/2/groups/1/members?username=admin",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a9_reads_a_user_by_username_or_id() {
    let env = Env::new(SEED).await;
    let (s, v) = env.call(Method::GET, "/api/2/users/alice", None).await;
    assert_eq!(s, StatusCode::OK);
    let id = v["user"]["id"].as_i64().unwrap();
    let (_, v) = env
        .call(Method::GET, &format!("/api/2/users/{id}"), None)
        .await;
    assert_eq!(v["user"]["username"], "alice");
    let (s, v) = env.call(Method::GET, "/api/2/users/ghost", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_response(&v, 6000, "User not found");
    // The username is validated: one that cannot exist is a 400, not a 404.
    let (s, v) = env.call(Method::GET, "/api/2/users/9lives", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["response"]["code"], 1001);
    // A soft-deleted user is still found here.
    env.sim.crafter.delete_user("alice");
    let (s, v) = env.call(Method::GET, "/api/2/users/alice", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn soft_deleted_users_are_hidden_by_the_lists_and_still_added_by_a7() {
    let env = Env::new(SEED).await;
    let (s, v) = env
        .call(Method::GET, "/api/2/users?offset=0&limit=2", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_response(&v, 0, "OK");
    // admin, alice, bob, carol; `limit` is the number returned.
    assert_eq!(
        (v["total"].clone(), v["limit"].clone()),
        (json!(4), json!(2))
    );
    assert_eq!(v["users"][0]["username"], "admin");
    env.sim.crafter.delete_user("alice");
    env.sim.crafter.delete_user("bob");
    let (_, v) = env.call(Method::GET, "/api/2/users?limit=100", None).await;
    let names: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "carol"]);
    assert_eq!(v["total"], 2);
    // alice is a member of docs: the member list neither shows nor counts her.
    let id = env.sim.crafter.group("docs").unwrap().id;
    let path = format!("/api/2/groups/{id}/members");
    let (_, v) = env.call(Method::GET, &path, None).await;
    assert_eq!(v["total"], 0, "{v}");
    // An add of a deleted user succeeds, and the list still does not show it.
    let (s, _) = env
        .call(Method::POST, &path, Some(json!({"usernames": ["bob"]})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        env.sim
            .crafter
            .group("docs")
            .unwrap()
            .members
            .contains("bob")
    );
    let (_, v) = env.call(Method::GET, &path, None).await;
    assert_eq!(v["total"], 0, "{v}");
    let (s, _) = env.call(Method::GET, "/api/2/users?offset=-1", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_request_line_and_headers_over_8_kb_are_refused_by_tomcat_with_400() {
    let env = Env::new(SEED).await;
    let id = env.sim.crafter.group("docs").unwrap().id;
    let base = format!("/api/2/groups/{id}/members?");
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("username=someone{i:05}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    // About 23 bytes a pair: 400 pairs is over 8 KB, 300 is under.
    let (s, _) = env
        .call(Method::DELETE, &format!("{base}{}", query(300)), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "under the limit Studio answers");
    let resp = env
        .http
        .delete(env.url(&format!("{base}{}", query(400))))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::CONNECTION], "close");
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("HTTP Status 400 – Bad Request")
    );
    // Headers count too.
    let resp = env
        .http
        .get(env.url("/api/2/groups"))
        .bearer_auth(TOKEN)
        .header("X-Padding", "p".repeat(8200))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The limit is Tomcat's `maxHttpHeaderSize`, which an installation may raise.
    env.sim.crafter.set_behaviour(Behaviour {
        max_http_header_size: 65536,
        ..Behaviour::default()
    });
    let (s, v) = env
        .call(Method::DELETE, &format!("{base}{}", query(400)), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_response(&v, 6000, "User not found");
}

/// Logs in to API 1 with an XSRF pair; returns the session cookie.
async fn login(env: &Env, password: &str) -> (StatusCode, Option<String>) {
    let resp = env
        .http
        .post(env.url("/api/1/services/api/1/security/login.json"))
        .header(header::COOKIE, "XSRF-TOKEN=abc")
        .header("X-XSRF-TOKEN", "abc")
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), cookie)
}

async fn v1_call(
    env: &Env,
    session: &str,
    xsrf: bool,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let cookie = if xsrf {
        format!("JSESSIONID={session}; XSRF-TOKEN=t1")
    } else {
        format!("JSESSIONID={session}")
    };
    let mut req = env
        .http
        .request(
            method,
            env.url(&format!("/api/1/services/api/1/group/{path}")),
        )
        .header(header::COOKIE, cookie);
    if xsrf {
        req = req.header("X-XSRF-TOKEN", "t1");
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, v, location)
}

const V1_SEED: &str = r#"
[crafter]
api = "v1"
users = ["alice", "bob"]
[[crafter.group]]
name = "docs"
site = "mysite"
description = "Writers"
members = ["alice"]
"#;

#[tokio::test]
async fn api_1_login_needs_the_xsrf_pair_and_sets_a_session() {
    let env = Env::new(V1_SEED).await;
    let (s, _) = login(&env, "wrong").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, cookie) = login(&env, "admin").await;
    assert_eq!(s, StatusCode::OK);
    let cookie = cookie.unwrap();
    assert!(
        cookie.starts_with("JSESSIONID=") && cookie.contains("Path=/studio"),
        "{cookie}"
    );
    let resp = env
        .http
        .post(env.url("/api/1/services/api/1/security/login.json"))
        .json(&json!({"username": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no XSRF pair");
    let session = cookie
        .trim_start_matches("JSESSIONID=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (s, v, _) = v1_call(
        &env,
        "nope",
        true,
        Method::GET,
        "get.json?group_name=docs&site_id=mysite",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"message": "Unauthorized"}));
    let (s, v, _) = v1_call(
        &env,
        &session,
        true,
        Method::GET,
        "get.json?group_name=docs&site_id=mysite",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"group_name": "docs", "description": "Writers", "site_id": "mysite"})
    );
    let (s, _, _) = v1_call(
        &env,
        &session,
        false,
        Method::POST,
        "create.json",
        Some(json!({"group_name": "x", "site_id": "mysite"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a POST without the XSRF pair");
    // API 2 does not exist in Studio 3.0.
    let (s, _) = env.call(Method::GET, "/api/2/groups", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn api_1_group_scripts_and_their_non_idempotent_answers() {
    let env = Env::new(V1_SEED).await;
    let (_, cookie) = login(&env, "admin").await;
    let session = cookie
        .unwrap()
        .trim_start_matches("JSESSIONID=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let call = |m: Method, p: &'static str, b: Value| {
        let env = &env;
        let session = session.clone();
        async move { v1_call(env, &session, true, m, p, Some(b)).await }
    };
    let (s, v, loc) = call(
        Method::POST,
        "create.json",
        json!({"group_name": "new", "site_id": "mysite", "description": "d"}),
    )
    .await;
    assert_eq!((s, v), (StatusCode::CREATED, json!({"message": "OK"})));
    assert_eq!(
        loc.as_deref(),
        Some("/studio/api/1/services/api/1/group/get.json?group_name=new")
    );
    let (s, v, _) = call(
        Method::POST,
        "create.json",
        json!({"group_name": "NEW", "site_id": "mysite"}),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::CONFLICT,
            json!({"message": "Group already exists"})
        )
    );
    let (s, v, _) = call(Method::POST, "create.json", json!({"description": "d"})).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid parameter(s): [group_name, site_id]"})
        )
    );
    let (s, v, _) = call(
        Method::POST,
        "create.json",
        json!({"group_name": "x", "site_id": "nosite"}),
    )
    .await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"message": "Site not found"}))
    );
    // Membership: add twice → 409, remove twice → 404 "User not found".
    let add = json!({"username": "bob", "group_name": "docs", "site_id": "mysite"});
    let (s, _, _) = call(Method::POST, "add-user.json", add.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v, _) = call(Method::POST, "add-user.json", add.clone()).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::CONFLICT,
            json!({"message": "User already in group"})
        )
    );
    let (s, _, _) = call(Method::POST, "remove-user.json", add.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v, _) = call(Method::POST, "remove-user.json", add.clone()).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"message": "User not found"}))
    );
    let (s, v, _) = call(
        Method::POST,
        "add-user.json",
        json!({"username": "ghost", "group_name": "docs", "site_id": "mysite"}),
    )
    .await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"message": "User not found"}))
    );
    let (s, v, _) = call(
        Method::POST,
        "remove-user.json",
        json!({"username": "bob", "group_name": "none", "site_id": "mysite"}),
    )
    .await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"message": "Group not found"}))
    );
    // update.json replaces the description: omitted means NULL.
    let (s, _, _) = call(
        Method::POST,
        "update.json",
        json!({"group_name": "docs", "site_id": "mysite"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        env.sim
            .crafter
            .site_group("mysite", "docs")
            .unwrap()
            .description,
        None
    );
    // Paging of get-per-site.json against total, each group with its users.
    let (s, v, _) = v1_call(
        &env,
        &session,
        true,
        Method::GET,
        "get-per-site.json?site_id=mysite&start=1&number=1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 2);
    assert_eq!(v["groups"][0]["group_name"], "new");
    let (_, v, _) = v1_call(
        &env,
        &session,
        true,
        Method::GET,
        "get-per-site.json?site_id=mysite",
        None,
    )
    .await;
    assert_eq!(v["groups"][0]["users"][0]["username"], "alice");
    assert_eq!(v["groups"][0]["users"][0]["externally_managed"], false);
    let (s, _, _) = v1_call(
        &env,
        &session,
        true,
        Method::GET,
        "get-per-site.json?site_id=mysite&start=-1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Delete: 204, then 404 "Group not found".
    let del = json!({"group_name": "new", "site_id": "mysite"});
    let (s, v, _) = call(Method::POST, "delete.json", del.clone()).await;
    assert_eq!((s, v), (StatusCode::NO_CONTENT, Value::Null));
    let (s, v, _) = call(Method::POST, "delete.json", del).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"message": "Group not found"}))
    );
}

#[tokio::test]
async fn studio_3_1_answers_api_1_group_calls_with_301_and_has_older_api_2_shapes() {
    let env = Env::new("[crafter]\napi = \"v3.1\"\n[[crafter.group]]\nname = \"docs\"\n").await;
    let (s, cookie) = login(&env, "admin").await;
    assert_eq!(s, StatusCode::OK, "3.1 still has the API 1 login");
    let session = cookie
        .unwrap()
        .trim_start_matches("JSESSIONID=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (s, v, loc) = v1_call(
        &env,
        &session,
        true,
        Method::POST,
        "create.json",
        Some(json!({"group_name": "x", "site_id": "mysite"})),
    )
    .await;
    assert_eq!(s, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(v, json!({"message": "API deprecated."}));
    assert_eq!(loc.as_deref(), Some("/studio/api/2/groups"));
    // Studio 3.1 has no access tokens: API 2 takes the session (and the XSRF pair on writes).
    let (s, v) = env.call(Method::GET, "/api/2/groups", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let api2 = |method: Method, path: &str, body: Option<Value>, xsrf: bool| {
        let mut req = env.http.request(method, env.url(path)).header(
            header::COOKIE,
            format!("JSESSIONID={session}; XSRF-TOKEN=t1"),
        );
        if xsrf {
            req = req.header("X-XSRF-TOKEN", "t1");
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, v) = api2(Method::GET, "/api/2/groups?keyword=docs", None, false).await;
    assert_eq!(v["total"], 7, "3.1 has no keyword filter");
    assert!(v["groups"][0].get("externallyManaged").is_none(), "{v}");
    let id = env.sim.crafter.group("docs").unwrap().id;
    let (s, _) = api2(
        Method::PATCH,
        "/api/2/groups",
        Some(json!({"id": id, "name": "docs", "desc": "x"})),
        false,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a write without the XSRF pair");
    let (s, _) = api2(
        Method::PATCH,
        "/api/2/groups",
        Some(json!({"id": id, "desc": "x"})),
        true,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::INTERNAL_SERVER_ERROR,
        "3.1 replaces the name: without it the update fails"
    );
    let (s, v) = api2(
        Method::PATCH,
        "/api/2/groups",
        Some(json!({"id": id, "name": "docs", "desc": "x"})),
        true,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["group"]["desc"], "x");
}

#[tokio::test]
async fn faults_are_injected_in_studios_envelope() {
    let env = Env::new(SEED).await;
    env.sim.crafter.set_faults(Faults {
        error_rate: 1.0,
        fail_path: Some("/groups".into()),
        ..Faults::default()
    });
    let (s, v) = env.call(Method::GET, "/api/2/groups", None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["response"]["code"], 1000);
    let (s, _) = env.call(Method::GET, "/api/2/users/alice", None).await;
    assert_eq!(s, StatusCode::OK, "fail_path limits the faults");
    env.sim.crafter.set_faults(Faults {
        throttle_rate: 1.0,
        retry_after: Duration::from_secs(3),
        ..Faults::default()
    });
    let resp = env
        .http
        .get(env.url("/api/2/groups"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    // A write whose answer is dropped still happened.
    env.sim.crafter.set_faults(Faults {
        drop_after_write: 1,
        ..Faults::default()
    });
    let sent = env
        .http
        .post(env.url("/api/2/groups"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "dropped"}))
        .send()
        .await;
    assert!(sent.is_err() || sent.unwrap().text().await.is_err());
    assert!(env.sim.crafter.group("dropped").is_some());
    assert_eq!(env.sim.crafter.writes(), 1);
    // The control endpoints need no credentials and are not logged.
    let before = env.sim.crafter.calls().len();
    let base = format!("http://{}", env.sim.addr(SimKind::Crafter));
    let state: Value = env
        .http
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(state["groups"].as_array().unwrap().len() >= 8, "{state}");
    assert_eq!(env.sim.crafter.calls().len(), before);
    // Nor faulted: every API call fails, the control endpoints still answer.
    env.sim.crafter.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let resp = env
        .http
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (s, _) = env.call(Method::GET, "/api/2/users/alice", None).await;
    assert_eq!(
        s,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the faults are in force"
    );
}

#[tokio::test]
async fn the_new_switches_are_set_from_the_seed_and_the_behaviour_endpoint() {
    let env = Env::new(&format!(
        "{SEED}[crafter.behaviour]\npatch = \"whole_group\"\nmax_http_header_size = 4096\n"
    ))
    .await;
    let b = env.sim.crafter.behaviour();
    assert_eq!(
        (b.patch, b.max_http_header_size),
        (PatchShape::WholeGroup, 4096)
    );
    let id = env.sim.crafter.group("docs").unwrap().id;
    let (s, _) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "the name is required");
    let resp = env
        .http
        .get(env.url(&format!("/api/2/groups?keyword={}", "k".repeat(5000))))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "over 4 KB");
    let base = format!("http://{}", env.sim.addr(SimKind::Crafter));
    let b: Value = env
        .http
        .put(format!("{base}/_sim/behaviour"))
        .json(&json!({"patch": "desc_only", "max_http_header_size": 8192}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (b["patch"].clone(), b["max_http_header_size"].clone()),
        (json!("desc_only"), json!(8192))
    );
    let (s, _) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "desc": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let resp = env
        .http
        .put(format!("{base}/_sim/behaviour"))
        .json(&json!({"patch": "partial"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_1_refuses_what_its_utf8_columns_cannot_hold_with_500() {
    let env = Env::new(V1_SEED).await;
    let (_, cookie) = login(&env, "admin").await;
    let session = cookie
        .unwrap()
        .trim_start_matches("JSESSIONID=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let long_name = "n".repeat(256);
    let long_desc = "d".repeat(3001);
    for body in [
        json!({"group_name": long_name, "site_id": "mysite"}),
        json!({"group_name": "fine", "site_id": "mysite", "description": long_desc}),
        json!({"group_name": "party 🎉", "site_id": "mysite"}),
    ] {
        let (s, v, _) = v1_call(
            &env,
            &session,
            true,
            Method::POST,
            "create.json",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("Internal server error: \n"),
            "{v}"
        );
    }
    let (s, _, _) = v1_call(
        &env,
        &session,
        true,
        Method::POST,
        "update.json",
        Some(json!({"group_name": "docs", "site_id": "mysite", "description": "🎉"})),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    // At the limits, and with accents (in the Basic Multilingual Plane), all is well.
    let (s, _, _) = v1_call(
        &env,
        &session,
        true,
        Method::POST,
        "create.json",
        Some(json!({"group_name": "n".repeat(255), "site_id": "mysite", "description": "é".repeat(3000)})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        env.sim.crafter.groups().len(),
        8,
        "six built in, docs, and the last"
    );
}

/// Puts the name switch in force over the control endpoint, as a test harness would.
async fn names_ignore_case(env: &Env, on: bool) {
    let base = format!("http://{}", env.sim.addr(SimKind::Crafter));
    let resp = env
        .http
        .put(format!("{base}/_sim/behaviour"))
        .json(&json!({ "case_insensitive_names": on }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The names the group list shows for `query`.
async fn listed(env: &Env, query: &str) -> Vec<String> {
    let (s, v) = env
        .call(
            Method::GET,
            &format!("/api/2/groups?limit=100{query}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn names_follow_renames_deletes_and_the_case_switch_flipped_at_run_time() {
    let env = Env::new(
        "[crafter]\n[crafter.behaviour]\npatch = \"whole_group\"\n\
         [[crafter.group]]\nname = \"ops\"\n",
    )
    .await;
    let id = env.sim.crafter.group("OPS").unwrap().id;
    let (s, _) = env
        .call(
            Method::PATCH,
            "/api/2/groups",
            Some(json!({"id": id, "name": "platform", "desc": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(env.sim.crafter.group("ops").is_none());
    assert_eq!(listed(&env, "&keyword=PLAT").await, ["platform"]);
    assert!(listed(&env, "&keyword=ops").await.is_empty());
    // The old name is free, the new one taken.
    let create = |name: &str| Some(json!({ "name": name }));
    let (s, _) = env
        .call(Method::POST, "/api/2/groups", create("Platform"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Exact names from now on: a name differing by case is another group.
    names_ignore_case(&env, false).await;
    assert!(listed(&env, "&keyword=PLAT").await.is_empty());
    let (s, _) = env
        .call(Method::POST, "/api/2/groups", create("Platform"))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        listed(&env, "&keyword=latform").await,
        ["platform", "Platform"]
    );
    names_ignore_case(&env, true).await;
    // Listed by lower-case name, then id.
    assert_eq!(
        listed(&env, "&keyword=PLATFORM").await,
        ["platform", "Platform"]
    );

    // Deleted, then created again under the same name.
    let (s, _) = env
        .call(Method::DELETE, &format!("/api/2/groups?id={id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed(&env, "&keyword=platform").await, ["Platform"]);
    let (s, v) = env.call(Method::POST, "/api/2/groups", create("ops")).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_ne!(v["group"]["id"], json!(id));
    assert_eq!(env.sim.crafter.group("OPS").unwrap().id, v["group"]["id"]);
}
