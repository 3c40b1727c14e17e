//! The exact messages roster gives for broken configs and desired-state files.
//!
//! These are the user's interface to a mistake, so they are pinned whole: `file:line:col:
//! message`, with every problem of a file reported at once.

use std::fs;
use std::path::{Path, PathBuf};

use roster::config::{self, Config, ConfigErrors, SourceConfig, TargetKind, TomlSourceConfig};
use roster::model::{GroupName, Origin};
use roster::plan::Share;
use roster::source::ldap::{Directory, LdapScope, LdapSourceConfig, MemberKind};
use roster::source::{self, SourceError};
use roster::target::contensis::config::{ContensisAuth, DEFAULT_SCOPE};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A config that is valid except for its literal secret (which only warns).
const BASE: &str = r#"[[source]]
type = "toml"
path = "groups"

[[target]]
name = "cms"
type = "contensis"
url = "https://cms.example.com"
client_id = "roster"
client_secret = "s3cret"
"#;

/// Parses `text` as `roster.toml` (relative paths against the current folder).
fn parse(text: &str) -> Result<Config, ConfigErrors> {
    config::parse(text, Path::new("roster.toml"))
}

/// The errors (and warnings) of an invalid config, one per line.
fn errors(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected errors, got a config: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// `BASE` without its literal secret warning: the same target with a secret from `PATH`, which
/// is always set.
fn base_env() -> String {
    BASE.replace(
        r#"client_secret = "s3cret""#,
        r#"client_secret_env = "PATH""#,
    )
}

#[test]
fn misspelt_key_is_reported_at_the_key_with_a_suggestion() {
    let text = base_env().replace("client_id", "clinet_id");
    assert_eq!(
        errors(&text),
        "roster.toml:9:1: unknown key `clinet_id` in [[target]] (did you mean `client_id`?); \
         expected one of `name`, `type`, `groups`, `membership`, `prune`, `max_deletes`, \
         `max_group_shrink`, `concurrency`, `timeout`, `retries`, `allow_empty_source`, \
         `ca_file`, `rate_limit`, `burst`, `url`, \
         `client_id`, `client_secret_file`, `client_secret_env`, `client_secret`, `username`, \
         `password_file`, `password_env`, `password`, `scope`"
    );
}

#[test]
fn unknown_target_type_lists_the_known_ones() {
    let text = base_env().replace(r#""contensis""#, r#""contensys""#);
    assert_eq!(
        errors(&text),
        "roster.toml:7:8: unknown target type `contensys`; known types: `contensis`, `vinyldns`, `crafter`, `uipath`"
    );
}

#[test]
fn missing_type_and_unknown_source_type() {
    let text = base_env().replace("type = \"contensis\"\n", "");
    assert_eq!(
        errors(&text),
        "roster.toml:5:1: missing key `type` in [[target]]; known types: `contensis`, `vinyldns`, `crafter`, `uipath`"
    );
    let text = base_env().replace(r#""toml""#, r#""ldif""#);
    assert_eq!(
        errors(&text),
        "roster.toml:2:8: unknown source type `ldif`; known types: `toml`, `ldap`"
    );
}

#[test]
fn missing_url_points_at_the_target() {
    let text = base_env().replace("url = \"https://cms.example.com\"\n", "");
    assert_eq!(errors(&text), "roster.toml:5:1: missing key `url`");
}

#[test]
fn duplicate_target_name_points_at_the_second() {
    let text = format!(
        "{}\n{}",
        base_env(),
        &base_env()[BASE.find("[[target]]").unwrap_or(0)..]
    );
    assert_eq!(
        errors(&text),
        "roster.toml:13:8: duplicate target name `cms`; the first is at roster.toml:6:8"
    );
}

#[test]
fn bad_membership_value() {
    let text = format!("{}membership = \"authorative\"\n", base_env());
    assert_eq!(
        errors(&text),
        "roster.toml:11:14: unknown value `authorative`, expected `authoritative` or `additive`"
    );
}

#[test]
fn bad_duration() {
    let text = format!("{}timeout = \"30 parsecs\"\n", base_env());
    assert_eq!(
        errors(&text),
        "roster.toml:11:11: invalid duration `30 parsecs`: unknown time unit \"parsecs\", \
         supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years \
         (and few variations); write it like \"30s\" or \"2m\""
    );
    let text = format!("{}timeout = \"0s\"\n", base_env());
    assert_eq!(
        errors(&text),
        "roster.toml:11:11: `timeout` must be longer than zero"
    );
}

#[test]
fn bad_values_of_common_keys() {
    let text = format!("{}concurrency = 0\n", base_env());
    assert_eq!(
        errors(&text),
        "roster.toml:11:15: invalid value: integer `0`, expected a nonzero usize"
    );
    let text = format!("{}groups = [\"Eng*\", \"[a\"]\n", base_env());
    assert_eq!(
        errors(&text),
        "roster.toml:11:19: invalid glob `[a`: unclosed character class; missing ']'"
    );
}

#[test]
fn bad_max_group_shrink_values() {
    for (value, col, message) in [
        (
            "\"150%\"",
            20,
            "invalid percentage `150%`: it is more than 100%",
        ),
        (
            "\"100.5%\"",
            20,
            "invalid percentage `100.5%`: it is more than 100%",
        ),
        (
            "\"50\"",
            20,
            "invalid percentage `50`: write it with a % sign, such as \"50%\"",
        ),
        (
            "\"-5%\"",
            20,
            "invalid percentage `-5%`: write a number from 0% to 100%, such as \"50%\" or \"12.5%\"",
        ),
        (
            "\"half\"",
            20,
            "invalid percentage `half`: write it with a % sign, such as \"50%\"",
        ),
        (
            "\"12.345%\"",
            20,
            "invalid percentage `12.345%`: at most two decimals, such as \"12.25%\"",
        ),
        (
            "50",
            20,
            "invalid type: integer `50`, expected a percentage in quotes, such as \"50%\"",
        ),
        (
            "0.5",
            20,
            "invalid type: floating point `0.5`, expected a percentage in quotes, such as \"50%\"",
        ),
    ] {
        let text = format!("{}max_group_shrink = {value}\n", base_env());
        assert_eq!(
            errors(&text),
            format!("roster.toml:11:{col}: {message}"),
            "{value}"
        );
    }
}

#[test]
fn max_group_shrink_takes_0_to_100_percent_and_defaults_to_half() -> TestResult {
    let config = parse(&base_env())?;
    assert_eq!(config.targets[0].max_group_shrink, Share::DEFAULT);
    for (value, shown) in [
        ("0%", "0%"),
        ("100%", "100%"),
        ("12.5%", "12.5%"),
        ("33.33%", "33.33%"),
    ] {
        let config = parse(&format!("{}max_group_shrink = \"{value}\"\n", base_env()))?;
        assert_eq!(config.targets[0].max_group_shrink.to_string(), shown);
    }
    Ok(())
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"[[source]]
type = "toml"
pth = "groups"

[[target]]
name = "a"
type = "contensis"
url = "cms.example.com"
client_id = "roster"
client_secret_env = "ROSTER_TEST_SURELY_UNSET_VARIABLE"
prune = "yes"
membership = "sometimes"

[[target]]
name = "b"
type = "vinyl"
"#;
    assert_eq!(
        errors(text),
        "roster.toml:1:1: missing key `path`\n\
         roster.toml:3:1: unknown key `pth` in [[source]] (did you mean `path`?); expected one of `type`, `path`\n\
         roster.toml:8:7: invalid url `cms.example.com`: it must start with https:// or http://\n\
         roster.toml:10:21: environment variable `ROSTER_TEST_SURELY_UNSET_VARIABLE` is not set\n\
         roster.toml:11:9: invalid type: string \"yes\", expected a boolean\n\
         roster.toml:12:14: unknown value `sometimes`, expected `authoritative` or `additive`\n\
         roster.toml:16:8: unknown target type `vinyl`; known types: `contensis`, `vinyldns`, `crafter`, `uipath`"
    );
}

#[test]
fn credentials_must_be_one_complete_pair() {
    let none = base_env()
        .replace("client_id = \"roster\"\n", "")
        .replace("client_secret_env = \"PATH\"\n", "");
    assert_eq!(
        errors(&none),
        "roster.toml:5:1: no credentials: set `client_id` and `client_secret_file` \
         (or `username` and `password_file`)"
    );
    let both = format!(
        "{}username = \"bob\"\npassword_env = \"PATH\"\n",
        base_env()
    );
    assert_eq!(
        errors(&both),
        "roster.toml:11:12: give either `client_id` with a client secret or `username` with a \
         password, not both"
    );
    let no_secret = base_env().replace("client_secret_env = \"PATH\"\n", "");
    assert_eq!(
        errors(&no_secret),
        "roster.toml:9:13: `client_id` needs a secret: set `client_secret_file`, \
         `client_secret_env` or `client_secret`"
    );
    let two_ways = format!("{}client_secret_file = \"x\"\n", base_env());
    assert_eq!(
        errors(&two_ways),
        "roster.toml:10:21: `client_secret_env` conflicts with `client_secret_file`: give the \
         secret one way only"
    );
}

#[test]
fn password_grant() -> TestResult {
    let text = base_env()
        .replace("client_id = \"roster\"", "username = \"bob\"")
        .replace("client_secret_env", "password_env");
    let config = parse(&text)?;
    let TargetKind::Contensis(c) = &config.targets[0].kind else {
        panic!("not a Contensis target")
    };
    let ContensisAuth::Password { username, password } = &c.auth else {
        panic!("expected the password grant: {c:?}");
    };
    assert_eq!(username, "bob");
    assert_eq!(password.expose(), std::env::var("PATH")?);
    Ok(())
}

#[test]
fn missing_secret_file_is_an_error_at_its_value() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("roster.toml");
    let text = BASE.replace(
        r#"client_secret = "s3cret""#,
        r#"client_secret_file = "secrets/contensis""#,
    );
    fs::write(&path, &text)?;
    let err = config::load(&path).err().ok_or("expected an error")?;
    assert_eq!(
        err.to_string(),
        format!(
            "{}:10:22: cannot read secret file {}: No such file or directory (os error 2)",
            path.display(),
            dir.path().join("secrets/contensis").display()
        )
    );
    Ok(())
}

#[test]
fn secret_file_is_read_relative_to_the_config_and_trimmed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("roster.toml");
    fs::create_dir(dir.path().join("secrets"))?;
    let secret = dir.path().join("secrets/contensis");
    fs::write(&secret, "roster-secret\n")?;
    restrict(&secret)?;
    let text = BASE.replace(
        r#"client_secret = "s3cret""#,
        r#"client_secret_file = "secrets/contensis""#,
    );
    fs::write(&path, &text)?;
    let config = config::load(&path)?;
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let TargetKind::Contensis(c) = &config.targets[0].kind else {
        panic!("not a Contensis target")
    };
    let ContensisAuth::ClientCredentials {
        client_id,
        client_secret,
    } = &c.auth
    else {
        panic!("expected client credentials: {c:?}");
    };
    assert_eq!(client_id, "roster");
    assert_eq!(client_secret.expose(), "roster-secret");
    assert_eq!(
        config.sources,
        [SourceConfig::Toml(TomlSourceConfig {
            path: dir.path().join("groups"),
            origin: Origin::File {
                path: path.clone(),
                line: 3,
                col: 8
            },
        })]
    );
    Ok(())
}

/// Runs `roster --config CONFIG validate` with `CREDENTIALS_DIRECTORY` set to `creds`, or unset.
fn validate_with_credentials(config: &Path, creds: Option<&Path>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_roster"));
    cmd.arg("--config").arg(config).arg("validate");
    match creds {
        Some(dir) => cmd.env("CREDENTIALS_DIRECTORY", dir),
        None => cmd.env_remove("CREDENTIALS_DIRECTORY"),
    };
    cmd.output().expect("roster runs")
}

#[test]
fn a_secret_file_under_credentials_directory_needs_the_variable() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::create_dir(dir.path().join("groups"))?;
    let path = dir.path().join("roster.toml");
    fs::write(
        &path,
        BASE.replace(
            r#"client_secret = "s3cret""#,
            r#"client_secret_file = "$CREDENTIALS_DIRECTORY/contensis""#,
        ),
    )?;
    // Set, as systemd sets it for a unit with LoadCredential=: the secret is read from there.
    let creds = tempfile::tempdir()?;
    let secret = creds.path().join("contensis");
    fs::write(&secret, "s3cret\n")?;
    restrict(&secret)?;
    let out = validate_with_credentials(&path, Some(creds.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: valid: 1 sources, 1 targets, 0 groups\n",
            path.display()
        )
    );
    // Unset: an error at the value, naming the variable.
    let out = validate_with_credentials(&path, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:10:22: `$CREDENTIALS_DIRECTORY/contensis` names $CREDENTIALS_DIRECTORY, which is \
             not set: it is set by systemd for a unit with LoadCredential=\n",
            path.display()
        )
    );
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
#[test]
fn readable_secret_file_is_warned_about() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("roster.toml");
    let secret = dir.path().join("secret");
    fs::write(&secret, "x\n")?;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644))?;
    let text = BASE.replace(
        r#"client_secret = "s3cret""#,
        r#"client_secret_file = "secret""#,
    );
    let config = config::parse(&text, &path)?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "{}:10:22: warning: secret file {} can be read by group or others (mode 644); \
             restrict it with `chmod 600`",
            path.display(),
            secret.display()
        )]
    );
    Ok(())
}

