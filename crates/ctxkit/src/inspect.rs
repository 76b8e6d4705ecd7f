//! The live tree: which contexts are alive under a context, since when, where they were
//! made, and, for those done, why ([S30–S32](crate::guarantees#s30)).
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::{inspect::Snapshot, Context};
//!
//! let (server, _shutdown) = Context::background().with_cancel();
//! let request = server.with_name("GET /orders");
//! let (call, _c) = request.with_timeout(Duration::from_secs(5));
//! let (db, db_handle) = call.with_cancel();
//! db_handle.cancel();
//!
//! let snapshot = Snapshot::of(&server);
//! let kinds: Vec<&str> = snapshot.entries().iter().map(|e| e.kind()).collect();
//! assert_eq!(kinds, ["WithCancel", "WithDeadline", "WithCancel"]);
//! assert_eq!(snapshot.entries()[1].name(), Some("GET /orders"));
//! assert!(snapshot.entries()[2].origin().is_some()); // done, still held: listed with its origin
//! println!("{snapshot}");
//! # drop((call, db));
//! ```
//!
//! Contexts are found through the links cancellation uses, from a parent to its children, so
//! a snapshot of [`Context::background`], [`Context::todo`] or a `without_cancel` context
//! lists that context alone: take it of a context made with `with_cancel` (a server's root,
//! say) to see everything under it.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::panic::Location;
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::origin::Origin;
use crate::time::{self, Nanos, NO_DEADLINE};
use crate::tree::{self, Seen};
use crate::Error;

/// The contexts alive under one context at one moment, depth first
/// ([S30](crate::guarantees#s30)). Taking it holds one context's lock at a time and keeps
/// nothing alive once it returns ([S31](crate::guarantees#s31)).
///
/// `Display` prints an indented tree, one context a line ([S32](crate::guarantees#s32));
/// [`to_json`](Snapshot::to_json) gives the same as JSON.
#[derive(Clone, Debug)]
pub struct Snapshot {
    entries: Vec<Entry>,
}

/// One context of a [`Snapshot`].
#[derive(Clone, Debug)]
pub struct Entry {
    depth: usize,
    kind: &'static str,
    name: Option<Cow<'static, str>>,
    created_at: Option<&'static Location<'static>>,
    age: Duration,
    deadline: Option<Instant>,
    /// Time left until the deadline when the snapshot was taken, negative once past, in
    /// nanoseconds on the context's clock.
    left: Option<i128>,
    err: Option<Error>,
    origin: Option<Origin>,
}

impl Snapshot {
    /// The live tree under `ctx`: `ctx` itself first (depth 0), then every live context
    /// derived from it that can be cancelled on its own (`WithCancel`, `WithDeadline`,
    /// `Merge`), depth first, pre-order ([S30](crate::guarantees#s30)). Value and name layers
    /// are not entries: a name shows on the entries made below it. A merge is listed once,
    /// under the first of its parents reached. Contexts dropped are not listed; done contexts
    /// still held are, with their err and origin.
    ///
    /// The tree is read while it changes: a context derived or dropped meanwhile may or may
    /// not be listed, and each entry is as it was when its context was read.
    pub fn of(ctx: &Context) -> Snapshot {
        let now = time::now();
        let born_now = time::to_coarse(now);
        let entries = tree::snapshot(ctx.pair())
            .into_iter()
            .map(|seen| Entry::new(seen, now, born_now))
            .collect();
        Snapshot { entries }
    }

    /// The entries, in the order of [`of`](Snapshot::of).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Suspected leaks: contexts not done, with no deadline, alive for at least `age`. A
    /// context that nobody cancels and nobody drops lives (and keeps its parent's list of
    /// children growing) as long as its parent: listing these, with where they were made,
    /// points at the code that forgot them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{inspect::Snapshot, Context};
    /// let (root, _h) = Context::background().with_cancel();
    /// let (forgotten, made_on) = (root.with_cancel(), line!());
    /// std::thread::sleep(Duration::from_millis(30));
    /// let snapshot = Snapshot::of(&root);
    /// let leaks: Vec<_> = snapshot.suspected_leaks(Duration::from_millis(20)).collect();
    /// assert_eq!(leaks.len(), 2); // the root itself, and the forgotten child
    /// assert_eq!(leaks[1].created_at().unwrap().line(), made_on);
    /// # drop(forgotten);
    /// ```
    pub fn suspected_leaks(&self, age: Duration) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(move |e| {
            e.err.is_none() && e.deadline.is_none() && e.age >= age && e.kind != "Background"
        })
    }

    /// The snapshot as a JSON object: `{"contexts": [...]}`, one object per entry with
    /// `depth`, `kind`, `name`, `created_at` (`"file:line:column"` or null), `age_ms`,
    /// `deadline_in_ms` (time left, negative once past; null without a deadline), `err`
    /// (null or the error's text) and `origin` (null, or an object with `kind`, `location`,
    /// `thread`, `context_name`, `cause` and `text`, its one-line Display)
    /// ([S32](crate::guarantees#s32)).
    ///
    /// ```
    /// let (root, _h) = ctxkit::Context::background().with_name("a \"quoted\" name").with_cancel();
    /// let json = ctxkit::inspect::Snapshot::of(&root).to_json();
    /// assert!(json.starts_with(r#"{"contexts":[{"depth":0,"kind":"WithCancel","name":"a \"quoted\" name""#));
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.entries.len() * 160);
        out.push_str("{\"contexts\":[");
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            e.write_json(&mut out);
        }
        out.push_str("]}");
        out
    }
}

