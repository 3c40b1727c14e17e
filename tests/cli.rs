//! The `roster` binary as a user meets it: `sim` serving on a real port, and `validate`, `plan`
//! and `apply` against a config written for it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

mod support;

use support::{roster_at, stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_roster");

/// Starts `roster sim` on a free port and returns the child and its URL (read from its log).
async fn start_sim(seed: &std::path::Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--seed",
        ])
        .arg(seed)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("roster sim starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(url) = v["url"].as_str() {
                return url.to_owned();
            }
        }
        panic!("roster sim ended without saying where it listens");
    })
    .await
    .expect("roster sim says where it listens in time");
    (child, url)
}

#[tokio::test]
async fn sim_validate_plan_and_apply_work_together_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("seed.toml");
    std::fs::write(
        &seed,
        "[contensis]\nclient_id = \"me\"\nclient_secret = \"pw\"\nusers = [\"ann\", \"ben\"]\n",
    )
    .expect("seed");
    let (mut sim, url) = start_sim(&seed).await;

    std::fs::write(
        dir.path().join("roster.toml"),
        format!(
            "[[source]]\ntype = \"toml\"\npath = \"desired.toml\"\n\n[[target]]\nname = \"cms\"\n\
             type = \"contensis\"\nurl = \"{url}\"\nclient_id = \"me\"\nclient_secret_env = \"CMS_SECRET\"\n"
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("desired.toml"),
        "[[group]]\nname = \"Team\"\nmembers = [\"ann\", \"ben\"]\n",
    )
    .expect("desired");
    let config = dir.path().join("roster.toml");
    let run = async |args: &[&str]| roster_at(&config, args, &[("CMS_SECRET", "pw")]).await;

    let out = run(&["validate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("valid: 1 sources, 1 targets, 1 groups"));

    let out = run(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).contains("Plan: 3 to add, 0 to change, 0 to remove."));

    let out = run(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Apply complete: 3 changes applied, 0 failed."));

    let out = run(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The simulator's control endpoint shows what roster wrote.
    let state: serde_json::Value = reqwest::get(format!("{url}/_sim/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(state.to_string().contains("\"Team\""), "{state}");
    sim.kill().await.expect("kill");
}

#[tokio::test]
async fn validate_reports_every_problem_with_its_position_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("roster.toml");
    std::fs::write(
        &config,
        "[[source]]\ntype = \"toml\"\npath = \"g.toml\"\n\n[[target]]\nname = \"cms\"\ntype = \"contensis\"\n\
         url = \"https://cms.example.com\"\nclient_id = \"r\"\nclient_secret_env = \"HOME\"\nmax_delets = 5\n",
    )
    .expect("config");
    let out = roster_at(&config, &["validate"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "roster.toml:11:1: unknown key `max_delets` in [[target]] (did you mean `max_deletes`?)"
        ),
        "{err}"
    );

    // A broken desired-state file is reported at its own line and column.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("read")
            .replace("max_delets = 5\n", ""),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("g.toml"),
        "[[group]]\nname = \"A\"\nchildren = [\"B\"]\n\n[[group]]\nname = \"B\"\nchildren = [\"A\"]\n",
    )
    .expect("groups");
    let out = roster_at(&config, &["validate"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("g.toml:3:13: cycle: A → B → A"), "{err}");
}

#[tokio::test]
async fn validate_never_contacts_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A listener that counts connections: validate must make none.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    std::fs::write(dir.path().join("pw"), "x\n").expect("pw");
    std::fs::write(
        dir.path().join("g.toml"),
        "[[group]]\nname = \"local\"\nchildren = [\"from-ldap\"]\n",
    )
    .expect("groups");
    let config = dir.path().join("roster.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\ntype = \"ldap\"\nurl = \"ldap://127.0.0.1:{port}\"\nbind_dn = \"cn=r\"\n\
             bind_password_file = \"pw\"\nbase_dn = \"dc=x\"\n\n[[source]]\ntype = \"toml\"\npath = \"g.toml\"\n"
        ),
    )
    .expect("config");
    let out = roster_at(&config, &["validate"], &[]).await;
    // The child may come from the directory, so it is not reported as unknown.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 groups in files (1 directory sources"),
        "{}",
        stdout(&out)
    );
    assert!(
        listener.accept().is_err(),
        "validate connected to the directory"
    );
}