#[test]
fn literal_secret_is_warned_about() -> TestResult {
    let config = parse(BASE)?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:10:17: warning: `client_secret` is written in the config file; prefer \
          `client_secret_file` or `client_secret_env`"
        ]
    );
    Ok(())
}

#[test]
fn formatting_a_config_never_shows_a_secret() -> TestResult {
    let config = parse(BASE)?;
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("[redacted]"));
    Ok(())
}

#[test]
fn defaults_and_every_common_key() -> TestResult {
    let config = parse(&base_env())?;
    let t = &config.targets[0];
    assert_eq!(t.name, "cms");
    assert_eq!(t.groups, None);
    assert_eq!(t.membership, roster::plan::MembershipMode::Authoritative);
    assert!(!t.prune && !t.allow_empty_source);
    assert_eq!((t.max_deletes, t.concurrency.get(), t.retries), (100, 8, 4));
    assert_eq!(t.timeout, std::time::Duration::from_secs(30));
    assert_eq!(t.kind.type_name(), "contensis");
    let TargetKind::Contensis(c) = &t.kind else {
        panic!("not a Contensis target")
    };
    assert_eq!(c.scope, DEFAULT_SCOPE);

    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("ca.pem"), "")?;
    let text = format!(
        "{}groups = [\"*\"]\nmembership = \"additive\"\nprune = true\nmax_deletes = 5\n\
         concurrency = 2\ntimeout = \"1m 30s\"\nretries = 0\nallow_empty_source = true\n\
         ca_file = \"ca.pem\"\nscope = \"Security_Administrator\"\n",
        base_env().replace("https://cms.example.com", "https://cms.example.com/")
    );
    let config = config::parse(&text, &dir.path().join("roster.toml"))?;
    let t = &config.targets[0];
    assert_eq!(t.groups.as_deref(), Some(&["*".to_owned()][..]));
    assert_eq!(t.membership, roster::plan::MembershipMode::Additive);
    assert!(t.prune && t.allow_empty_source);
    assert_eq!((t.max_deletes, t.concurrency.get(), t.retries), (5, 2, 0));
    assert_eq!(t.timeout, std::time::Duration::from_secs(90));
    assert_eq!(t.ca_file, Some(dir.path().join("ca.pem")));
    let TargetKind::Contensis(c) = &t.kind else {
        panic!("not a Contensis target")
    };
    assert_eq!(c.url, "https://cms.example.com");
    assert_eq!(c.scope, "Security_Administrator");
    Ok(())
}

