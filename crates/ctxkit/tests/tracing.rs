//! Feature `tracing`: one event at the origin of each cancellation, with the err, the cause,
//! the origin's kind and location and the context's name, not one per context it reaches.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctxkit::Context;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[path = "common/mod.rs"]
mod common;

type Fields = BTreeMap<String, String>;

/// Records the fields of every event of target `ctxkit`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Fields>>>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "ctxkit"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn one_event_per_cancellation_at_its_origin_with_what_happened() {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.0);
    tracing::subscriber::with_default(recorder, || {
        let (root, handle) = Context::background().with_name("GET /orders").with_cancel();
        let kids: Vec<_> = (0..100).map(|_| root.with_cancel()).collect();
        let line = line!() + 1;
        handle.cancel_with_cause("shutting down");
        handle.cancel(); // already done: no event
        assert!(kids.iter().all(|(k, _)| k.is_done()));
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e["err"], "context canceled");
        assert_eq!(e["cause"], "shutting down");
        assert_eq!(e["origin.kind"], "Cancel");
        assert_eq!(e["origin.location"], format!("{}:{line}:16", file!()));
        assert_eq!(e["context.name"], "GET /orders");
        assert!(e["message"].starts_with("canceled by cancel_with_cause() at "));
    });
}

#[test]
fn a_deadline_that_fires_on_the_timer_thread_is_reported_once() {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.0);
    // The timer thread and the callback pool are process-wide: the subscriber must be too.
    let _ = tracing::subscriber::set_global_default(recorder);
    let (ctx, _h) = Context::background()
        .with_name("deadline-test")
        .with_timeout(Duration::from_millis(10));
    let kids: Vec<_> = (0..10).map(|_| ctx.with_cancel()).collect();
    ctx.wait();
    let named = || {
        let events = events.lock().unwrap();
        events
            .iter()
            .filter(|e| e.get("context.name").map(String::as_str) == Some("deadline-test"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(common::eventually(|| !named().is_empty()));
    std::thread::sleep(Duration::from_millis(50));
    let found = named();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["err"], "context deadline exceeded");
    assert_eq!(found[0]["origin.kind"], "Deadline");
    drop(kids);
}
