//! S30–S32: the live tree under a context.

use std::time::Duration;

use ctxkit::inspect::Snapshot;
use ctxkit::{Context, Error, ManualClock, OriginKind};

use crate::common::{HOUR, USER};

fn kinds(s: &Snapshot) -> Vec<(usize, &str)> {
    s.entries().iter().map(|e| (e.depth(), e.kind())).collect()
}

// API S30
#[test]
fn lists_the_context_then_every_live_cancellable_descendant_depth_first() {
    let (root, _r) = Context::background().with_cancel();
    let (a, _a) = root.with_cancel();
    let (a1, _a1) = a.with_value(&USER, "gopher").with_timeout(HOUR);
    let (a2, _a2) = a.with_cancel();
    let (b, _b) = root.with_name("b").with_cancel();
    let (b1, _b1) = b.with_cancel();
    let detached = b1.without_cancel();
    let snapshot = Snapshot::of(&root);
    assert_eq!(
        kinds(&snapshot),
        [
            (0, "WithCancel"),
            (1, "WithCancel"),
            (2, "WithDeadline"),
            (2, "WithCancel"),
            (1, "WithCancel"),
            (2, "WithCancel"),
        ]
    );
    let names: Vec<_> = snapshot.entries().iter().map(|e| e.name()).collect();
    assert_eq!(names, [None, None, None, None, Some("b"), Some("b")]);
    assert!(snapshot.entries()[2].deadline().is_some());
    assert_eq!(snapshot.entries()[2].deadline(), a1.deadline());
    assert!(snapshot
        .entries()
        .iter()
        .all(|e| e.err().is_none() && e.origin().is_none()));
    drop((a2, detached));
}

// API S30
#[test]
fn roots_without_a_cancellation_of_their_own_list_themselves() {
    let s = Snapshot::of(&Context::background());
    assert_eq!(kinds(&s), [(0, "Background")]);
    assert_eq!(s.entries()[0].created_at(), None);
    assert_eq!(kinds(&Snapshot::of(&Context::todo())), [(0, "TODO")]);
    let (ctx, _h) = Context::background().with_cancel();
    let detached = ctx.with_name("detached").without_cancel();
    let s = Snapshot::of(&detached);
    assert_eq!(kinds(&s), [(0, "WithoutCancel")]);
    assert_eq!(s.entries()[0].name(), Some("detached"));
}

// API S30
#[test]
fn created_at_is_the_deriving_call_and_ages_grow() {
    let (root, _r) = Context::background().with_cancel();
    let from = line!();
    let (child, _c) = root.with_cancel();
    let to = line!();
    std::thread::sleep(Duration::from_millis(30));
    let s = Snapshot::of(&root);
    let site = s.entries()[1].created_at().unwrap();
    assert_eq!(site.file(), file!());
    assert!(from < site.line() && site.line() < to);
    assert!(
        s.entries()[1].age() >= Duration::from_millis(20),
        "{:?}",
        s.entries()[1].age()
    );
    assert!(s.entries()[1].age() < Duration::from_secs(30));
    drop(child);
}

// API S30
#[test]
fn dropped_contexts_vanish_and_done_ones_still_held_stay_with_their_origin() {
    let (root, _r) = Context::background().with_cancel();
    let (kept, cancel_kept) = root.with_cancel();
    let (under_kept, _u) = kept.with_cancel();
    let (gone, _g) = root.with_cancel();
    drop((gone, _g));
    cancel_kept.cancel();
    let s = Snapshot::of(&root);
    assert_eq!(
        kinds(&s),
        [(0, "WithCancel"), (1, "WithCancel"), (2, "WithCancel")]
    );
    for e in &s.entries()[1..] {
        assert_eq!(e.err(), Some(Error::Canceled));
        assert_eq!(e.origin().unwrap().kind(), OriginKind::Cancel);
        assert_eq!(e.origin(), kept.origin());
    }
    drop((kept, cancel_kept, under_kept, _u));
    assert_eq!(kinds(&Snapshot::of(&root)), [(0, "WithCancel")]);
}