#[test]
fn the_demo_config_is_valid() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = config::load(&dir.join("roster.toml"))?;
    // A checkout may leave the demo secret readable by others; nothing else may warn.
    for w in &config.warnings {
        assert!(w.message.contains("can be read by group or others"), "{w}");
    }
    let types: Vec<&str> = config.targets.iter().map(|t| t.kind.type_name()).collect();
    assert_eq!(types, ["contensis", "vinyldns", "crafter", "uipath"]);
    let desired = futures::executor::block_on(source::load_desired(&config.sources))?;
    let pssc = &desired.groups[&GroupName::from("paper_street_soap")];
    assert!(
        pssc.children
            .contains(&GroupName::from("liposuction_techs"))
    );
    // Every target can take every example group (VinylDNS e-mails, Crafter's name rule).
    assert_eq!(roster::run::check_targets(&config, &desired), []);
    assert_eq!(desired.groups.len(), 6);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Desired-state files

/// Writes `files` (name, content) into a fresh folder.
fn folder(files: &[(&str, &str)]) -> Result<tempfile::TempDir, std::io::Error> {
    let dir = tempfile::tempdir()?;
    for (name, text) in files {
        fs::write(dir.path().join(name), text)?;
    }
    Ok(dir)
}

/// The error of loading `dir` as a toml source, with the folder shown as `$DIR`.
fn desired_errors(dir: &Path) -> String {
    match source::toml::load(dir) {
        Ok(d) => panic!("expected errors, got {d:?}"),
        Err(e) => e.to_string().replace(&dir.display().to_string(), "$DIR"),
    }
}

#[test]
fn duplicate_group_across_two_files() -> TestResult {
    let dir = folder(&[
        ("a.toml", "[[group]]\nname = \"Eng\"\n"),
        ("b.toml", "# again\n\n[[group]]\nname = \"Eng\"\n"),
    ])?;
    assert_eq!(
        desired_errors(dir.path()),
        "$DIR/b.toml:4:8: duplicate group `Eng`; first defined at $DIR/a.toml:1:1"
    );
    Ok(())
}

#[test]
fn unknown_child_self_child_and_a_cycle_at_once() -> TestResult {
    let dir = folder(&[(
        "groups.toml",
        r#"[[group]]
name = "A"
children = ["B"]

[[group]]
name = "B"
children = ["C", "Nobody"]

[[group]]
name = "C"
children = ["A"]

[[group]]
name = "Narcissus"
children = ["Narcissus"]
"#,
    )])?;
    assert_eq!(
        desired_errors(dir.path()),
        "$DIR/groups.toml:3:13: cycle: A → B → C → A\n\
         $DIR/groups.toml:7:18: unknown child group `Nobody`: no desired group has this name\n\
         $DIR/groups.toml:15:13: group `Narcissus` is its own child"
    );
    Ok(())
}

#[test]
fn bad_group_keys_and_values() -> TestResult {
    let dir = folder(&[(
        "g.toml",
        r#"[[group]]
name = ""

[[group]]
name = "Eng"
membrs = ["a"]
children = ["Ops"]   # Ops is broken, but not unknown

[[group]]
name = "Ops"
members = ["a", 3]
[group.contensis]
custom = { clientId = 1 }
"#,
    )])?;
    assert_eq!(
        desired_errors(dir.path()),
        "$DIR/g.toml:2:8: group name is empty\n\
         $DIR/g.toml:6:1: unknown key `membrs` in [[group]] (did you mean `members`?); expected \
         one of `name`, `description`, `members`, `children`, `contensis`, `vinyldns`\n\
         $DIR/g.toml:11:17: invalid type: integer `3`, expected a string\n\
         $DIR/g.toml:13:23: invalid type: integer `1`, expected a string"
    );
    Ok(())
}

#[test]
fn toml_syntax_error() -> TestResult {
    let dir = folder(&[("g.toml", "[[group]]\nname = \"Eng\nmembers = []\n")])?;
    assert_eq!(
        desired_errors(dir.path()),
        "$DIR/g.toml:2:12: invalid basic string, expected `\"`"
    );
    Ok(())
}

