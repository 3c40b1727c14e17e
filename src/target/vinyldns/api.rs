//! VinylDNS API wire shapes and paths: the only code that knows them.
//!
//! Path segments (group ids, user names) are percent-encoded as the server renders a path again
//! before it checks a signature ([`segment`]), and the signer signs the path as sent, so that what
//! is signed is what the server computes.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashSet;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A path segment encoded as the VinylDNS server renders it: the unreserved characters, the
/// sub-delimiters `! $ & ' ( ) * + , ; =`, `:` and `@` literal, every other byte of its UTF-8
/// form as `%XX`. The server decodes a received path and signs this rendering of it, so any other
/// encoding of `@` or `'` (valid as it may be) makes a signature that does not validate.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The group collection (list, create).
pub const GROUPS: &str = "/groups";

/// The groups a list page asks for: the most current servers allow (`maxItems` 1 to 3000), so
/// that a list of 20,000 groups is 7 calls rather than 200.
pub const GROUPS_PAGE: u32 = 3000;
/// The members a page asks for: the most current servers allow (1 to 1000).
pub const MEMBERS_PAGE: u32 = 1000;
/// The page size every server version takes (older ones documented at most 100): what a list
/// asks for after a server refuses a larger `maxItems`.
pub const LEGACY_PAGE: u32 = 100;

/// `/groups/{id}` (get, update, delete).
pub fn group(id: &str) -> String {
    format!("{GROUPS}/{}", segment(id))
}

/// `/groups/{id}/members` (list members, paged).
pub fn group_members(id: &str) -> String {
    format!("{GROUPS}/{}/members", segment(id))
}

/// `/groups/{id}/admins` (the admins as users, with their `isSuper` flags).
pub fn group_admins(id: &str) -> String {
    format!("{GROUPS}/{}/admins", segment(id))
}

/// The e-mail domains the server allows for groups (a JSON list of strings; empty allows all).
pub const VALID_DOMAINS: &str = "/groups/valid/domains";

/// The zone collection (list, paged; `maxItems` is 1..=100).
pub const ZONES: &str = "/zones";

/// `/users/{id or username}`.
pub fn user(key: &str) -> String {
    format!("/users/{}", segment(key))
}

/// A user id as a group's lists name it. Shared: the pages of one list name the same ids again
/// and again (20,000 groups of 50 name a thousand users a million times), and the ids a page
/// names while an [`Interner`] parses it are the interner's one copy of each.
pub type UserId = Arc<str>;

/// A user reference inside a group: `{"id": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub struct IdRef {
    /// The user's id.
    #[serde(deserialize_with = "interned")]
    pub id: UserId,
}

/// The user ids the pages of one list have named, each held once: a list parsed through it
/// holds a thousand ids rather than a million copies of them (48 MB of fresh memory for a list
/// of 20,000 groups of 50, written while the read's calls wait on the same cores).
#[derive(Debug, Default)]
pub struct Interner(Mutex<FxHashSet<UserId>>);

thread_local! {
    /// The ids of the interner parsing on this thread, if one is: a parse is synchronous, so
    /// the ids it names are interned on the thread that parses it.
    static IN_USE: RefCell<Option<FxHashSet<UserId>>> = const { RefCell::new(None) };
}

impl Interner {
    /// Parses `body` as `T`, each user id in it the one this interner holds.
    pub fn parse<T: DeserializeOwned>(&self, body: &str) -> serde_json::Result<T> {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        IN_USE.with(|cell| *cell.borrow_mut() = Some(std::mem::take(&mut *ids)));
        let parsed = serde_json::from_str(body);
        *ids = IN_USE
            .with(|cell| cell.borrow_mut().take())
            .unwrap_or_default();
        parsed
    }
}

/// A user id, the interner's copy when one is parsing on this thread.
fn interned<'de, D: Deserializer<'de>>(d: D) -> Result<UserId, D::Error> {
    struct Id;
    impl Visitor<'_> for Id {
        type Value = UserId;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a user id")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<UserId, E> {
            Ok(IN_USE.with(|cell| match cell.borrow_mut().as_mut() {
                Some(ids) => {
                    if let Some(id) = ids.get(s) {
                        id.clone()
                    } else {
                        let id = UserId::from(s);
                        ids.insert(id.clone());
                        id
                    }
                }
                None => UserId::from(s),
            }))
        }
    }
    d.deserialize_str(Id)
}

/// A group as the API returns it (only what roster needs).
#[derive(Clone, Debug, Deserialize)]
pub struct Group {
    /// The group's id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Its contact e-mail (required by the API).
    #[serde(default)]
    pub email: String,
    /// Absent when never set.
    #[serde(default)]
    pub description: Option<String>,
    /// `Active` or `Deleted`.
    #[serde(default)]
    pub status: Option<String>,
    /// Every member's id (admins included).
    #[serde(default)]
    pub members: Vec<IdRef>,
    /// The admins' ids.
    #[serde(default)]
    pub admins: Vec<IdRef>,
}

impl Group {
    /// Whether the group is deleted (then it is not live).
    pub fn is_deleted(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("deleted"))
    }
}

/// A page of `GET /groups`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupPage {
    /// The groups on this page.
    pub groups: Vec<Group>,
    /// The cursor of the next page; absent on the last.
    #[serde(default)]
    pub next_id: Option<String>,
}

/// A member as `GET /groups/{id}/members` lists it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The user's id.
    pub id: String,
    /// The user's name: the user key roster matches on.
    pub user_name: String,
    /// Whether the user is an admin of the group.
    #[serde(default)]
    pub is_admin: bool,
}

