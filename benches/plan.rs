//! Planner speed and memory: 10,000 groups × 100 members (1,000,000 memberships), observed state
//! differing from the desired by 1 %. Target: under 1 s and under 1 GiB peak.
//!
//! `cargo bench --bench plan`; the peak resident memory of the whole process (inputs included)
//! is printed at the end.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use roster::model::{
    Capabilities, Desired, Group, GroupKind, GroupName, MembershipWrites, Observed, ObservedGroup,
    UserKey,
};
use roster::plan::{MembershipMode, Policy, Scope, plan};

const GROUPS: usize = 10_000;
const MEMBERS: usize = 100;
const USERS: usize = 50_000;

fn inputs() -> (Desired, Observed) {
    let mut desired = Desired::default();
    let mut observed = Observed::default();
    for g in 0..GROUPS {
        let name = GroupName(format!("group-{g:05}"));
        let mut want = Group::named(name.clone());
        want.description = Some(format!("Group number {g}"));
        for m in 0..MEMBERS {
            want.members
                .insert(UserKey(format!("user{:05}", (g * 37 + m * 11) % USERS)));
        }
        // 1 % drift: every 100th membership differs (one member swapped per group).
        let mut have = want.clone();
        if let Some(first) = have.members.iter().next().cloned() {
            have.members.remove(&first);
            have.members.insert(UserKey(format!("stale{g:05}")));
        }
        observed.groups.insert(
            name.clone(),
            ObservedGroup {
                id: format!("id-{g}"),
                group: have,
                kind: GroupKind::Managed,
            },
        );
        desired.groups.insert(name, want);
    }
    (desired, observed)
}

fn policy(desired: &Desired) -> Policy {
    Policy {
        scope: Scope::new(Some(&["*".to_owned()]), desired, true).expect("glob"),
        membership: MembershipMode::Authoritative,
        prune: false,
        max_deletes: usize::MAX,
        max_group_shrink: roster::plan::Share::ALL,
        allow_empty_source: false,
    }
}

fn bench(c: &mut Criterion) {
    let (desired, observed) = inputs();
    let policy = policy(&desired);
    let caps = Capabilities {
        nested_groups: true,
        membership: MembershipWrites::PerMember,
        case_insensitive_names: true,
        renames: true,
    };
    let p = plan("bench", "contensis", &desired, &observed, &policy, caps);
    assert_eq!(p.summary.add, GROUPS);
    assert_eq!(p.summary.remove, GROUPS);
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    g.bench_function("10k_groups_x_100_members_1pct_drift", |b| {
        b.iter(|| {
            black_box(plan(
                "bench",
                "contensis",
                &desired,
                &observed,
                &policy,
                caps,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM"))
    {
        println!(
            "peak resident memory (whole bench process): {}",
            line.trim_start_matches("VmHWM:").trim()
        );
    }
}
