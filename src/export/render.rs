//! Writing a [`Selection`] as desired-state TOML, in the format people write (see
//! `source/toml.rs`): a comment saying what the file is, then one `[[group]]` table per group in
//! name order, each with its `name`, `description`, `members` and `children`, comments for what the
//! desired state cannot hold, and the target's attributes in `[group.<type>]`.
//!
//! Values are written by the `toml` crate's serializer, names in comments by its writer (always a
//! one-line basic string), so that no name is escaped by hand. Nothing depends on the clock or on
//! the order of a hash map: the same selection gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use toml_writer::TomlWrite as _;

use super::{Entry, Header, Role, Selection};
use crate::model::{Attributes, Group, GroupKind, GroupName};
use crate::source::toml::TARGET_ATTRIBUTES;

/// The widest a list is written on one line; a longer one is written one item a line, which also
/// diffs better in review.
const WIDTH: usize = 100;

/// An export's text, and the groups it must read back as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The TOML text.
    pub text: String,
    /// The groups the text defines, as the TOML source should read them.
    pub expected: BTreeMap<GroupName, Group>,
}

/// Writes `sel` as desired-state TOML. Pure. Fails only if the `toml` serializer refuses a value
/// (which strings, lists of strings and tables of strings never are).
pub fn render(header: &Header, sel: &Selection) -> Result<Rendered, toml::ser::Error> {
    let mut text = intro(header, sel);
    let mut expected = BTreeMap::new();
    for (name, entry) in &sel.entries {
        text.push('\n');
        let group = write_group(&mut text, &header.type_name, sel, name, entry)?;
        expected.insert(name.clone(), group);
    }
    Ok(Rendered { text, expected })
}

/// The comment that opens the file: which target, which groups, and the groups left out.
fn intro(header: &Header, sel: &Selection) -> String {
    let target = quoted(&header.target);
    let which = if header.all {
        "every group but its system groups, as `roster export --all`"
    } else {
        "the groups in its managed scope, as `roster export`"
    };
    let mut out = format!(
        "# Target {target} ({}): {which} read them.\n\
         # Desired-state TOML, one [[group]] per group, in name order.\n",
        header.type_name
    );
    if !sel.left_out.is_empty() {
        out.push_str("#\n# Not written: groups of the target that roster never changes.\n");
        for (name, kind) in &sel.left_out {
            let _ = writeln!(out, "#   {} group {}", kind.word(), quoted(name.as_str()));
        }
    }
    out
}

/// One `[[group]]` table; returns the group as the TOML source will read it.
fn write_group(
    out: &mut String,
    type_name: &str,
    sel: &Selection,
    name: &GroupName,
    entry: &Entry,
) -> Result<Group, toml::ser::Error> {
    match &entry.role {
        Role::Selected => {}
        Role::Child { parent } => {
            let _ = writeln!(
                out,
                "# Outside the managed scope: written because {} names it as a child. roster\n\
                 # leaves it alone while it stays outside the scope.",
                quoted(parent.as_str())
            );
        }
        Role::Reference { kind, parent } => {
            let _ = writeln!(
                out,
                "# {} group of the target, written by name only because {} names it as a\n\
                 # child: roster never changes it, and its members are not written.",
                match kind {
                    GroupKind::External => "An external",
                    _ => "A system",
                },
                quoted(parent.as_str())
            );
            out.push_str("[[group]]\n");
            let _ = writeln!(out, "name = {}", value(name.as_str())?);
            return Ok(Group::named(name.clone()));
        }
    }
    let g = &entry.group;
    let mut back = Group::named(name.clone());
    out.push_str("[[group]]\n");
    let _ = writeln!(out, "name = {}", value(name.as_str())?);
    if let Some(d) = g.description.as_deref().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "description = {}", value(d)?);
        back.description = Some(d.to_owned());
    }
    if !g.members.is_empty() {
        let members: Vec<&str> = g.members.iter().map(|m| m.as_str()).collect();
        out.push_str(&list("members", &members)?);
        back.members = g.members.clone();
    }
    let children: BTreeSet<&GroupName> = g.children.iter().filter_map(|c| sel.child(c)).collect();
    if !children.is_empty() {
        let names: Vec<&str> = children.iter().map(|c| c.as_str()).collect();
        out.push_str(&list("children", &names)?);
        back.children = children.into_iter().cloned().collect();
    }
    if !entry.unmanaged.is_empty() {
        out.push_str("# Members the desired state cannot name; roster leaves them as they are:\n");
        for m in &entry.unmanaged {
            let _ = writeln!(out, "#   {} {}", m.what, quoted(&m.name));
        }
    }
    let missing: Vec<&GroupName> = g
        .children
        .iter()
        .filter(|c| sel.child(c).is_none())
        .collect();
    if !missing.is_empty() {
        out.push_str("# Children the target names but does not list as groups; not written:\n");
        for c in missing {
            let _ = writeln!(out, "#   {}", quoted(c.as_str()));
        }
    }
    if let Some(attrs) = g.extras.get(type_name) {
        let written = write_attributes(out, type_name, attrs)?;
        if !written.is_empty() {
            back.extras.insert(type_name.to_owned(), written);
        }
    }
    Ok(back)
}

