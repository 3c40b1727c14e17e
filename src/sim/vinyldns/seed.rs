//! The VinylDNS simulator's seed (`[vinyldns]` in a seed file): its users, credentials, groups,
//! zones and [`Behaviour`] settings, and the seed's validation.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::sim::faults::Faults;

/// The `[vinyldns]` table of a seed file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VinylDnsSeed {
    /// Key pairs, each signing as a user.
    pub credentials: Vec<SeedCredentials>,
    /// Users, by name (ids are generated).
    pub users: Vec<String>,
    /// Users who are super users (may update any group); created when not in `users`.
    pub super_users: Vec<String>,
    /// Users whose accounts are locked (their requests are refused with 403).
    pub locked_users: Vec<String>,
    /// Groups.
    pub group: Vec<SeedGroup>,
    /// Zones, each administered by a group.
    pub zone: Vec<SeedZone>,
    /// Faults to inject from the start.
    pub faults: Faults,
    /// Which of the plausible behaviours to show.
    pub behaviour: Behaviour,
}

impl Default for VinylDnsSeed {
    fn default() -> Self {
        Self {
            credentials: vec![SeedCredentials {
                access_key: "roster-access".into(),
                secret_key: "roster-secret".into(),
                user: "roster".into(),
            }],
            users: Vec::new(),
            super_users: vec!["roster".into()],
            locked_users: Vec::new(),
            group: Vec::new(),
            zone: Vec::new(),
            faults: Faults::default(),
            behaviour: Behaviour::default(),
        }
    }
}

/// One access key and secret key, and the user they sign as.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCredentials {
    /// The access key.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// The user's name (created when not listed in `users`).
    pub user: String,
}

/// A group of the seed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    /// Its name.
    pub name: String,
    /// Its e-mail.
    pub email: String,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// Member user names.
    #[serde(default)]
    pub members: Vec<String>,
    /// Admin user names (members too).
    #[serde(default)]
    pub admins: Vec<String>,
}

/// A zone of the seed: the group that administers it, and the groups its ACL rules and records
/// name (each of them keeps its group from being deleted).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedZone {
    /// The zone's name, such as `example.com.`.
    pub name: String,
    /// The name of the group that administers it.
    pub admin_group: String,
    /// Groups named by the zone's ACL rules.
    #[serde(default)]
    pub acl_groups: Vec<String>,
    /// Groups that own a record set in the zone.
    #[serde(default)]
    pub record_owners: Vec<String>,
}

/// The server's configuration and the behaviours a test may pick.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behaviour {
    /// The e-mail domains groups may use (the server's `valid-email-config.email-domains`);
    /// empty allows every domain. `*.example.com` allows any domain ending in `.example.com`;
    /// as on the server, every entry is matched as a suffix of the domain.
    pub valid_email_domains: Vec<String>,
    /// The most dots the domain of a group's e-mail may hold (the server's
    /// `valid-email-config.number-of-dots`, 2 by default).
    pub email_dots: usize,
    /// Whether `GET /groups` honours `abridged=true` (each group's lists cut to the caller's own
    /// id); `false` shows a server from before that parameter, which lists everyone.
    pub abridged_lists: bool,
    /// Whether group names are unique without regard to case.
    pub case_insensitive_names: bool,
    /// A broken server for tests: `GET /groups` ignores `startFrom`, so every page repeats the
    /// first one and its cursor.
    pub repeat_group_pages: bool,
    /// The most groups `GET /groups` lists a page (`maxItems` above it is a 400): 3000 on
    /// current servers (`MembershipRouting`); 100 shows an older server as its documentation
    /// described it.
    pub group_page_limit: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            valid_email_domains: Vec::new(),
            email_dots: 2,
            abridged_lists: true,
            case_insensitive_names: true,
            repeat_group_pages: false,
            group_page_limit: 3000,
        }
    }
}

impl VinylDnsSeed {
    /// Every problem with the seed (duplicate names, unknown users, groups without an admin), or
    /// nothing.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        // Hashed: a large seed names a user for every membership.
        let users: HashSet<&str> = self
            .users
            .iter()
            .chain(&self.super_users)
            .chain(&self.locked_users)
            .chain(self.credentials.iter().map(|c| &c.user))
            .map(String::as_str)
            .collect();
        let mut names = BTreeSet::new();
        for g in &self.group {
            if !names.insert(g.name.to_lowercase()) {
                problems.push(format!("vinyldns: group \"{}\" is listed twice", g.name));
            }
            if g.email.trim().is_empty() {
                problems.push(format!("vinyldns: group \"{}\" has no email", g.name));
            }
            if g.admins.is_empty() {
                problems.push(format!("vinyldns: group \"{}\" has no admin", g.name));
            }
            for u in g.members.iter().chain(&g.admins) {
                if !users.contains(u.as_str()) {
                    problems.push(format!(
                        "vinyldns: group \"{}\" names unknown user \"{u}\"",
                        g.name
                    ));
                }
            }
        }
        for z in &self.zone {
            for g in std::iter::once(&z.admin_group)
                .chain(&z.acl_groups)
                .chain(&z.record_owners)
            {
                if !names.contains(&g.to_lowercase()) {
                    problems.push(format!(
                        "vinyldns: zone \"{}\" names unknown group \"{g}\"",
                        z.name
                    ));
                }
            }
        }
        let mut keys = BTreeSet::new();
        for c in &self.credentials {
            if !keys.insert(&c.access_key) {
                problems.push(format!(
                    "vinyldns: access key \"{}\" is listed twice",
                    c.access_key
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
