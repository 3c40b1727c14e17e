//! The safety rules that can refuse a whole plan before anything is written: the empty-source
//! guard, the deletion limit (`max_deletes`) and the shrink limit (`max_group_shrink`). Pure.
//!
//! The shrink limit catches what no protocol check sees: a source that answers completely but
//! wrongly (a filter typo, a wrong base, a directory restored from an old backup) and so returns
//! groups that are much smaller than they are. It looks at each group the target holds with at
//! least [`SHRINK_MIN_MEMBERS`] user members and refuses the plan when it would leave fewer than
//! `(1 − share) × N` of its `N` members, counting the members the plan adds as well as those it
//! removes. Children are not members and do not count. A group the plan deletes whole (`prune`)
//! is governed by `max_deletes`, not by this rule: the planner removes no members from it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::model::{Desired, GroupKind, GroupName, Observed};
use crate::plan::Policy;
use crate::plan::change::{Change, Plan};

/// The fewest user members a group must hold on the target for `max_group_shrink` to apply: in a
/// smaller group a reshuffle of two or three people is already half of it, and is no sign of a
/// broken source.
pub const SHRINK_MIN_MEMBERS: usize = 10;

/// A share of a group's members, from 0% to 100% to the hundredth of a percent: the
/// `max_group_shrink` of a `[[target]]`, and `--max-group-shrink`. Written `"50%"`, `"12.5%"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Share {
    /// Hundredths of a percent, `0..=10_000`: whole numbers, so that the boundary is exact.
    hundredths: u16,
}

/// Hundredths of a percent in 100%.
const WHOLE: u16 = 10_000;

impl Share {
    /// The default `max_group_shrink`: a plan may remove at most half of a group's members.
    pub const DEFAULT: Share = Share { hundredths: 5_000 };
    /// 100%: a group may lose all its members; the shrink limit is off.
    pub const ALL: Share = Share { hundredths: WHOLE };

    /// Whether taking a group from `before` members to `after` removes more than this share of
    /// it, that is whether `after < (1 − share) × before`. Leaving exactly `(1 − share) × before`
    /// is allowed. Computed in integers, so that no rounding moves the boundary.
    pub fn exceeded(self, before: usize, after: usize) -> bool {
        let kept = u128::from(WHOLE - self.hundredths);
        // usize is at most 64 bits, so neither product can overflow 128.
        (after as u128) * u128::from(WHOLE) < kept * (before as u128)
    }
}

/// Why a text is not a share such as `"50%"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// No `%` at the end: a bare number could be read as a fraction or a count.
    #[error("invalid percentage `{0}`: write it with a % sign, such as \"50%\"")]
    NoPercentSign(String),
    /// Not a plain decimal number before the `%`.
    #[error(
        "invalid percentage `{0}`: write a number from 0% to 100%, such as \"50%\" or \"12.5%\""
    )]
    NotANumber(String),
    /// More than two decimals.
    #[error("invalid percentage `{0}`: at most two decimals, such as \"12.25%\"")]
    TooPrecise(String),
    /// Above 100%.
    #[error("invalid percentage `{0}`: it is more than 100%")]
    OverWhole(String),
}

impl FromStr for Share {
    type Err = ShareError;

    /// `"0%"` to `"100%"`, with up to two decimals (`"12.5%"`, `"0.25%"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(number) = s.strip_suffix('%') else {
            return Err(ShareError::NoPercentSign(s.to_owned()));
        };
        let (whole, decimals) = number.split_once('.').unwrap_or((number, "00"));
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(decimals) {
            return Err(ShareError::NotANumber(s.to_owned()));
        }
        if decimals.len() > 2 {
            return Err(ShareError::TooPrecise(s.to_owned()));
        }
        // Digits only, so the only way to fail is a number too long for u32: over 100% anyway.
        let whole: u32 = whole
            .parse()
            .map_err(|_| ShareError::OverWhole(s.to_owned()))?;
        let decimals: u32 = format!("{decimals:0<2}")
            .parse()
            .map_err(|_| ShareError::NotANumber(s.to_owned()))?;
        let hundredths = whole
            .checked_mul(100)
            .and_then(|h| h.checked_add(decimals))
            .filter(|h| *h <= u32::from(WHOLE))
            .ok_or_else(|| ShareError::OverWhole(s.to_owned()))?;
        Ok(Share {
            hundredths: u16::try_from(hundredths)
                .map_err(|_| ShareError::OverWhole(s.to_owned()))?,
        })
    }
}

impl fmt::Display for Share {
    /// As it is written in the config: `50%`, `12.5%`, `0.25%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, decimals) = (self.hundredths / 100, self.hundredths % 100);
        match decimals {
            0 => write!(f, "{whole}%"),
            d if d % 10 == 0 => write!(f, "{whole}.{}%", d / 10),
            d => write!(f, "{whole}.{d:02}%"),
        }
    }
}

impl Serialize for Share {
    /// As it is written in the config (`"50%"`), so that a JSON plan shows the limit the reader
    /// would write.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Share {
    /// From a TOML string; the error names the percentage and what is wrong with it, and the
    /// config reader puts it at the value's position.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage in quotes, such as \"50%\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Share, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// One group the plan would shrink by more than `max_group_shrink` allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shrink {
    /// The group, as the target spells it.
    pub group: GroupName,
    /// Its user members on the target now.
    pub before: usize,
    /// Its user members once the plan is applied.
    pub after: usize,
}

