//! What VinylDNS would refuse of a plan, found with reads before anything is sent: the e-mail,
//! description and admin rules, the account's right to change each group, and the zones that
//! keep a group from deletion.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{CASE_INSENSITIVE, Listing, TYPE, VinylDnsTarget, api};
use crate::model::{GroupName, Observed};
use crate::plan::change::{Change, Plan};
use crate::plan::fold;
use crate::target::http::paging::{self, Cursored};
use crate::target::{ObserveError, Rejection, UserIds};

/// The server's rule for a group's e-mail, as an error message when it fails: one `@`, a local
/// part of letters, digits and `. _ + ! & -`, a domain of dot-separated labels (letters, digits,
/// inner hyphens, at most 63 characters) with at least one dot and at most `max_dots`, no leading,
/// trailing or doubled dot; and, when the server lists allowed domains, one of them (each entry,
/// `*` removed, matched as a suffix of the domain, as the server matches).
pub(super) fn email_rule(email: &str, domains: &[String], max_dots: usize) -> Result<(), String> {
    let refused = |why: String| Err(format!("VinylDNS refuses the e-mail \"{email}\": {why}"));
    let (local, domain) = match email.split_once('@') {
        Some(parts) => parts,
        None => return refused("it has no @".into()),
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+!&-".contains(c));
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !local_ok
        || !domain.split('.').all(label_ok)
        || email.starts_with('.')
        || email.ends_with('.')
        || email.contains("..")
    {
        return refused("it does not match the server's e-mail pattern".into());
    }
    let dots = domain.matches('.').count();
    if dots == 0 {
        return refused("its domain has no dot".into());
    }
    if dots > max_dots {
        return refused(format!(
            "its domain has {dots} dots, and the server allows at most {max_dots} after the @"
        ));
    }
    let allowed = domains.is_empty()
        || domains
            .iter()
            .any(|d| d == domain || domain.ends_with(&d.replace('*', "")));
    if !allowed {
        return refused(format!(
            "its domain is not one the server allows ({})",
            domains.join(", ")
        ));
    }
    Ok(())
}

/// Why an update's e-mail is refused: the new one, or the stored one, which every update sends
/// again.
pub(super) fn resent(changed: Option<&str>, why: String) -> String {
    match changed {
        Some(_) => why,
        None => format!("every update re-sends the group's stored e-mail, and {why}"),
    }
}

/// The server stores a description in a column of 256 characters.
pub(super) fn description_rule(d: &str) -> Option<String> {
    let n = d.chars().count();
    (n > 256)
        .then(|| format!("its description has {n} characters, and VinylDNS stores at most 256"))
}

/// Why admins none of whom is a user are refused.
pub(super) fn no_admin(names: &[String]) -> String {
    format!(
        "none of its admins ({}) is a VinylDNS user, and a group needs one (VinylDNS creates a \
         user at its first login): the server would refuse every update of the group",
        names.join(", ")
    )
}

impl VinylDnsTarget {
    /// Whether roster's account is a super user, found out with reads and remembered for the run:
    /// from the `isSuper` flag of its own entry among the admins of a group it administers, else
    /// from whether the groups listed for it without `ignoreAccess` go beyond its own (only a
    /// super or support user sees every group there). `None` when the API cannot tell (it is a
    /// member of every group and an admin of none).
    async fn super_status(&self) -> Result<Option<bool>, ObserveError> {
        let a = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if a.is_super.is_some() {
            return Ok(a.is_super);
        }
        let found = match (&a.id, a.admin_of.iter().next()) {
            (Some(me), Some(gid)) => {
                let path = api::group_admins(gid);
                let list: api::AdminList = self.read_json(&path, &[], None).await?;
                Some(list.admins.iter().any(|u| &u.id == me && u.is_super))
            }
            // A server that ignores `abridged`, or an account in every group: no read tells.
            _ if !a.identified || a.member_of >= a.groups => None,
            _ => {
                // Only whether it lists more than the account's own: its first groups tell.
                let mine = Listing {
                    abridged: true,
                    beyond: Some(a.member_of),
                    ..Listing::default()
                };
                let seen = self.list_groups(mine, true).await?;
                Some(seen.len() > a.member_of)
            }
        };
        self.account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_super = found;
        Ok(found)
    }

    /// The e-mail domains the server allows (empty: all). A server without the list (before
    /// VinylDNS 0.18.2, which had no domain rule) answers 404: no rule.
    async fn valid_domains(&self) -> Result<Vec<String>, ObserveError> {
        let path = api::VALID_DOMAINS;
        let resp = self
            .endpoint
            .reads()
            .retry_idempotent(|| {
                self.request(Method::GET, path, &[], None, None, &[StatusCode::NOT_FOUND])
            })
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        Ok(self.decode(&resp, &Method::GET, path, None)?)
    }

    /// Every zone, every page (`ignoreAccess=true`), for the groups they keep from deletion.
    async fn list_zones(&self) -> Result<Vec<api::Zone>, ObserveError> {
        let pages = paging::cursored(
            &format!("GET {}", api::ZONES),
            |z: &api::Zone| z.name.clone(),
            |z: &api::Zone| format!("\"{}\"", z.name),
            |start: Option<String>| async move {
                let mut q = vec![
                    ("maxItems", "100".to_owned()),
                    ("ignoreAccess", "true".to_owned()),
                ];
                if let Some(s) = start {
                    q.push(("startFrom", s));
                }
                let page: api::ZonePage = self.read_json(api::ZONES, &q, None).await?;
                Ok(Cursored {
                    items: page.zones,
                    next: page.next_id,
                })
            },
        )
        .await;
        self.paged(pages)
    }

    /// What [`Target::vet`](crate::target::Target::vet) finds: refuses what the server would refuse, per change: a create or update whose e-mail fails
    /// the server's rule (a membership-only update re-sends the stored e-mail, so that one is
    /// checked too), a description over 256 characters, admins none of whom is a user, a change
    /// to a group roster's account may not edit (it is neither a super user nor an admin of the
    /// group), an update that would take a non-super account's own admin seat away, and the
    /// deletion of a group that administers a zone or is named in a zone's ACL. It cannot see
    /// which groups own record sets: such a delete is refused by the server (400) when sent.
    pub(super) async fn vet_plan(
        &self,
        observed: &Observed,
        plan: &Plan,
    ) -> Result<Vec<Rejection>, ObserveError> {
        let mut out = Vec::new();
        if plan.changes.is_empty() {
            return Ok(out);
        }
        let ids = UserIds::of(observed, CASE_INSENSITIVE);
        let known = |names: &Value| -> (Vec<String>, usize) {
            let names: Vec<String> = names
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let n = names.iter().filter(|n| ids.get(n).is_some()).count();
            (names, n)
        };
        let writes = plan
            .changes
            .iter()
            .any(|c| !matches!(c, Change::DeleteGroup { .. }));
        let existing: BTreeSet<&GroupName> = plan
            .changes
            .iter()
            .map(Change::group)
            .filter(|g| observed.groups.contains_key(*g))
            .collect();
        let account = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let admin_of = |g: &GroupName| {
            observed
                .groups
                .get(g)
                .is_some_and(|o| account.admin_of.contains(&o.id))
        };
        let needs_super = !existing.iter().all(|g| admin_of(g));
        let deletes = plan
            .changes
            .iter()
            .any(|c| matches!(c, Change::DeleteGroup { .. }));
        // Three independent reads, at once: each is a call's latency before the first write.
        let (domains, is_super, zones) = tokio::try_join!(
            async {
                if writes {
                    self.valid_domains().await
                } else {
                    Ok(Vec::new())
                }
            },
            async {
                if needs_super {
                    self.super_status().await
                } else {
                    Ok(account.is_super)
                }
            },
            async {
                if deletes {
                    self.list_zones().await
                } else {
                    Ok(Vec::new())
                }
            },
        )?;
        let who = account.describe();
        // The right to change each existing group: one rejection covers all its changes.
        for g in &existing {
            if is_super == Some(false) && !admin_of(g) {
                out.push(Rejection::of_group(
                    g,
                    format!(
                        "{who} may not change this group: VinylDNS lets only a super user or an \
                         admin of the group change it, and the account is neither; make it an \
                         admin of the group or a super user"
                    ),
                ));
            }
        }
        let own = account.name.as_deref().map(|n| fold(n, CASE_INSENSITIVE));
        let locks_out = format!(
            "this would remove {who} from the admins of the group; it is no super user, so it \
             could not change the group again: keep it among the admins"
        );
        let mut emailed: BTreeSet<&GroupName> = BTreeSet::new();
        for (i, c) in plan.changes.iter().enumerate() {
            let group = c.group();
            let stored = observed.groups.get(group);
            if let Change::RemoveMember { member, .. } = c
                && own.as_deref() == Some(fold(member.as_str(), CASE_INSENSITIVE).as_str())
                && admin_of(group)
                && is_super != Some(true)
            {
                out.extend(Rejection::of_change(plan, i, locks_out.clone()));
            }
            let stored_email = stored
                .and_then(|o| o.group.extras.get(TYPE))
                .and_then(|a| a.get("email"))
                .and_then(Value::as_str);
            match c {
                Change::CreateGroup {
                    description,
                    attributes,
                    ..
                } => {
                    let email = attributes.get("email").and_then(Value::as_str);
                    if let Some(Err(why)) = email.map(|e| email_rule(e, &domains, self.email_dots))
                    {
                        out.extend(Rejection::of_change(plan, i, why));
                    }
                    if let Some(why) = description.as_deref().and_then(description_rule) {
                        out.extend(Rejection::of_change(plan, i, why));
                    }
                    let (names, found) = known(attributes.get("admins").unwrap_or(&Value::Null));
                    if found == 0 {
                        out.extend(Rejection::of_change(plan, i, no_admin(&names)));
                    }
                    emailed.insert(group);
                }
                Change::UpdateGroup { fields, .. } => {
                    if let Some(why) = fields
                        .get("description")
                        .and_then(|f| f.to.as_str())
                        .and_then(description_rule)
                    {
                        out.extend(Rejection::of_change(plan, i, why));
                    }
                    if let Some(f) = fields.get("admins") {
                        let (names, found) = known(&f.to);
                        if found == 0 {
                            out.extend(Rejection::of_change(plan, i, no_admin(&names)));
                        }
                        let keeps = own.as_ref().is_none_or(|own| {
                            names.iter().any(|n| fold(n, CASE_INSENSITIVE) == *own)
                        });
                        if account.desired && !keeps && admin_of(group) && is_super != Some(true) {
                            out.extend(Rejection::of_change(plan, i, locks_out.clone()));
                        }
                    }
                    if emailed.insert(group) {
                        let changed = fields.get("email").and_then(|f| f.to.as_str());
                        if let Some(Err(why)) = changed
                            .or(stored_email)
                            .map(|e| email_rule(e, &domains, self.email_dots))
                        {
                            out.push(Rejection::of_group(group, resent(changed, why)));
                        }
                    }
                }
                Change::AddMember { .. } | Change::RemoveMember { .. }
                    if stored.is_some() && emailed.insert(group) =>
                {
                    let changed = plan.changes.iter().find_map(|c| match c {
                        Change::UpdateGroup { group: g, fields } if g == group => {
                            fields.get("email").and_then(|f| f.to.as_str())
                        }
                        _ => None,
                    });
                    let email = changed.or(stored_email);
                    if let Some(Err(why)) = email.map(|e| email_rule(e, &domains, self.email_dots))
                    {
                        out.push(Rejection::of_group(group, resent(changed, why)));
                    }
                }
                Change::DeleteGroup { .. } => {
                    let Some(id) = stored.map(|o| o.id.as_str()) else {
                        continue;
                    };
                    if let Some(z) = zones.iter().find(|z| z.admin_group_id == id) {
                        out.extend(Rejection::of_change(
                            plan,
                            i,
                            format!(
                                "VinylDNS refuses to delete a group that administers a zone, and \
                                 this one administers zone \"{}\": give the zone another admin \
                                 group first",
                                z.name
                            ),
                        ));
                    } else if let Some(z) = zones.iter().find(|z| {
                        z.acl.as_ref().is_some_and(|a| {
                            a.rules.iter().any(|r| r.group_id.as_deref() == Some(id))
                        })
                    }) {
                        out.extend(Rejection::of_change(
                            plan,
                            i,
                            format!(
                                "VinylDNS refuses to delete a group named in a zone's ACL rule, \
                                 and zone \"{}\" has a rule for this one: remove the rule first",
                                z.name
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