/// A page of `GET /groups/{id}/members`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberPage {
    /// The members on this page.
    pub members: Vec<Member>,
    /// The cursor of the next page; absent on the last.
    #[serde(default)]
    pub next_id: Option<String>,
}

/// A user as `GET /users/{key}` returns it: its id, and its name (what roster matches on, when
/// it was looked up by id).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user's id.
    pub id: String,
    /// The user's name.
    #[serde(default)]
    pub user_name: String,
}

/// An admin as `GET /groups/{id}/admins` lists it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Admin {
    /// The user's id.
    pub id: String,
    /// Whether the user is a super user (may change every group).
    #[serde(default)]
    pub is_super: bool,
}

/// The answer of `GET /groups/{id}/admins`.
#[derive(Debug, Deserialize)]
pub struct AdminList {
    /// The admins that are users.
    pub admins: Vec<Admin>,
}

/// A zone as `GET /zones` lists it (only what decides whether a group may be deleted).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    /// Its name.
    pub name: String,
    /// The id of the group that administers it.
    #[serde(default)]
    pub admin_group_id: String,
    /// Its access rules.
    #[serde(default)]
    pub acl: Option<Acl>,
}

/// A zone's access control list.
#[derive(Clone, Debug, Deserialize)]
pub struct Acl {
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<AclRule>,
}

/// One access rule of a zone.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    /// The group the rule grants to, if it names a group.
    #[serde(default)]
    pub group_id: Option<String>,
}

/// A page of `GET /zones`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZonePage {
    /// The zones on this page.
    pub zones: Vec<Zone>,
    /// The cursor of the next page; absent on the last.
    #[serde(default)]
    pub next_id: Option<String>,
}

/// The body of `POST /groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreateGroup {
    /// The new group's name.
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// Its description, if the desired state sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Member ids (admins included).
    pub members: Vec<IdRef>,
    /// Admin ids.
    pub admins: Vec<IdRef>,
}

/// The body of `PUT /groups/{id}`: the whole group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpdateGroup {
    /// The group's id.
    pub id: String,
    /// Its name (a different one renames it).
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// Its description; left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Every member id (admins included).
    pub members: Vec<IdRef>,
    /// Admin ids.
    pub admins: Vec<IdRef>,
}

/// Id references from ids.
pub fn refs<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<IdRef> {
    ids.into_iter()
        .map(|id| IdRef {
            id: UserId::from(id.as_str()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_as_the_server_renders_them() {
        assert_eq!(user("a b/c+d"), "/users/a%20b%2Fc+d");
        assert_eq!(user("jane@corp.com"), "/users/jane@corp.com");
        assert_eq!(user("o'neil"), "/users/o'neil");
        assert_eq!(user("zoë"), "/users/zo%C3%AB");
        assert_eq!(user("50%"), "/users/50%25");
        assert_eq!(group_members("x"), "/groups/x/members");
    }

    fn page(groups: &[(&str, &[&str])]) -> String {
        let groups: Vec<serde_json::Value> = groups
            .iter()
            .map(|(id, members)| {
                let refs: Vec<serde_json::Value> = members
                    .iter()
                    .map(|m| serde_json::json!({ "id": m }))
                    .collect();
                serde_json::json!({ "id": id, "name": id, "members": refs, "admins": refs })
            })
            .collect();
        serde_json::json!({ "groups": groups }).to_string()
    }

    #[test]
    fn an_interner_holds_each_id_once_across_pages_and_nothing_else_shares_it() {
        let ids = Interner::default();
        let first: GroupPage = ids
            .parse(&page(&[("g1", &["u1", "u2"]), ("g2", &["u2"])]))
            .expect("page");
        let second: GroupPage = ids.parse(&page(&[("g3", &["u1"])])).expect("page");
        let (g1, g2, g3) = (&first.groups[0], &first.groups[1], &second.groups[0]);
        assert_eq!(&*g1.members[1].id, "u2");
        assert!(Arc::ptr_eq(&g1.members[1].id, &g2.members[0].id));
        assert!(Arc::ptr_eq(&g1.members[1].id, &g1.admins[1].id));
        // The next page is interned with the ids of the first.
        assert!(Arc::ptr_eq(&g1.members[0].id, &g3.members[0].id));
        // Outside the interner's parse, an id is a copy of its own: the interner's ids are
        // not left on the thread for any other parse.
        let plain: GroupPage = serde_json::from_str(&page(&[("g4", &["u1"])])).expect("page");
        assert_eq!(&*plain.groups[0].members[0].id, "u1");
        assert!(!Arc::ptr_eq(
            &g1.members[0].id,
            &plain.groups[0].members[0].id
        ));
        // An escaped id is the id it spells.
        let escaped: GroupPage = ids
            .parse(r#"{"groups":[{"id":"g","name":"g","members":[{"id":"u\u0031"}]}]}"#)
            .expect("page");
        assert!(Arc::ptr_eq(
            &g1.members[0].id,
            &escaped.groups[0].members[0].id
        ));
    }

    #[test]
    fn a_page_the_interner_cannot_parse_is_an_error_and_the_interner_goes_on() {
        let ids = Interner::default();
        let bad: serde_json::Result<GroupPage> =
            ids.parse(r#"{"groups":[{"id":"g","name":"g","members":[{"id":7}]}]}"#);
        assert!(bad.is_err());
        let good: GroupPage = ids.parse(&page(&[("g", &["u1"])])).expect("page");
        assert_eq!(&*good.groups[0].members[0].id, "u1");
    }
}
