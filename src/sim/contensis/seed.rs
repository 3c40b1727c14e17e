//! The Contensis simulator's seed (`[contensis]` in a seed file): its logins, groups and the
//! [`Behaviour`] switches for what the API reference leaves open, and the seed's validation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::sim::faults::{self, Faults};
use crate::sim::name_key;

use super::*;

/// The `[contensis]` table of a seed file: credentials, users, groups, switches and faults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContensisSeed {
    /// Client id of the API key accepted by the `client_credentials` grant.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Whether the API key is a member of `System Administrators`; when false every group call
    /// made with its token is answered 403.
    pub client_is_admin: bool,
    /// Usernames of the users that exist; each gets the email `<username>@example.com`. Users
    /// named as members of a seed group or in a login exist without being listed here.
    pub users: Vec<String>,
    /// Users who may sign in with the `contensis_classic` grant (`[[contensis.login]]`). They
    /// may call the security API when they are members of `System Administrators`.
    #[serde(rename = "login")]
    pub logins: Vec<SeedLogin>,
    /// Lifetime of an access token (humantime; default `"1h"`).
    #[serde(with = "faults::duration")]
    pub token_ttl: Duration,
    /// The groups that exist at start (`[[contensis.group]]`). A group named
    /// `System Administrators` adds to the built-in one instead of making a second.
    #[serde(rename = "group")]
    pub groups: Vec<SeedGroup>,
    /// Switches for behaviour the API reference leaves unconfirmed.
    pub behaviour: Behaviour,
    /// Faults to inject from the start.
    pub faults: Faults,
}

impl Default for ContensisSeed {
    fn default() -> Self {
        Self {
            client_id: "roster".into(),
            client_secret: "roster-secret".into(),
            client_is_admin: true,
            users: Vec::new(),
            logins: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            groups: Vec::new(),
            behaviour: Behaviour::default(),
            faults: Faults::default(),
        }
    }
}

/// A user who may sign in with a password (`[[contensis.login]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLogin {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A group in a seed file (`[[contensis.group]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// The unique name.
    pub name: String,
    /// The description, if any.
    #[serde(default)]
    pub description: Option<String>,
    /// `contensis` (default), `sys` or `external`.
    #[serde(rename = "type", default)]
    pub kind: GroupKind,
    /// Custom string fields.
    #[serde(default)]
    pub custom: BTreeMap<String, String>,
    /// Usernames of the direct members.
    #[serde(default)]
    pub members: Vec<String>,
    /// Names of the direct child groups, each defined in the same seed.
    #[serde(default)]
    pub children: Vec<String>,
    /// A fixed id (GUID); a random one when omitted.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The e-mail domains whose users join the group automatically (`autoMembershipEmailDomains`,
    /// the "Domains" of the group in the UI).
    #[serde(default)]
    pub auto_membership_email_domains: Option<Vec<String>>,
    /// Further fields a group carries on the server, by their wire name (`[contensis.group.extra]`):
    /// returned on every read, and cleared by a replacing `PUT` that omits them.
    #[serde(default)]
    pub extra: BTreeMap<String, Value>,
}

/// The `type` of a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// Made in the UI or through the API.
    #[default]
    Contensis,
    /// Built in, such as `System Administrators`.
    Sys,
    /// Made by single sign-on from an identity provider.
    External,
}

impl GroupKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contensis => "contensis",
            Self::Sys => "sys",
            Self::External => "external",
        }
    }
}

/// Switches for behaviour the API reference marks as unconfirmed (`[contensis.behaviour]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// Group names are unique, and looked up, without regard to case (default true).
    pub case_insensitive_names: bool,
    /// Answer to adding a user or child group that is already a direct member (default 204).
    pub add_existing: AddExisting,
    /// Whether `PUT` of a group clears the fields it omits or keeps them (default replace).
    pub put_mode: PutMode,
    /// Refuse, with 422, a child group that would close a cycle such as A > B > A (default true).
    /// A group can never be its own child.
    pub reject_cycles: bool,
    /// Largest page served; a larger `pageSize` is clamped to it (default 1000).
    pub max_page_size: u32,
    /// `PUT`/`DELETE` of `sys` and `external` groups, and membership changes of `external`
    /// groups, are answered 403 (default true).
    pub protect_system_groups: bool,
    /// Answer to a bulk add (`POST .../users`, `POST .../groups`) naming an id that already is a
    /// direct member (default 409).
    pub bulk_add_existing: BulkExisting,
    /// Answer to a bulk add naming an id that is no user (or no group) (default 404).
    pub bulk_add_unknown: BulkUnknown,
    /// When a bulk add is refused (an existing or unknown id), whether the other ids were added
    /// all the same before the refusal (default true: the answer says nothing of what happened).
    pub bulk_add_partial: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            case_insensitive_names: true,
            add_existing: AddExisting::NoContent,
            put_mode: PutMode::Replace,
            reject_cycles: true,
            max_page_size: 1000,
            protect_system_groups: true,
            bulk_add_existing: BulkExisting::Conflict,
            bulk_add_unknown: BulkUnknown::NotFound,
            bulk_add_partial: true,
        }
    }
}

/// The answer to adding a member that is already there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddExisting {
    /// `204 No Content`, as if it had been added.
    #[default]
    NoContent,
    /// `409 "Resource already exists in target location"`.
    Conflict,
}

