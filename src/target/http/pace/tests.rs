//! The pacer: the declared rate on paused time, the adaptive state machine step by step, and
//! admission (slots, turns reserved again after a cut).

use std::sync::Arc;

use super::*;

fn declared(rate: &str, burst: u32) -> Pacer {
    Pacer::new(Some(RateLimit {
        rate: rate.parse().unwrap(),
        burst,
    }))
}

#[tokio::test(start_paused = true)]
async fn calls_start_at_the_declared_rate_after_a_burst() {
    let pacer = declared("50/s", 3);
    let t0 = Instant::now();
    let mut starts = Vec::new();
    for _ in 0..8 {
        pacer.admit().await.answered(Signal::Fine);
        starts.push(t0.elapsed());
    }
    // Three at once, then one every 20 ms: the eighth at 5 × 20 ms.
    let ms = |n| Duration::from_millis(n);
    assert_eq!(starts, [0, 0, 0, 20, 40, 60, 80, 100].map(ms), "{starts:?}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_the_declared_rate() {
    let pacer = Arc::new(declared("100/s", 1));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let p = Arc::clone(&pacer);
            tokio::spawn(async move { p.admit().await.answered(Signal::Fine) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Twenty calls at 100/s, one at once: the last starts 190 ms in.
    assert_eq!(t0.elapsed(), Duration::from_millis(190));
}

#[test]
fn overloads_are_429_and_503() {
    assert_eq!(Signal::of_status(429), Signal::Overload);
    assert_eq!(Signal::of_status(503), Signal::Overload);
    for fine in [200, 201, 204, 400, 404, 409, 500, 502] {
        assert_eq!(Signal::of_status(fine), Signal::Fine, "{fine}");
    }
}

/// An adaptive state that saw `n` successes spread over the second before `now`.
fn after_successes(n: u32, now: Instant) -> Adaptive {
    let t0 = now - Duration::from_millis(900);
    let mut a = Adaptive::new(t0);
    for i in 0..n {
        a.answered(
            Signal::Fine,
            0,
            t0 + Duration::from_millis(900) * i / n.max(1),
        );
    }
    a
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.max(1.0)
}

#[test]
fn calls_go_unpaced_until_the_first_overload() {
    let now = Instant::now();
    let mut a = after_successes(40, now);
    assert_eq!(a.rate_at(now), None);
    assert_eq!(a.reserve(now), None);
    assert_eq!(a.reserve(now), None, "unpaced calls never wait");
}

#[test]
fn the_first_overload_paces_at_beta_of_what_succeeded_then_doubles_each_quarter_second() {
    let now = Instant::now();
    let mut a = after_successes(40, now);
    a.answered(Signal::Overload, 0, now);
    // 40 successes in the last second: 28 calls a second.
    let r0 = a.rate_at(now).unwrap();
    assert!(close(r0, 40.0 * BETA), "{r0}");
    let r1 = a.rate_at(now + SLOW_START_DOUBLING).unwrap();
    assert!(close(r1, 2.0 * r0), "{r1}");
    let r2 = a.rate_at(now + 2 * SLOW_START_DOUBLING).unwrap();
    assert!(close(r2, 4.0 * r0), "{r2}");
    // Successes older than the window do not count.
    let mut old = after_successes(40, now);
    old.answered(Signal::Overload, 0, now + secs(1.5));
    assert!(close(
        old.rate_at(now + secs(1.5)).unwrap(),
        MIN_RATE.max(BETA)
    ));
}

#[test]
fn the_paced_calls_are_spaced_at_the_rate() {
    let now = Instant::now();
    let mut a = after_successes(10, now);
    a.answered(Signal::Overload, 0, now);
    // 7 a second, and the server's bucket is empty: the first waits one turn, 1/7 s, the next
    // 2/7 s.
    let first = a.reserve(now).unwrap();
    assert!(close((first - now).as_secs_f64(), 1.0 / 7.0));
    let second = a.reserve(now).unwrap();
    assert!(close((second - now).as_secs_f64(), 2.0 / 7.0));
}

#[test]
fn an_overload_while_paced_sets_the_sustained_rate_and_the_cubic_returns_to_it() {
    let now = Instant::now();
    let mut a = after_successes(20, now);
    a.answered(Signal::Overload, 0, now);
    // Slow start from 14: a quarter second on, 28 a second; 5 more succeeded, 21 in the last
    // second in all, so 21 a second is what the server sustains.
    let later = now + SLOW_START_DOUBLING;
    assert!(a.reserve(now).is_some(), "the pace holds calls back");
    for i in 0..5 {
        a.answered(Signal::Fine, 1, now + secs(0.04 * f64::from(i) + 0.01));
    }
    a.answered(Signal::Overload, 1, later);
    let w = 21.0;
    assert!(close(a.rate_at(later).unwrap(), BETA * w));
    let k = (w * (1.0 - BETA) / CUBIC_C).cbrt();
    assert!(close(a.rate_at(later + secs(k)).unwrap(), w));
    // Concave below w, convex above it: halfway back covers more than half the way.
    let half = a.rate_at(later + secs(k / 2.0)).unwrap();
    assert!(half > (BETA * w + w) / 2.0 && half < w, "{half}");
    let past = a.rate_at(later + secs(k + 1.0)).unwrap();
    assert!(close(past, w + CUBIC_C), "{past}");
}

#[test]
fn the_sustained_rate_is_what_was_paced_when_more_succeeded() {
    let now = Instant::now();
    let mut a = after_successes(10, now);
    a.answered(Signal::Overload, 0, now);
    // Paced at 7 a second; 30 successes in the window (from calls admitted earlier).
    assert!(a.reserve(now).is_some(), "the pace holds calls back");
    for i in 0..30 {
        a.answered(Signal::Fine, 1, now + secs(0.01 * f64::from(i)));
    }
    a.answered(Signal::Overload, 1, now + secs(0.3));
    let paced = 7.0 * 2f64.powf(0.3 / SLOW_START_DOUBLING.as_secs_f64());
    let w = paced;
    assert!(close(a.rate_at(now + secs(0.3)).unwrap(), BETA * w));
}

#[test]
fn overloads_of_calls_sent_before_the_cut_count_once() {
    let now = Instant::now();
    let mut a = after_successes(20, now);
    a.answered(Signal::Overload, 0, now);
    let paced = a.rate_at(now);
    // Seven more calls admitted before the cut answer 429 too.
    for i in 0..7 {
        a.answered(Signal::Overload, 0, now + secs(0.001 * f64::from(i)));
    }
    assert_eq!(a.rate_at(now), paced);
    assert_eq!(a.epoch, 1);
}

#[test]
fn an_overload_halves_the_calls_in_flight_which_grow_back_by_one_per_window() {
    let now = Instant::now();
    let mut a = Adaptive::new(now);
    a.in_flight = 8;
    a.answered(Signal::Overload, 0, now);
    assert_eq!(a.limit, 4);
    for _ in 0..3 {
        a.answered(Signal::Fine, 1, now);
    }
    assert_eq!(a.limit, 4);
    a.answered(Signal::Fine, 1, now);
    assert_eq!(a.limit, 5);
    for _ in 0..5 {
        a.answered(Signal::Fine, 1, now);
    }
    assert_eq!(a.limit, 6);
    // Never below one.
    a.in_flight = 1;
    a.answered(Signal::Overload, 1, now);
    assert_eq!(a.limit, 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_for_a_free_slot_and_a_dropped_admission_frees_it() {
    let pacer = Arc::new(Pacer::default());
    {
        let mut a = pacer.state();
        a.limit = 1;
    }
    let first = pacer.admit().await;
    let p = Arc::clone(&pacer);
    let second = tokio::spawn(async move {
        p.admit().await.answered(Signal::Fine);
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!second.is_finished(), "admitted past the limit");
    drop(first);
    tokio::time::timeout(Duration::from_secs(1), second)
        .await
        .expect("freed slot")
        .unwrap();
    assert_eq!(pacer.state().in_flight, 0);
}

#[test]
fn an_overload_after_a_spell_the_pace_held_nothing_back_starts_over() {
    let now = Instant::now();
    let mut a = after_successes(20, now);
    a.answered(Signal::Overload, 0, now);
    assert!(a.reserve(now).is_some());
    // Idle for a minute: the pace grew unused. Then 12 calls succeed and one is refused.
    let back = now + secs(60.0);
    for i in 0..12 {
        a.answered(Signal::Fine, 1, back + secs(0.001 * f64::from(i)));
    }
    a.answered(Signal::Overload, 1, back + secs(0.02));
    let r = a.rate_at(back + secs(0.02)).unwrap();
    assert!(close(r, 12.0 * BETA), "{r}");
    assert!(matches!(a.phase, Phase::SlowStart { .. }), "{:?}", a.phase);
}

#[tokio::test(start_paused = true)]
async fn after_a_cut_calls_leave_one_turn_apart_at_the_new_pace() {
    let pacer = Pacer::default();
    {
        let now = Instant::now();
        let mut a = pacer.state();
        for i in 0..10 {
            a.answered(Signal::Fine, 0, now - Duration::from_millis(10 * i));
        }
        a.answered(Signal::Overload, 0, now);
    }
    // 7 a second after the cut: the first call waits one turn, the second two.
    let t0 = Instant::now();
    let mut starts = Vec::new();
    for _ in 0..2 {
        let admitted = tokio::time::timeout(Duration::from_secs(5), pacer.admit())
            .await
            .expect("admitted");
        starts.push(t0.elapsed().as_secs_f64());
        admitted.answered(Signal::Fine);
    }
    assert!((starts[0] - 1.0 / 7.0).abs() < 0.002, "{starts:?}");
    assert!(starts[1] > 1.9 / 7.0 && starts[1] < 2.1 / 7.0, "{starts:?}");
}