#[test]
fn folder_is_read_in_name_order_and_maps_extras() -> TestResult {
    let dir = folder(&[
        (
            "20-b.toml",
            "[[group]]\nname = \"B\"\nmembers = [\"bob\", \"bob\"]\n",
        ),
        (
            "10-a.toml",
            r#"[[group]]
name = "A"
description = "first"
members = ["tdurden", "msinger"]
children = ["B"]
[group.contensis]
custom = { clientId = "PSSC", region = "EU" }
"#,
        ),
        ("notes.txt", "not a group file"),
        (".hidden.toml", "not toml at all ["),
    ])?;
    let desired = source::toml::load(dir.path())?;
    let a = &desired.groups[&GroupName::from("A")];
    assert_eq!(a.description.as_deref(), Some("first"));
    assert_eq!(
        serde_json::to_value(&a.extras)?,
        serde_json::json!({"contensis": {"custom": {"clientId": "PSSC", "region": "EU"}}})
    );
    let b = &desired.groups[&GroupName::from("B")];
    assert_eq!(b.members.len(), 1, "a repeated member counts once");
    assert!(b.extras.is_empty());
    assert_eq!(
        desired.origins[&GroupName::from("B")],
        Origin::File {
            path: dir.path().join("20-b.toml"),
            line: 1,
            col: 1
        }
    );

    // Order shows in which definition of a duplicate is "first".
    let dir = folder(&[
        ("b.toml", "[[group]]\nname = \"X\"\n"),
        ("a.toml", "[[group]]\nname = \"X\"\n"),
    ])?;
    assert_eq!(
        desired_errors(dir.path()),
        "$DIR/b.toml:2:8: duplicate group `X`; first defined at $DIR/a.toml:1:1"
    );
    Ok(())
}

