//! Planner speed and memory against a plain merge of the same inputs, in one run (issue 14).
//!
//! `cargo bench --bench plan` times two shapes of 1,000,000 memberships each, 10,000 groups × 100
//! members and 100,000 groups × 10 members, the observed state differing from the desired by 1 %
//! (every group has one member swapped: one to add and one to remove per group). For each shape,
//! with criterion (10 samples each, one after the other):
//!
//! - **planner**: [`plan`] with the policy and capabilities of a Contensis-like target: scope `*`,
//!   authoritative, nested groups, names compared without regard to case, renames. The time
//!   includes dropping the plan.
//! - **baseline**: the least work that yields the same membership diff: for each desired group,
//!   the observed group found by name (`BTreeMap::get`), then its two already sorted member sets
//!   (and child sets) walked together, the additions and removals pushed onto `Vec`s as
//!   `(group, member)` references. It compares names exactly, where the planner compares them as
//!   a case-insensitive target does, and it makes no owned changes, no summary, no warnings.
//!
//! It prints each median, the ratio planner ÷ baseline and the bound (2×). The medians are
//! criterion's (the median of its samples' per-iteration times), recorded through
//! `iter_custom`. Criterion times one function for seconds, then the other, and on the shared
//! 2-core machine the load changes in between (the times of two runs differ by 10–30 %), so the
//! bench also times the two in turn, in [`ROUNDS`] short rounds, and prints the median of the
//! rounds' ratios (`round by round`); the bound is met when both ratios are within it.
//!
//! Then, for memory, the bench runs itself once per shape as a child (`--peak=SHAPE`) that builds
//! the inputs, resets its peak resident set (`5` to `/proc/self/clear_refs`), makes one plan and
//! reads `VmHWM` while the plan is still held. It prints that peak (the whole process: the inputs,
//! about 1,000,000 desired and 1,000,000 observed memberships, plus everything the planner
//! allocated, plus the plan) against the bound (1 GiB), and the growth over the resident set
//! before planning (what planning itself adds). If the kernel refuses the reset, the peak also
//! covers building the inputs, and the line says so.
//!
//! Like the `roster` binary, this bench allocates with mimalloc.
//!
//! To profile: `plan --plans=SHAPE` (0 or 1, in the order above) builds the inputs and plans them
//! 50 times (`plan` is `target/release/deps/plan-*`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use roster::model::{
    Capabilities, Desired, Group, GroupKind, GroupName, MembershipWrites, Observed, ObservedGroup,
    UserKey,
};
use roster::plan::{MembershipMode, Policy, Scope, plan};

/// The allocator the `roster` binary uses, so that the planner is timed as roster runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One shape of the inputs: so many groups of so many members.
struct Shape {
    groups: usize,
    members: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        groups: 10_000,
        members: 100,
    },
    Shape {
        groups: 100_000,
        members: 10,
    },
];

/// The users members are drawn from.
const USERS: usize = 50_000;
/// The planner's bound, as a multiple of the baseline.
const BOUND: f64 = 2.0;
/// The peak memory bound for 1,000,000 memberships.
const PEAK_BOUND_KB: u64 = 1 << 20;
/// Criterion's samples per function.
const SAMPLES: usize = 10;

impl Shape {
    fn label(&self) -> String {
        format!("{} × {}", thousands(self.groups), thousands(self.members))
    }

    fn id(&self) -> String {
        format!("{}x{}", self.groups, self.members)
    }