/// A safety rule refused the plan; nothing is written to the target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More removals than `max_deletes` allows.
    #[error(
        "the plan removes {removals} members, children or groups, more than max_deletes = {limit}; \
         review it, then raise the limit for this run with --max-deletes {removals}"
    )]
    TooManyDeletes {
        /// Removals in the plan.
        removals: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The source returned no groups while the target has managed groups in scope.
    #[error(
        "the source returned no groups, but {managed} managed groups are in scope on the target; \
         refusing to treat that as the desired state (set allow_empty_source = true if it is)"
    )]
    EmptySource {
        /// Managed groups in scope on the target.
        managed: usize,
    },
    /// Groups would lose more than `max_group_shrink` of their members.
    #[error("{}", shrink_message(*.limit, .groups))]
    GroupShrink {
        /// The limit in force.
        limit: Share,
        /// Each group over it, sorted by name.
        groups: Vec<Shrink>,
    },
    /// A saved plan's target changed since the plan was made.
    #[error(
        "the target changed since the plan was made: {}; nothing was written to it, make a new \
         plan",
        .changed.join(", ")
    )]
    Stale {
        /// What changed, one line per group.
        changed: Vec<String>,
    },
}

/// The message of [`Refusal::GroupShrink`]: every group with its counts, then what to do.
fn shrink_message(limit: Share, groups: &[Shrink]) -> String {
    let each: Vec<String> = groups
        .iter()
        .map(|s| format!("\"{}\" {} → {} members", s.group, s.before, s.after))
        .collect();
    let (count, whose) = match groups.len() {
        1 => ("1 group".to_owned(), "its"),
        n => (format!("{n} groups"), "their"),
    };
    format!(
        "the plan shrinks {count} by more than max_group_shrink = {limit} of {whose} members: \
         {}; review it, then allow it for this run with --max-group-shrink 100%, or change \
         max_group_shrink for this target",
        each.join(", ")
    )
}

impl Refusal {
    /// The rule that refused, for machines: `empty_source`, `too_many_deletes`, `group_shrink`,
    /// `stale_plan`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::EmptySource { .. } => "empty_source",
            Refusal::TooManyDeletes { .. } => "too_many_deletes",
            Refusal::GroupShrink { .. } => "group_shrink",
            Refusal::Stale { .. } => "stale_plan",
        }
    }
}

impl Serialize for Refusal {
    /// `{"kind": ..., "message": ..., "details": {...}}`: the rule, the sentence a person reads,
    /// and the rule's figures (see the README's JSON plan).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// The figures of each rule, as a JSON object.
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Details<'a> {
            EmptySource { managed: usize },
            TooManyDeletes { removals: usize, limit: usize },
            GroupShrink { limit: Share, groups: &'a [Shrink] },
            Stale { changed: &'a [String] },
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            kind: &'static str,
            message: String,
            details: Details<'a>,
        }
        let details = match self {
            Refusal::EmptySource { managed } => Details::EmptySource { managed: *managed },
            Refusal::TooManyDeletes { removals, limit } => Details::TooManyDeletes {
                removals: *removals,
                limit: *limit,
            },
            Refusal::GroupShrink { limit, groups } => Details::GroupShrink {
                limit: *limit,
                groups,
            },
            Refusal::Stale { changed } => Details::Stale { changed },
        };
        Doc {
            kind: self.kind(),
            message: self.to_string(),
            details,
        }
        .serialize(s)
    }
}

/// Applies the safety rules that can refuse a whole plan, in this order: the empty-source guard,
/// the deletion limit, the shrink limit; the first that refuses is reported. Pure.
pub fn guard(
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
) -> Result<(), Refusal> {
    let managed = observed
        .groups
        .values()
        .filter(|g| g.kind == GroupKind::Managed)
        .count();
    if desired.groups.is_empty() && managed > 0 && !policy.allow_empty_source {
        return Err(Refusal::EmptySource { managed });
    }
    if plan.removals() > policy.max_deletes {
        return Err(Refusal::TooManyDeletes {
            removals: plan.removals(),
            limit: policy.max_deletes,
        });
    }
    let groups = shrunk(plan, observed, policy.max_group_shrink);
    if !groups.is_empty() {
        return Err(Refusal::GroupShrink {
            limit: policy.max_group_shrink,
            groups,
        });
    }
    Ok(())
}

/// The groups of at least [`SHRINK_MIN_MEMBERS`] user members that the plan would take below
/// what `limit` allows, sorted by name. Only member changes count: children are not members, and
/// a group deleted whole has no member changes (its deletion is `max_deletes`'s to limit).
fn shrunk(plan: &Plan, observed: &Observed, limit: Share) -> Vec<Shrink> {
    // Members added and removed, by group; the plan files changes under the target's spelling of
    // the name, which is how the target's groups are found below.
    let mut moved: BTreeMap<&GroupName, (usize, usize)> = BTreeMap::new();
    for change in &plan.changes {
        match change {
            Change::AddMember { group, .. } => moved.entry(group).or_default().0 += 1,
            Change::RemoveMember { group, .. } => moved.entry(group).or_default().1 += 1,
            _ => {}
        }
    }
    let held: HashMap<&GroupName, usize> = observed
        .groups
        .values()
        .map(|o| (&o.group.name, o.group.members.len()))
        .collect();
    moved
        .into_iter()
        .filter_map(|(group, (added, removed))| {
            // A group the target does not hold yet is created: it has nothing to lose.
            let before = *held.get(group)?;
            let after = (before + added).saturating_sub(removed);
            (before >= SHRINK_MIN_MEMBERS && limit.exceeded(before, after)).then(|| Shrink {
                group: group.clone(),
                before,
                after,
            })
        })
        .collect()
}
