//! Diagnostics: a message tied to a place in a file, printed as `path:line:col: message`.
//!
//! Every problem roster finds in a file it reads (the config, a desired-state file) becomes a
//! [`Diagnostic`], so that `roster validate` can print all of them at once in the form editors and
//! terminals turn into links. The toml parser reports byte spans; [`TextFile`] is the one piece of
//! code that turns a span, or a toml error carrying one, into a diagnostic, and both the config
//! loader and the toml source go through it.
//!
//! The files are toml, read with every key's position kept: `toml` holds that reader (the tables,
//! the key checks and their did-you-mean hints, and the `Resolver` that collects one file's
//! diagnostics), and `check` the checks of values that many tables share (secrets, URLs,
//! durations, CA files) with the seam through which a connector checks its own keys. The config
//! and the desired-state files are read through `toml`; the config's keys, the connectors' and the
//! LDAP source's use `check` too, which is why both live here rather than in `config`.

pub(crate) mod check;
pub(crate) mod toml;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::model::Origin;

/// The error and its causes on one line, so that "connection reset" is not hidden behind
/// "error sending request".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file cannot be used as it is.
    Error,
    /// The file works, but something in it deserves attention (a secret written in clear, say).
    Warning,
}

/// A problem at a place in a file.
///
/// `line` and `col` are 1-based, `col` counted in characters. A `line` of 0 means the problem has
/// no position inside a text file (an LDAP entry, a whole file); it is then printed as
/// `path: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or, for a diagnostic about an LDAP entry, the entry's description).
    pub path: PathBuf,
    /// 1-based line, or 0 when there is no position.
    pub line: usize,
    /// 1-based column in characters, or 0 when there is no position.
    pub col: usize,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl Diagnostic {
    /// An error at `path:line:col`.
    pub fn error(
        path: impl Into<PathBuf>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            line,
            col,
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// A warning at `path:line:col`.
    pub fn warning(
        path: impl Into<PathBuf>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, line, col, message)
        }
    }

    /// An error at the place a desired group came from: its file position, or its LDAP entry.
    pub fn at_origin(origin: &Origin, message: impl Into<String>) -> Self {
        match origin {
            Origin::File { path, line, col } => Self::error(path.clone(), *line, *col, message),
            Origin::Ldap { .. } => Self::error(origin.to_string(), 0, 0, message),
        }
    }

    /// The same diagnostic as a warning.
    pub fn warning_level(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The position as `path:line:col` (or `path` when there is none), as used in messages that
    /// point at a second place ("first defined at …").
    pub fn position(&self) -> String {
        if self.line == 0 {
            self.path.display().to_string()
        } else {
            format!("{}:{}:{}", self.path.display(), self.line, self.col)
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.position())?;
        match self.severity {
            Severity::Error => write!(f, ": {}", self.message),
            Severity::Warning => write!(f, ": warning: {}", self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// The 1-based line and the 1-based column (in characters) of a byte offset into `text`.
///
/// An offset past the end points just after the last character; an offset inside a multi-byte
/// character points at that character.
pub fn locate(text: &str, byte_offset: usize) -> (usize, usize) {
    let mut offset = byte_offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// A text file being checked: its path (as it should appear in messages) and its content.
///
/// It turns byte spans, and toml errors that carry one, into [`Diagnostic`]s.
#[derive(Clone, Debug)]
pub struct TextFile<'a> {
    /// The path printed in diagnostics.
    pub path: &'a Path,
    /// The file's content, which spans index into.
    pub text: &'a str,
    /// Where each line starts: a file of 20,000 groups gives each its origin, and finding
    /// each line by counting from the top would make reading it quadratic.
    line_starts: Vec<usize>,
}

impl<'a> TextFile<'a> {
    /// A file at `path` with this content.
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path,
            text,
            line_starts,
        }
    }

    /// [`locate`], by the line index.
    fn locate(&self, byte_offset: usize) -> (usize, usize) {
        let mut offset = byte_offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let start = self.line_starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(span.start);
        Diagnostic::error(self.path, line, col, message)
    }

    /// A warning at the start of `span`.
    pub fn warning(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(span.start);
        Diagnostic::warning(self.path, line, col, message)
    }

    /// Where the start of `span` is, as the [`Origin`] of something defined there.
    pub fn origin(&self, span: Range<usize>) -> Origin {
        let (line, col) = self.locate(span.start);
        Origin::File {
            path: self.path.to_path_buf(),
            line,
            col,
        }
    }

    /// A toml parse or deserialization error, at its span (or at 1:1 when it has none), with
    /// toml's message but without its multi-line source excerpt.
    pub fn toml_error(&self, error: &::toml::de::Error) -> Diagnostic {
        let span = error.span().unwrap_or(0..0);
        self.error(span, error.message().trim_end())
    }
}

/// Diagnostics shown one per line, as `validate` and every load error print them.
pub struct Lines<'a>(pub &'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(locate(text, 0), (1, 1));
        assert_eq!(locate(text, 4), (1, 5));
        assert_eq!(locate(text, 6), (2, 1));
        // "é" is two bytes, one column: the space after it is column 3.
        assert_eq!(locate(text, 9), (2, 3));
        // Inside the "é": its own column.
        assert_eq!(locate(text, 8), (2, 2));
        // Past the end: after the last newline.
        assert_eq!(locate(text, 999), (3, 1));
        assert_eq!(locate("", 0), (1, 1));
        // The line index agrees with counting from the top, everywhere.
        for text in [text, "", "\n\n", "é\nx\n\ny"] {
            let file = TextFile::new(Path::new("x"), text);
            for at in 0..text.len() + 3 {
                assert_eq!(file.locate(at), locate(text, at), "{text:?} at {at}");
            }
        }
    }

    #[test]
    fn display_is_path_line_col_message() {
        let e = Diagnostic::error("roster.toml", 3, 7, "unknown key `x`");
        assert_eq!(e.to_string(), "roster.toml:3:7: unknown key `x`");
        let w = Diagnostic::warning("roster.toml", 1, 1, "secret in clear");
        assert_eq!(w.to_string(), "roster.toml:1:1: warning: secret in clear");
        let ldap = Diagnostic::at_origin(
            &Origin::Ldap {
                dn: "cn=a,dc=example".into(),
            },
            "bad",
        );
        assert_eq!(ldap.to_string(), "ldap entry cn=a,dc=example: bad");
    }

    #[test]
    fn toml_errors_keep_their_position() {
        let text = "a = 1\nb = \n";
        let err = ::toml::de::DeTable::parse(text).expect_err("invalid toml");
        let d = TextFile::new(Path::new("x.toml"), text).toml_error(&err);
        assert_eq!((d.line, d.col), (2, 5));
        assert!(!d.message.contains('\n'), "{d}");
    }
}