impl Entry {
    fn new(seen: Seen, now: Nanos, born_now: u32) -> Entry {
        let (deadline, left) = match seen.deadline {
            NO_DEADLINE => (None, None),
            at => {
                let now = if seen.real_time { now } else { seen.clock_now };
                (Some(time::from_nanos(at)), Some(at as i128 - now as i128))
            }
        };
        let age = match seen.born {
            Some(born) => Duration::from_millis(u64::from(born_now.wrapping_sub(born))),
            None => time::remaining(now, 0), // Background: as old as ctxkit's clock
        };
        Entry {
            depth: seen.depth,
            kind: seen.kind.map_or("Background", |k| k.word()),
            name: seen.name,
            created_at: seen.site,
            age,
            deadline,
            left,
            err: seen.err,
            origin: seen.origin,
        }
    }

    /// How far below the snapshot's context: 0 for the context itself.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// What made the context, in the words of Display: `WithCancel`, `WithDeadline`,
    /// `Merge`, or for the snapshot's own context `Background`, `TODO` or `WithoutCancel`.
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// The nearest name on the context or above it ([S28](crate::guarantees#s28)).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The call site of the call that derived the context (`None` for the roots).
    pub fn created_at(&self) -> Option<&'static Location<'static>> {
        self.created_at
    }

    /// How long the context had lived when the snapshot was taken, to a few milliseconds
    /// (ages are read from a clock that ticks every 4 ms, so that deriving a context never
    /// reads the clock; exact up to 49 days).
    pub fn age(&self) -> Duration {
        self.age
    }

    /// The context's deadline (the earliest of its own and its ancestors').
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The context's err when the snapshot was taken.
    pub fn err(&self) -> Option<Error> {
        self.err
    }

    /// Where the cancellation that made it done began, if it is done
    /// ([S26](crate::guarantees#s26)).
    pub fn origin(&self) -> Option<Origin> {
        self.origin.clone()
    }

    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{{\"depth\":{},\"kind\":", self.depth);
        json_str(out, self.kind);
        out.push_str(",\"name\":");
        json_opt(out, self.name.as_deref());
        out.push_str(",\"created_at\":");
        json_opt(out, self.created_at.map(|l| l.to_string()).as_deref());
        let _ = write!(out, ",\"age_ms\":{}", self.age.as_millis());
        out.push_str(",\"deadline_in_ms\":");
        match self.left {
            Some(ns) => {
                let _ = write!(out, "{}", ns.div_euclid(1_000_000));
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"err\":");
        json_opt(out, self.err.map(|e| e.to_string()).as_deref());
        out.push_str(",\"origin\":");
        match &self.origin {
            None => out.push_str("null"),
            Some(o) => {
                out.push_str("{\"kind\":");
                json_str(out, &format!("{:?}", o.kind()));
                out.push_str(",\"location\":");
                json_opt(out, o.location().map(|l| l.to_string()).as_deref());
                out.push_str(",\"thread\":");
                json_opt(out, o.thread_name());
                out.push_str(",\"context_name\":");
                json_opt(out, o.context_name());
                out.push_str(",\"cause\":");
                json_opt(out, o.cause().map(|c| c.to_string()).as_deref());
                out.push_str(",\"text\":");
                json_str(out, &o.to_string());
                out.push('}');
            }
        }
        out.push('}');
    }
}

impl fmt::Display for Snapshot {
    /// One line per context, indented two spaces per depth: kind, name, time left, age,
    /// where it was made, and for a done context its err and origin
    /// ([S32](crate::guarantees#s32)), e.g.
    /// `  WithDeadline "GET /orders" [245ms left] age 5ms at src/api.rs:40:9`, and for a done
    /// context `— ` and its origin (`— deadline exceeded: set at src/api.rs:40:9 (250ms)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            for _ in 0..e.depth {
                f.write_str("  ")?;
            }
            f.write_str(e.kind)?;
            if let Some(name) = &e.name {
                write!(f, " {name:?}")?;
            }
            if let Some(left) = e.left {
                let abs = Duration::from_nanos(left.unsigned_abs().min(u64::MAX as u128) as u64);
                let abs = to_millis(abs);
                match left >= 0 {
                    true => write!(f, " [{abs:?} left]")?,
                    false => write!(f, " [{abs:?} past]")?,
                }
            }
            write!(f, " age {:?}", to_millis(e.age))?;
            if let Some(at) = e.created_at {
                write!(f, " at {at}")?;
            }
            match (&e.origin, e.err) {
                (Some(origin), _) => write!(f, " — {origin}")?,
                (None, Some(err)) => write!(f, " — {err}")?,
                (None, None) => {}
            }
            f.write_char('\n')?;
        }
        Ok(())
    }
}

/// A duration to the millisecond, for people (`29.93s`, `20ms`); under a millisecond, as is.
fn to_millis(d: Duration) -> Duration {
    match d.as_millis() {
        0 => d,
        ms => Duration::from_millis(ms as u64),
    }
}

fn json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped, so that any
/// name (request paths come from the network) stays one well-formed value.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_everything_that_could_break_them() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd\u{1}<script>é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001<script>é""#);
    }
}