    /// The desired state, and the observed one with one member of each group swapped.
    fn inputs(&self) -> (Desired, Observed) {
        let mut desired = Desired::default();
        let mut observed = Observed::default();
        for g in 0..self.groups {
            let name = GroupName(format!("group-{g:06}"));
            let mut want = Group::named(name.clone());
            want.description = Some(format!("Group number {g}"));
            for m in 0..self.members {
                want.members.insert(UserKey::from(format!(
                    "user{:05}",
                    (g * 37 + m * 11) % USERS
                )));
            }
            let mut have = want.clone();
            if let Some(first) = have.members.iter().next().cloned() {
                have.members.remove(&first);
                have.members.insert(UserKey::from(format!("stale{g:06}")));
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
}

/// `n` with thousands separated by commas.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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

const CAPS: Capabilities = Capabilities {
    nested_groups: true,
    membership: MembershipWrites::PerMember,
    case_insensitive_names: true,
    renames: true,
};

/// The baseline's result: additions and removals as `(group, item)` references.
#[derive(Default)]
struct Diff<'a> {
    add_members: Vec<(&'a GroupName, &'a UserKey)>,
    remove_members: Vec<(&'a GroupName, &'a UserKey)>,
    add_children: Vec<(&'a GroupName, &'a GroupName)>,
    remove_children: Vec<(&'a GroupName, &'a GroupName)>,
}

/// The baseline: each desired group's sorted sets merged with its observed group's.
fn baseline<'a>(desired: &'a Desired, observed: &'a Observed) -> Diff<'a> {
    let mut d = Diff::default();
    for (name, want) in &desired.groups {
        match observed.groups.get(name) {
            Some(have) => {
                merge(
                    name,
                    &have.group.members,
                    &want.members,
                    &mut d.add_members,
                    &mut d.remove_members,
                );
                merge(
                    name,
                    &have.group.children,
                    &want.children,
                    &mut d.add_children,
                    &mut d.remove_children,
                );
            }
            None => {
                d.add_members.extend(want.members.iter().map(|m| (name, m)));
                d.add_children
                    .extend(want.children.iter().map(|c| (name, c)));
            }
        }
    }
    d
}

/// Walks two sorted sets together: what is only in `want` is added, only in `have` removed.
fn merge<'a, T: Ord>(
    group: &'a GroupName,
    have: &'a BTreeSet<T>,
    want: &'a BTreeSet<T>,
    add: &mut Vec<(&'a GroupName, &'a T)>,
    remove: &mut Vec<(&'a GroupName, &'a T)>,
) {
    let mut h = have.iter();
    let mut w = want.iter();
    let (mut a, mut b) = (h.next(), w.next());
    loop {
        match (a, b) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    remove.push((group, x));
                    a = h.next();
                }
                std::cmp::Ordering::Greater => {
                    add.push((group, y));
                    b = w.next();
                }
                std::cmp::Ordering::Equal => {
                    a = h.next();
                    b = w.next();
                }
            },
            (Some(x), None) => {
                remove.push((group, x));
                remove.extend(h.map(|x| (group, x)));
                return;
            }
            (None, Some(y)) => {
                add.push((group, y));
                add.extend(w.map(|y| (group, y)));
                return;
            }
            (None, None) => return,
        }
    }
}

/// Times `f` in criterion's samples and keeps each sample's time per iteration; criterion takes
/// its samples last, so the last [`SAMPLES`] entries are what its median is computed from.
fn timed<O>(
    per_iter: &RefCell<Vec<Duration>>,
    mut f: impl FnMut() -> O,
) -> impl FnMut(u64) -> Duration {
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        let elapsed = start.elapsed();
        per_iter
            .borrow_mut()
            .push(elapsed / u32::try_from(iters.max(1)).unwrap_or(u32::MAX));
        elapsed
    }
}

/// The median of the last [`SAMPLES`] times recorded, if any.
fn median(per_iter: &RefCell<Vec<Duration>>) -> Option<Duration> {
    let all = per_iter.borrow();
    let mut last: Vec<Duration> = all[all.len().saturating_sub(SAMPLES)..].to_vec();
    last.sort();
    let n = last.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(last[n / 2]),
        _ => Some((last[n / 2 - 1] + last[n / 2]) / 2),
    }
}

/// Rounds of planner and baseline runs taken in turn, for the ratio round by round.
const ROUNDS: usize = 15;
/// Timed runs of each function in a round, after one untimed.
const RUNS: u32 = 3;

/// The median of [`ROUNDS`] ratios of planner to baseline time, each of one round that times
/// both functions in turn (which goes first alternates): the load of a shared machine changes
/// over the seconds criterion spends on each function, and a ratio of two times taken a fraction
/// of a second apart is steadier. Each function runs once untimed before its [`RUNS`] timed runs,
/// so that the other's traces in the caches and the allocator are not counted against it.
fn interleaved<P, B>(mut planner: impl FnMut() -> P, mut baseline: impl FnMut() -> B) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        f();
        let start = Instant::now();
        for _ in 0..RUNS {
            f();
        }
        start.elapsed().as_secs_f64()
    };
    let mut p = || drop(black_box(planner()));
    let mut b = || drop(black_box(baseline()));
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            let (tp, tb) = if round % 2 == 0 {
                let tp = time(&mut p);
                (tp, time(&mut b))
            } else {
                let tb = time(&mut b);
                (time(&mut p), tb)
            };
            tp / tb
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

