//! What the shared end-to-end scenarios ([`super::suite`]) need to know of one target: how to seed
//! its simulator, which connector keys its config takes, what a desired group needs on top of
//! [`super::group`], and how to read the simulator's state and call log.

use std::fmt::Debug;

use roster::sim::SimKind;
use roster::sim::control::SimControl;
use roster::sim::faults::Faults;
use roster::target::Target;

use super::{SECRET, World};

/// `["a", "b"]` without the brackets: TOML strings, comma-separated.
pub fn quoted(v: &[&str]) -> String {
    v.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One target as the shared scenarios drive it.
pub trait Harness {
    /// The simulator the config's target points at.
    const KIND: SimKind;
    /// The simulator's handle (clones share the state).
    type Sim: SimControl;
    /// The connector roster builds for this target.
    type Connector: Target + Debug;

    /// The connector keys (credentials) of the target, below `name`, `type` and `url`.
    fn keys() -> String;
    /// A whole seed file: these users and these groups with these members, and the roster
    /// account's credentials (the secret is [`SECRET`]).
    fn seed(users: &[&str], groups: &[(&str, &[&str])]) -> String;
    /// What a desired group of the target needs after [`super::group`]'s lines.
    fn group_extra(_name: &str, _members: &[&str]) -> String {
        String::new()
    }
    /// The world's simulator of this kind.
    fn sim(w: &World) -> &Self::Sim;
    /// Whether a logged call is a write (not a read, not a login or token request).
    fn is_write(call: &str) -> bool;
    /// How many requests changed the simulator's state.
    fn writes(w: &World) -> usize;
    /// The names of every group, as stored.
    fn group_names(w: &World) -> Vec<String>;
    /// The members of the group of this name, sorted; `None` when there is no such group.
    fn members_of(w: &World, group: &str) -> Option<Vec<String>>;
    /// The id of the group of this name.
    fn group_id(w: &World, group: &str) -> String;
    /// A connector for the world's target, built as `roster` builds it.
    fn connector(w: &World) -> Self::Connector;

    /// Every request the simulator received, as `"METHOD /path?query"`.
    fn calls_of(sim: &Self::Sim) -> Vec<String> {
        sim.calls()
    }
    /// Replaces the simulator's faults.
    fn set_faults_of(sim: &Self::Sim, f: Faults) {
        sim.set_faults(f);
    }
    /// Forgets the calls logged so far.
    fn clear_calls(w: &World) {
        Self::sim(w).clear_calls();
    }
    /// Every request the world's simulator received.
    fn calls(w: &World) -> Vec<String> {
        Self::calls_of(Self::sim(w))
    }
    /// The writes among the calls.
    fn write_calls(w: &World) -> Vec<String> {
        Self::calls(w)
            .into_iter()
            .filter(|c| Self::is_write(c))
            .collect()
    }
    /// Replaces the world's simulator's faults.
    fn set_faults(w: &World, f: Faults) {
        Self::set_faults_of(Self::sim(w), f);
    }
    /// The members of a group that must exist.
    fn members(w: &World, group: &str) -> Vec<String> {
        Self::members_of(w, group).unwrap_or_else(|| panic!("no group {group}"))
    }
    /// A desired group of this target.
    fn group(name: &str, description: &str, members: &[&str], children: &[&str]) -> String {
        super::group(name, description, members, children) + &Self::group_extra(name, members)
    }
}

/// Starts the simulators with a [`Harness::seed`] of these users and groups (name, members) and
/// writes a config whose one target is `H`'s, with `groups` as the desired state.
pub async fn world<H: Harness>(
    users: &[&str],
    seeded: &[(&str, &[&str])],
    groups: &str,
    target_extra: &str,
) -> World {
    let seed = H::seed(users, seeded);
    World::with_target(H::KIND, &seed, &H::keys(), groups, target_extra).await
}

/// `users = [...]` and `[[<table>.group]]` entries of a seed.
fn seed_body(table: &str, users: &[&str], groups: &[(&str, &[&str])]) -> String {
    let mut s = format!("users = [{}]\n", quoted(users));
    for (name, members) in groups {
        s += &format!(
            "[[{table}.group]]\nname = {name:?}\nmembers = [{}]\n",
            quoted(members)
        );
    }
    s
}

/// Contensis: OAuth client credentials.
pub struct Contensis;

impl Harness for Contensis {
    const KIND: SimKind = SimKind::Contensis;
    type Sim = roster::sim::contensis::ContensisSim;
    type Connector = roster::target::contensis::ContensisTarget;

    fn keys() -> String {
        "client_id = \"roster\"\nclient_secret_file = \"secret\"\n".into()
    }
    fn seed(users: &[&str], groups: &[(&str, &[&str])]) -> String {
        format!(
            "[contensis]\nclient_id = \"roster\"\nclient_secret = \"{SECRET}\"\n{}",
            seed_body("contensis", users, groups)
        )
    }
    fn sim(w: &World) -> &Self::Sim {
        &w.sim.contensis
    }
    fn is_write(call: &str) -> bool {
        !call.starts_with("GET ") && !call.contains("/authenticate/connect/token")
    }
    fn writes(w: &World) -> usize {
        w.sim.contensis.writes()
    }
    fn group_names(w: &World) -> Vec<String> {
        w.sim.contensis.group_names()
    }
    fn members_of(w: &World, group: &str) -> Option<Vec<String>> {
        let g = w.sim.contensis.group(group)?;
        Some(g.members.into_iter().collect())
    }
    fn group_id(w: &World, group: &str) -> String {
        w.sim.contensis.group(group).expect("group").id
    }
    fn connector(w: &World) -> Self::Connector {
        super::contensis(w)
    }
}

/// VinylDNS: SigV4 keys; the roster account is a super user; every group's first member is its
/// admin, and its e-mail is `<name>@example.com`.
pub struct VinylDns;

/// A VinylDNS seed with these users, groups (admins and members) and the roster account, a super
/// user or not.
pub fn vinyldns_seed(
    users: &[&str],
    groups: &[(&str, &[&str], &[&str])],
    super_user: bool,
) -> String {
    let supers = if super_user { "[\"roster\"]" } else { "[]" };
    let mut s = format!(
        "[vinyldns]\nusers = [{}]\nsuper_users = {supers}\n\n[[vinyldns.credentials]]\n\
         access_key = \"roster-access\"\nsecret_key = \"{SECRET}\"\nuser = \"roster\"\n\n",
        quoted(users)
    );
    for (name, members, admins) in groups {
        s += &format!(
            "[[vinyldns.group]]\nname = {name:?}\nemail = \"{name}@example.com\"\nmembers = [{}]\n\
             admins = [{}]\n\n",
            quoted(members),
            quoted(admins)
        );
    }
    s
}

impl Harness for VinylDns {
    const KIND: SimKind = SimKind::VinylDns;
    type Sim = roster::sim::vinyldns::VinylDnsSim;
    type Connector = roster::target::vinyldns::VinylDnsTarget;

    fn keys() -> String {
        "access_key = \"roster-access\"\nsecret_key_file = \"secret\"\n".into()
    }
    fn seed(users: &[&str], groups: &[(&str, &[&str])]) -> String {
        let groups: Vec<(&str, &[&str], &[&str])> = groups
            .iter()
            .map(|(name, members)| (*name, *members, &members[..1]))
            .collect();
        vinyldns_seed(users, &groups, true)
    }
    fn group_extra(name: &str, members: &[&str]) -> String {
        format!(
            "[group.vinyldns]\nemail = \"{name}@example.com\"\nadmins = [{}]\n\n",
            quoted(&members[..1])
        )
    }
    fn sim(w: &World) -> &Self::Sim {
        &w.sim.vinyldns
    }
    fn is_write(call: &str) -> bool {
        !call.starts_with("GET ")
    }
    /// The simulator counts no writes; every write it received is counted instead.
    fn writes(w: &World) -> usize {
        Self::write_calls(w).len()
    }
    fn group_names(w: &World) -> Vec<String> {
        w.sim
            .vinyldns
            .groups()
            .into_iter()
            .map(|g| g.name)
            .collect()
    }
    /// The members, less roster's own account: VinylDNS makes the creating account an admin and
    /// a member of every group, and roster keeps that seat unless the desired state names it.
    fn members_of(w: &World, group: &str) -> Option<Vec<String>> {
        w.sim.vinyldns.group(group)?;
        let mut names = w.sim.vinyldns.member_names(group);
        names.retain(|n| n != "roster");
        Some(names)
    }
    fn group_id(w: &World, group: &str) -> String {
        w.sim.vinyldns.group(group).expect("group").id
    }
    fn connector(w: &World) -> Self::Connector {
        let config = w.config();
        let t = &config.targets[0];
        let roster::config::TargetKind::VinylDns(c) = &t.kind else {
            panic!("the world's target is not a VinylDns target");
        };
        roster::target::vinyldns::VinylDnsTarget::new(
            &t.name,
            c,
            reqwest::Client::new(),
            t.concurrency,
        )
    }
}

/// Crafter Studio 4.x (API 2), whose access token is the secret.
pub struct Crafter;

impl Harness for Crafter {
    const KIND: SimKind = SimKind::Crafter;
    type Sim = roster::sim::crafter::CrafterSim;
    type Connector = roster::target::crafter::CrafterTarget;

    fn keys() -> String {
        "token_file = \"secret\"\n".into()
    }
    fn seed(users: &[&str], groups: &[(&str, &[&str])]) -> String {
        format!(
            "[crafter]\ntoken = \"{SECRET}\"\n{}",
            seed_body("crafter", users, groups)
        )
    }
    fn sim(w: &World) -> &Self::Sim {
        &w.sim.crafter
    }
    fn is_write(call: &str) -> bool {
        !call.starts_with("GET ") && !call.contains("/security/login.json")
    }
    fn writes(w: &World) -> usize {
        w.sim.crafter.writes()
    }
    fn group_names(w: &World) -> Vec<String> {
        w.sim.crafter.groups().into_iter().map(|g| g.name).collect()
    }
    fn members_of(w: &World, group: &str) -> Option<Vec<String>> {
        let g = w.sim.crafter.group(group)?;
        Some(g.members.into_iter().collect())
    }
    fn group_id(w: &World, group: &str) -> String {
        w.sim.crafter.group(group).expect("group").id.to_string()
    }
    /// Redirects are never followed, as in `roster`.
    fn connector(w: &World) -> Self::Connector {
        let config = w.config();
        let t = &config.targets[0];
        let roster::config::TargetKind::Crafter(c) = &t.kind else {
            panic!("the world's target is not a Crafter target");
        };
        roster::target::crafter::CrafterTarget::new(
            &t.name,
            c,
            roster::target::http::client(t.timeout, None).expect("client"),
            t.concurrency,
        )
    }
}

/// UiPath Identity: OAuth client credentials for the simulator's default partition.
pub struct UiPath;

impl Harness for UiPath {
    const KIND: SimKind = SimKind::UiPath;
    type Sim = roster::sim::uipath::UiPathSim;
    type Connector = roster::target::uipath::UiPathTarget;

    fn keys() -> String {
        format!(
            "partition_global_id = \"{}\"\nclient_id = \"roster\"\nclient_secret_file = \"secret\"\n",
            roster::sim::uipath::DEFAULT_PARTITION
        )
    }
    fn seed(users: &[&str], groups: &[(&str, &[&str])]) -> String {
        format!(
            "[uipath]\nclient_id = \"roster\"\nclient_secret = \"{SECRET}\"\n{}",
            seed_body("uipath", users, groups)
        )
    }
    fn sim(w: &World) -> &Self::Sim {
        &w.sim.uipath
    }
    /// Token requests are not logged as calls; directory lookups (`POST …/Directory/…`) read.
    fn is_write(call: &str) -> bool {
        !call.starts_with("GET ") && !call.contains("/api/Directory/")
    }
    fn writes(w: &World) -> usize {
        w.sim.uipath.writes()
    }
    fn group_names(w: &World) -> Vec<String> {
        w.sim.uipath.group_names()
    }
    fn members_of(w: &World, group: &str) -> Option<Vec<String>> {
        let g = w.sim.uipath.group(group)?;
        Some(g.members.into_iter().collect())
    }
    fn group_id(w: &World, group: &str) -> String {
        w.sim.uipath.group(group).expect("group").id
    }
    fn connector(w: &World) -> Self::Connector {
        let config = w.config();
        let t = &config.targets[0];
        let roster::config::TargetKind::UiPath(c) = &t.kind else {
            panic!("the world's target is not a UiPath target");
        };
        roster::target::uipath::UiPathTarget::new(&t.name, c, reqwest::Client::new(), t.concurrency)
    }
}
