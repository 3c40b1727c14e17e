//! Sources: where the desired state comes from.
//!
//! A source only reads. [`load_desired`] reads every `[[source]]` of the config and merges what
//! they define into one [`Desired`], or fails: roster never plans from half a source, so any
//! problem in any source fails the whole load. Problems are collected rather than stopping at the
//! first, so that `roster validate` reports all of them at once, each at its `file:line:col`.
//!
//! Checks that need the whole desired state (a child that names no group, a group that is its
//! own child, a cycle, a group defined by two sources) run once, on the merged state, so that a
//! group of one source may have a child from another. To point at the offending text, each
//! source hands over, with its groups, where each child reference was written (`Loaded`).

pub mod ldap;
pub mod toml;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::config::{Diagnostic, SourceConfig};
use crate::model::{Desired, GroupName, Origin};

/// Loading the desired state failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The sources could be read but define an invalid desired state: every problem, one per
    /// line, in file order.
    #[error("{}", crate::diag::Lines(.0))]
    Invalid(Vec<Diagnostic>),
    /// An LDAP server could not be read completely: which server, doing what, what it said.
    #[error("ldap source {server}: {doing}: {message}")]
    Ldap {
        /// The server URL (or the list tried).
        server: String,
        /// What roster was doing (binding, searching which base).
        doing: String,
        /// What went wrong, in LDAP's words where it gave any.
        message: String,
    },
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What one source read, for the read report of a plan: a reviewer sees from it that the read
/// was whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceRead {
    /// A TOML file or folder.
    Toml {
        /// The file or folder.
        path: PathBuf,
        /// Desired-state files read.
        files: usize,
        /// Groups they define.
        groups: usize,
    },
    /// A directory.
    Ldap(ldap::LdapRead),
}

/// The desired state and what each source read to make it.
#[derive(Debug, Default)]
pub struct Load {
    /// The merged desired state.
    pub desired: Desired,
    /// One entry per source, in config order.
    pub reads: Vec<SourceRead>,
}

/// Reads every source and merges them into one desired state, then checks child references and
/// cycles across the merged state.
///
/// A group defined by two sources is an error naming both places. Fails with every problem
/// found, or with the first file that could not be read at all.
pub async fn load(sources: &[SourceConfig]) -> Result<Load, SourceError> {
    let mut merged = Loaded::default();
    for source in sources {
        let loaded = match source {
            SourceConfig::Toml(c) => read_toml(c)?,
            SourceConfig::Ldap(c) => ldap::read(c).await?,
        };
        merged.merge(loaded);
    }
    let reads = std::mem::take(&mut merged.reads);
    Ok(Load {
        desired: merged.finish()?,
        reads,
    })
}

/// [`load`], without the read report.
pub async fn load_desired(sources: &[SourceConfig]) -> Result<Desired, SourceError> {
    Ok(load(sources).await?.desired)
}

/// What `roster validate` checks without touching the network: every file source, read and
/// checked as [`load_desired`] does. Directory sources are not read; while one is configured, a
/// child that no file defines is not reported as unknown, since the directory may define it.
pub fn validate_offline(sources: &[SourceConfig]) -> Result<Desired, SourceError> {
    let mut merged = Loaded::default();
    for source in sources {
        match source {
            SourceConfig::Toml(c) => merged.merge(read_toml(c)?),
            SourceConfig::Ldap(_) => merged.incomplete = true,
        }
    }
    merged.finish()
}

/// Reads one TOML source; a path that cannot be read is an error at the config's `path` value.
fn read_toml(c: &crate::config::TomlSourceConfig) -> Result<Loaded, SourceError> {
    match toml::read(&c.path) {
        Err(SourceError::Io { path, source }) if path == c.path => {
            Err(SourceError::Invalid(vec![Diagnostic::at_origin(
                &c.origin,
                format!("cannot read source {}: {source}", path.display()),
            )]))
        }
        other => other,
    }
}

/// What one source read, before the checks that need every source: its groups, where each child
/// reference was written, and the problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The groups read, with their origins.
    pub desired: Desired,
    /// Every child reference, with where it was written.
    pub refs: Vec<ChildRef>,
    /// Problems found while reading.
    pub diagnostics: Vec<Diagnostic>,
    /// Names of groups that were named but could not be read (so references to them are not
    /// reported as unknown on top of the real problem).
    pub broken: BTreeSet<GroupName>,
    /// Whether some file could not be parsed at all; then its group names are unknown, and
    /// unknown-child errors would be noise, so they are not reported.
    pub incomplete: bool,
    /// What each source read.
    pub reads: Vec<SourceRead>,
}