#[test]
fn sources_merge_and_check_across_each_other() -> TestResult {
    let one = folder(&[("a.toml", "[[group]]\nname = \"A\"\nchildren = [\"B\"]\n")])?;
    let two = folder(&[(
        "b.toml",
        "[[group]]\nname = \"B\"\n\n[[group]]\nname = \"A\"\n",
    )])?;
    let config_path = PathBuf::from("roster.toml");
    let sources = |dirs: &[&Path]| -> Vec<SourceConfig> {
        dirs.iter()
            .enumerate()
            .map(|(i, d)| {
                SourceConfig::Toml(TomlSourceConfig {
                    path: d.to_path_buf(),
                    origin: Origin::File {
                        path: config_path.clone(),
                        line: 3 + 4 * i,
                        col: 8,
                    },
                })
            })
            .collect()
    };
    let err =
        futures::executor::block_on(source::load_desired(&sources(&[one.path(), two.path()])))
            .err()
            .ok_or("expected an error")?;
    assert_eq!(
        err.to_string(),
        format!(
            "{}/b.toml:4:1: group `A` is also defined by another source, at {}/a.toml:1:1",
            two.path().display(),
            one.path().display()
        )
    );

    // Without the duplicate, A's child B comes from the other source.
    fs::write(two.path().join("b.toml"), "[[group]]\nname = \"B\"\n")?;
    let desired =
        futures::executor::block_on(source::load_desired(&sources(&[one.path(), two.path()])))?;
    assert_eq!(desired.groups.len(), 2);

    // A source path that does not exist is an error at the config's `path`.
    let missing = one.path().join("nope");
    let err = futures::executor::block_on(source::load_desired(&sources(&[&missing])))
        .err()
        .ok_or("expected an error")?;
    assert!(matches!(err, SourceError::Invalid(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "roster.toml:3:8: cannot read source {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    Ok(())
}

#[test]
fn prune_with_additive_membership_is_warned_as_having_no_effect() -> TestResult {
    let text = base_env() + "membership = \"additive\"\nprune = true\n";
    let config = parse(&text)?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:6:8: warning: `prune = true` has no effect with `membership = \"additive\"`, \
          which never removes anything, groups included"
        ]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// LDAP sources

/// An LDAP source with a password from `PATH` (always set), without a target.
const LDAP: &str = r#"[[source]]
type = "ldap"
url = "ldaps://ldap.example.org"
bind_dn = "cn=roster,ou=services,dc=example,dc=org"
bind_password_env = "PATH"
base_dn = "ou=groups,dc=example,dc=org"
"#;

/// `LDAP` with `extra` keys (from line 7) and `BASE`'s target (without its secret warning).
fn ldap(extra: &str) -> String {
    let env = base_env();
    let target = &env[env.find("[[target]]").unwrap_or(0)..];
    format!("{LDAP}{extra}\n{target}")
}

/// The one LDAP source of a valid config.
fn ldap_source(config: &Config) -> &LdapSourceConfig {
    match config.sources.as_slice() {
        [SourceConfig::Ldap(c)] => c,
        other => panic!("expected one ldap source: {other:?}"),
    }
}

#[test]
fn ldap_source_with_a_url_list_and_the_defaults() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("roster.toml");
    fs::create_dir(dir.path().join("certs"))?;
    fs::write(dir.path().join("certs/ca.pem"), "")?;
    fs::write(dir.path().join("ldap-password"), "hunter2\n")?;
    restrict(&dir.path().join("ldap-password"))?;
    let text = ldap("")
        .replace(
            r#"url = "ldaps://ldap.example.org""#,
            "url = [\"ldaps://ldap1.example.org\", \"ldaps://ldap2.example.org:636/\"]\n\
             ca_file = \"certs/ca.pem\"",
        )
        .replace(
            r#"bind_password_env = "PATH""#,
            r#"bind_password_file = "ldap-password""#,
        );
    let config = config::parse(&text, &path)?;
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let expected = LdapSourceConfig {
        urls: vec![
            "ldaps://ldap1.example.org".to_owned(),
            "ldaps://ldap2.example.org:636".to_owned(),
        ],
        starttls: false,
        ca_file: Some(dir.path().join("certs/ca.pem")),
        bind_dn: Some("cn=roster,ou=services,dc=example,dc=org".to_owned()),
        bind_password: Some(roster::secret::Secret::new("hunter2")),
        base_dn: "ou=groups,dc=example,dc=org".to_owned(),
        scope: LdapScope::Sub,
        directory: Directory::Auto,
        group_filter: None,
        name_attr: "cn".to_owned(),
        description_attr: "description".to_owned(),
        member_attr: "member".to_owned(),
        member_kind: MemberKind::Dn,
        user_base_dn: None,
        user_filter: None,
        user_key_attr: None,
        range_size: 1000,
        exclude_disabled: false,
        attributes: Vec::new(),
        nested: true,
        page_size: 500,
        timeout: std::time::Duration::from_secs(30),
        origin: Origin::File {
            path: path.clone(),
            line: 2,
            col: 8,
        },
    };
    assert_eq!(config.sources, [SourceConfig::Ldap(expected)]);
    assert_eq!(config.sources[0].type_name(), "ldap");
    Ok(())
}

#[test]
fn ldap_source_with_every_key() -> TestResult {
    let text = ldap(
        r#"starttls = false
scope = "one"
group_filter = "(objectClass=posixGroup)"
name_attr = "cn"
description_attr = "info"
member_attr = "memberUid"
member_kind = "uid"
user_base_dn = "ou=people,dc=example,dc=org"
user_filter = "(objectClass=posixAccount)"
user_key_attr = "uid"
nested = false
page_size = 1000
timeout = "1m"
"#,
    );
    let config = parse(&text)?;
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let c = ldap_source(&config);
    assert_eq!(c.urls, ["ldaps://ldap.example.org"]);
    assert_eq!(c.ca_file, None);
    assert_eq!(c.scope, LdapScope::One);
    assert_eq!(c.group_filter.as_deref(), Some("(objectClass=posixGroup)"));
    assert_eq!(
        (c.description_attr.as_str(), c.member_attr.as_str()),
        ("info", "memberUid")
    );
    assert_eq!(c.member_kind, MemberKind::Uid);
    assert_eq!(
        c.user_base_dn.as_deref(),
        Some("ou=people,dc=example,dc=org")
    );
    assert_eq!(c.user_filter.as_deref(), Some("(objectClass=posixAccount)"));
    assert_eq!(c.user_key_attr.as_deref(), Some("uid"));
    assert!(!c.nested && !c.starttls);
    assert_eq!(c.page_size, 1000);
    assert_eq!(c.timeout, std::time::Duration::from_secs(60));
    assert_eq!(
        c.bind_password.as_ref().map(|p| p.expose().to_owned()),
        Some(std::env::var("PATH")?)
    );

    // Anonymous, StartTLS on a plain URL.
    let anonymous = ldap("starttls = true\n")
        .replace("ldaps://", "ldap://")
        .replace(
            "bind_dn = \"cn=roster,ou=services,dc=example,dc=org\"\n",
            "",
        )
        .replace("bind_password_env = \"PATH\"\n", "");
    let config = parse(&anonymous)?;
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let c = ldap_source(&config);
    assert!(c.starttls);
    assert_eq!((&c.bind_dn, &c.bind_password), (&None, &None));
    Ok(())
}

#[test]
fn ldap_misspelt_key_is_reported_at_the_key_with_a_suggestion() {
    let text = ldap("").replace("bind_dn =", "bind_dnn =");
    assert_eq!(
        errors(&text),
        "roster.toml:4:1: unknown key `bind_dnn` in [[source]] (did you mean `bind_dn`?); \
         expected one of `type`, `url`, `starttls`, `ca_file`, `bind_dn`, `bind_password_file`, \
         `bind_password_env`, `bind_password`, `base_dn`, `scope`, `directory`, `range_size`, \
         `exclude_disabled`, `attributes`, `group_filter`, `name_attr`, `description_attr`, \
         `member_attr`, `member_kind`, `user_base_dn`, `user_filter`, `user_key_attr`, `nested`, \
         `page_size`, `timeout`"
    );
}

#[test]
fn ldap_bad_scope_and_member_kind_values_at_once() {
    assert_eq!(
        errors(&ldap("scope = \"base\"\nmember_kind = \"cn\"\n")),
        "roster.toml:7:9: unknown value `base`, expected `sub` or `one`\n\
         roster.toml:8:15: unknown value `cn`, expected `dn` or `uid`"
    );
}

#[test]
fn ldap_url_must_be_ldap_or_ldaps() {
    let text = ldap("").replace(
        r#"url = "ldaps://ldap.example.org""#,
        r#"url = ["ldaps://ldap1.example.org", "https://ldap2.example.org"]"#,
    );
    assert_eq!(
        errors(&text),
        "roster.toml:3:37: invalid url `https://ldap2.example.org`: it must start with ldap:// \
         or ldaps://"
    );
    let text = ldap("").replace(
        r#""ldaps://ldap.example.org""#,
        r#""ldaps://ldap.example.org/dc=example,dc=org""#,
    );
    assert_eq!(
        errors(&text),
        "roster.toml:3:7: invalid url `ldaps://ldap.example.org/dc=example,dc=org`: give the \
         server only, as ldap://host or ldap://host:port; the search base is `base_dn`"
    );
    let text = ldap("").replace(r#""ldaps://ldap.example.org""#, "[]");
    assert_eq!(
        errors(&text),
        "roster.toml:3:7: `url` is an empty list: give at least one ldap:// or ldaps:// URL"
    );
    let text = ldap("").replace(r#""ldaps://ldap.example.org""#, "389");
    assert_eq!(
        errors(&text),
        "roster.toml:3:7: invalid type: integer `389`, expected a URL or an array of URLs"
    );
    let text = ldap("").replace(r#""ldaps://ldap.example.org""#, r#""ldap://:389""#);
    assert_eq!(
        errors(&text),
        "roster.toml:3:7: invalid url `ldap://:389`: no host"
    );
    let text = ldap("").replace(r#""ldaps://ldap.example.org""#, r#""ldaps://ldap:6360x""#);
    assert_eq!(
        errors(&text),
        "roster.toml:3:7: invalid url `ldaps://ldap:6360x`: invalid port `6360x`"
    );
}

#[test]
fn ldap_starttls_is_for_ldap_urls_only() {
    assert_eq!(
        errors(&ldap("starttls = true\n")),
        "roster.toml:3:7: StartTLS is for ldap:// URLs, and `ldaps://ldap.example.org` is TLS \
         from the start: drop `starttls = true` or use an ldap:// URL"
    );
}

#[test]
fn ldap_in_clear_to_another_machine_is_warned_about() -> TestResult {
    let text = ldap("").replace(
        r#"url = "ldaps://ldap.example.org""#,
        r#"url = ["ldap://localhost", "ldap://[::1]:389", "ldap://127.0.0.1", "ldap://ldap.example.org"]"#,
    );
    let config = parse(&text)?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:3:68: warning: `ldap://ldap.example.org` is LDAP without TLS: the bind \
             password and directory data cross the network in clear; use ldaps:// or \
             `starttls = true`"
        ]
    );
    Ok(())
}

#[test]
fn ldap_bind_dn_and_password_go_together() {
    let no_password = ldap("").replace("bind_password_env = \"PATH\"\n", "");
    assert_eq!(
        errors(&no_password),
        "roster.toml:4:11: `bind_dn` needs a password: set `bind_password_file`, \
         `bind_password_env` or `bind_password`"
    );
    let no_dn = ldap("").replace(
        "bind_dn = \"cn=roster,ou=services,dc=example,dc=org\"\n",
        "",
    );
    assert_eq!(
        errors(&no_dn),
        "roster.toml:4:21: `bind_password_env` needs `bind_dn`: an anonymous bind takes no \
         password"
    );
    let two_ways = ldap("bind_password = \"hunter2\"\n");
    assert_eq!(
        errors(&two_ways),
        "roster.toml:7:17: `bind_password` conflicts with `bind_password_env`: give the secret \
         one way only"
    );
}

#[test]
fn ldap_literal_bind_password_is_warned_about_and_never_shown() -> TestResult {
    let text = ldap("").replace(
        r#"bind_password_env = "PATH""#,
        r#"bind_password = "hunter2""#,
    );
    let config = parse(&text)?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:5:17: warning: `bind_password` is written in the config file; prefer \
             `bind_password_file` or `bind_password_env`"
        ]
    );
    let c = ldap_source(&config);
    assert_eq!(
        c.bind_password.as_ref().map(|p| p.expose()),
        Some("hunter2")
    );
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("[redacted]"));
    Ok(())
}

#[test]
fn ldap_bad_values_are_all_reported_at_once() {
    let text = ldap(
        r#"group_filter = "objectClass=groupOfNames"
user_filter = ""
name_attr = "common name"
page_size = 0
timeout = "0s"
ca_file = "no-such-ca.pem"
"#,
    )
    .replace(
        r#"base_dn = "ou=groups,dc=example,dc=org""#,
        r#"base_dn = " ""#,
    );
    assert_eq!(
        errors(&text),
        "roster.toml:6:11: `base_dn` is empty; give the DN groups are searched under, such \
             as \"ou=groups,dc=example,dc=org\"\n\
             roster.toml:7:16: invalid filter `objectClass=groupOfNames`: an LDAP filter is in \
             parentheses, such as `(objectClass=groupOfNames)`\n\
             roster.toml:8:15: `user_filter` is empty; leave it out to use the default, \
             `(objectClass=inetOrgPerson)`\n\
             roster.toml:9:13: invalid attribute name `common name`: use letters, digits, `-`, \
             `.` and `;` only\n\
             roster.toml:10:13: `page_size` must be between 1 and 2147483647\n\
             roster.toml:11:11: `timeout` must be longer than zero\n\
             roster.toml:12:11: cannot read CA file no-such-ca.pem: No such file or directory (os \
             error 2)"
    );
    let text = ldap("page_size = 2147483648\ntimeout = \"soon\"\n");
    assert_eq!(
        errors(&text),
        "roster.toml:7:13: `page_size` must be between 1 and 2147483647\n\
         roster.toml:8:11: invalid duration `soon`: expected number at 0; write it like \"30s\" \
         or \"2m\""
    );
}

#[test]
fn ldap_missing_keys_point_at_the_source() {
    let text = ldap("").replace("url = \"ldaps://ldap.example.org\"\n", "");
    assert_eq!(errors(&text), "roster.toml:1:1: missing key `url`");
    let text = ldap("").replace("base_dn = \"ou=groups,dc=example,dc=org\"\n", "");
    assert_eq!(errors(&text), "roster.toml:1:1: missing key `base_dn`");
}

#[test]
fn the_ldap_example_config_is_valid() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    // The example's secrets are in the repository, but a checkout may leave them readable by
    // others, which warns: read them from copies only the owner may read, so that no warning at
    // all is allowed.
    let tmp = tempfile::tempdir()?;
    let text = fs::read_to_string(dir.join("ldap-example.toml"))?;
    fs::create_dir(tmp.path().join("secrets"))?;
    for secret in ["secrets/ldap", "secrets/contensis"] {
        fs::copy(dir.join(secret), tmp.path().join(secret))?;
        restrict(&tmp.path().join(secret))?;
    }
    let config = config::parse(&text, &tmp.path().join("ldap-example.toml"))?;
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let c = ldap_source(&config);
    assert_eq!(c.urls, ["ldaps://ldap.example.org"]);
    assert_eq!(
        c.bind_dn.as_deref(),
        Some("cn=roster,ou=services,dc=example,dc=org")
    );
    assert_eq!(config.targets.len(), 1);
    Ok(())
}