// API S30
#[test]
fn a_merge_appears_once_under_the_first_parent_reached() {
    let (root, _r) = Context::background().with_cancel();
    let (a, _a) = root.with_cancel();
    let (b, _b) = root.with_cancel();
    let (m, _m) = a.merge(&b);
    let s = Snapshot::of(&root);
    assert_eq!(
        kinds(&s),
        [
            (0, "WithCancel"),
            (1, "WithCancel"),
            (2, "Merge"),
            (1, "WithCancel")
        ]
    );
    drop(m);
}

// API S31
#[test]
fn a_snapshot_keeps_nothing_alive() {
    let flag = crate::common::drop_flag();
    let (root, _r) = Context::background().with_cancel();
    let (child, handle) = root
        .with_value(&crate::common::PAYLOAD, flag.0)
        .with_cancel();
    let s = Snapshot::of(&root);
    assert_eq!(s.entries().len(), 2);
    drop((child, handle));
    assert!(
        flag.1.load(std::sync::atomic::Ordering::SeqCst),
        "the snapshot holds no context"
    );
    assert_eq!(Snapshot::of(&root).entries().len(), 1);
    drop(s);
}

// API S31
#[test]
fn a_chain_of_a_million_contexts_is_listed_without_recursion() {
    let (root, handle) = Context::background().with_cancel();
    let mut chain = root.clone();
    for _ in 0..1_000_000 {
        chain = chain.with_cancel().0;
    }
    handle.cancel();
    let s = Snapshot::of(&root);
    assert_eq!(s.entries().len(), 1_000_001);
    assert_eq!(s.entries().last().unwrap().depth(), 1_000_000);
    assert_eq!(s.entries().last().unwrap().origin(), root.origin());
}

// API S32
#[test]
fn display_is_an_indented_tree_with_names_deadlines_ages_and_origins() {
    let clock = ManualClock::new();
    let (root, _r) = Context::background().with_clock(&clock).with_cancel();
    let request = root.with_name("GET /orders?id=\"1\"\n<script>");
    let (call, _c) = request.with_timeout(Duration::from_secs(5));
    let (db, cancel_db) = call.with_cancel();
    cancel_db.cancel();
    let text = Snapshot::of(&root).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("WithCancel age "), "{text}");
    assert!(
        lines[1].starts_with(r#"  WithDeadline "GET /orders?id=\"1\"\n<script>" [5s left] age "#),
        "{text}"
    );
    assert!(lines[2].starts_with("    WithCancel "), "{text}");
    assert!(lines[2].contains(" — canceled by cancel() at "), "{text}");
    drop(db);
}

// API S32
#[test]
fn json_has_one_object_per_entry_with_the_documented_fields() {
    let clock = ManualClock::new();
    let (root, _r) = Context::background().with_clock(&clock).with_cancel();
    let (call, _c) = root
        .with_name("a\"b")
        .with_timeout(Duration::from_millis(1500));
    clock.advance(Duration::from_secs(2));
    let json = Snapshot::of(&root).to_json();
    assert!(
        json.starts_with(
            r#"{"contexts":[{"depth":0,"kind":"WithCancel","name":null,"created_at":""#
        ),
        "{json}"
    );
    assert!(
        json.contains(r#"{"depth":1,"kind":"WithDeadline","name":"a\"b","created_at":""#),
        "{json}"
    );
    assert!(json.contains(r#""deadline_in_ms":-500,"err":"context deadline exceeded","origin":{"kind":"Deadline","location":""#), "{json}");
    assert!(
        json.contains(r#""deadline_in_ms":null,"err":null,"origin":null}"#),
        "{json}"
    );
    assert!(json.ends_with("]}"));
    drop(call);
}
