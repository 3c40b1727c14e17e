//! Group entries as they arrive, and their member values turned into user keys, child groups
//! and DNs for the user search.
//!
//! Members are decided page by page while the server sends the next page, so most of the work
//! is done while waiting for it. Whether a member DN is a group depends on every group, though,
//! so a member is decided early only when no group read later can change the decision: when
//! its first attribute type starts no group DN read so far, the decision assumes it starts none
//! at all, and notes that assumption; a member that looks like a group not yet read waits for
//! the end. If a group read later breaks an assumption (or two groups share a DN),
//! [`Groups::sound`] says so, and the groups are to be read again with every member left for
//! the end: the result is always the one deciding every member after the last group gives.
//!
//! Allocation is kept to about none per member: the buffer of a value read from the server
//! becomes its user key (cut to the key in place), or waits for the user search, which gives
//! the key to copy into it. Once the user search is in, DNs are mapped as they are decided.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range as Span;

use tracing::debug;

use super::config::{MappedKind, MemberKind};
use super::dn::{
    first_rdn, is_under, normalize_dn, normalize_shaped, quick_user_key_shaped, shape,
};
use super::range::{self, Range};
use super::search::{At, Entry};
use super::users::{Found, Users};
use super::{LdapSourceConfig, warn_at};
use crate::diag::Diagnostic;
use crate::model::{GroupName, UserKey};
use crate::source::SourceError;

/// A group entry as read.
pub(super) struct GroupEntry {
    /// The DN as the server wrote it.
    pub dn: String,
    /// The group's name.
    pub name: GroupName,
    /// Its description.
    pub description: Option<String>,
    /// The members' user keys.
    pub members: BTreeSet<UserKey>,
    /// User keys decided and not yet in `members`: a set is made of them in one go, as soon as
    /// the group has no member left to decide (building a set from a sorted run is much
    /// cheaper than inserting one by one).
    keys: Vec<UserKey>,
    /// Child groups.
    pub children: BTreeSet<GroupName>,
    /// Member values left for the end, in the server's order.
    pub rest: Vec<String>,
    /// The values of each of the config's `attributes`, in its order (a DN-valued one's are
    /// moved to `mapped_keys` as they are decided).
    pub mapped: Vec<Vec<String>>,
    /// The user keys of each DN-valued mapped attribute.
    pub mapped_keys: Vec<BTreeSet<String>>,
}

impl GroupEntry {
    /// Makes the keys decided so far part of the members.
    fn settle(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        if self.members.is_empty() {
            self.members = keys.into_iter().collect();
        } else {
            self.members.extend(keys);
        }
    }
}

/// Where a DN value belongs once it is decided.
#[derive(Clone, Copy, Debug)]
pub(super) enum Dest {
    /// A member of group `i`.
    Member(usize),
    /// A value of group `i`'s mapped attribute `k` (a DN-valued one, such as VinylDNS admins).
    Mapped(usize, usize),
}

impl Dest {
    fn group(self) -> usize {
        match self {
            Dest::Member(i) | Dest::Mapped(i, _) => i,
        }
    }
}

/// A user key found in a DN value.
enum Key {
    /// These bytes of the value (its first RDN's value, needing no unescaping).
    Within(Span<usize>),
    /// An unescaped value.
    Owned(String),
}

/// What a DN value names, as far as the DN and the groups read can tell.
enum Named {
    /// A user, whose key the DN itself gives.
    User(Key),
    /// One of the groups read.
    Group(GroupName),
    /// Only the user search can tell; its normal form is in the buffer.
    Lookup,
    /// Not a DN.
    Invalid,
}

