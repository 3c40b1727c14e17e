//! The house rules of `src/`, kept true by a test: each rule reads a file's path and text and says
//! what in it breaks the rule. `ARCHITECTURE.md` marks the invariants these rules keep.
//!
//! 1. `plan-is-pure`: nothing under `src/plan/` uses tokio, reqwest, the clock or randomness.
//! 2. `connectors-stand-alone`: a connector (`src/target/<name>/`) imports neither `crate::exec` nor
//!    another connector, and the shared connector plumbing imports no connector.
//! 3. `simulators-follow-the-vendor`: nothing under `src/sim/` imports `crate::target`.
//! 4. `retries-below-everyone`: `src/retry.rs` imports neither `crate::exec` nor `crate::target`.
//! 5. `module-doc`: every file under `src/` starts with a `//!` doc.
//! 6. `file-size`: no source file is longer than 1,000 lines (`tests.rs` and `proptests.rs` are
//!    test files, and exempt).
//! 7. `journal-records-only`: nothing under `src/plan/`, `src/target/` or `src/exec/` imports
//!    `crate::journal`: the planner never reads the journal, and the executor and the connectors
//!    reach it only through the watch they are given.
//!
//! The scan is textual: comments and string literals are blanked out before the import rules look
//! at the code, and paths match on whole words.

use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 1_000;

/// One broken rule: where, which rule, and what.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    path: String,
    rule: &'static str,
    detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.rule, self.detail)
    }
}

/// A file of `src/`: its path relative to `src/` with `/` separators, and its text.
struct SourceFile {
    rel: String,
    text: String,
}

impl SourceFile {
    fn new(rel: &str, text: &str) -> Self {
        Self {
            rel: rel.to_owned(),
            text: text.to_owned(),
        }
    }

    fn violation(&self, rule: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            path: format!("src/{}", self.rel),
            rule,
            detail: detail.into(),
        }
    }

    /// The connector folder this file belongs to (`src/target/<name>/...`), if any.
    fn connector(&self) -> Option<&str> {
        let rest = self.rel.strip_prefix("target/")?;
        let (name, _) = rest.split_once('/')?;
        (name != "http").then_some(name)
    }
}

