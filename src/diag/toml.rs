//! The spanned-TOML reader: toml tables read with the position of every key and value kept, so
//! that each problem becomes a `file:line:col` [`Diagnostic`].
//!
//! A [`RawTable`] is one table of a parsed document. It is read into a `deny_unknown_fields`
//! struct through a [`Resolver`], which records every problem (an unknown key, with the known key
//! it most likely meant; a bad value, at its own position) instead of stopping at the first, and
//! turns serde's words (fields, variants) into a config's (keys, values). The keys a struct
//! accepts are asked of its derived `Deserialize` ([`keys_of`]), so there is one list of them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Diagnostic, TextFile};

/// Marks that a problem was found and already recorded as a diagnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reported;

/// Turns one file's serde shapes (the config, a desired-state file) into checked values, collecting
/// every problem on the way.
#[derive(Debug)]
pub(crate) struct Resolver<'a> {
    file: TextFile<'a>,
    base: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Resolver<'a> {
    /// A resolver for `file`, whose relative paths are relative to `base`.
    pub fn new(file: TextFile<'a>, base: &'a Path) -> Self {
        Self {
            file,
            base,
            diagnostics: Vec::new(),
        }
    }

    /// The file being read.
    pub fn file(&self) -> &TextFile<'a> {
        &self.file
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) -> Reported {
        let d = self.file.error(span, message);
        self.diagnostics.push(d);
        Reported
    }

    /// Records a warning at `span`.
    pub fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.file.warning(span, message);
        self.diagnostics.push(d);
    }

    /// Whether any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The diagnostics recorded, in the order of their positions in the file.
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.col));
        self.diagnostics
    }

    /// Deserializes a spanned toml value, recording the error (at its position) if it fails.
    ///
    /// serde stops at the first bad value. For a table, so that every bad value is reported at
    /// once, the key the error is in is then set aside and the rest is tried again, until it
    /// succeeds or fails only for want of a key set aside.
    pub fn deserialize<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
    ) -> Result<T, Reported> {
        let span = value.span();
        let mut table = match value.into_inner() {
            DeValue::Table(table) => table,
            other => {
                return T::deserialize(Spanned::new(span, other).into_deserializer())
                    .map_err(|e| self.toml_error(&e));
            }
        };
        let mut set_aside: Vec<String> = Vec::new();
        let mut failed = false;
        loop {
            let attempt = Spanned::new(span.clone(), DeValue::Table(table.clone()));
            let e = match T::deserialize(attempt.into_deserializer()) {
                Ok(v) if !failed => return Ok(v),
                Ok(_) => return Err(Reported),
                Err(e) => e,
            };
            let missing_aside = set_aside
                .iter()
                .any(|k| e.message() == format!("missing field `{k}`"));
            if missing_aside {
                return Err(Reported);
            }
            self.toml_error(&e);
            failed = true;
            // The key the error is under: the last one that starts before it (a value written
            // under a `[table.sub]` header comes after the header's key).
            let at = e.span().map(|s| s.start);
            let culprit = at.and_then(|at| {
                table
                    .keys()
                    .filter(|k| k.span().start <= at)
                    .max_by_key(|k| k.span().start)
                    .cloned()
            });
            let Some(culprit) = culprit else {
                return Err(Reported);
            };
            set_aside.push(culprit.get_ref().to_string());
            table.remove(&culprit);
        }
    }

    /// Records a toml error at its position, in a config's words.
    fn toml_error(&mut self, e: &toml::de::Error) -> Reported {
        let mut d = self.file.toml_error(e);
        // serde speaks of fields and variants; a config has keys and values.
        if let Some(rest) = d.message.strip_prefix("missing field ") {
            d.message = format!("missing key {rest}");
        } else if let Some(rest) = d.message.strip_prefix("unknown field ") {
            d.message = format!("unknown key {rest}");
        } else if let Some(rest) = d.message.strip_prefix("unknown variant ") {
            d.message = format!("unknown value {rest}");
        }
        self.diagnostics.push(d);
        Reported
    }

    /// A path from the config, made absolute against the config file's folder.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }
}

/// One `[[source]]` or `[[target]]` table of the document: its header's span and its keys.
pub(crate) struct RawTable<'i> {
    /// The span of the `[[…]]` header.
    pub span: Range<usize>,
    /// The keys.
    pub table: DeTable<'i>,
}