/// A `children` entry: `parent` names `child`, written at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChildRef {
    /// The group whose child this is.
    pub parent: GroupName,
    /// The child's name, as written.
    pub child: GroupName,
    /// Where it was written.
    pub at: Origin,
}

impl Loaded {
    /// Adds another source's groups; a group both define is an error at the second definition.
    pub fn merge(&mut self, other: Loaded) {
        let Loaded {
            desired,
            refs,
            diagnostics,
            broken,
            incomplete,
            reads,
        } = other;
        self.reads.extend(reads);
        self.diagnostics.extend(diagnostics);
        self.broken.extend(broken);
        self.incomplete |= incomplete;
        if self.desired.groups.is_empty() && self.desired.origins.is_empty() {
            // The first source: nothing to clash with (a large directory's groups are not
            // moved one by one).
            self.desired = desired;
            self.refs.extend(refs);
            return;
        }
        let mut origins = desired.origins;
        for (name, group) in desired.groups {
            let origin = origins.remove(&name);
            if let Some(first) = self.desired.origins.get(&name) {
                if let Some(origin) = &origin {
                    self.diagnostics.push(Diagnostic::at_origin(
                        origin,
                        format!("group `{name}` is also defined by another source, at {first}"),
                    ));
                }
                continue;
            }
            if let Some(origin) = origin {
                self.desired.origins.insert(name.clone(), origin);
            }
            self.desired.groups.insert(name, group);
        }
        self.refs.extend(refs);
    }

    /// Checks child references and cycles, and returns the desired state if nothing is wrong.
    pub fn finish(mut self) -> Result<Desired, SourceError> {
        self.check_references();
        self.check_cycles();
        for w in self.diagnostics.iter().filter(|d| !d.is_error()) {
            tracing::warn!("{w}");
        }
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            let mut d = self.diagnostics;
            d.sort_by(|a, b| (&a.path, a.line, a.col).cmp(&(&b.path, b.line, b.col)));
            return Err(SourceError::Invalid(d));
        }
        Ok(self.desired)
    }

    /// Unknown children and groups that are their own child.
    fn check_references(&mut self) {
        for r in &self.refs {
            if r.child == r.parent {
                self.diagnostics.push(Diagnostic::at_origin(
                    &r.at,
                    format!("group `{}` is its own child", r.child),
                ));
            } else if !self.incomplete
                && !self.desired.groups.contains_key(&r.child)
                && !self.broken.contains(&r.child)
            {
                self.diagnostics.push(Diagnostic::at_origin(
                    &r.at,
                    format!(
                        "unknown child group `{}`: no desired group has this name",
                        r.child
                    ),
                ));
            }
        }
    }

    /// One error per cycle of child groups (self-references are reported on their own), at the
    /// reference from the cycle's first group (by name) to the next.
    fn check_cycles(&mut self) {
        let groups = &self.desired.groups;
        let edges = |g: &GroupName| -> Vec<&GroupName> {
            groups
                .get(g)
                .map(|g| {
                    g.children
                        .iter()
                        .filter(|c| *c != &g.name && groups.contains_key(*c))
                        .collect()
                })
                .unwrap_or_default()
        };
        for component in strongly_connected(groups.keys(), &edges) {
            if component.len() < 2 {
                continue;
            }
            // The first name of the component (they come sorted), and the shortest way back
            // to it inside the component.
            let start = component[0];
            let path = shortest_cycle(start, &component, &edges);
            let text = path
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(" → ");
            let next = path.get(1).copied().unwrap_or(start);
            let at = self
                .refs
                .iter()
                .find(|r| &r.parent == start && &r.child == next)
                .map(|r| r.at.clone())
                .or_else(|| self.desired.origins.get(start).cloned());
            let message = format!("cycle: {text}");
            match at {
                Some(at) => self.diagnostics.push(Diagnostic::at_origin(&at, message)),
                None => self
                    .diagnostics
                    .push(Diagnostic::error(start.as_str(), 0, 0, message)),
            }
        }
    }
}