/// `base_env()` with a `[daemon]` table of these lines (the table starts at line 12).
fn with_daemon(lines: &str) -> String {
    format!("{}\n[daemon]\n{lines}", base_env())
}

#[test]
fn daemon_table_is_read_with_its_defaults() -> TestResult {
    let config = parse(&with_daemon("schedule = \"*/15 * * * *\"\n"))?;
    let daemon = config.daemon.ok_or("no [daemon]")?;
    assert_eq!(daemon.schedule_text, "*/15 * * * *");
    assert_eq!(daemon.jitter, std::time::Duration::ZERO);
    assert!(daemon.run_on_start);
    assert_eq!(daemon.listen, None);
    assert_eq!(daemon.shutdown_timeout, std::time::Duration::from_secs(30));
    assert!(parse(&base_env())?.daemon.is_none());
    Ok(())
}

#[test]
fn daemon_bad_schedules() {
    assert_eq!(
        errors(&with_daemon("schedule = \"*/15 * * *\"\n")),
        "roster.toml:13:12: invalid schedule `*/15 * * *`: 4 fields; write 5 (minute hour day \
         month weekday, as in a crontab) or 6 (seconds first)"
    );
    assert_eq!(
        errors(&with_daemon("schedule = \"0 9 * * 8\"\n")),
        "roster.toml:13:12: invalid schedule `0 9 * * 8`: weekday 8 is out of range (0 to 7, \
         Sunday being 0 or 7)"
    );
    assert_eq!(
        errors(&with_daemon("schedule = \"61 * * * *\"\n")),
        "roster.toml:13:12: invalid schedule `61 * * * *`: minute 61 is out of range (0 to 59)"
    );
    assert_eq!(
        errors(&with_daemon("schedule = \"0 0 1-32 * *\"\n")),
        "roster.toml:13:12: invalid schedule `0 0 1-32 * *`: day of the month 32 is out of range \
         (1 to 31)"
    );
}

#[test]
fn daemon_bad_durations() {
    assert_eq!(
        errors(&with_daemon(
            "schedule = \"* * * * *\"\njitter = \"thirty\"\nshutdown_timeout = \"0s\"\n"
        )),
        "roster.toml:14:10: invalid duration `thirty`: expected number at 0; write it like \
         \"30s\" or \"2m\"\nroster.toml:15:20: `shutdown_timeout` must be longer than zero"
    );
}

#[test]
fn daemon_bad_listen_address_and_a_public_one() -> TestResult {
    assert_eq!(
        errors(&with_daemon(
            "schedule = \"* * * * *\"\nlisten = \"localhost\"\n"
        )),
        "roster.toml:14:10: invalid listen address `localhost`: write it as host:port, such as \
         \"127.0.0.1:9464\""
    );
    let config = parse(&with_daemon(
        "schedule = \"* * * * *\"\nlisten = \"0.0.0.0:9464\"\n",
    ))?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:14:10: warning: `0.0.0.0:9464` is not a loopback address: /metrics and \
          /healthz have no authentication"
        ]
    );
    Ok(())
}

