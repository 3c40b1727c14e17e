//! Saved plans end to end, with the `roster` binary against the simulators over real HTTP:
//! `roster plan --out FILE` then `roster apply FILE` applies exactly what was reviewed, refuses a
//! target that changed since (exit 3, zero writes, the group named) while an untouched target
//! applies, and refuses an edited, foreign or other-config file before reading anything.

use std::path::{Path, PathBuf};

mod support;

use roster::sim::{RunningSim, SimKind};
use support::{roster_at, stderr, stdout};

/// The demo config's targets (`cms` on Contensis, `dns` on VinylDNS) in a folder of their own,
/// pointed at running simulators seeded as the demo seeds them.
struct Demo {
    sim: RunningSim,
    dir: tempfile::TempDir,
}

impl Demo {
    async fn start() -> Demo {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let seed = roster::sim::load_seed(&root.join("sim-seed.toml")).expect("seed");
        let sim = roster::sim::start(seed, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("simulators");
        let dir = tempfile::tempdir().expect("tempdir");
        let text = std::fs::read_to_string(root.join("roster.toml")).expect("config");
        // Only the first two targets, and no daemon table.
        let cut = text
            .find("[[target]]\nname = \"studio\"")
            .expect("studio target");
        let text = text[..cut]
            .replace("http://127.0.0.1:8787", &sim.url_of(SimKind::Contensis))
            .replace("http://127.0.0.1:8788", &sim.url_of(SimKind::VinylDns));
        std::fs::write(dir.path().join("roster.toml"), text).expect("config");
        std::fs::create_dir(dir.path().join("secrets")).expect("secrets");
        for f in ["contensis", "vinyldns-access", "vinyldns-secret"] {
            let to = dir.path().join("secrets").join(f);
            std::fs::copy(root.join("secrets").join(f), &to).expect("secret");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        std::fs::create_dir(dir.path().join("groups")).expect("groups");
        for entry in std::fs::read_dir(root.join("groups")).expect("groups") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name");
            std::fs::copy(&path, dir.path().join("groups").join(name)).expect("copy");
        }
        Demo { sim, dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("roster.toml")
    }

    async fn roster(&self, args: &[&str]) -> std::process::Output {
        roster_at(&self.config(), args, &[]).await
    }

    /// Adds a member to a group of the demo's desired state.
    fn add_member(&self, group: &str, member: &str) {
        let path = self.dir.path().join("groups/paper-street.toml");
        let text = std::fs::read_to_string(&path).expect("groups");
        let header = format!("name = \"{group}\"");
        let at = text.find(&header).expect("group in the file");
        let members = at + text[at..].find("members = [").expect("members") + "members = [".len();
        let text = format!("{}\"{member}\", {}", &text[..members], &text[members..]);
        std::fs::write(&path, text).expect("groups");
    }

    fn writes(&self, kind: SimKind) -> usize {
        self.sim
            .handles
            .calls_of(kind)
            .iter()
            .filter(|c| !c.starts_with("GET ") && !c.contains("token") && !c.contains("/_sim"))
            .count()
    }
}

#[tokio::test]
async fn a_saved_plan_applies_exactly_and_a_target_changed_since_is_refused_alone() {
    let d = Demo::start().await;
    let out = d.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The plan under review adds one member.
    d.add_member("paper_street_soap", "bob");
    let plan = d.dir.path().join("plan.json");
    let plan_arg = plan.to_str().expect("utf-8");
    let out = d
        .roster(&["plan", "--out", plan_arg, "--detailed-exitcode"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("+ member \"bob\" in \"paper_street_soap\""),
        "{}",
        stdout(&out)
    );

    // Someone changes `cms` before the merge: here roster itself, for a desired state that
    // gains one more member; the saved plan no longer fits `cms`, and still fits `dns`.
    d.add_member("paper_street_soap", "narrator");
    let out = d.roster(&["apply", "--target", "cms"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (cms, dns) = (d.writes(SimKind::Contensis), d.writes(SimKind::VinylDns));
    let out = d.roster(&["apply", plan_arg]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("cms: refused, nothing written: the target changed since the plan was made")
            && text.contains("\"paper_street_soap\" members"),
        "{text}"
    );
    assert_eq!(
        d.writes(SimKind::Contensis),
        cms,
        "no write to the stale target"
    );
    assert!(
        d.writes(SimKind::VinylDns) > dns,
        "the untouched target applied"
    );

    // Exactly the reviewed change went to `dns`: bob, not narrator, who was added to the
    // desired state after the plan was made.
    let out = d.roster(&["plan", "--target", "dns"]).await;
    let text = stdout(&out);
    assert!(
        text.contains("+ member \"narrator\" in \"paper_street_soap\""),
        "{text}"
    );
    assert!(!text.contains("bob"), "{text}");
}

#[tokio::test]
async fn an_edited_foreign_or_other_config_plan_is_refused_before_any_read() {
    let d = Demo::start().await;
    let plan = d.dir.path().join("plan.json");
    let plan_arg = plan.to_str().expect("utf-8");
    let out = d.roster(&["plan", "--out", plan_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let saved = std::fs::read_to_string(&plan).expect("plan written");
    assert!(saved.contains("\"fingerprint\""), "{saved}");

    let calls = |d: &Demo| d.sim.handles.calls_of(SimKind::Contensis).len();
    let before = calls(&d);
    let try_apply = async |text: &str| {
        let path = d.dir.path().join("other.json");
        std::fs::write(&path, text).expect("write");
        d.roster(&["apply", path.to_str().expect("utf-8")]).await
    };

    let edited = saved.replacen("\"add_member\"", "\"remove_member\"", 1);
    let edited = if edited == saved {
        saved.replacen(
            "\"changes\": []",
            "\"changes\": [{\"op\": \"delete_group\", \"group\": \"x\"}]",
            1,
        )
    } else {
        edited
    };
    assert_ne!(edited, saved);
    let out = try_apply(&edited).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("edited or is damaged"),
        "{}",
        stderr(&out)
    );

    let out = try_apply("{\"hello\": 1}").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a roster saved plan"),
        "{}",
        stderr(&out)
    );

    // The same plan under a config whose target settings differ.
    let config = std::fs::read_to_string(d.config()).expect("config");
    std::fs::write(
        d.config(),
        config.replacen("concurrency = 8", "concurrency = 7", 1),
    )
    .expect("config");
    let out = d.roster(&["apply", plan_arg]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("another config"), "{}", stderr(&out));

    assert_eq!(calls(&d), before, "nothing was read");
}

#[tokio::test]
async fn the_pull_request_workflow_commands_work_against_the_simulators() {
    // The commands of examples/github-actions/roster.yml, in its order.
    let d = Demo::start().await;
    let out = d.roster(&["validate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let plan = d.dir.path().join("plan.json");
    let plan_arg = plan.to_str().expect("utf-8");
    let out = d
        .roster(&[
            "plan",
            "--format",
            "markdown",
            "--out",
            plan_arg,
            "--detailed-exitcode",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.starts_with("### roster plan\n"), "{md}");
    assert!(
        md.contains("| **cms** |") && md.contains("<details>"),
        "{md}"
    );

    let out = d.roster(&["apply", plan_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = d.roster(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // The workflow is the one this test follows.
    let workflow = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions/roster.yml"),
    )
    .expect("workflow");
    for command in [
        "roster --config roster.toml validate",
        "roster --config roster.toml plan --format markdown --out plan.json --detailed-exitcode",
        "roster --config roster.toml apply plan.json",
    ] {
        assert!(workflow.contains(command), "{command}");
    }
}

#[tokio::test]
async fn a_saved_change_to_a_group_no_longer_managed_is_refused_and_a_target_not_in_the_plan_is_an_error()
 {
    let d = Demo::start().await;
    let out = d.roster(&["apply"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A pull request adds a group; before its merge, another removes it again.
    let extra = d.dir.path().join("groups/newcomers.toml");
    std::fs::write(
        &extra,
        "[[group]]\nname = \"newcomers\"\nmembers = [\"bob\"]\n[group.vinyldns]\n\
         email = \"new@example.org\"\nadmins = [\"bob\"]\n",
    )
    .expect("file");
    let plan = d.dir.path().join("plan.json");
    let plan_arg = plan.to_str().expect("utf-8");
    let out = d.roster(&["plan", "--out", plan_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::remove_file(&extra).expect("remove");

    let (cms, dns) = (d.writes(SimKind::Contensis), d.writes(SimKind::VinylDns));
    let out = d.roster(&["apply", plan_arg]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("\"newcomers\" is no longer in the managed scope"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        (d.writes(SimKind::Contensis), d.writes(SimKind::VinylDns)),
        (cms, dns),
        "nothing written"
    );

    // --target naming a target of the config that the plan lacks.
    let out = d
        .roster(&["plan", "--target", "cms", "--out", plan_arg])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = d.roster(&["apply", plan_arg, "--target", "dns"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the saved plan has no target \"dns\""),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_plan_with_a_target_that_could_not_be_read_is_not_saved() {
    let d = Demo::start().await;
    let config = std::fs::read_to_string(d.config()).expect("config");
    // Point `dns` at a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dns_url = d.sim.url_of(SimKind::VinylDns);
    std::fs::write(
        d.config(),
        config.replacen(&dns_url, &format!("http://127.0.0.1:{port}"), 1) + "",
    )
    .expect("config");
    let plan = d.dir.path().join("plan.json");
    let out = d
        .roster(&["plan", "--out", plan.to_str().expect("utf-8")])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the plan was not saved"),
        "{}",
        stderr(&out)
    );
    assert!(!plan.exists());
}