/// Tarjan's strongly connected components, each sorted by name, iteratively (no recursion, so
/// deep hierarchies cannot overflow the stack).
fn strongly_connected<'a>(
    nodes: impl Iterator<Item = &'a GroupName>,
    edges: &dyn Fn(&GroupName) -> Vec<&'a GroupName>,
) -> Vec<Vec<&'a GroupName>> {
    let mut index: BTreeMap<&GroupName, usize> = BTreeMap::new();
    let mut low: BTreeMap<&GroupName, usize> = BTreeMap::new();
    let mut on_stack: BTreeSet<&GroupName> = BTreeSet::new();
    let mut stack: Vec<&GroupName> = Vec::new();
    let mut out = Vec::new();
    let mut next_index = 0;
    for root in nodes {
        if index.contains_key(root) {
            continue;
        }
        // (node, its successors, how many of them were visited)
        let mut work: Vec<(&GroupName, Vec<&GroupName>, usize)> = Vec::new();
        index.insert(root, next_index);
        low.insert(root, next_index);
        next_index += 1;
        stack.push(root);
        on_stack.insert(root);
        work.push((root, edges(root), 0));
        while let Some((node, succ, i)) = work.last_mut() {
            let node = *node;
            if let Some(&w) = succ.get(*i) {
                *i += 1;
                if !index.contains_key(w) {
                    index.insert(w, next_index);
                    low.insert(w, next_index);
                    next_index += 1;
                    stack.push(w);
                    on_stack.insert(w);
                    work.push((w, edges(w), 0));
                } else if on_stack.contains(w) {
                    let lw = index[w].min(low[node]);
                    low.insert(node, lw);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _, _)) = work.last() {
                let lp = low[parent].min(low[node]);
                low.insert(parent, lp);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack.remove(w);
                    component.push(w);
                    if w == node {
                        break;
                    }
                }
                component.sort();
                out.push(component);
            }
        }
    }
    out.sort();
    out
}

/// The shortest path `start → … → start` inside `component` (breadth first, visiting
/// successors in name order, so the result is deterministic).
fn shortest_cycle<'a>(
    start: &'a GroupName,
    component: &[&'a GroupName],
    edges: &dyn Fn(&GroupName) -> Vec<&'a GroupName>,
) -> Vec<&'a GroupName> {
    let inside: BTreeSet<&GroupName> = component.iter().copied().collect();
    let mut came_from: BTreeMap<&GroupName, &GroupName> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in edges(node) {
            if !inside.contains(next) {
                continue;
            }
            if next == start {
                // Walk back from `node` to `start`, then read it forwards.
                let mut back = Vec::new();
                let mut at = node;
                while at != start {
                    back.push(at);
                    match came_from.get(at) {
                        Some(prev) => at = prev,
                        None => break,
                    }
                }
                let mut cycle = vec![start];
                cycle.extend(back.into_iter().rev());
                cycle.push(start);
                return cycle;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Group;

    fn desired(edges: &[(&str, &[&str])]) -> Loaded {
        let mut loaded = Loaded::default();
        for (name, children) in edges {
            let mut g = Group::named(*name);
            g.children = children.iter().map(|c| GroupName::from(*c)).collect();
            for c in *children {
                loaded.refs.push(ChildRef {
                    parent: GroupName::from(*name),
                    child: GroupName::from(*c),
                    at: Origin::File {
                        path: "g.toml".into(),
                        line: 1,
                        col: 1,
                    },
                });
            }
            loaded.desired.groups.insert(GroupName::from(*name), g);
        }
        loaded
    }

    fn messages(loaded: Loaded) -> Vec<String> {
        match loaded.finish() {
            Ok(_) => Vec::new(),
            Err(SourceError::Invalid(d)) => d.into_iter().map(|d| d.message).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn each_cycle_is_reported_once_starting_at_its_first_name() {
        let loaded = desired(&[
            ("C", &["A"]),
            ("A", &["B"]),
            ("B", &["C", "D"]),
            ("D", &[]),
            ("Y", &["X"]),
            ("X", &["Y"]),
        ]);
        assert_eq!(
            messages(loaded),
            ["cycle: A → B → C → A", "cycle: X → Y → X"]
        );
    }

    #[test]
    fn the_shortest_cycle_is_named() {
        // A → B → A and A → C → D → A share one component; the short one is named.
        let loaded = desired(&[
            ("A", &["C", "B"]),
            ("B", &["A"]),
            ("C", &["D"]),
            ("D", &["A"]),
        ]);
        assert_eq!(messages(loaded), ["cycle: A → B → A"]);
    }

    #[test]
    fn a_deep_hierarchy_is_fine() {
        let names: Vec<String> = (0..20_000).map(|i| format!("g{i:05}")).collect();
        let mut loaded = Loaded::default();
        for (i, n) in names.iter().enumerate() {
            let mut g = Group::named(n.as_str());
            if let Some(next) = names.get(i + 1) {
                g.children.insert(GroupName::from(next.as_str()));
            }
            loaded.desired.groups.insert(GroupName::from(n.as_str()), g);
        }
        assert!(loaded.finish().is_ok());
    }
}
