//! Where a cancellation began ([S26–S29](crate::guarantees#s26)): [`Origin`], what a done
//! context tells about it, and what the tree records to build one.
//!
//! A cancellation records its origin once, on the node where it began: the kind (three bits
//! of the node's state word), the call site (`#[track_caller]` on every call that can start
//! one) and a small number naming the cancelling thread ([`thread_tag`]). Every node the
//! cancellation reaches finds that record by going up the tree, so a walk over a million
//! descendants records nothing more than a walk over one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::Cause;
use crate::Error;

/// What started a cancellation ([S27](crate::guarantees#s27)).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OriginKind {
    /// [`CancelHandle::cancel`](crate::CancelHandle::cancel) or
    /// [`cancel_with_cause`](crate::CancelHandle::cancel_with_cause).
    Cancel,
    /// A [`CancelGuard`](crate::CancelGuard) dropped.
    Guard,
    /// A deadline passing.
    Deadline,
    /// The first error or panic of a task group.
    Group,
}

impl OriginKind {
    /// The kind's three bits in a node's state word; `0` means "not an origin".
    pub(crate) fn bits(self) -> u8 {
        match self {
            OriginKind::Cancel => 1,
            OriginKind::Guard => 2,
            OriginKind::Deadline => 3,
            OriginKind::Group => 4,
        }
    }

    pub(crate) fn from_bits(bits: u8) -> Option<OriginKind> {
        match bits {
            1 => Some(OriginKind::Cancel),
            2 => Some(OriginKind::Guard),
            3 => Some(OriginKind::Deadline),
            4 => Some(OriginKind::Group),
            _ => None,
        }
    }
}

/// A cancellation as it starts: what started it and the call site it is charged to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Began {
    pub(crate) kind: OriginKind,
    pub(crate) at: &'static Location<'static>,
}

impl Began {
    #[track_caller]
    pub(crate) fn here(kind: OriginKind) -> Began {
        Began {
            kind,
            at: Location::caller(),
        }
    }
}

/// Where the cancellation that reached a context began: made by
/// [`Context::origin`](crate::Context::origin) once the context is done
/// ([S26](crate::guarantees#s26)).
///
/// Its `Display` is one line:
///
/// ```
/// use ctxkit::{Context, OriginKind};
/// let (ctx, handle) = Context::background().with_name("GET /orders").with_cancel();
/// handle.cancel();
/// let origin = ctx.origin().unwrap();
/// assert_eq!(origin.kind(), OriginKind::Cancel);
/// assert_eq!(origin.context_name(), Some("GET /orders"));
/// let line = origin.to_string();
/// assert!(line.starts_with("canceled by cancel() at "), "{line}");
/// assert!(line.ends_with(r#" in "GET /orders""#), "{line}");
/// ```
#[derive(Clone)]
pub struct Origin(Arc<Data>);

/// What an [`Origin`] tells, shared by its clones.
pub(crate) struct Data {
    pub(crate) kind: OriginKind,
    pub(crate) err: Error,
    pub(crate) location: Option<&'static Location<'static>>,
    pub(crate) context_name: Option<Cow<'static, str>>,
    pub(crate) thread_name: Option<Arc<str>>,
    /// The cause, when it is not the sentinel of `err`.
    pub(crate) cause: Option<Cause>,
    /// For a deadline: how far ahead it was set, when that is known.
    pub(crate) budget: Option<Duration>,
}

impl Origin {
    pub(crate) fn new(data: Data) -> Origin {
        Origin(Arc::new(data))
    }

    /// The cause, when it is not the sentinel of the err.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn cause(&self) -> Option<&Cause> {
        self.0.cause.as_ref()
    }

    /// What started the cancellation.
    pub fn kind(&self) -> OriginKind {
        self.0.kind
    }

    /// The error it ended the context with: equal to the context's
    /// [`err`](crate::Context::err).
    pub fn err(&self) -> Error {
        self.0.err
    }

    /// The call site it is charged to ([S27](crate::guarantees#s27)): the `cancel()`,
    /// `cancel_with_cause()`, `drop_guard()`, the call that set the deadline, or the group's
    /// `spawn` of the task that failed.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.0.location
    }

    /// The name of the context where the cancellation began
    /// ([S28](crate::guarantees#s28)): the nearest name given before that context was
    /// derived.
    pub fn context_name(&self) -> Option<&str> {
        self.0.context_name.as_deref()
    }

    /// The name of the thread that cancelled, when it had one. For a deadline, the thread
    /// that found it passed (the timer's thread, `ctxkit-timer`, or the thread that set a
    /// deadline already past).
    pub fn thread_name(&self) -> Option<&str> {
        self.0.thread_name.as_deref()
    }
}

impl PartialEq for Origin {
    /// Equal when they tell of the same cancellation: kind, err, location, context name and
    /// thread name ([S26](crate::guarantees#s26)).
    fn eq(&self, other: &Origin) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || self.0.kind == other.0.kind
                && self.0.err == other.0.err
                && self.0.location.map(|l| l as *const Location<'static>)
                    == other.0.location.map(|l| l as *const Location<'static>)
                && self.0.context_name == other.0.context_name
                && self.0.thread_name == other.0.thread_name
    }
}

impl Eq for Origin {}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("kind", &self.0.kind)
            .field("err", &self.0.err)
            .field("location", &self.0.location.map(|l| l.to_string()))
            .field("context_name", &self.0.context_name)
            .field("thread_name", &self.0.thread_name)
            .field("cause", &self.0.cause.as_ref().map(|c| c.to_string()))
            .finish()
    }
}

