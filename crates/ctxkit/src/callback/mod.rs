//! Callbacks that run when a context is done: [`AfterFunc`] registrations (Go's
//! `context.AfterFunc`, run on the [pool](pool)) and `on_cancel` (run inline by the
//! canceller).
//!
//! A registration knows nothing of contexts: it is kept by the [`Home`]s that can fire it
//! (the tree's nodes) and tells them when it stops being pending.
//!
//! # Invariants
//! - **C1 (exactly once)**: a registration's `state` leaves `PENDING` once, by a
//!   compare-exchange: to `STARTED` when it fires, to `STOPPED` when [`AfterFunc::stop`] wins.
//!   Only the winner touches `f`, so `f` runs at most once, and `stop` returns true exactly
//!   when `f` will never run ([S21](crate::guarantees#s21)).
//! - **C2 (no thread waits on a callback)**: `after_func` callbacks run on the pool, never on
//!   the thread that fired them, so a callback that blocks (even on another callback) never
//!   holds up the canceller ([S19](crate::guarantees#s19)); how the pool grows so that a
//!   blocked callback never holds up the others for long is in [`pool`].
//! - **C3 (no leak)**: a registration is shared by the [`AfterFunc`] and by the homes that can
//!   still fire it. When its context can no longer be done, those homes are gone, and `f` is
//!   dropped with the last reference ([S19](crate::guarantees#s19)).

mod pool;

pub(crate) use pool::{execute, Priority};

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::Waker;

use crate::sync::{lock, AtomicU8, Mutex, Ordering};

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const STOPPED: u8 = 2;

pub(crate) type Callback = pool::Job;
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// Which call registered a callback, which decides where it runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flavor {
    /// [`Context::after_func`](crate::Context::after_func): on a pool thread (C2).
    AfterFunc,
    /// [`Context::on_cancel`](crate::Context::on_cancel): on the thread that fires it.
    OnCancel,
}

/// Where the `on_cancel` callbacks of one cancellation run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Callbacks {
    /// On the cancelling thread, before the cancel returns ([S20](crate::guarantees#s20)).
    Inline,
    /// On the callback pool, with everything else of the cancellation that runs user code
    /// (waking, dropping): for the real-time timer thread, which must stay free to fire other
    /// deadlines, even those an `on_cancel` callback waits for.
    Pool,
}

/// Something that holds registrations and must hear when one stops being pending (stopped,
/// or fired through another home): a node of the cancellation tree.
pub(crate) trait Home: Send + Sync + 'static {
    /// Whether the home is done: a done home has handed its registrations out already.
    fn is_done(&self) -> bool;
    /// One of its registrations is no longer pending.
    fn registration_settled(&self);
}

/// One registered callback, shared by the homes that can fire it and the [`AfterFunc`].
pub(crate) struct Reg {
    state: AtomicU8,
    flavor: Flavor,
    f: Mutex<Option<Callback>>,
    /// The homes it is registered on (more than one once handed to the parents of a dropped
    /// merge), told when the registration stops being pending.
    homes: Mutex<Vec<Weak<dyn Home>>>,
}

impl Reg {
    pub(crate) fn new(f: Callback, flavor: Flavor) -> Arc<Reg> {
        Arc::new(Reg {
            state: AtomicU8::new(PENDING),
            flavor,
            f: Mutex::new(Some(f)),
            homes: Mutex::new(Vec::new()),
        })
    }

    /// Tells the homes that still hold this registration that it is no longer pending, so
    /// that a home kept alive for it alone can be freed ([S22](crate::guarantees#s22)).
    fn settle_homes(&self) {
        let homes: Vec<Arc<dyn Home>> = lock(&self.homes)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|home| !home.is_done())
            .collect();
        homes.iter().for_each(|home| home.registration_settled());
    }

    pub(crate) fn add_home<H: Home>(&self, home: &Arc<H>) {
        let home: Weak<H> = Arc::downgrade(home);
        let home: Weak<dyn Home> = home;
        let mut homes = lock(&self.homes);
        homes.retain(|h| h.strong_count() > 0);
        homes.push(home);
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }

    /// Moves `PENDING` to `to`; on success hands out `f` (C1).
    fn take(&self, to: u8) -> Option<Option<Callback>> {
        self.state
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| lock(&self.f).take())
    }

    /// Starts `f` (inline or on the pool). Returns the payload if an inline `f` panicked.
    fn fire(&self) -> Option<Panic> {
        let f = self.take(STARTED)??;
        self.settle_homes();
        match self.flavor {
            Flavor::OnCancel => catch_unwind(AssertUnwindSafe(f)).err(),
            Flavor::AfterFunc => {
                pool::execute(f, Priority::Normal);
                None
            }
        }
    }
}

