//! LDIF for the LDAP tests: the deterministic test directory (a Rust port of
//! `gen_ldif.py`) and small entry builders.
//!
//! Everything lives under [`BASE_DN`] (`dc=example,dc=org`): users under `ou=people`, groups under
//! `ou=groups` and roster's bind account [`BIND_DN`] under `ou=services`. Values that are not LDIF
//! "safe strings" (non-ASCII such as `Zoë` or `数据组`, a leading space or colon, a trailing
//! space, ...) are written base64-encoded (`attr:: …`), so any UTF-8 value round-trips.
//!
//! This file depends on nothing else in `tests/support`, so a bench can include it on its own
//! (`#[path = "../tests/support/ldif.rs"] mod ldif;`).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The suffix of the test directory.
pub const BASE_DN: &str = "dc=example,dc=org";
/// The container of users.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
/// The container of groups.
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=org";
/// The container of service accounts.
pub const SERVICES_DN: &str = "ou=services,dc=example,dc=org";
/// roster's bind account: an ordinary (non-root) user, so size limits apply to it.
pub const BIND_DN: &str = "cn=roster,ou=services,dc=example,dc=org";
/// The password of [`BIND_DN`].
pub const BIND_PW: &str = "roster-secret";

/// Standard base64 (RFC 4648, with padding). Small and dependency-free on purpose.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Whether `value` can be written as is after `attr: ` (an RFC 2849 SAFE-STRING that also does
/// not end with a space, which some parsers strip).
pub fn is_safe_string(value: &str) -> bool {
    let bytes = value.as_bytes();
    let safe_char = |b: u8| matches!(b, 0x01..=0x09 | 0x0b..=0x0c | 0x0e..=0x7f);
    let safe_init = |b: u8| safe_char(b) && !matches!(b, b' ' | b':' | b'<');
    match bytes {
        [] => true,
        [first, ..] => {
            safe_init(*first) && bytes.iter().all(|&b| safe_char(b)) && !value.ends_with(' ')
        }
    }
}

/// One LDIF line `name: value\n`, or `name:: base64\n` when the value needs it.
/// Use `attr("dn", dn)` for the DN line.
pub fn attr(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("{name}:\n")
    } else if is_safe_string(value) {
        format!("{name}: {value}\n")
    } else {
        format!("{name}:: {}\n", base64(value.as_bytes()))
    }
}

/// Escapes an attribute value for use in a DN's RDN (RFC 4514): `Smith, John` becomes
/// `Smith\, John`. Non-ASCII characters stay as UTF-8.
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// The DN of user `uid` under `ou=people` (the value is escaped).
pub fn user_dn(uid: &str) -> String {
    format!("uid={},{PEOPLE_DN}", escape_dn_value(uid))
}

/// The DN of group `cn` under `ou=groups` (the value is escaped).
pub fn group_dn(cn: &str) -> String {
    format!("cn={},{GROUPS_DN}", escape_dn_value(cn))
}

/// A whole entry: the DN line, one line per `(attribute, value)` pair, then a blank line.
/// `dn` is used verbatim (escape RDN values with [`escape_dn_value`] yourself).
pub fn entry(dn: &str, attrs: &[(&str, &str)]) -> String {
    let mut out = attr("dn", dn);
    for (name, value) in attrs {
        out.push_str(&attr(name, value));
    }
    out.push('\n');
    out
}

/// The base entry, the `people`, `groups` and `services` OUs and roster's bind account
/// ([`BIND_DN`] / [`BIND_PW`]).
pub fn base() -> String {
    let mut out = entry(
        BASE_DN,
        &[
            ("objectClass", "top"),
            ("objectClass", "dcObject"),
            ("objectClass", "organization"),
            ("o", "Example"),
            ("dc", "example"),
        ],
    );
    for ou in ["people", "groups", "services"] {
        out.push_str(&entry(
            &format!("ou={ou},{BASE_DN}"),
            &[("objectClass", "organizationalUnit"), ("ou", ou)],
        ));
    }
    out.push_str(&entry(
        BIND_DN,
        &[
            ("objectClass", "organizationalRole"),
            ("objectClass", "simpleSecurityObject"),
            ("cn", "roster"),
            ("userPassword", BIND_PW),
        ],
    ));
    out
}