impl fmt::Display for Origin {
    /// One line, e.g. `canceled by cancel() at src/api.rs:88:17 on thread "worker-3" in
    /// "GET /orders"` or `deadline exceeded: set at src/api.rs:40:9 (250ms) in "GET /orders"`
    /// ([S27](crate::guarantees#s27)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let thread = |f: &mut fmt::Formatter<'_>| match &self.0.thread_name {
            Some(t) => write!(f, " on thread {t:?}"),
            None => Ok(()),
        };
        match self.0.kind {
            OriginKind::Deadline => {
                f.write_str("deadline exceeded: set")?;
                if let Some(at) = self.0.location {
                    write!(f, " at {at}")?;
                }
                if let Some(budget) = self.0.budget {
                    write!(f, " ({budget:?})")?;
                }
            }
            OriginKind::Cancel => {
                match self.0.cause {
                    Some(_) => f.write_str("canceled by cancel_with_cause()")?,
                    None => f.write_str("canceled by cancel()")?,
                }
                if let Some(at) = self.0.location {
                    write!(f, " at {at}")?;
                }
                thread(f)?;
            }
            OriginKind::Guard => {
                f.write_str("canceled by a dropped guard")?;
                if let Some(at) = self.0.location {
                    write!(f, " from drop_guard() at {at}")?;
                }
                thread(f)?;
            }
            OriginKind::Group => {
                f.write_str("canceled by a failed group task")?;
                if let Some(at) = self.0.location {
                    write!(f, " spawned at {at}")?;
                }
                thread(f)?;
            }
        }
        if let Some(name) = &self.0.context_name {
            write!(f, " in {name:?}")?;
        }
        if let Some(cause) = &self.0.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// The names of the threads that started cancellations, interned: a node keeps a `u32`.
struct Names {
    by_name: HashMap<Arc<str>, u32>,
    /// `list[tag - 1]` is the name of `tag`.
    list: Vec<Arc<str>>,
}

/// How many distinct thread names are kept; later new names are not recorded (a program
/// that names each of its threads differently, forever, must not grow without bound).
const NAMES_MAX: usize = 1 << 16;

fn names() -> &'static Mutex<Names> {
    static NAMES: OnceLock<Mutex<Names>> = OnceLock::new();
    NAMES.get_or_init(|| {
        Mutex::new(Names {
            by_name: HashMap::new(),
            list: Vec::new(),
        })
    })
}

/// [`thread_tag`]'s cache before the thread's name was interned.
const UNSET: u32 = u32::MAX;

/// A number for the current thread's name (`0`: no name, or not known). Interned once per
/// thread; afterwards one thread-local read.
#[inline]
pub(crate) fn thread_tag() -> u32 {
    thread_local! {
        static TAG: std::cell::Cell<u32> = const { std::cell::Cell::new(UNSET) };
    }
    TAG.try_with(|tag| match tag.get() {
        UNSET => {
            let t = intern(std::thread::current().name());
            tag.set(t);
            t
        }
        t => t,
    })
    .unwrap_or(0) // thread teardown: the name is not known
}

fn intern(name: Option<&str>) -> u32 {
    let Some(name) = name else { return 0 };
    let mut names = names().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&tag) = names.by_name.get(name) {
        return tag;
    }
    if names.list.len() >= NAMES_MAX {
        return 0;
    }
    let name: Arc<str> = Arc::from(name);
    names.list.push(Arc::clone(&name));
    let tag = names.list.len() as u32;
    names.by_name.insert(name, tag);
    tag
}

/// The name [`thread_tag`] gave `tag`.
pub(crate) fn thread_name(tag: u32) -> Option<Arc<str>> {
    let index = (tag as usize).checked_sub(1)?;
    let names = names().lock().unwrap_or_else(|e| e.into_inner());
    names.list.get(index).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_bits() {
        for kind in [
            OriginKind::Cancel,
            OriginKind::Guard,
            OriginKind::Deadline,
            OriginKind::Group,
        ] {
            assert!(kind.bits() != 0 && kind.bits() < 8);
            assert_eq!(OriginKind::from_bits(kind.bits()), Some(kind));
        }
        assert_eq!(OriginKind::from_bits(0), None);
    }

    #[test]
    fn thread_names_are_interned_once() {
        let a = std::thread::Builder::new()
            .name("origin-test".into())
            .spawn(thread_tag)
            .unwrap()
            .join()
            .unwrap();
        let b = std::thread::Builder::new()
            .name("origin-test".into())
            .spawn(thread_tag)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(thread_name(a).as_deref(), Some("origin-test"));
        let unnamed = std::thread::Builder::new().spawn(thread_tag).unwrap();
        assert_eq!(unnamed.join().unwrap(), 0);
        assert_eq!(thread_name(0), None);
    }
}
