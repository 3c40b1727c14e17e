//! End-to-end apply speed: 2,000 member changes (1,000 adds, 1,000 removes over 100 groups)
//! against the Contensis simulator with 20 ms added latency and concurrency 8. The bound to beat is
//! 2,000 × 20 ms ÷ 8 = 5 s for the calls themselves.
//!
//! `cargo bench --bench apply` prints the observe, apply and total wall times of three runs.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use roster::exec::{Executor, RetryPolicy};
use roster::model::{Desired, Group, GroupName, UserKey};
use roster::plan::{MembershipMode, Policy, Scope, plan};
use roster::sim::control::SimControl as _;
use roster::sim::{self, Seed, faults::Faults};
use roster::target::Target;
use roster::target::contensis::ContensisTarget;
use roster::target::contensis::config::{ContensisAuth, ContensisConfig};

mod support;

const GROUPS: usize = 100;

fn seed() -> String {
    let mut s =
        String::from("[contensis]\nclient_id = \"roster\"\nclient_secret = \"bench\"\nusers = [");
    s += &(0..20)
        .map(|u| format!("\"u{u:02}\""))
        .collect::<Vec<_>>()
        .join(", ");
    s += "]\n";
    for g in 0..GROUPS {
        s += &format!("[[contensis.group]]\nname = \"g{g:03}\"\nmembers = [");
        s += &(0..10)
            .map(|u| format!("\"u{u:02}\""))
            .collect::<Vec<_>>()
            .join(", ");
        s += "]\n";
    }
    s
}

fn desired() -> Desired {
    let mut d = Desired::default();
    for g in 0..GROUPS {
        let mut group = Group::named(format!("g{g:03}"));
        group.members = (10..20)
            .map(|u| UserKey::from(format!("u{u:02}")))
            .collect();
        d.groups.insert(GroupName(format!("g{g:03}")), group);
    }
    d
}

async fn once(rt_label: usize) {
    let seed: Seed = sim::parse_seed(&seed(), "bench seed").expect("seed");
    let running = sim::start(seed, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sim");
    running.contensis.set_faults(Faults {
        latency: Some(Duration::from_millis(20)),
        ..Faults::default()
    });
    let config = ContensisConfig {
        url: running.url(),
        auth: ContensisAuth::ClientCredentials {
            client_id: "roster".into(),
            client_secret: roster::secret::Secret::new("bench"),
        },
        scope: "Security_Administrator".into(),
    };
    let concurrency = NonZeroUsize::new(8).expect("8");
    let target = ContensisTarget::new("bench", &config, reqwest::Client::new(), concurrency);
    let desired = desired();
    let policy = Policy {
        scope: Scope::new(None, &desired, true).expect("scope"),
        membership: MembershipMode::Authoritative,
        prune: false,
        max_deletes: usize::MAX,
        max_group_shrink: roster::plan::Share::ALL,
        allow_empty_source: false,
    };
    let start = Instant::now();
    let observed = target
        .observe(&policy.scope, &desired.user_keys())
        .await
        .expect("observe");
    let observe_time = start.elapsed();
    let p = plan(
        "bench",
        "contensis",
        &desired,
        &observed,
        &policy,
        target.capabilities(),
    );
    assert_eq!(p.changes.len(), 2_000, "expected 2,000 member changes");
    let calls = target.compile(&p, &observed);
    let exec = Executor::new(RetryPolicy::default(), concurrency);
    let t = Instant::now();
    let report = exec.execute(&target, calls).await;
    let apply_time = t.elapsed();
    assert_eq!(report.failures(), 0);
    println!(
        "run {rt_label}: observe {:.2} s, apply of 2,000 changes {:.2} s (bound 5.00 s), total {:.2} s, {} calls",
        observe_time.as_secs_f64(),
        apply_time.as_secs_f64(),
        start.elapsed().as_secs_f64(),
        report.attempts
    );
    running.shutdown().await;
}

fn main() {
    let Some(rt) = support::benching() else {
        return;
    };
    for i in 1..=3 {
        rt.block_on(once(i));
    }
}