/// The code of a file with comments and string literals blanked out (newlines kept), so that a
/// word in a doc comment or in a message is not mistaken for a use.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('#') | Some('"')) && !prev_is_ident(&chars, i) {
            // A raw string: r"...", r#"..."#, and so on.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some('\n') => out.push('\n'),
                    Some(_) => {}
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && next.is_some() && chars.get(i + 2) == Some(&'\'') {
            // A char literal such as '"'; lifetimes ('a) have no closing quote there.
            out.push_str("' '");
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Whether `code` holds `path` as a whole path: not preceded by an identifier character (so
/// `my_tokio` doesn't count) nor, for a crate name (`root`), by `::` (so `x::rand` doesn't
/// either), and not followed by more identifier characters (so `crate::target_kind` is not
/// `crate::target`). Returns the line of the first use.
fn find_path(code: &str, path: &str) -> Option<usize> {
    find_use(code, path, true)
}

fn find_use(code: &str, path: &str, root: bool) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(pos) = code[from..].find(path) {
        let at = from + pos;
        let end = at + path.len();
        let before_ok = at == 0 || {
            let b = bytes[at - 1];
            let ident = b.is_ascii_alphanumeric() || b == b'_';
            let in_path = root && at >= 2 && &code[at - 2..at] == "::";
            !ident && !in_path
        };
        let after_ok = end >= bytes.len() || {
            let b = bytes[end];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        if before_ok && after_ok {
            return Some(code[..at].matches('\n').count() + 1);
        }
        from = end;
    }
    None
}

/// Rule 1: the planner is pure, so that the same inputs always give the same plan.
fn plan_is_pure(f: &SourceFile) -> Vec<Violation> {
    if !f.rel.starts_with("plan/") || is_test_file(&f.rel) {
        return Vec::new();
    }
    // Crate names count only as the start of a path; the clock and random draws anywhere.
    const FORBIDDEN: [(&str, bool); 10] = [
        ("tokio", true),
        ("reqwest", true),
        ("rand", true),
        ("std::fs", true),
        ("std::net", true),
        ("Instant", false),
        ("SystemTime", false),
        ("Utc::now", false),
        ("Local::now", false),
        ("new_v4", false),
    ];
    let code = code_only(&f.text);
    FORBIDDEN
        .iter()
        .filter_map(|(p, root)| {
            find_use(&code, p, *root)
                .map(|line| f.violation("plan-is-pure", format!("line {line} uses `{p}`")))
        })
        .collect()
}

/// Rule 2: connectors stand alone, so that a change to one cannot break another, and ordering and
/// retries stay the executor's.
fn connectors_stand_alone(f: &SourceFile, connectors: &[String]) -> Vec<Violation> {
    let shared =
        f.rel == "target/mod.rs" || f.rel == "target/oauth.rs" || f.rel.starts_with("target/http/");
    let own = f.connector();
    if own.is_none() && !shared {
        return Vec::new();
    }
    let code = code_only(&f.text);
    let mut found = Vec::new();
    if own.is_some()
        && let Some(line) = find_path(&code, "crate::exec")
    {
        found.push(f.violation(
            "connectors-stand-alone",
            format!("line {line} imports `crate::exec`"),
        ));
    }
    for other in connectors.iter().filter(|c| Some(c.as_str()) != own) {
        for path in [
            format!("crate::target::{other}"),
            format!("super::super::{other}"),
        ] {
            if let Some(line) = find_path(&code, &path) {
                found.push(f.violation(
                    "connectors-stand-alone",
                    format!("line {line} imports `{path}`"),
                ));
            }
        }
        // The seam declares the connectors (`pub mod alpha;`) and uses none of them.
        if f.rel == "target/mod.rs" {
            let uses: String = code
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("pub mod ") {
                        ""
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            if let Some(line) = find_path(&uses, other) {
                found.push(f.violation(
                    "connectors-stand-alone",
                    format!("line {line} uses the `{other}` connector"),
                ));
            }
        }
    }
    found
}

/// Rule 3: a simulator is written from the vendor's API, never from the connector it tests.
fn simulators_follow_the_vendor(f: &SourceFile) -> Vec<Violation> {
    if !f.rel.starts_with("sim/") {
        return Vec::new();
    }
    let code = code_only(&f.text);
    ["crate::target", "roster::target"]
        .iter()
        .filter_map(|p| {
            find_path(&code, p).map(|line| {
                f.violation(
                    "simulators-follow-the-vendor",
                    format!("line {line} imports `{p}`"),
                )
            })
        })
        .collect()
}

/// Rule 4: retries sit below the executor and the connectors, which both use them.
fn retries_below_everyone(f: &SourceFile) -> Vec<Violation> {
    if f.rel != "retry.rs" {
        return Vec::new();
    }
    let code = code_only(&f.text);
    ["crate::exec", "crate::target"]
        .iter()
        .filter_map(|p| {
            find_path(&code, p).map(|line| {
                f.violation(
                    "retries-below-everyone",
                    format!("line {line} imports `{p}`"),
                )
            })
        })
        .collect()
}

/// Rule 5: every module says what it is for, so a reader knows where a change belongs.
fn module_doc(f: &SourceFile) -> Vec<Violation> {
    let first = f
        .text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("#!["));
    match first {
        Some(l) if l.starts_with("//!") => Vec::new(),
        _ => vec![f.violation("module-doc", "does not start with a `//!` doc")],
    }
}

/// Rule 6: a file a reader can hold in their head; tests are exempt.
fn file_size(f: &SourceFile) -> Vec<Violation> {
    let lines = f.text.lines().count();
    if is_test_file(&f.rel) || lines <= MAX_LINES {
        return Vec::new();
    }
    vec![f.violation("file-size", format!("{lines} lines, more than {MAX_LINES}"))]
}

/// Rule 7: the journal records what is written and never decides it.
fn journal_records_only(f: &SourceFile) -> Vec<Violation> {
    let below = ["plan/", "target/", "exec/"];
    if !below.iter().any(|b| f.rel.starts_with(b)) {
        return Vec::new();
    }
    let code = code_only(&f.text);
    find_path(&code, "crate::journal")
        .map(|line| {
            f.violation(
                "journal-records-only",
                format!("line {line} imports `crate::journal`"),
            )
        })
        .into_iter()
        .collect()
}

fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name == "proptests.rs"
}

/// Every rule over every file.
fn check(files: &[SourceFile]) -> Vec<Violation> {
    let mut connectors: Vec<String> = files
        .iter()
        .filter_map(|f| f.connector().map(str::to_owned))
        .collect();
    connectors.sort();
    connectors.dedup();
    let mut found = Vec::new();
    for f in files {
        found.extend(plan_is_pure(f));
        found.extend(connectors_stand_alone(f, &connectors));
        found.extend(simulators_follow_the_vendor(f));
        found.extend(retries_below_everyone(f));
        found.extend(module_doc(f));
        found.extend(file_size(f));
        found.extend(journal_records_only(f));
    }
    found
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under src/")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.push(SourceFile { rel, text });
        }
    }
}