/// Whether this run times (`cargo bench` passes `--bench`; `cargo test --benches` does not, and
/// criterion then runs each function once).
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The lines printed after criterion's own report.
static REPORT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn bench(c: &mut Criterion) {
    for shape in &SHAPES {
        let (desired, observed) = shape.inputs();
        let policy = policy(&desired);
        // The planner and the baseline find the same diff: one addition and one removal a group.
        let p = plan("bench", "contensis", &desired, &observed, &policy, CAPS);
        let d = baseline(&desired, &observed);
        assert_eq!(p.summary.add, shape.groups);
        assert_eq!(p.summary.remove, shape.groups);
        assert_eq!(p.summary.change, 0);
        assert_eq!(d.add_members.len(), shape.groups);
        assert_eq!(d.remove_members.len(), shape.groups);
        drop((p, d));

        let planner_times = RefCell::new(Vec::new());
        let baseline_times = RefCell::new(Vec::new());
        let mut g = c.benchmark_group(format!("plan/{}", shape.id()));
        g.sample_size(SAMPLES);
        g.bench_function("planner", |b| {
            b.iter_custom(timed(&planner_times, || {
                plan("bench", "contensis", &desired, &observed, &policy, CAPS)
            }))
        });
        g.bench_function("baseline", |b| {
            b.iter_custom(timed(&baseline_times, || baseline(&desired, &observed)))
        });
        g.finish();

        let line = match (median(&planner_times), median(&baseline_times)) {
            (Some(p), Some(b)) if benching() => {
                let ratio = p.as_secs_f64() / b.as_secs_f64();
                let paired = interleaved(
                    || plan("bench", "contensis", &desired, &observed, &policy, CAPS),
                    || baseline(&desired, &observed),
                );
                format!(
                    "{} ({} memberships, 1 % drift): planner {:.1} ms, baseline (sorted merge) {:.1} ms: {ratio:.2}× the baseline; round by round: {paired:.2}× (median of {ROUNDS}); bound {BOUND}×: {}",
                    shape.label(),
                    thousands(shape.groups * shape.members),
                    p.as_secs_f64() * 1e3,
                    b.as_secs_f64() * 1e3,
                    if ratio.max(paired) <= BOUND {
                        "within"
                    } else {
                        "OVER"
                    }
                )
            }
            _ => format!("{}: not timed", shape.label()),
        };
        REPORT.lock().expect("report").push(line);
    }
}

criterion_group!(benches, bench);

/// A field of `/proc/self/status` in kB (`VmHWM`, `VmRSS`).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(field))?;
    line.trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The child: one plan of shape `i`; prints `<rss before> <peak> <reset>` in kB.
fn peak_child(i: usize) {
    let shape = &SHAPES[i];
    let (desired, observed) = shape.inputs();
    let policy = policy(&desired);
    // Writing 5 to clear_refs resets VmHWM to the current resident set (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kb("VmRSS").unwrap_or(0);
    let p = plan("bench", "contensis", &desired, &observed, &policy, CAPS);
    let peak = status_kb("VmHWM").unwrap_or(0);
    assert_eq!(p.summary.add, shape.groups);
    println!("{before} {peak} {reset}");
}

/// For profiling: plans shape `i` 50 times.
fn plans(i: usize) {
    let (desired, observed) = SHAPES[i].inputs();
    let policy = policy(&desired);
    for _ in 0..50 {
        black_box(plan(
            "bench",
            "contensis",
            &desired,
            &observed,
            &policy,
            CAPS,
        ));
    }
}

/// Runs [`peak_child`] for shape `i` and describes its figures.
fn peak_line(i: usize) -> String {
    let shape = &SHAPES[i];
    let out = Command::new(std::env::current_exe().expect("own path"))
        .arg(format!("--peak={i}"))
        .output()
        .expect("peak child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let (Some(before), Some(peak), Some(reset)) = (
        f.first().and_then(|s| s.parse::<u64>().ok()),
        f.get(1).and_then(|s| s.parse::<u64>().ok()),
        f.get(2),
    ) else {
        return format!("{}: peak not measured ({text})", shape.label());
    };
    let mb = |kb: u64| kb as f64 / 1024.0;
    format!(
        "{} ({} memberships): peak resident memory {:.0} MiB, inputs and plan (bound {} MiB: {}); planning adds {:.0} MiB to the {:.0} MiB of the inputs{}",
        shape.label(),
        thousands(shape.groups * shape.members),
        mb(peak),
        PEAK_BOUND_KB / 1024,
        if peak < PEAK_BOUND_KB {
            "within"
        } else {
            "OVER"
        },
        mb(peak.saturating_sub(before)),
        mb(before),
        if *reset == "true" {
            ""
        } else {
            " (the peak could not be reset: it includes building the inputs)"
        }
    )
}

fn main() {
    // As the `roster` binary runs (`roster::memory`).
    roster::memory::small_pages_only();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().find_map(|a| a.strip_prefix("--peak=")) {
        peak_child(i.parse().expect("shape index"));
        return;
    }
    if let Some(i) = args.iter().find_map(|a| a.strip_prefix("--plans=")) {
        plans(i.parse().expect("shape index"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !benching() {
        return;
    }
    for line in REPORT.lock().expect("report").iter() {
        println!("{line}");
    }
    for i in 0..SHAPES.len() {
        println!("{}", peak_line(i));
    }
}