/// The answer to a bulk add naming an id that already is a direct member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkExisting {
    /// Skipped: the others are added and the answer is 204.
    Ignore,
    /// `409 "Resource already exists in target location"`.
    #[default]
    Conflict,
    /// `400` naming the id.
    BadRequest,
}

/// The answer to a bulk add naming an id that is no user (or no group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkUnknown {
    /// Skipped: the others are added and the answer is 204.
    Ignore,
    /// `404 "User not found"` (or `"Group not found"`).
    #[default]
    NotFound,
}

/// What `PUT` of a group does with the fields its body omits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PutMode {
    /// Omitted fields are cleared (`description` null, `custom` empty, any other field such as
    /// `autoMembershipEmailDomains` null); `name` is required.
    #[default]
    Replace,
    /// Omitted fields keep their values.
    Merge,
}

impl ContensisSeed {
    /// Checks what serde cannot: unique names, known child groups, no self-children, no cycles
    /// when [`Behaviour::reject_cycles`] is set. Returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.client_id.trim().is_empty() {
            problems.push("contensis.client_id must not be empty".to_owned());
        }
        let key = |n: &str| name_key(n, self.behaviour.case_insensitive_names);
        let mut names: BTreeMap<String, &str> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for g in &self.groups {
            if g.name.trim().is_empty() {
                problems.push("contensis.group: name must not be empty".to_owned());
            }
            if let Some(prev) = names.insert(key(&g.name), &g.name) {
                problems.push(format!(
                    "contensis.group {:?}: duplicate name (also {prev:?})",
                    g.name
                ));
            }
            if let Some(id) = g.id
                && !ids.insert(id)
            {
                problems.push(format!("contensis.group {:?}: duplicate id {id}", g.name));
            }
        }
        let sys = key(SYSTEM_ADMINISTRATORS);
        for g in &self.groups {
            for c in &g.children {
                if key(c) == key(&g.name) {
                    problems.push(format!(
                        "contensis.group {:?}: a group cannot be its own child",
                        g.name
                    ));
                } else if !names.contains_key(&key(c)) && key(c) != sys {
                    problems.push(format!(
                        "contensis.group {:?}: child {c:?} is not a group of the seed",
                        g.name
                    ));
                }
            }
        }
        if problems.is_empty() && self.behaviour.reject_cycles {
            // Every name is known and unique here, so a child's name is its group's key. A
            // group is on a cycle when its strongly connected component has more than one
            // group (no group is its own child): one pass over the links, where a walk of
            // every group's descendants is quadratic in a deep hierarchy.
            let node: BTreeMap<String, usize> = self
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| (key(&g.name), i))
                .collect();
            let links: Vec<Vec<usize>> = self
                .groups
                .iter()
                .map(|g| {
                    g.children
                        .iter()
                        .filter_map(|c| node.get(&key(c)).copied())
                        .collect()
                })
                .collect();
            for (g, cyclic) in self.groups.iter().zip(on_cycles(&links)) {
                if cyclic {
                    problems.push(format!(
                        "contensis.group {:?}: child groups form a cycle",
                        g.name
                    ));
                }
            }
        }
        let mut logins = BTreeSet::new();
        for l in &self.logins {
            if !logins.insert(l.username.to_lowercase()) {
                problems.push(format!(
                    "contensis.login {:?}: duplicate username",
                    l.username
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Which nodes of a directed graph (`links[i]`: the nodes node `i` links to) lie on a cycle of
/// two nodes or more: those whose strongly connected component has more than one node (Tarjan's
/// algorithm, with an explicit stack so that a deep hierarchy cannot overflow the thread's).
fn on_cycles(links: &[Vec<usize>]) -> Vec<bool> {
    let mut t = Tarjan {
        index: vec![None; links.len()],
        low: vec![0; links.len()],
        on_stack: vec![false; links.len()],
        stack: Vec::new(),
        walk: Vec::new(),
        next: 0,
    };
    let mut cyclic = vec![false; links.len()];
    for root in 0..links.len() {
        if t.index[root].is_some() {
            continue;
        }
        t.visit(root);
        while let Some(&(v, at)) = t.walk.last() {
            if let Some(&w) = links[v].get(at) {
                if let Some(top) = t.walk.last_mut() {
                    top.1 += 1;
                }
                match t.index[w] {
                    None => t.visit(w),
                    Some(iw) if t.on_stack[w] => t.low[v] = t.low[v].min(iw),
                    Some(_) => {}
                }
                continue;
            }
            t.walk.pop();
            if let Some(&(parent, _)) = t.walk.last() {
                t.low[parent] = t.low[parent].min(t.low[v]);
            }
            if Some(t.low[v]) == t.index[v] {
                let mut component = Vec::new();
                while let Some(w) = t.stack.pop() {
                    t.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    for w in component {
                        cyclic[w] = true;
                    }
                }
            }
        }
    }
    cyclic
}

/// The state of [`on_cycles`]'s walk.
struct Tarjan {
    /// The order each node was first met in.
    index: Vec<Option<usize>>,
    /// The earliest node on the stack each node reaches.
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    /// The path walked: each node with the position of the next link to follow.
    walk: Vec<(usize, usize)>,
    next: usize,
}

impl Tarjan {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        self.walk.push((v, 0));
    }
}
