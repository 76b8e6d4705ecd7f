//! S26, S27, S29: where a cancellation began, told the same by every context it reached.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, Group, ManualClock, Origin, OriginKind};

use crate::common::{Failed, HOUR};

/// The lines of this file between two `line!()`s: where a call under test was made.
type Site = (u32, u32);

fn same_place(origin: &Origin, (after, before): Site) -> bool {
    let at = origin.location().expect("an origin has a location");
    at.file() == file!() && after < at.line() && at.line() < before
}

// API S26
#[test]
fn no_origin_until_done_then_the_same_one_forever() {
    let (ctx, handle) = Context::background().with_cancel();
    assert!(ctx.origin().is_none());
    assert!(Context::background().origin().is_none());
    assert!(Context::todo().origin().is_none());
    let site_from = line!();
    handle.cancel();
    let site = (site_from, line!());
    let first = ctx.origin().expect("done");
    assert!(same_place(&first, site));
    handle.cancel_with_cause("later"); // S8: changes nothing
    assert_eq!(ctx.origin(), Some(first.clone()));
    assert_eq!(first.err(), Error::Canceled);
    assert_eq!(first.err(), ctx.err().unwrap());
}

// API S26
#[test]
fn every_context_one_cancellation_reached_reports_an_equal_origin() {
    let (root, handle) = Context::background().with_name("root").with_cancel();
    let (a, _a) = root.with_cancel();
    let (b, _b) = a.with_name("b").with_timeout(HOUR);
    let (other, _o) = Context::background().with_cancel();
    let (merged, _m) = b.merge(&other);
    let valued = merged.with_value(&crate::common::USER, "gopher");
    let (deep, _d) = valued.with_cancel();
    let site_from = line!();
    handle.cancel_with_cause("shutting down");
    let site = (site_from, line!());
    let origin = root.origin().unwrap();
    for ctx in [&a, &b, &merged, &valued, &deep] {
        assert_eq!(ctx.origin().as_ref(), Some(&origin), "{ctx}");
    }
    assert_eq!(origin.kind(), OriginKind::Cancel);
    assert!(same_place(&origin, site));
    assert_eq!(
        origin.context_name(),
        Some("root"),
        "the name where it began"
    );
    assert!(
        other.origin().is_none(),
        "the merge's other parent is not reached"
    );
    let text = origin.to_string();
    assert!(
        text.starts_with("canceled by cancel_with_cause() at "),
        "{text}"
    );
    assert!(text.ends_with(r#" in "root": shutting down"#), "{text}");
}

// API S27
#[test]
fn a_dropped_guard_is_charged_to_drop_guard() {
    let (ctx, handle) = Context::background().with_cancel();
    let site_from = line!();
    let guard = handle.drop_guard();
    let site = (site_from, line!());
    drop(guard);
    let origin = ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Guard);
    assert!(same_place(&origin, site));
    assert!(origin.to_string().contains("drop_guard()"), "{origin}");
}

// API S27
#[test]
fn a_deadline_is_charged_to_the_call_that_set_it_with_its_budget() {
    let site_from = line!();
    let (ctx, _h) = Context::background()
        .with_name("GET /orders")
        .with_timeout(Duration::from_millis(20));
    let site = (site_from, line!());
    let (child, _c) = ctx.with_cancel();
    assert_eq!(child.wait(), Error::DeadlineExceeded);
    let origin = child.origin().unwrap();
    assert_eq!(
        origin,
        ctx.origin().unwrap(),
        "inherited deadlines keep the ancestor's origin"
    );
    assert_eq!(origin.kind(), OriginKind::Deadline);
    assert_eq!(origin.err(), Error::DeadlineExceeded);
    assert!(same_place(&origin, site));
    let text = origin.to_string();
    assert!(text.starts_with("deadline exceeded: set at "), "{text}");
    assert!(text.ends_with(r#" (20ms) in "GET /orders""#), "{text}");
}

// API S27
#[test]
fn a_deadline_on_a_manual_clock_and_each_deadline_derivation_has_its_site() {
    let clock = ManualClock::new();
    let base = Context::background().with_clock(&clock);
    let s1_from = line!();
    let (a, _a) = base.with_deadline(clock.now() + Duration::from_secs(1));
    let s1 = (s1_from, line!());
    let s2_from = line!();
    let (b, _b) = base.with_timeout_cause(Duration::from_secs(2), "slow");
    let s2 = (s2_from, line!());
    let s3_from = line!();
    let (c, _c) = base.with_deadline_cause(clock.now() + Duration::from_secs(3), "slower");
    let s3 = (s3_from, line!());
    clock.advance(Duration::from_secs(3));
    for (ctx, site) in [(&a, s1), (&b, s2), (&c, s3)] {
        let origin = ctx.origin().unwrap();
        assert_eq!(origin.kind(), OriginKind::Deadline);
        assert!(same_place(&origin, site), "{origin}");
    }
    assert!(b.origin().unwrap().to_string().ends_with(": slow"));
}

// API S27
#[test]
fn a_child_born_done_has_its_parents_origin_or_its_own_past_deadline() {
    let (parent, handle) = Context::background().with_cancel();
    handle.cancel();
    let (born_done, _h) = parent.with_cancel();
    assert_eq!(born_done.origin(), parent.origin());
    let (live, _l) = Context::background().with_cancel();
    let site_from = line!();
    let (past, _p) = live.with_deadline(Instant::now() - Duration::from_secs(1));
    let site = (site_from, line!());
    let origin = past.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Deadline);
    assert!(same_place(&origin, site));
    assert!(live.origin().is_none());
}

// API S27
#[test]
fn a_merge_reports_the_origin_that_reached_it_through_either_parent() {
    let (a, cancel_a) = Context::background().with_cancel();
    let (b, cancel_b) = Context::background().with_cancel();
    let (m, _m) = a.merge(&b);
    let site_from = line!();
    cancel_b.cancel();
    let site = (site_from, line!());
    assert!(same_place(&m.origin().unwrap(), site));
    cancel_a.cancel();
    assert!(same_place(&m.origin().unwrap(), site), "first wins");
    // Born done through its second parent.
    let (live, _l) = Context::background().with_cancel();
    let (m2, _m2) = live.merge(&b);
    assert_eq!(m2.origin(), b.origin());
}

// API S27
#[test]
fn the_cancelling_threads_name_is_in_the_origin() {
    let (ctx, handle) = Context::background().with_cancel();
    std::thread::Builder::new()
        .name("worker-3".into())
        .spawn(move || handle.cancel())
        .unwrap()
        .join()
        .unwrap();
    let origin = ctx.origin().unwrap();
    assert_eq!(origin.thread_name(), Some("worker-3"));
    assert!(
        origin.to_string().contains(r#" on thread "worker-3""#),
        "{origin}"
    );
}

// API S27
#[test]
fn a_groups_first_failure_is_charged_to_the_spawn_of_the_task_that_failed() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    group.spawn(|| Ok(()));
    let site_from = line!();
    group.spawn(|| Err(Failed(7)));
    let site = (site_from, line!());
    assert_eq!(group.wait(), Err(Failed(7)));
    let origin = ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Group);
    assert!(same_place(&origin, site), "{origin}");
}

// API S27
#[test]
fn a_tokio_groups_first_failure_is_charged_to_its_spawn() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (group, ctx) = ctxkit::tokio::Group::<Failed>::new(&Context::background());
        let site_from = line!();
        group.spawn(async { Err(Failed(1)) });
        let site = (site_from, line!());
        assert_eq!(group.wait().await, Err(Failed(1)));
        let origin = ctx.origin().unwrap();
        assert_eq!(origin.kind(), OriginKind::Group);
        assert!(same_place(&origin, site), "{origin}");
    });
}