#[test]
fn daemon_unknown_and_missing_keys() {
    assert_eq!(
        errors(&with_daemon(
            "schedule = \"* * * * *\"\nrun_on_strat = false\n"
        )),
        "roster.toml:14:1: unknown key `run_on_strat` in [daemon] (did you mean `run_on_start`?); \
         expected one of `schedule`, `jitter`, `run_on_start`, `listen`, `shutdown_timeout`, \
         `state_dir`, `watch`, `debounce`, `debounce_max`, `poll_interval`, `trigger_token_file`, \
         `trigger_token_env`, `lease`"
    );
    assert_eq!(
        errors(&with_daemon("jitter = \"1s\"\n")),
        "roster.toml:12:1: missing key `schedule`"
    );
    assert_eq!(
        errors(&format!("daemon = \"yes\"\n{}", base_env())),
        "roster.toml:1:10: `daemon` must be a table: write a [daemon] section"
    );
}

#[test]
fn ldap_active_directory_keys_are_read_and_checked() -> TestResult {
    let text = ldap(
        r#"directory = "ad"
range_size = 1500
user_key_attr = "userPrincipalName"
exclude_disabled = true
attributes = { "vinyldns.email" = "mail", "vinyldns.admins" = "managedBy", "contensis.custom.team" = "department" }
"#,
    );
    let config = parse(&text)?;
    let c = ldap_source(&config);
    assert_eq!(c.directory, Directory::Ad);
    assert_eq!((c.range_size, c.exclude_disabled), (1500, true));
    assert_eq!(c.user_key_attr.as_deref(), Some("userPrincipalName"));
    let mapped: Vec<(String, String, String)> = c
        .attributes
        .iter()
        .map(|m| (m.target_type.clone(), m.path.join("."), m.ldap_attr.clone()))
        .collect();
    let want = |t: &str, p: &str, a: &str| (t.to_owned(), p.to_owned(), a.to_owned());
    assert_eq!(
        mapped,
        [
            want("contensis", "custom.team", "department"),
            want("vinyldns", "admins", "managedBy"),
            want("vinyldns", "email", "mail"),
        ]
    );
    Ok(())
}

#[test]
fn ldap_active_directory_bad_values_are_reported_where_written() {
    let text = ldap(
        r#"directory = "openldap"
range_size = 0
exclude_disabled = true
attributes = { "vinyldns.owner" = "owner", "vinyldns.email" = "", "contensis.custom." = "x" }
"#,
    );
    assert_eq!(
        errors(&text),
        "roster.toml:8:14: `range_size` must be between 1 and 1000000 (values per ranged read)\n\
         roster.toml:9:20: `exclude_disabled` reads Active Directory's userAccountControl, and \
         this source is `directory = \"openldap\"`: leave it out, or filter disabled users with \
         `user_filter`\n\
         roster.toml:10:16: `vinyldns.owner` is not a per-target attribute an LDAP source can \
         fill; known: contensis.custom.*, vinyldns.admins, vinyldns.email\n\
         roster.toml:10:63: `vinyldns.email` maps to an empty attribute name\n\
         roster.toml:10:67: `contensis.custom.` is not a per-target attribute an LDAP source \
         can fill; known: contensis.custom.*, vinyldns.admins, vinyldns.email"
    );
    let bad_directory = ldap("directory = \"novell\"\n");
    let e = errors(&bad_directory);
    assert_eq!(
        e,
        "roster.toml:7:13: unknown value `novell`, expected one of `auto`, `openldap`, `ad`"
    );
}

#[test]
fn ldap_binary_attributes_cannot_be_user_keys() {
    let text = ldap("user_key_attr = \"objectGUID\"\n");
    assert_eq!(
        errors(&text),
        "roster.toml:7:17: `objectGUID` is binary, so it cannot be a user key; use a text \
         attribute such as sAMAccountName, userPrincipalName, mail or uid"
    );
}

#[test]
fn state_dir_is_relative_to_the_config_and_given_once() -> TestResult {
    let config = config::parse(
        &format!("state_dir = \"state\"\n{}", base_env()),
        Path::new("/etc/roster/roster.toml"),
    )?;
    assert_eq!(config.state_dir, PathBuf::from("/etc/roster/state"));
    let config = config::parse(
        &with_daemon("schedule = \"* * * * *\"\nstate_dir = \"/var/lib/roster\"\n"),
        Path::new("/etc/roster/roster.toml"),
    )?;
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/roster"));
    assert_eq!(
        errors(&format!(
            "state_dir = \"a\"\n{}",
            with_daemon("schedule = \"* * * * *\"\nstate_dir = \"b\"\n")
        )),
        "roster.toml:15:13: `state_dir` is set twice, here and at the top level (1:13); keep one: \
         roster keeps one journal per config"
    );
    assert_eq!(
        errors(&format!("state_dir = 7\n{}", base_env())),
        "roster.toml:1:13: `state_dir` must be a string: the path of a folder"
    );
    assert_eq!(
        errors(&format!("state_dir = \"Cargo.toml\"\n{}", base_env())),
        "roster.toml:1:13: `state_dir` Cargo.toml exists and is not a folder"
    );
    Ok(())
}

#[test]
fn the_journal_table_sets_rotation() -> TestResult {
    let config = parse(&base_env())?;
    assert_eq!(config.journal.max_file_size, 16 << 20);
    assert_eq!(config.journal.max_files.get(), 8);
    let config = parse(&format!(
        "{}\n[journal]\nmax_file_size = \"1 MB\"\nmax_files = 3\n",
        base_env()
    ))?;
    assert_eq!(config.journal.max_file_size, 1_000_000);
    assert_eq!(config.journal.max_files.get(), 3);
    assert_eq!(
        errors(&format!(
            "{}\n[journal]\nmax_file_size = \"1k\"\nmax_files = 0\nkeep = 2\n",
            base_env()
        )),
        "roster.toml:13:17: invalid size `1k`: write a whole number with a unit, such as \"16MiB\" \
         or \"500KB\"\n\
         roster.toml:14:13: `max_files` must be 1 or more (the file being written counts), not 0\n\
         roster.toml:15:1: unknown key `keep` in [journal]; expected one of `max_file_size`, \
         `max_files`"
    );
    assert_eq!(
        errors(&format!(
            "{}\n[journal]\nmax_file_size = \"1KiB\"\n",
            base_env()
        )),
        "roster.toml:13:17: `max_file_size` must be at least 4KiB, not `1KiB`"
    );
    Ok(())
}