#[test]
fn the_house_rules_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let found = check(&files);
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        list.is_empty(),
        "the house rules are broken:\n{}",
        list.join("\n")
    );
}

#[test]
fn the_planner_may_not_touch_the_world() {
    let bad = SourceFile::new(
        "plan/mod.rs",
        "//! x\nuse tokio::time;\nfn f() { let _ = std::time::Instant::now(); }\n",
    );
    let found = plan_is_pure(&bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0].to_string(),
        "src/plan/mod.rs: plan-is-pure: line 2 uses `tokio`"
    );
    for clean in [
        "//! Uses no tokio.\n/// Not rand either.\nfn f() { g(\"reqwest\"); }\n",
        "//! x\nfn operand() -> Brand { my_tokio(); x::rand() }\n",
    ] {
        assert_eq!(
            plan_is_pure(&SourceFile::new("plan/mod.rs", clean)),
            Vec::new(),
            "{clean}"
        );
    }
    assert!(plan_is_pure(&SourceFile::new("plan/proptests.rs", "use rand::Rng;")).is_empty());
    assert!(plan_is_pure(&SourceFile::new("exec/mod.rs", "use tokio::time;")).is_empty());
    assert_eq!(
        plan_is_pure(&SourceFile::new("plan/x.rs", "let r = rand::random();")).len(),
        1
    );
}

#[test]
fn connectors_import_neither_exec_nor_each_other() {
    let connectors = vec!["alpha".to_owned(), "beta".to_owned()];
    let bad = SourceFile::new(
        "target/alpha/write.rs",
        "//! x\nuse crate::exec::Executor;\nuse crate::target::beta::api;\nuse super::super::beta::X;\n",
    );
    let found = connectors_stand_alone(&bad, &connectors);
    let details: Vec<&str> = found.iter().map(|v| v.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "line 2 imports `crate::exec`",
            "line 3 imports `crate::target::beta`",
            "line 4 imports `super::super::beta`"
        ]
    );
    let clean = SourceFile::new(
        "target/alpha/mod.rs",
        "//! Not crate::exec.\nuse crate::target::alpha::api;\nuse crate::target::http;\nuse crate::retry::RetryPolicy;\nlet s = \"crate::target::beta\";\n",
    );
    assert_eq!(connectors_stand_alone(&clean, &connectors), Vec::new());
    let shared = SourceFile::new(
        "target/http/endpoint.rs",
        "//! x\nuse crate::target::beta::api;\n",
    );
    assert_eq!(connectors_stand_alone(&shared, &connectors).len(), 1);
    let seam = SourceFile::new(
        "target/mod.rs",
        "//! x\npub mod alpha;\nfn f() { alpha::x(); }\n",
    );
    assert_eq!(connectors_stand_alone(&seam, &connectors).len(), 1);
    let seam = SourceFile::new("target/mod.rs", "//! x\npub mod alpha;\npub mod beta;\n");
    assert_eq!(connectors_stand_alone(&seam, &connectors), Vec::new());
}