#[tokio::test]
async fn roster_sim_serves_all_four_simulators_on_their_own_ports() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("roster sim starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut urls = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while urls.len() < 4 {
            let line = lines
                .next_line()
                .await
                .expect("read")
                .expect("a line per simulator");
            let (kind, url) = line.split_once(' ').expect("`type url`");
            urls.push((kind.to_owned(), url.trim().to_owned()));
        }
    })
    .await
    .expect("roster sim prints its URLs in time");
    let kinds: Vec<&str> = urls.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["contensis", "vinyldns", "crafter", "uipath"]);
    let mut ports = std::collections::BTreeSet::new();
    for (kind, url) in &urls {
        let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{kind}: {url}: {e}"));
        ports.insert(parsed.port().expect("a port"));
        // Each answers HTTP (an API error for an unauthenticated request is an answer).
        let resp = reqwest::get(url.as_str()).await;
        assert!(resp.is_ok(), "{kind} at {url} does not answer: {resp:?}");
    }
    assert_eq!(ports.len(), 4, "one port each: {urls:?}");
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn an_unknown_target_is_an_error_naming_the_known_ones() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roster.toml");
    for command in ["plan", "apply"] {
        let out = roster_at(&config, &[command, "--target", "cmss"], &[]).await;
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        // The demo's secrets may be readable by others in a checkout, which warns first.
        assert_eq!(
            stderr(&out).lines().last(),
            Some(
                "roster: no target named \"cmss\" in the config (targets: cms, dns, studio, robots)"
            ),
            "{command}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "", "{command}");
    }
}

#[tokio::test]
async fn without_a_config_the_error_names_every_place_roster_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::new(BIN)
        .arg("plan")
        .current_dir(dir.path())
        .output()
        .await
        .expect("roster runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("./roster.toml") && err.contains("/etc/roster/roster.toml"),
        "{err}"
    );
    assert!(
        err.find("./roster.toml") < err.find("/etc/roster/roster.toml"),
        "{err}"
    );
}

#[tokio::test]
async fn an_apply_whose_only_target_cannot_be_read_says_nothing_was_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(
        dir.path().join("roster.toml"),
        format!(
            "[[source]]\ntype = \"toml\"\npath = \"desired.toml\"\n\n[[target]]\nname = \"cms\"\n\
             type = \"contensis\"\nurl = \"http://127.0.0.1:{port}\"\nclient_id = \"me\"\n\
             client_secret_env = \"CMS_SECRET\"\nretries = 0\n"
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("desired.toml"),
        "[[group]]\nname = \"Team\"\nmembers = [\"ann\"]\n",
    )
    .expect("desired");
    let config = dir.path().join("roster.toml");
    let out = roster_at(&config, &["apply"], &[("CMS_SECRET", "pw")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.trim_end()
            .ends_with("Nothing applied: the apply did not happen for cms (could not be read)."),
        "{text}"
    );
    assert!(!text.contains("Apply complete"), "{text}");
}

#[tokio::test]
async fn desired_state_errors_are_printed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("roster.toml"),
        "[[source]]\ntype = \"toml\"\npath = \"desired.toml\"\n\n[[target]]\nname = \"cms\"\n\
         type = \"contensis\"\nurl = \"http://127.0.0.1:9\"\nclient_id = \"me\"\n\
         client_secret_env = \"CMS_SECRET\"\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("desired.toml"),
        "[[group]]\nname = \"a\"\nchildren = [\"ghost\"]\n\n[[group]]\nname = \"b\"\nchildren = [\"phantom\"]\n",
    )
    .expect("desired");
    let config = dir.path().join("roster.toml");
    let out = roster_at(&config, &["plan"], &[("CMS_SECRET", "pw")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    for child in ["ghost", "phantom"] {
        assert_eq!(all.matches(&format!("`{child}`")).count(), 1, "{all}");
    }
}
