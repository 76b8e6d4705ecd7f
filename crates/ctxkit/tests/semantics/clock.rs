//! API S25: `ManualClock`: deadlines measured and fired on a clock that moves only when
//! told to.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, ManualClock};

use crate::common::{HOUR, USER};

// API S25
#[test]
fn with_timeout_on_a_manual_clock_uses_clock_now() {
    let clock = ManualClock::new();
    clock.advance(HOUR); // now far from real time
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(5));
    assert_eq!(ctx.deadline(), Some(clock.now() + Duration::from_secs(5)));
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(5)));
    assert_eq!(root.now(), clock.now());
}

// API S25
#[test]
fn advance_fires_every_due_deadline_before_returning() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let ctxs: Vec<_> = (1..=10)
        .map(|s| root.with_timeout(Duration::from_secs(s)))
        .collect();
    clock.advance(Duration::from_millis(4500));
    for (i, (c, _)) in ctxs.iter().enumerate() {
        assert_eq!(c.is_done(), i < 4, "#{i}");
    }
    clock.advance(Duration::from_millis(500));
    assert!(ctxs[4].0.is_done());
    assert!(!ctxs[5].0.is_done());
    clock.advance(HOUR);
    assert!(ctxs
        .iter()
        .all(|(c, _)| c.err() == Some(Error::DeadlineExceeded)));
}

// API S25
#[test]
fn a_deadline_made_while_another_thread_advances_is_never_left_behind() {
    // A context whose deadline is due by the time it is made is done, or the next advance
    // fires it: with one thread advancing the clock in 1 ms steps and another making 1 ms
    // timeouts, every context whose deadline the clock has passed is done once both stop,
    // without another advance.
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let stop = Arc::new(AtomicBool::new(false));
    let advancer = {
        let (clock, stop) = (clock.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                clock.advance(Duration::from_millis(1));
            }
        })
    };
    let made: Vec<_> = (0..20_000)
        .map(|_| root.with_timeout(Duration::from_millis(1)))
        .collect();
    stop.store(true, Ordering::SeqCst);
    advancer.join().unwrap();
    let now = clock.now();
    for (ctx, _h) in &made {
        if ctx.deadline().unwrap() <= now {
            assert_eq!(ctx.err(), Some(Error::DeadlineExceeded), "left behind");
        }
    }
}

// API S25
#[test]
fn real_time_passing_does_not_fire_manual_deadlines() {
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_millis(1));
    let before = clock.now();
    thread::sleep(Duration::from_millis(30));
    assert_eq!(clock.now(), before);
    assert!(!ctx.is_done());
    assert_eq!(ctx.remaining(), Some(Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    assert!(ctx.is_done());
}

// API S25
#[test]
fn clock_reaches_every_derivation_including_without_cancel() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (c, _h1) = root.with_cancel();
    let v = c.with_value(&USER, "v");
    let w = v.without_cancel();
    let (m, _h2) = w.merge(&Context::background());
    let mut timed = Vec::new();
    for base in [&root, &c, &v, &w, &m] {
        let (t, h) = base.with_timeout(Duration::from_secs(10));
        assert_eq!(t.remaining(), Some(Duration::from_secs(10)), "{base}");
        let (d, hd) = base.with_deadline(clock.now() + Duration::from_secs(10));
        timed.push((t, h, d, hd));
    }
    clock.advance(Duration::from_secs(10));
    for (t, _, d, _) in &timed {
        assert_eq!(t.err(), Some(Error::DeadlineExceeded), "{t}");
        assert_eq!(d.err(), Some(Error::DeadlineExceeded), "{d}");
    }
}

// API S25, S24
#[test]
fn merge_measures_time_on_a_clock_not_b() {
    let clock = ManualClock::new();
    clock.advance(HOUR);
    let manual = Context::background().with_clock(&clock);
    let real = Context::background();

    // a manual, b real: manual time.
    let (m, _h) = manual.merge(&real);
    let (t, _ht) = m.with_timeout(Duration::from_secs(10));
    assert_eq!(t.remaining(), Some(Duration::from_secs(10)));
    clock.advance(Duration::from_secs(10));
    assert!(t.is_done(), "a's manual clock did not fire the deadline");

    // a real, b manual: real time.
    let (m, _h) = real.merge(&manual);
    let before = Instant::now();
    let (t, _ht) = m.with_timeout(Duration::from_secs(100));
    let dl = t.deadline().unwrap();
    assert!(
        dl >= before + Duration::from_secs(100) && dl <= Instant::now() + Duration::from_secs(100),
        "deadline measured on b's clock"
    );
    clock.advance(Duration::from_secs(200));
    assert!(
        !t.is_done(),
        "b's manual clock fired a deadline of a real-time merge"
    );
}

// API S25
#[test]
fn on_cancel_of_manual_deadlines_runs_before_advance_returns() {
    let clock = ManualClock::new();
    let (outer, _ho) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(2));
    let (inner, _hi) = outer.with_timeout(Duration::from_secs(1));
    let (below, _hb) = inner.with_cancel();
    let count = Arc::new(AtomicUsize::new(0));
    let mut regs = Vec::new();
    for c in [&outer, &inner, &below] {
        let count = Arc::clone(&count);
        regs.push(c.on_cancel(move || {
            count.fetch_add(1, Ordering::SeqCst);
        }));
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(below.is_done() && !outer.is_done());
    clock.advance(Duration::from_secs(1));
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

// API S25
#[test]
fn clones_of_a_manual_clock_share_one_clock() {
    let clock = ManualClock::new();
    let other = clock.clone();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(3));
    other.advance(Duration::from_secs(3));
    assert_eq!(clock.now(), other.now());
    assert!(ctx.is_done());
}