impl<'i> RawTable<'i> {
    /// The table's `type`, with its span; records an error (listing `known`) when it is missing
    /// or not a string.
    pub fn kind(
        &self,
        what: &str,
        known: &[&str],
        r: &mut Resolver<'_>,
    ) -> Result<Spanned<String>, Reported> {
        match self.table.get("type") {
            None => Err(r.error(
                self.span.clone(),
                format!(
                    "missing key `type` in [[{what}]]; known types: {}",
                    backticked(known)
                ),
            )),
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Ok(Spanned::new(v.span(), s.to_owned())),
                None => Err(r.error(
                    v.span(),
                    format!("`type` must be a string, one of {}", backticked(known)),
                )),
            },
        }
    }

    /// Deserializes the table into `T`, recording an error for each key `T` does not have (and
    /// ignoring that key, so that the rest of the table is still checked).
    pub fn read<T: DeserializeOwned>(
        self,
        what: &str,
        r: &mut Resolver<'_>,
    ) -> Result<T, Reported> {
        let keys = keys_of::<T>();
        let mut known = DeTable::new();
        for (key, value) in self.table {
            let name = key.get_ref().as_ref();
            if keys.contains(&name) {
                known.insert(key, value);
            } else {
                r.error(key.span(), unknown_key(name, &format!("in {what}"), keys));
            }
        }
        r.deserialize(Spanned::new(self.span, DeValue::Table(known)))
    }

    /// Splits the table into the keys of `C` (common to every component of its kind) and those
    /// of `K` (of its type), deserializes both, and records an error for each key that is in
    /// neither. Both parts are attempted, so that all their errors are reported at once.
    ///
    /// The third value is whether every key was known: when one was not, it may have been meant
    /// as a key that now seems missing, so checks across keys are best left until it is fixed.
    pub fn split<C: DeserializeOwned, K: DeserializeOwned>(
        self,
        what: &str,
        r: &mut Resolver<'_>,
    ) -> (Result<C, Reported>, Result<K, Reported>, bool) {
        let common_keys = keys_of::<C>();
        let kind_keys = keys_of::<K>();
        let mut common = DeTable::new();
        let mut kind = DeTable::new();
        let mut clean = true;
        for (key, value) in self.table {
            let name = key.get_ref().as_ref();
            if common_keys.contains(&name) {
                common.insert(key, value);
            } else if kind_keys.contains(&name) {
                kind.insert(key, value);
            } else {
                let all: Vec<&str> = common_keys.iter().chain(kind_keys).copied().collect();
                r.error(key.span(), unknown_key(name, &format!("in {what}"), &all));
                clean = false;
            }
        }
        let c = r.deserialize(Spanned::new(self.span.clone(), DeValue::Table(common)));
        let k = r.deserialize(Spanned::new(self.span, DeValue::Table(kind)));
        (c, k, clean)
    }
}

/// The message for a key that is not allowed where it is (`place`: "in [[target]]", "at the top
/// level"): names the key, a likely intended key, and every allowed one.
pub(crate) fn unknown_key(key: &str, place: &str, expected: &[&str]) -> String {
    let hint = closest(key, expected)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    format!(
        "unknown key `{key}` {place}{hint}; expected one of {}",
        backticked(expected)
    )
}

/// `a`, `b`, `c`: for lists of keys and names in messages.
pub(crate) fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a likely typo.
fn closest<'k>(word: &str, candidates: &[&'k str]) -> Option<&'k str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an exchange of two neighbouring characters as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The keys a `deny_unknown_fields` struct accepts, as its derived `Deserialize` declares them.
///
/// Asking serde keeps one list of keys (the struct's fields), instead of a hand-kept copy that
/// could drift from it.
pub(crate) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    // The probe always fails: it only records the field list serde passes to it.
    let _ = T::deserialize(KeyProbe(&mut keys));
    keys
}

/// A deserializer that records the fields of the struct asked of it, then gives up.
struct KeyProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for KeyProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_the_intended_key() {
        let keys = ["url", "client_id", "client_secret", "scope"];
        assert_eq!(closest("clinet_id", &keys), Some("client_id"));
        assert_eq!(closest("urll", &keys), Some("url"));
        assert_eq!(closest("banana", &keys), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