/// Whether `uid@example.org` is a valid `mail` value (IA5String, no spaces or specials).
fn mail_safe(uid: &str) -> bool {
    !uid.is_empty()
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

fn user_entry(uid: &str, cn: &str, sn: &str) -> String {
    let mail = format!("{uid}@example.org");
    let mut attrs = vec![
        ("objectClass", "inetOrgPerson"),
        ("uid", uid),
        ("cn", cn),
        ("sn", sn),
    ];
    if mail_safe(uid) {
        attrs.push(("mail", &mail));
    }
    entry(&user_dn(uid), &attrs)
}

/// An `inetOrgPerson` at [`user_dn`]`(uid)` with `uid`, `cn`, `sn` (= `cn`) and, when `uid` is
/// plain ASCII, `mail: uid@example.org` (`mail` cannot hold non-ASCII).
pub fn user(uid: &str, cn: &str) -> String {
    user_entry(uid, cn, cn)
}

/// Shared body of the member-list group builders. The object classes require at least one
/// member value: an empty list writes one empty value (the empty DN), as OpenLDAP setups do for
/// empty groups.
fn group_entry(
    class: &str,
    cn: &str,
    description: Option<&str>,
    member_attr: &str,
    members: &[&str],
) -> String {
    let mut attrs = vec![("objectClass", class), ("cn", cn)];
    if let Some(d) = description {
        attrs.push(("description", d));
    }
    if members.is_empty() {
        attrs.push((member_attr, ""));
    }
    attrs.extend(members.iter().map(|m| (member_attr, *m)));
    entry(&group_dn(cn), &attrs)
}

/// A `groupOfNames` at [`group_dn`]`(cn)` with `member` values (user or group DNs, verbatim).
/// An empty `member_dns` writes one empty `member` value (the schema requires one).
pub fn group_of_names(cn: &str, description: Option<&str>, member_dns: &[&str]) -> String {
    group_entry("groupOfNames", cn, description, "member", member_dns)
}

/// A `groupOfUniqueNames` at [`group_dn`]`(cn)` with `uniqueMember` values (DNs, verbatim,
/// optionally with a `#'0101'B` UID suffix). An empty list writes one empty value.
pub fn group_of_unique_names(
    cn: &str,
    description: Option<&str>,
    unique_member_dns: &[&str],
) -> String {
    group_entry(
        "groupOfUniqueNames",
        cn,
        description,
        "uniqueMember",
        unique_member_dns,
    )
}

/// A `posixGroup` (RFC 2307, nis schema) at [`group_dn`]`(cn)` with `gidNumber` and
/// `memberUid` values (user keys, not DNs); no `memberUid` at all when the list is empty.
pub fn posix_group(cn: &str, gid: u32, member_uids: &[&str]) -> String {
    let gid = gid.to_string();
    let mut attrs = vec![
        ("objectClass", "posixGroup"),
        ("cn", cn),
        ("gidNumber", gid.as_str()),
    ];
    attrs.extend(member_uids.iter().map(|m| ("memberUid", *m)));
    entry(&group_dn(cn), &attrs)
}

/// SplitMix64: a tiny deterministic PRNG, so the generated directory is the same on every run
/// and every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by multiply-high (bias is negligible for test data).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// `k` distinct numbers of `0..n`, sorted (Floyd's algorithm: O(k), not O(n)).
    fn sample(&mut self, n: usize, k: usize) -> BTreeSet<usize> {
        let mut chosen = BTreeSet::new();
        for j in n - k..n {
            let t = self.below(j + 1);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        chosen
    }
}

/// The DN of generated user number `i` (`uid=user00042,ou=people,dc=example,dc=org`).
pub fn directory_user_dn(i: usize) -> String {
    format!("uid=user{i:05},{PEOPLE_DN}")
}

/// The DN of generated group number `g` (`cn=group0042,ou=groups,dc=example,dc=org`).
pub fn directory_group_dn(g: usize) -> String {
    format!("cn=group{g:04},{GROUPS_DN}")
}

/// Streams the generated directory (see [`directory`]) to `out`.
pub fn write_directory_to(
    out: &mut impl Write,
    users: usize,
    groups: usize,
    per: usize,
) -> io::Result<()> {
    out.write_all(base().as_bytes())?;
    for i in 0..users {
        let uid = format!("user{i:05}");
        out.write_all(user_entry(&uid, &format!("User {i}"), &i.to_string()).as_bytes())?;
    }
    let per = per.min(users);
    let mut rng = SplitMix64(42);
    let mut members = String::new();
    for g in 0..groups {
        let cn = format!("group{g:04}");
        let mut text = format!(
            "dn: {}\nobjectClass: groupOfNames\ncn: {cn}\ndescription: Group number {g}\n",
            directory_group_dn(g)
        );
        members.clear();
        for m in rng.sample(users, per) {
            let _ = writeln!(members, "member: {}", directory_user_dn(m));
        }
        // Every 100th group nests the previous one as a child group.
        if g % 100 == 99 {
            let _ = writeln!(members, "member: {}", directory_group_dn(g - 1));
        }
        if members.is_empty() {
            members.push_str("member:\n");
        }
        text.push_str(&members);
        text.push('\n');
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// The deterministic test directory, like `gen_ldif.py USERS GROUPS PER`: [`base`], then `users`
/// `inetOrgPerson`s `uid=userNNNNN` (`cn: User N`, `sn: N`, `mail: userNNNNN@example.org`),
/// then `groups` `groupOfNames` `cn=groupNNNN` (`description: Group number N`) with `per`
/// distinct users each (fewer if there are fewer users; seeded, so always the same ones), and
/// every 100th group (`group0099`, `group0199`, …) also has the previous group as a member.
/// A group left without members gets one empty `member` value.
pub fn directory(users: usize, groups: usize, per: usize) -> String {
    let mut out = Vec::new();
    write_directory_to(&mut out, users, groups, per).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("generated LDIF is UTF-8")
}

/// Writes [`directory`]`(users, groups, per)` to the file at `path`, streaming (100,000 users
/// are tens of MB).
pub fn write_directory(path: &Path, users: usize, groups: usize, per: usize) -> io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    write_directory_to(&mut out, users, groups, per)?;
    out.flush()
}