/// The `[group.<type>]` table of the attributes the desired state can hold, in the order the
/// format lists them; the others as comments. Returns the attributes written, as the TOML source
/// reads them.
fn write_attributes(
    out: &mut String,
    type_name: &str,
    attrs: &Attributes,
) -> Result<Attributes, toml::ser::Error> {
    let known: Vec<&str> = TARGET_ATTRIBUTES
        .iter()
        .filter(|(t, _)| *t == type_name)
        .map(|(_, k)| *k)
        .collect();
    let mut table = String::new();
    let mut written = Attributes::new();
    let mut unwritten = Vec::new();
    for key in &known {
        let Some(v) = attrs.get(*key) else { continue };
        match v {
            // Empty is what the target holds when nothing is set; the planner takes an absent
            // attribute to mean "leave it", which is the same thing.
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => {
                let _ = writeln!(table, "{key} = {}", value(s)?);
                written.insert((*key).to_owned(), v.clone());
            }
            Value::Array(items) if items.is_empty() => {}
            Value::Array(items) if items.iter().all(Value::is_string) => {
                let set: BTreeSet<&str> = items.iter().filter_map(Value::as_str).collect();
                let items: Vec<&str> = set.into_iter().collect();
                table.push_str(&list(key, &items)?);
                written.insert((*key).to_owned(), Value::from(items));
            }
            Value::Object(m) if m.is_empty() => {}
            Value::Object(m) if m.values().all(Value::is_string) => {
                let strings: BTreeMap<&str, &str> = m
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                    .collect();
                let _ = writeln!(table, "{key} = {}", value(&strings)?);
                written.insert((*key).to_owned(), v.clone());
            }
            _ => unwritten.push((*key, v)),
        }
    }
    for (key, v) in attrs {
        if !known.contains(&key.as_str()) {
            unwritten.push((key, v));
        }
    }
    if !unwritten.is_empty() {
        let _ = writeln!(
            out,
            "# Not written, since the desired state cannot hold it; roster leaves it as it is:"
        );
        for (key, v) in unwritten {
            // JSON escapes every control character, so the value stays on its comment line.
            let json = serde_json::to_string(v).unwrap_or_default();
            let _ = writeln!(out, "#   {type_name}.{key} = {json}");
        }
    }
    if !table.is_empty() {
        let _ = writeln!(out, "[group.{type_name}]");
        out.push_str(&table);
    }
    Ok(written)
}

/// `key = [...]`: on one line when it fits in [`WIDTH`], else one item a line.
fn list(key: &str, items: &[&str]) -> Result<String, toml::ser::Error> {
    let values: Vec<String> = items.iter().map(|i| value(*i)).collect::<Result<_, _>>()?;
    let one = format!("{key} = [{}]", values.join(", "));
    if one.chars().count() <= WIDTH && !one.contains('\n') {
        return Ok(one + "\n");
    }
    let mut out = format!("{key} = [\n");
    for v in values {
        let _ = writeln!(out, "    {v},");
    }
    out.push_str("]\n");
    Ok(out)
}

/// A value as TOML writes it: a string quoted (and escaped) as its content needs, a table of
/// strings inline with its keys quoted where they must be.
fn value<T: Serialize + ?Sized>(v: &T) -> Result<String, toml::ser::Error> {
    let mut out = String::new();
    v.serialize(toml::ser::ValueSerializer::new(&mut out))?;
    Ok(out)
}

/// A name as a one-line TOML basic string, for comments: every control character (newlines
/// too) escaped, so the name cannot end its comment line.
fn quoted(s: &str) -> String {
    let mut out = String::new();
    let _ = out.value(toml_writer::TomlStringBuilder::new(s).as_basic());
    out
}