#[test]
fn simulators_import_nothing_of_the_connectors() {
    let bad = SourceFile::new(
        "sim/alpha/http.rs",
        "//! x\nuse crate::target::alpha::api::Group;\n",
    );
    assert_eq!(simulators_follow_the_vendor(&bad).len(), 1);
    let bad = SourceFile::new(
        "sim/mod.rs",
        "//! x\nfn f() -> crate::target::CallError { todo!() }\n",
    );
    assert_eq!(simulators_follow_the_vendor(&bad).len(), 1);
    let clean = SourceFile::new(
        "sim/alpha/http.rs",
        "//! Unlike [`crate::target::alpha`], ...\nuse crate::sim::control;\nuse crate::target_kind;\n",
    );
    assert_eq!(simulators_follow_the_vendor(&clean), Vec::new());
}

#[test]
fn retries_know_neither_the_executor_nor_the_targets() {
    let bad = SourceFile::new("retry.rs", "//! x\nuse crate::target::CallError;\n");
    assert_eq!(retries_below_everyone(&bad).len(), 1);
    let clean = SourceFile::new(
        "retry.rs",
        "//! Used by [`crate::exec`].\nuse backon::ExponentialBuilder;\n",
    );
    assert_eq!(retries_below_everyone(&clean), Vec::new());
}

#[test]
fn every_module_says_what_it_is_for() {
    assert_eq!(module_doc(&SourceFile::new("a.rs", "use x;\n")).len(), 1);
    assert_eq!(
        module_doc(&SourceFile::new("a.rs", "/// An item doc.\nfn f() {}\n")).len(),
        1
    );
    assert_eq!(module_doc(&SourceFile::new("a.rs", "")).len(), 1);
    assert_eq!(
        module_doc(&SourceFile::new(
            "a.rs",
            "\n#![allow(x)]\n//! Does a thing.\n"
        )),
        Vec::new()
    );
}

#[test]
fn long_files_are_refused_but_tests_are_not() {
    let long = "x\n".repeat(MAX_LINES + 1);
    let found = file_size(&SourceFile::new("target/alpha/mod.rs", &long));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].detail, "1001 lines, more than 1000");
    assert!(
        file_size(&SourceFile::new(
            "target/alpha/mod.rs",
            &"x\n".repeat(MAX_LINES)
        ))
        .is_empty()
    );
    assert!(file_size(&SourceFile::new("target/alpha/tests.rs", &long)).is_empty());
    assert!(file_size(&SourceFile::new("plan/proptests.rs", &long)).is_empty());
}

#[test]
fn comments_and_strings_are_not_code() {
    let code = code_only(
        "use a; // tokio\n/* reqwest\n */ let s = \"rand \\\" x\"; let r = r#\"new_v4 \"#; let c = '\"'; fn f<'a>() {}\n",
    );
    for word in ["tokio", "reqwest", "rand", "new_v4"] {
        assert!(find_path(&code, word).is_none(), "{word} in {code}");
    }
    assert_eq!(code.lines().count(), 3);
    assert!(code.contains("fn f<'a>()"), "{code}");
}

#[test]
fn the_planner_executor_and_connectors_do_not_read_the_journal() {
    for rel in [
        "plan/mod.rs",
        "exec/mod.rs",
        "target/alpha/write.rs",
        "target/watch.rs",
    ] {
        let bad = SourceFile::new(rel, "//! x\nuse crate::journal::read;\n");
        assert_eq!(journal_records_only(&bad).len(), 1, "{rel}");
    }
    let clean = SourceFile::new("reconcile.rs", "//! x\nuse crate::journal::Audit;\n");
    assert_eq!(journal_records_only(&clean), Vec::new());
    let mention = SourceFile::new("exec/mod.rs", "//! Written to [`crate::journal`].\n");
    assert_eq!(journal_records_only(&mention), Vec::new());
}
