//! The `toml` source: desired-state files.
//!
//! ```toml
//! [[group]]
//! name = "Paper Street Soap Company"
//! description = "Employees of the Paper Street Soap Company"
//! members = ["tdurden", "msinger"]        # user keys
//! children = ["Liposuction Technicians"]  # names of other desired groups
//! [group.contensis]
//! custom = { clientId = "PSSC" }
//! [group.vinyldns]
//! email = "soap@example.com"               # VinylDNS requires one for every group it holds
//! admins = ["tdurden"]                     # group admins; VinylDNS makes them members too
//! ```
//!
//! The source's `path` is one file, or a folder whose `*.toml` files (not hidden, not in
//! subfolders) are read in name order, so that messages and origins come out the same on every
//! run. Files are parsed with spans kept, so every problem is reported at its `file:line:col`,
//! and all problems are collected before failing. A member listed twice in one group counts
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{ChildRef, Loaded, SourceError};
use crate::diag::TextFile;
use crate::diag::toml::{RawTable, Resolver, unknown_key};
use crate::model::{Attributes, Desired, Group, GroupName, UserKey};

/// Reads desired-state files (one file, or a folder of `*.toml` files) and checks them, including
/// their child references and cycles, as the only source.
pub fn load(path: &Path) -> Result<Desired, SourceError> {
    read(path)?.finish()
}

/// The per-target attributes a desired-state file can hold, as (target type, key): the tables
/// `[group.contensis]` and `[group.vinyldns]` below. `roster export` writes these and no others.
pub const TARGET_ATTRIBUTES: &[(&str, &str)] = &[
    ("contensis", "custom"),
    ("vinyldns", "email"),
    ("vinyldns", "admins"),
];

/// Reads desired-state text as the file `path` would be read, with every check [`load`] makes
/// (child references and cycles included): `roster export` proves with it that what it writes
/// reads back as the groups it exported.
pub fn parse(path: &Path, text: &str) -> Result<Desired, SourceError> {
    let mut loaded = Loaded::default();
    read_file(path, text, &mut loaded);
    loaded.finish()
}

/// Reads desired-state files without the checks that need every source.
pub(crate) fn read(path: &Path) -> Result<Loaded, SourceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    let files = files(path).map_err(io(path))?;
    let mut loaded = Loaded::default();
    for file in &files {
        let text = fs::read_to_string(file).map_err(io(file))?;
        read_file(file, &text, &mut loaded);
    }
    loaded.reads.push(super::SourceRead::Toml {
        path: path.to_path_buf(),
        files: files.len(),
        groups: loaded.desired.groups.len(),
    });
    Ok(loaded)
}

/// One `[[group]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    /// The group's name; unique across the desired state.
    name: Spanned<String>,
    /// The description; when absent, the target's is left as it is.
    description: Option<String>,
    /// User keys of the direct members.
    #[serde(default)]
    members: Vec<Spanned<String>>,
    /// Names of the direct child groups, each a desired group.
    #[serde(default)]
    children: Vec<Spanned<String>>,
    /// Contensis attributes.
    contensis: Option<ContensisGroupFile>,
    /// VinylDNS attributes.
    vinyldns: Option<VinylDnsGroupFile>,
}

/// `[group.vinyldns]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VinylDnsGroupFile {
    /// The group's contact e-mail, which VinylDNS requires.
    email: Option<String>,
    /// User keys of the group's admins (members too, on VinylDNS).
    #[serde(default)]
    admins: Vec<Spanned<String>>,
}

/// `[group.contensis]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContensisGroupFile {
    /// The group's custom data (string values), such as `{ clientId = "PSSC" }`.
    custom: Option<BTreeMap<String, String>>,
}

/// Reads one file's groups into `out`, recording every problem.
fn read_file(path: &Path, text: &str, out: &mut Loaded) {
    let file = TextFile::new(path, text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            out.diagnostics.push(file.toml_error(&e));
            out.incomplete = true;
            return;
        }
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let mut r = Resolver::new(file, base);
    for (key, value) in root.into_inner() {
        let name = key.get_ref().as_ref();
        if name != "group" {
            r.error(
                key.span(),
                unknown_key(name, "at the top level", &["group"]),
            );
            continue;
        }
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            r.error(
                span,
                "`group` must be a list of tables: write [[group]] sections",
            );
            continue;
        };
        for item in items {
            let span = item.span();
            match item.into_inner() {
                DeValue::Table(table) => group(RawTable { span, table }, &mut r, out),
                _ => {
                    r.error(
                        span,
                        "`group` must be a list of tables: write [[group]] sections",
                    );
                }
            }
        }
    }
    out.diagnostics.extend(r.into_diagnostics());
}