// API S26
#[test]
fn a_cancel_inside_an_on_cancel_callback_has_its_own_origin() {
    let (a, cancel_a) = Context::background().with_cancel();
    let (b, cancel_b) = Context::background().with_cancel();
    let inner_site: Arc<Mutex<Option<Site>>> = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&inner_site);
    let _reg = a.on_cancel(move || {
        let site_from = line!();
        cancel_b.cancel();
        let site = (site_from, line!());
        *seen.lock().unwrap() = Some(site);
    });
    cancel_a.cancel();
    let site = inner_site.lock().unwrap().expect("the callback ran");
    assert!(same_place(&b.origin().unwrap(), site));
    assert_eq!(b.origin().unwrap().kind(), OriginKind::Cancel);
    assert_ne!(a.origin(), b.origin());
}

// API S26
#[test]
fn racing_cancellations_agree_on_one_origin_everywhere() {
    for _ in 0..200 {
        let (root, handle) = Context::background().with_cancel();
        let (mid, mid_handle) = root.with_cancel();
        let kids: Vec<_> = (0..8).map(|_| mid.with_cancel()).collect();
        let h1 = std::thread::spawn(move || handle.cancel());
        let h2 = std::thread::spawn(move || mid_handle.cancel());
        h1.join().unwrap();
        h2.join().unwrap();
        let origin = mid.origin().unwrap();
        for (kid, _) in &kids {
            assert_eq!(kid.origin().as_ref(), Some(&origin));
        }
    }
}

// API S29
#[test]
fn a_long_chain_reports_the_origin_without_recursion() {
    let (root, handle) = Context::background().with_cancel();
    let mut chain = root.clone();
    for _ in 0..100_000 {
        chain = chain.with_cancel().0;
    }
    handle.cancel();
    assert_eq!(chain.origin(), root.origin());
}