/// The groups of one read of the group search, as they arrive, and their members.
pub(super) struct Groups<'a> {
    cfg: &'a LdapSourceConfig,
    key_attr: &'a str,
    user_base: &'a str,
    /// Whether members are decided while groups are still to come.
    early: bool,
    /// The groups read, in the server's order.
    pub entries: Vec<GroupEntry>,
    /// Group entries seen, skipped ones too.
    pub seen: usize,
    /// Groups by normalised DN (of two with one DN, the later).
    by_dn: HashMap<String, GroupName>,
    /// Whether two groups have one normalised DN (then a member decided early may name the
    /// wrong one).
    twice: bool,
    /// The attribute types that start a group's DN (`cn`), lowercase and sorted: a member DN
    /// starting with another type (`uid`) cannot be a group.
    rdn_attrs: Vec<String>,
    /// Attribute types assumed, by early decisions, to start no group's DN (lowercase).
    assumed: Vec<String>,
    /// Whether the key's attribute type is among them (noted once, not per member).
    key_assumed: bool,
    /// Groups (by index) whose members came in ranges still to be continued, with the first.
    pub ranged: Vec<(usize, Range)>,
    /// Warnings about entries and values skipped.
    pub diagnostics: Vec<Diagnostic>,
    /// DN values for the user search, in normal form, until it is in.
    pending: Vec<(Dest, String)>,
    /// Values of DN-valued mapped attributes left for the end.
    deferred: Vec<(Dest, String)>,
    /// The user search, once in.
    users: Option<Users>,
    /// Members left out because their account is disabled.
    pub disabled: usize,
    /// One buffer for every normalised DN: a large directory has a million of them.
    norm: String,
}

impl<'a> Groups<'a> {
    /// Nothing read yet; `early`: decide members as the groups arrive.
    pub fn new(
        cfg: &'a LdapSourceConfig,
        key_attr: &'a str,
        user_base: &'a str,
        early: bool,
    ) -> Self {
        Groups {
            cfg,
            key_attr,
            user_base,
            early,
            entries: Vec::new(),
            seen: 0,
            by_dn: HashMap::new(),
            twice: false,
            rdn_attrs: Vec::new(),
            assumed: Vec::new(),
            key_assumed: false,
            ranged: Vec::new(),
            diagnostics: Vec::new(),
            pending: Vec::new(),
            deferred: Vec::new(),
            users: None,
            disabled: 0,
            norm: String::new(),
        }
    }

    /// Whether the early decisions hold now that every group is in (see the module's doc).
    pub fn sound(&self) -> bool {
        !self.early
            || !(self.twice
                || self
                    .assumed
                    .iter()
                    .any(|a| self.rdn_attrs.binary_search(a).is_ok()))
    }