/// One `[[group]]`: checks it and adds it to `out`.
fn group(table: RawTable<'_>, r: &mut Resolver<'_>, out: &mut Loaded) {
    let span = table.span.clone();
    // The name, read before the rest, so that a reference to a group with another problem is not
    // also reported as unknown.
    let raw_name = table
        .table
        .get("name")
        .and_then(|n| n.get_ref().as_str())
        .map(GroupName::from);
    let Ok(g) = table.read::<GroupFile>("[[group]]", r) else {
        out.broken.extend(raw_name);
        return;
    };
    let name = GroupName::from(g.name.get_ref().as_str());
    if name.as_str().trim().is_empty() {
        r.error(g.name.span(), "group name is empty");
        return;
    }
    if let Some(first) = out.desired.origins.get(&name) {
        r.error(
            g.name.span(),
            format!("duplicate group `{name}`; first defined at {first}"),
        );
        return;
    }
    let mut members = BTreeSet::new();
    for m in &g.members {
        if m.get_ref().trim().is_empty() {
            r.error(m.span(), format!("empty member in group `{name}`"));
        } else {
            members.insert(UserKey::from(m.get_ref().as_str()));
        }
    }
    let mut children = BTreeSet::new();
    for c in &g.children {
        let child = GroupName::from(c.get_ref().as_str());
        if child.as_str().trim().is_empty() {
            r.error(c.span(), format!("empty child name in group `{name}`"));
            continue;
        }
        out.refs.push(ChildRef {
            parent: name.clone(),
            child: child.clone(),
            at: r.file().origin(c.span()),
        });
        children.insert(child);
    }
    let mut extras = BTreeMap::new();
    if let Some(custom) = g.contensis.and_then(|c| c.custom) {
        let custom: serde_json::Map<String, serde_json::Value> = custom
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let attributes = Attributes::from([("custom".to_owned(), custom.into())]);
        extras.insert("contensis".to_owned(), attributes);
    }
    if let Some(v) = g.vinyldns {
        let mut attributes = Attributes::new();
        if let Some(email) = v.email {
            if email.trim().is_empty() {
                r.error(
                    span.clone(),
                    format!("empty vinyldns email in group `{name}`"),
                );
            }
            attributes.insert("email".to_owned(), email.into());
        }
        let mut admins = BTreeSet::new();
        for a in &v.admins {
            if a.get_ref().trim().is_empty() {
                r.error(a.span(), format!("empty admin in group `{name}`"));
                continue;
            }
            admins.insert(a.get_ref().clone());
        }
        if !v.admins.is_empty() {
            let admins: Vec<serde_json::Value> = admins.into_iter().map(Into::into).collect();
            attributes.insert("admins".to_owned(), admins.into());
        }
        extras.insert("vinyldns".to_owned(), attributes);
    }
    out.desired
        .origins
        .insert(name.clone(), r.file().origin(span));
    out.desired.groups.insert(
        name.clone(),
        Group {
            name,
            description: g.description,
            members,
            children,
            extras,
        },
    );
}

/// The desired-state files a source path stands for, in the order they are read.
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path)? {
        let file = entry?.path();
        let visible = file
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        if visible && file.extension().is_some_and(|e| e == "toml") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let mut loaded = Loaded::default();
        read_file(Path::new("g.toml"), text, &mut loaded);
        loaded.diagnostics.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn top_level_must_be_group_tables() {
        assert_eq!(
            problems("[group]\nname = \"A\"\n\n[grup]\n"),
            [
                "g.toml:1:1: `group` must be a list of tables: write [[group]] sections",
                "g.toml:4:2: unknown key `grup` at the top level (did you mean `group`?); \
                 expected one of `group`",
            ]
        );
    }

    #[test]
    fn contensis_table_allows_only_custom() {
        assert_eq!(
            problems("[[group]]\nname = \"A\"\n[group.contensis]\ncustoms = {}\n"),
            ["g.toml:4:1: unknown key `customs`, expected `custom`"]
        );
    }

    #[test]
    fn vinyldns_table_reads_email_and_sorted_admins() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("groups.toml");
        fs::write(
            &path,
            "[[group]]\nname = \"ops\"\n[group.vinyldns]\nemail = \"ops@example.com\"\n\
             admins = [\"zed\", \"amy\", \"zed\"]\n",
        )?;
        let desired = load(&path)?;
        let attrs = &desired.groups[&GroupName::from("ops")].extras["vinyldns"];
        assert_eq!(attrs["email"], "ops@example.com");
        assert_eq!(attrs["admins"], serde_json::json!(["amy", "zed"]));
        assert_eq!(
            problems("[[group]]\nname = \"A\"\n[group.vinyldns]\nemail = \"a@b\"\nadmin = []\n"),
            ["g.toml:5:1: unknown key `admin`, expected `email` or `admins`"]
        );
        Ok(())
    }

    #[test]
    fn a_single_file_is_a_source() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("groups.toml");
        fs::write(&path, "[[group]]\nname = \"A\"\nmembers = [\"x\", \"x\"]\n")?;
        let desired = load(&path)?;
        assert_eq!(desired.groups[&GroupName::from("A")].members.len(), 1);
        assert_eq!(files(&path)?, [path]);
        Ok(())
    }
}