#[test]
fn daemon_trigger_keys_have_defaults_and_are_checked() -> TestResult {
    let config = parse(&with_daemon("schedule = \"0 * * * *\"\n"))?;
    let d = config.daemon.ok_or("no [daemon]")?;
    assert!(d.watch);
    assert_eq!(d.debounce, std::time::Duration::from_secs(2));
    assert_eq!(d.debounce_max, std::time::Duration::from_secs(30));
    assert_eq!(d.poll_interval, std::time::Duration::from_secs(60));
    assert!(d.trigger_token.is_none() && d.lease.is_none());

    let config = parse(&with_daemon(
        "schedule = \"0 * * * *\"\nwatch = false\ndebounce = \"0s\"\ndebounce_max = \"5s\"\n\
         poll_interval = \"10s\"\ntrigger_token_env = \"PATH\"\n",
    ))?;
    let d = config.daemon.ok_or("no [daemon]")?;
    assert!(!d.watch);
    assert_eq!(d.debounce, std::time::Duration::ZERO);
    assert_eq!(d.debounce_max, std::time::Duration::from_secs(5));
    assert_eq!(d.poll_interval, std::time::Duration::from_secs(10));
    let token = d.trigger_token.ok_or("no token")?;
    assert_eq!(token.expose(), std::env::var("PATH")?);
    assert_eq!(format!("{token:?}"), "[redacted]");

    assert_eq!(
        errors(&with_daemon(
            "schedule = \"0 * * * *\"\ndebounce_max = \"0s\"\npoll_interval = \"soon\"\n\
             trigger_token_file = \"no/such/file\"\n"
        )),
        "roster.toml:14:16: `debounce_max` must be longer than zero\nroster.toml:15:17: invalid \
         duration `soon`: expected number at 0; write it like \"30s\" or \"2m\"\n\
         roster.toml:16:22: cannot read secret file no/such/file: No such file or directory (os \
         error 2)"
    );
    let config = parse(&with_daemon(
        "schedule = \"0 * * * *\"\ndebounce = \"10s\"\ndebounce_max = \"5s\"\n",
    ))?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:15:16: warning: `debounce_max` is shorter than `debounce`: runs start \
          `debounce_max` after the first change"
        ]
    );
    Ok(())
}

/// `with_daemon` plus a `[daemon.lease]` table of these lines (the table starts at line 15).
fn with_lease(lines: &str) -> String {
    with_daemon(&format!(
        "schedule = \"0 * * * *\"\n\n[daemon.lease]\n{lines}"
    ))
}

#[test]
fn daemon_lease_is_read_with_its_defaults() -> TestResult {
    let config = parse(&with_lease(
        "backend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"https://etcd2:2379/\"]\n",
    ))?;
    let lease = config
        .daemon
        .and_then(|d| d.lease)
        .ok_or("no [daemon.lease]")?;
    assert_eq!(
        lease.endpoints,
        ["http://127.0.0.1:2379", "https://etcd2:2379"]
    );
    assert_eq!(lease.key, "/roster/leader");
    assert_eq!(lease.ttl, std::time::Duration::from_secs(15));
    assert_eq!(lease.name, None);
    assert!(lease.username.is_none() && lease.password.is_none());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    Ok(())
}

#[test]
fn daemon_lease_errors_point_at_their_keys() {
    // Every problem at once, the unknown key's too.
    assert_eq!(
        errors(&with_lease(
            "backend = \"consul\"\nendpoints = [\"etcd1:2379\"]\nttl = \"2500ms\"\nkye = \"/x\"\n"
        )),
        "roster.toml:16:11: unknown lease backend `consul`: the one backend is `etcd`\n\
         roster.toml:17:14: invalid etcd endpoint `etcd1:2379`: it must start with https:// or \
         http://\nroster.toml:18:7: `ttl` must be whole seconds, at least 3s\n\
         roster.toml:19:1: unknown key `kye` in [daemon.lease] (did you mean `key`?); expected \
         one of `backend`, `endpoints`, `key`, `ttl`, `ca_file`, `cert_file`, `key_file`, \
         `username`, `password_file`, `password_env`, `name`"
    );
    assert_eq!(
        errors(&with_lease(
            "backend = \"etcd\"\nendpoints = []\nusername = \"roster\"\ncert_file = \"no.pem\"\n"
        )),
        "roster.toml:17:13: `endpoints` is empty: list etcd's client URLs\n\
         roster.toml:18:12: `username` needs `password_file` or `password_env`\n\
         roster.toml:19:13: cannot read certificate file no.pem: No such file or directory (os \
         error 2)"
    );
    assert_eq!(
        errors(&with_daemon("schedule = \"0 * * * *\"\nlease = \"etcd\"\n")),
        "roster.toml:14:9: `lease` must be a table: write a [daemon.lease] section"
    );
}

#[test]
fn daemon_lease_over_plain_http_off_loopback_is_warned_about() -> TestResult {
    let config = parse(&with_lease(
        "backend = \"etcd\"\nendpoints = [\"http://etcd1:2379\"]\n",
    ))?;
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "roster.toml:17:14: warning: `http://etcd1:2379` is plain http: the lease's proofs \
          cross the network unencrypted"
        ]
    );
    Ok(())
}

#[test]
fn daemon_lease_client_certificate_needs_its_key() {
    // Any readable file passes the existence check; the pairing is what is checked here.
    assert_eq!(
        errors(&with_lease(
            "backend = \"etcd\"\nendpoints = [\"https://etcd1:2379\"]\ncert_file = \"Cargo.toml\"\n"
        )),
        "roster.toml:15:1: `cert_file` and `key_file` go together: give both for mutual TLS, or \
         neither"
    );
}

#[test]
fn a_target_rate_limit_is_read_and_checked() -> TestResult {
    let config = parse(&format!(
        "{}rate_limit = \"1200/m\"\nburst = 5\n",
        base_env()
    ))?;
    let limit = config.targets[0].rate_limit.ok_or("no rate_limit")?;
    assert_eq!(limit.rate.to_string(), "1200/m");
    assert_eq!(limit.rate.interval(), std::time::Duration::from_millis(50));
    assert_eq!(limit.burst, 5);
    let config = parse(&format!("{}rate_limit = \"20/s\"\n", base_env()))?;
    assert_eq!(config.targets[0].rate_limit.map(|l| l.burst), Some(1));
    assert!(parse(&base_env())?.targets[0].rate_limit.is_none());
    assert_eq!(
        errors(&format!(
            "{}rate_limit = \"20 per second\"\nburst = 0\n",
            base_env()
        )),
        "roster.toml:11:14: invalid rate `20 per second`: write calls per unit, such as \
         \"20/s\", \"1200/m\" or \"50000/h\"\nroster.toml:12:9: `burst` must be at least 1"
    );
    assert_eq!(
        errors(&format!("{}burst = 3\n", base_env())),
        "roster.toml:11:9: `burst` needs a `rate_limit`"
    );
    Ok(())
}
