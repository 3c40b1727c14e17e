//! Connector tests without a server: `compile` batches additions per group, and `vet` refuses
//! exactly the bodies Contensis would refuse.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use serde_json::Value;

use super::*;
use crate::model::{Group, GroupKind, ObservedGroup};
use crate::plan::change::Change;
use crate::secret::Secret;

fn target() -> ContensisTarget {
    at("http://127.0.0.1:9")
}

/// The connector for a Contensis at `url`.
fn at(url: &str) -> ContensisTarget {
    let config = ContensisConfig {
        url: url.into(),
        auth: ContensisAuth::ClientCredentials {
            client_id: "roster".into(),
            client_secret: Secret::new("s"),
        },
        scope: config::DEFAULT_SCOPE.into(),
    };
    let one = NonZeroUsize::MIN;
    ContensisTarget::new("cms", &config, reqwest::Client::new(), one)
}

#[test]
fn adds_are_one_call_per_group_and_removals_one_per_member() {
    let g = |n: &str| GroupName(n.to_owned());
    let u = |n: &str| UserKey::from(n.to_owned());
    let mut observed = Observed::default();
    for name in ["G", "H"] {
        observed.groups.insert(
            g(name),
            ObservedGroup {
                id: format!("id-{name}"),
                group: Group::named(name),
                kind: GroupKind::Managed,
            },
        );
    }
    for name in ["a", "b", "c"] {
        observed.users.insert(u(name), format!("uid-{name}"));
    }
    let add = |grp: &str, m: &str| Change::AddMember {
        group: g(grp),
        member: u(m),
    };
    let plan = Plan {
        changes: vec![
            add("G", "a"),
            add("G", "b"),
            Change::RemoveMember {
                group: g("G"),
                member: u("c"),
            },
            add("H", "c"),
            Change::AddChild {
                group: g("G"),
                child: g("H"),
            },
            Change::AddChild {
                group: g("G"),
                child: g("New"),
            },
        ],
        ..Plan::default()
    };
    let calls = target().compile(&plan, &observed);
    let ops: Vec<&Op> = calls.iter().map(|c| &c.op).collect();
    assert_eq!(
        ops,
        [
            &Op::AddMembers(
                GroupRef::Id("id-G".into()),
                vec![(u("a"), "uid-a".into()), (u("b"), "uid-b".into())]
            ),
            &Op::RemoveMember(GroupRef::Id("id-G".into()), "uid-c".into()),
            &Op::AddMembers(GroupRef::Id("id-H".into()), vec![(u("c"), "uid-c".into())]),
            &Op::AddChildren(
                GroupRef::Id("id-G".into()),
                vec![
                    (g("H"), GroupRef::Id("id-H".into())),
                    (g("New"), GroupRef::Name(g("New")))
                ]
            ),
        ]
    );
    assert_eq!(calls[0].covers(), [0, 1]);
    assert_eq!(calls[3].covers(), [4, 5]);
    assert_eq!(calls[3].needs(), [&g("G"), &g("H"), &g("New")]);
}

#[tokio::test]
async fn vet_refuses_bodies_contensis_would_refuse_and_only_those() {
    use crate::plan::change::FieldChange;
    let g = |n: &str| GroupName(n.to_owned());
    let custom = |v: Value| crate::model::Attributes::from([("custom".to_owned(), v)]);
    let update = |k: &str, to: Value| Change::UpdateGroup {
        group: g("U"),
        fields: BTreeMap::from([(
            k.to_owned(),
            FieldChange {
                from: Value::Null,
                to,
            },
        )]),
    };
    let create = |name: &str, attributes| Change::CreateGroup {
        group: g(name),
        description: None,
        attributes,
    };
    let plan = Plan {
        changes: vec![
            create("Fine", custom(serde_json::json!({"clientId": "PSSC"}))),
            create(" ", Default::default()),
            create("Num", custom(serde_json::json!({"n": 1}))),
            update("custom", serde_json::json!({"ok": "x", "flag": true})),
            update("custom", serde_json::json!({"ok": "x"})),
            update("description", Value::Null),
            update("description", serde_json::json!(3)),
            update("name", Value::from("")),
        ],
        ..Plan::default()
    };
    let refused = target()
        .vet(&Desired::default(), &Observed::default(), &plan)
        .await
        .expect("vet without child additions reads nothing");
    let at: Vec<Option<usize>> = refused.iter().map(|r| r.change).collect();
    assert_eq!(
        at,
        [Some(1), Some(2), Some(3), Some(6), Some(7)],
        "{refused:?}"
    );
    assert!(refused[1].message.contains("custom.n is 1"), "{refused:?}");
}

/// A Contensis that hands out a token and answers every `GET /api/security/users` with `page`.
async fn users_answering(page: Value) -> ContensisTarget {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            api::TOKEN,
            post(|| async {
                axum::Json(serde_json::json!({"access_token": "t", "expires_in": 3600}))
            }),
        )
        .route(
            api::USERS,
            get(move || {
                let page = page.clone();
                async move { axum::Json(page) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    at(&format!("http://{addr}"))
}

#[tokio::test]
async fn a_user_list_whose_one_page_holds_fewer_users_than_its_total_is_not_taken_whole() {
    let user = |n: &str| serde_json::json!({"id": format!("uid-{n}"), "username": n});
    // One page, by its count, that holds 2 of the 3 users it says there are: taking it whole
    // would call the third user unknown.
    let short = serde_json::json!({
        "pageIndex": 0, "pageSize": 100, "pageCount": 1, "totalCount": 3,
        "items": [user("alice"), user("bob")],
    });
    let t = users_answering(short).await;
    let err = t.all_users_if_cheaper(2).await.unwrap_err();
    assert!(err.to_string().contains("/api/security/users"), "{err}");
    // The same page holding every user it counts is taken as it is.
    let whole = serde_json::json!({
        "pageIndex": 0, "pageSize": 100, "pageCount": 1, "totalCount": 2,
        "items": [user("alice"), user("bob")],
    });
    let t = users_answering(whole).await;
    let all = t.all_users_if_cheaper(2).await.unwrap().unwrap();
    assert_eq!(all.len(), 2);
}