    /// Whether some value waits for the user search.
    pub fn waiting_for_users(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The user search is in: every value waiting for it is mapped, and later ones as they are
    /// decided.
    pub fn users_in(&mut self, users: Users) {
        self.users = Some(users);
        for (dest, norm) in std::mem::take(&mut self.pending) {
            self.resolve(dest, norm, true);
        }
    }

    /// The user search, once the groups are done with it (its counts go in the read report).
    pub fn take_users(&mut self) -> Option<Users> {
        self.users.take()
    }

    /// Takes one group entry; an error for members the server returned in a way roster cannot
    /// read (an unknown option, values that are not text, a first range that is short).
    pub fn add(&mut self, at: &At<'_>, mut e: Entry) -> Result<(), SourceError> {
        let cfg = self.cfg;
        self.seen += 1;
        let (values, range) = range::take(&mut e, &cfg.member_attr)
            .and_then(|(values, range)| {
                if let Some(first) = range {
                    range::check_chunk(first, 0, values.len())?;
                }
                Ok((values, range))
            })
            .map_err(|m| at.error(&format!("reading the members of {}", e.dn), m))?;
        let Some(name) = e.values(&cfg.name_attr).first() else {
            self.diagnostics.push(warn_at(
                &e.dn,
                format!("no `{}` value; the entry is skipped", cfg.name_attr),
            ));
            return Ok(());
        };
        let name = GroupName(name.clone());
        let Some(norm) = normalize_dn(&e.dn) else {
            self.diagnostics.push(warn_at(
                &e.dn,
                "the entry's DN cannot be parsed; skipped".to_owned(),
            ));
            return Ok(());
        };
        let mut mapped = Vec::with_capacity(cfg.attributes.len());
        for m in &cfg.attributes {
            if e.is_binary(&m.ldap_attr) {
                self.diagnostics.push(warn_at(
                    &e.dn,
                    format!(
                        "`{}` of `{name}` is not text; `{}.{}` is left as the target has it",
                        m.ldap_attr,
                        m.target_type,
                        m.path.join(".")
                    ),
                ));
                mapped.push(Vec::new());
                continue;
            }
            mapped.push(e.values(&m.ldap_attr).to_vec());
        }
        if let Some((attr, _)) = norm.split_once('=')
            && let Err(i) = self.rdn_attrs.binary_search_by(|a| a.as_str().cmp(attr))
        {
            self.rdn_attrs.insert(i, attr.to_owned());
        }
        self.twice |= self.by_dn.insert(norm, name.clone()).is_some();
        let g = self.entries.len();
        if let Some(first @ Range::Part { .. }) = range {
            self.ranged.push((g, first));
        }
        self.entries.push(GroupEntry {
            description: e.values(&cfg.description_attr).first().cloned(),
            dn: e.dn,
            name,
            members: BTreeSet::new(),
            keys: Vec::with_capacity(values.len()),
            children: BTreeSet::new(),
            rest: Vec::new(),
            mapped_keys: vec![BTreeSet::new(); mapped.len()],
            mapped,
        });
        if self.early || cfg.member_kind == MemberKind::Uid {
            self.members(g, values, true);
        } else {
            self.entries[g].rest = values;
        }
        for (k, m) in cfg.attributes.iter().enumerate() {
            if m.kind == MappedKind::UserDns {
                let values = std::mem::take(&mut self.entries[g].mapped[k]);
                for v in values {
                    if self.early {
                        self.value(Dest::Mapped(g, k), v, true);
                    } else {
                        self.deferred.push((Dest::Mapped(g, k), v));
                    }
                }
            }
        }
        // Settled now, while the server sends the next page, unless some member is still to be
        // decided (values left for the end or for the user search, ranges to continue).
        let ranged = self.ranged.last().is_some_and(|(r, _)| *r == g);
        if self.entries[g].rest.is_empty() && !ranged && self.pending.is_empty() {
            self.entries[g].settle();
        }
        Ok(())
    }

    /// Decides the values left for the end (and those continued from ranges), once every
    /// group is in.
    pub fn finish(&mut self) {
        for g in 0..self.entries.len() {
            let rest = std::mem::take(&mut self.entries[g].rest);
            self.members(g, rest, false);
        }
        for (dest, v) in std::mem::take(&mut self.deferred) {
            self.value(dest, v, false);
        }
    }

    /// Every group's members, once every value is decided and mapped.
    pub fn settle(&mut self) {
        for g in &mut self.entries {
            g.settle();
        }
    }

    /// Decides the member values of group `g` (see [`value`](Self::value)).
    fn members(&mut self, g: usize, values: Vec<String>, early: bool) {
        if self.cfg.member_kind == MemberKind::Uid {
            let keys = values
                .into_iter()
                .filter(|v| !v.trim().is_empty())
                .map(UserKey::from);
            self.entries[g].keys.extend(keys);
            return;
        }
        for v in values {
            self.value(Dest::Member(g), v, early);
        }
    }

    /// Decides one DN value (or, early, leaves it for the end when a later group could change
    /// the decision).
    fn value(&mut self, dest: Dest, v: String, early: bool) {
        // An empty value is how schemas that require a member spell an empty group.
        if v.trim().is_empty() {
            return;
        }
        let Some(named) = self.classify(&v, early) else {
            match dest {
                Dest::Member(g) => self.entries[g].rest.push(v),
                Dest::Mapped(..) => self.deferred.push((dest, v)),
            }
            return;
        };
        let g = &mut self.entries[dest.group()];
        match (named, dest) {
            (Named::User(key), Dest::Member(_)) => {
                // The key is copied once, into its shared text.
                g.keys.push(match key {
                    Key::Within(span) => UserKey::from(&v[span]),
                    Key::Owned(key) => UserKey::from(key),
                });
            }
            (Named::User(key), Dest::Mapped(_, k)) => {
                let key = match key {
                    Key::Within(span) => v[span].to_owned(),
                    Key::Owned(key) => key,
                };
                g.mapped_keys[k].insert(key);
            }
            (Named::Group(child), Dest::Member(_)) if self.cfg.nested => {
                g.children.insert(child);
            }
            (Named::Group(_), Dest::Member(_)) => {
                let message = format!(
                    "member `{v}` of `{}` is a group and nested = false; skipped",
                    g.name
                );
                self.diagnostics.push(warn_at(&g.dn, message));
            }
            (Named::Invalid, Dest::Member(_)) => {
                let message = format!("member `{v}` is not a valid DN; skipped");
                self.diagnostics.push(warn_at(&g.dn, message));
            }
            (Named::Group(_) | Named::Invalid, Dest::Mapped(_, k)) => {
                let message = format!(
                    "`{}` value `{v}` of `{}` is not a user's DN; skipped",
                    self.cfg.attributes[k].ldap_attr, g.name
                );
                self.diagnostics.push(warn_at(&g.dn, message));
            }
            // Until the user search is in, kept in normal form (so it is not normalised
            // twice; the value's buffer becomes the next one's normal form).
            (Named::Lookup, _) => self.resolve(dest, v, false),
        }
    }

    /// What `v` names, given the groups read so far; `early`: more may come, so `None` when
    /// one could change the answer, and the assumptions made are noted.
    fn classify(&mut self, v: &str, early: bool) -> Option<Named> {
        let shape = shape(v);
        if !self.cfg.exclude_disabled
            && let Some(key) =
                quick_user_key_shaped(v, shape, self.key_attr, self.user_base, &self.rdn_attrs)
        {
            if early && !self.key_assumed {
                assume(&mut self.assumed, self.key_attr);
                self.key_assumed = true;
            }
            let start = key.as_ptr() as usize - v.as_ptr() as usize;
            return Some(Named::User(Key::Within(start..start + key.len())));
        }
        if !normalize_shaped(v, shape, &mut self.norm) {
            return Some(Named::Invalid);
        }
        let attr = self.norm.split_once('=').map(|(a, _)| a);
        if attr.is_some_and(|a| {
            self.rdn_attrs
                .binary_search_by(|g| g.as_str().cmp(a))
                .is_ok()
        }) {
            if let Some(child) = self.by_dn.get(self.norm.as_str()) {
                return Some(Named::Group(child.clone()));
            }
            if early {
                // It may be a group read later.
                return None;
            }
        } else if let (true, Some(attr)) = (early, attr) {
            let attr = attr.to_owned();
            assume(&mut self.assumed, &attr);
        }
        if self.cfg.exclude_disabled {
            // Every user is looked up, for its userAccountControl.
            return Some(Named::Lookup);
        }
        let key = if shape.plain {
            shape
                .first_rdn(v)
                .filter(|(attr, _)| attr.eq_ignore_ascii_case(self.key_attr))
                .map(|(_, value)| {
                    let start = value.as_ptr() as usize - v.as_ptr() as usize;
                    Key::Within(start..start + value.len())
                })
        } else {
            first_rdn(v)
                .filter(|(attr, _)| attr.eq_ignore_ascii_case(self.key_attr))
                .map(|(_, value)| Key::Owned(value))
        };
        Some(match key {
            Some(key) if is_under(&self.norm, self.user_base) => Named::User(key),
            _ => Named::Lookup,
        })
    }

    /// Maps a DN value through the user search. `written` is the value; its normal form is
    /// `written` itself when `is_norm`, else in `self.norm`.
    fn resolve(&mut self, dest: Dest, mut written: String, is_norm: bool) {
        let Some(users) = &self.users else {
            if !is_norm {
                std::mem::swap(&mut written, &mut self.norm);
            }
            self.pending.push((dest, written));
            return;
        };
        let norm = if is_norm { &written } else { &self.norm };
        let found = users.index.get(norm);
        let g = &mut self.entries[dest.group()];
        // Messages name the DN in normal form, however early or late it was mapped.
        let message = match found {
            Some(Found { disabled: true, .. }) => {
                debug!(member = %norm, group = %g.name, "disabled account left out");
                self.disabled += 1;
                return;
            }
            Some(Found { key: Some(key), .. }) => {
                match dest {
                    Dest::Member(_) => g.keys.push(UserKey::from(key)),
                    Dest::Mapped(_, k) => {
                        g.mapped_keys[k].insert(key.to_owned());
                    }
                }
                return;
            }
            Some(Found { key: None, .. }) => format!(
                "member `{norm}` of `{}` has no `{}`; skipped",
                g.name, self.key_attr
            ),
            None => format!(
                "member `{norm}` of `{}` is neither a user nor a group in the result; skipped",
                g.name
            ),
        };
        self.diagnostics.push(warn_at(&g.dn, message));
    }
}

/// Notes that `attr` is assumed to start no group's DN.
fn assume(assumed: &mut Vec<String>, attr: &str) {
    if !assumed.iter().any(|a| a.eq_ignore_ascii_case(attr)) {
        assumed.push(attr.to_ascii_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Origin;
    use crate::source::ldap::config::{Directory, LdapScope, MappedAttribute};

    fn cfg(key: &str, nested: bool) -> LdapSourceConfig {
        LdapSourceConfig {
            urls: vec!["ldap://localhost".to_owned()],
            starttls: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            base_dn: "dc=x".to_owned(),
            scope: LdapScope::Sub,
            directory: Directory::OpenLdap,
            group_filter: None,
            name_attr: "cn".to_owned(),
            description_attr: "description".to_owned(),
            member_attr: "member".to_owned(),
            member_kind: MemberKind::Dn,
            user_base_dn: Some("ou=people,dc=x".to_owned()),
            user_filter: None,
            user_key_attr: Some(key.to_owned()),
            range_size: 1000,
            exclude_disabled: false,
            attributes: vec![MappedAttribute {
                target_type: "vinyldns".to_owned(),
                path: vec!["admins".to_owned()],
                ldap_attr: "owner".to_owned(),
                kind: MappedKind::UserDns,
            }],
            nested,
            page_size: 100,
            timeout: std::time::Duration::from_secs(1),
            origin: Origin::Ldap {
                dn: "test".to_owned(),
            },
        }
    }

    /// The users the user search would find: `uid=<name>,ou=people,dc=x` keyed `<name>@x`.
    fn users() -> Users {
        let mut users = Users {
            index: Default::default(),
            pages: 1,
            entries: 0,
        };
        for name in ["ann", "bob", "cy", "d,e"] {
            let dn = normalize_dn(&format!("uid={},ou=people,dc=x", name.replace(',', "\\,")))
                .expect("a DN");
            users.index.insert(&dn, Some(&format!("{name}@x")), false);
        }
        users
    }

    /// What the groups came to: per group its keys, children and mapped keys, then the
    /// warnings; and whether the early reading was sound.
    type Outcome = (
        Vec<(
            BTreeSet<UserKey>,
            BTreeSet<GroupName>,
            Vec<BTreeSet<String>>,
        )>,
        Vec<String>,
        bool,
    );

    /// Reads `groups` (DN, members, owners) as the source does: early (users in after the first
    /// group, as when the user search ends mid-read) or everything at the end.
    fn read(cfg: &LdapSourceConfig, groups: &[Group], early: bool) -> Outcome {
        let at = At {
            cfg,
            server: "ldap://test",
        };
        let key = cfg.user_key_attr.as_deref().unwrap_or("uid");
        let mut g = Groups::new(cfg, key, "ou=people,dc=x", early);
        for (n, (dn, members, owners)) in groups.iter().enumerate() {
            let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            let name = normalize_dn(dn).expect("a DN");
            g.add(
                &at,
                Entry {
                    dn: (*dn).to_owned(),
                    attrs: vec![
                        ("cn".to_owned(), vec![name]),
                        ("member".to_owned(), strings(members)),
                        ("owner".to_owned(), strings(owners)),
                    ],
                    binary: Vec::new(),
                },
            )
            .expect("readable");
            if n == 0 && early {
                g.users_in(users());
            }
        }
        let sound = g.sound();
        g.finish();
        if g.waiting_for_users() {
            g.users_in(users());
        }
        let out = g
            .entries
            .into_iter()
            .map(|mut e| {
                e.settle();
                (e.members, e.children, e.mapped_keys)
            })
            .collect();
        let mut notes: Vec<String> = g.diagnostics.iter().map(|d| d.to_string()).collect();
        notes.sort();
        (out, notes, sound)
    }

    /// A group entry for [`read`]: its DN, members and owners.
    type Group<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);

    #[test]
    fn members_decided_while_groups_arrive_are_those_decided_after_the_last_group() {
        let g1: &[&str] = &[
            "uid=ann,ou=people,dc=x",
            "cn=late,ou=groups,dc=x",
            "uid=bob,ou=others,dc=x",
            "UID = Cy , OU=People,dc=X",
            "not a dn",
            " ",
            "cn=nobody,ou=groups,dc=x",
            "uid=d\\,e,ou=people,dc=x",
            "mail=zed@x,ou=people,dc=x",
        ];
        let owners: &[&str] = &["uid=ann,ou=people,dc=x", "cn=late,ou=groups,dc=x", "x"];
        let late: &[&str] = &["uid=ann,ou=people,dc=x", "cn=g1,ou=groups,dc=x"];
        // A group whose DN starts with `uid`, read after members starting with `uid` were
        // decided as users; then one starting with `mail`; then two groups with one DN.
        let uid_group: &[&str] = &["uid=ann,ou=people,dc=x"];
        let cases: Vec<Vec<Group>> = vec![
            vec![
                ("cn=g1,ou=groups,dc=x", g1, owners),
                ("cn=late,ou=groups,dc=x", late, &[]),
            ],
            vec![
                ("cn=g1,ou=groups,dc=x", g1, owners),
                ("uid=ann,ou=people,dc=x", uid_group, &[]),
            ],
            vec![
                ("cn=g1,ou=groups,dc=x", g1, owners),
                ("mail=zed@x,ou=people,dc=x", uid_group, &[]),
            ],
            vec![
                ("cn=g1,ou=groups,dc=x", g1, owners),
                ("cn=late,ou=groups,dc=x", late, &[]),
                ("CN=Late,ou=groups,dc=x", late, &[]),
            ],
        ];
        let mut sound = Vec::new();
        for key in ["uid", "mail"] {
            for nested in [true, false] {
                let cfg = cfg(key, nested);
                for case in &cases {
                    let early = read(&cfg, case, true);
                    let reference = read(&cfg, case, false);
                    assert!(reference.2, "deciding at the end is always sound");
                    if early.2 {
                        assert_eq!(early.0, reference.0, "{key} {nested} {case:?}");
                        assert_eq!(early.1, reference.1, "{key} {nested} {case:?}");
                    }
                    if key == "uid" && nested {
                        sound.push(early.2);
                    }
                }
            }
        }
        // The second case breaks the `uid` assumption, the third the `mail` one (a member
        // starting with `mail` was assumed a user's), the fourth has two groups with one DN.
        assert_eq!(sound, [true, false, false, false]);

        let (groups, notes, _) = read(&cfg("uid", true), &cases[0], true);
        let keys = |names: &[&str]| names.iter().map(|n| UserKey::from(*n)).collect();
        assert_eq!(groups[0].0, keys(&["Cy", "ann", "d,e"]));
        assert_eq!(
            groups[0].1,
            [GroupName::from("cn=late,ou=groups,dc=x")]
                .into_iter()
                .collect()
        );
        assert_eq!(groups[0].2, vec![["ann".to_owned()].into_iter().collect()]);
        assert_eq!(
            groups[1].1,
            [GroupName::from("cn=g1,ou=groups,dc=x")]
                .into_iter()
                .collect()
        );
        assert_eq!(notes.len(), 6, "{notes:#?}");
    }
}