thread_local! {
    /// Wakers of the deadlines the timer thread expired in its current pass.
    static WAKE_LATER: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `wakers` to be woken from the pool by [`flush_wakes`], with those of every other
/// deadline of the timer thread's current pass: one hand-over per pass, not per deadline.
pub(crate) fn wake_later(wakers: impl Iterator<Item = Waker>) {
    WAKE_LATER.with(|later| later.borrow_mut().extend(wakers));
}

/// Wakes, from a pool thread, the wakers kept by [`wake_later`].
pub(crate) fn flush_wakes() {
    let wakers = WAKE_LATER.with(|later| std::mem::take(&mut *later.borrow_mut()));
    if wakers.is_empty() {
        return;
    }
    let wake_all = move || {
        for waker in wakers {
            // A broken waker must not keep the others from hearing; its panic is reported
            // by the panic hook.
            let _ = catch_unwind(AssertUnwindSafe(|| waker.wake()));
        }
    };
    pool::execute(Box::new(wake_all), Priority::Urgent);
}

/// Fires every registration; all run even if some panic ([S21](crate::guarantees#s21)).
/// Returns the first panic.
pub(crate) fn fire_all(regs: impl IntoIterator<Item = Arc<Reg>>) -> Option<Panic> {
    let mut first = None;
    for reg in regs {
        if let Some(panic) = reg.fire() {
            first.get_or_insert(panic);
        }
    }
    first
}

/// [`fire_all`], then resumes the first panic of an inline callback on this thread.
pub(crate) fn fire_all_resuming(regs: Vec<Arc<Reg>>) {
    if let Some(panic) = fire_all(regs) {
        std::panic::resume_unwind(panic);
    }
}

/// A callback registered with [`Context::after_func`](crate::Context::after_func) or
/// [`Context::on_cancel`](crate::Context::on_cancel).
///
/// Dropping it does not unregister the callback (as in Go); [`stop`](AfterFunc::stop) does.
///
/// # Examples
///
/// ```
/// use ctxkit::Context;
///
/// let (ctx, handle) = Context::background().with_cancel();
/// let registration = ctx.after_func(|| println!("never printed"));
/// assert!(registration.stop());
/// handle.cancel();
/// ```
#[must_use = "dropping an AfterFunc keeps the callback registered; keep it to be able to stop it"]
pub struct AfterFunc {
    reg: Arc<Reg>,
}

impl AfterFunc {
    pub(crate) fn new(reg: Arc<Reg>) -> AfterFunc {
        AfterFunc { reg }
    }

    /// Unregisters the callback. Returns true if this call prevented it from running (the
    /// callback is dropped unrun); false if it had already started, or `stop` was already
    /// called ([S21](crate::guarantees#s21)).
    ///
    /// ```
    /// use ctxkit::Context;
    /// let (ctx, handle) = Context::background().with_cancel();
    /// let f = ctx.on_cancel(|| {});
    /// handle.cancel(); // runs the callback before returning
    /// assert!(!f.stop());
    /// ```
    pub fn stop(&self) -> bool {
        let Some(f) = self.reg.take(STOPPED) else {
            return false;
        };
        drop(f);
        self.reg.settle_homes();
        true
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.reg.state.load(Ordering::Acquire) {
            PENDING => "pending",
            STARTED => "started",
            _ => "stopped",
        };
        f.debug_struct("AfterFunc").field("state", &state).finish()
    }
}
