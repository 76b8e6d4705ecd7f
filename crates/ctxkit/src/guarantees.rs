//! The guarantees of ctxkit: the rules every [`Context`] keeps, numbered so that docs, tests
//! and code can cite them (`S12` links here, to [S12](#s12)).
//!
//! S1–S19 and S22–S23 are Go's `context` semantics in Rust terms; S20, S24, S25 and S26–S32
//! are ctxkit's additions (`on_cancel`, `merge`, [`ManualClock`], origins, names, the live
//! tree) and S33 (deadlines that move). The crate's tests check each rule under its
//! number.
//!
//! # Roots
//!
//! <a id="s1"></a>**S1.** [`Context::background`] and [`Context::todo`] are never done:
//! `err()`, `cause()`, `deadline()` are `None`; `is_done()` is false; `done()` never
//! completes; `wait_timeout(d)` returns `None` after `d`. Creating one does not allocate.
//!
//! <a id="s2"></a>**S2.** Display: `context.Background`, `context.TODO`. A derived context
//! displays as its parent's text plus `.WithCancel`, `.WithDeadline([time left])`,
//! `.WithValue(key name, value type)` (`.WithValue(type)` for a value keyed by its type),
//! `.WithoutCancel`, `.WithClock`, `.Merge(other chain)` — the chain Go prints. The time left
//! is negative once the deadline has passed, as in Go.
//!
//! # Cancellation
//!
//! <a id="s3"></a>**S3.** `err()` is `None` until the context is done, then
//! `Some(Canceled)` or `Some(DeadlineExceeded)`, and never changes again. `is_done()` is
//! `err().is_some()`.
//!
//! <a id="s4"></a>**S4.** `cancel()` is idempotent and callable from any thread. When it
//! returns, the context and every descendant derived from it (through `with_cancel`,
//! `with_deadline`, `with_timeout`, `with_value`, `with`, `merge`, `with_clock` — not through
//! `without_cancel`) report done. Cancelling a child never affects its parent or siblings.
//!
//! <a id="s5"></a>**S5.** A child derived from a parent that is already done is done at
//! creation, with the parent's `err()` and `cause()` (this wins over [S13](#s13): a past
//! deadline under a cancelled parent keeps the parent's error).
//!
//! <a id="s6"></a>**S6.** [`Error`] displays exactly as Go's: `context canceled`,
//! `context deadline exceeded`. `Error::DeadlineExceeded.is_timeout()` is true;
//! `Canceled.is_timeout()` is false. Into [`std::io::Error`]: `DeadlineExceeded` has kind
//! `TimedOut`; `Canceled` has a kind other than `Interrupted` (std's I/O loops retry on that
//! one).
//!
//! # Causes (Go's `WithCancelCause` and `Cause`)
//!
//! <a id="s7"></a>**S7.** `cause()` is `None` while not done. Once done it is the first cause
//! that reached this context: `cancel_with_cause(c)` gives `c`; `cancel()` gives
//! `Error::Canceled`; a deadline passing gives the cause given to `with_*_cause`, else
//! `Error::DeadlineExceeded`.
//!
//! <a id="s8"></a>**S8.** First cause wins. When an ancestor is cancelled, the descendants
//! that were not yet done take the ancestor's err and cause; descendants that were already
//! done keep theirs. `cancel_with_cause` on a context that is already done changes nothing.
//!
//! <a id="s9"></a>**S9.** `cause()` of a `without_cancel()` context is `None`.
//! `cause().unwrap().is::<Error>()` holds when the cause is one of the two sentinel errors.
//!
//! # Deadlines
//!
//! <a id="s10"></a>**S10.** `deadline()` is the earliest deadline of the context and its
//! ancestors (up to a `without_cancel`, which has none). `remaining()` is `deadline - now`,
//! saturating at zero.
//!
//! <a id="s11"></a>**S11.** When the deadline passes, the context is cancelled with
//! `DeadlineExceeded` (and [S7](#s7)'s cause) without anyone polling it: a background timer
//! does it. It never fires before the deadline.
//!
//! <a id="s12"></a>**S12.** If the parent's deadline is earlier than the one asked for,
//! `with_deadline` makes a plain cancellable child (`deadline()` is the parent's; Display
//! shows `.WithCancel`; the cause argument is not used).
//!
//! <a id="s13"></a>**S13.** A deadline already in the past (or a zero timeout) gives a child
//! that is done at creation with `DeadlineExceeded`. `with_timeout(Duration::MAX)` and
//! deadlines far in the future neither panic nor overflow: they behave as "no deadline within
//! the life of the process".
//!
//! <a id="s14"></a>**S14.** The [`CancelHandle`] of a deadline context cancels with
//! `Canceled`, stops its timer and unregisters the child. A stopped timer never fires; its
//! entry in the timer queue (a deadline and a weak reference) is freed once the context is
//! dropped, so a cancel itself touches no timer queue.
//!
//! # Values
//!
//! <a id="s15"></a>**S15.** `value(&KEY)` finds the nearest `with_value(&KEY, ..)` above;
//! keys are told apart by the identity of the `static`, not by name. `get::<T>()` finds the
//! nearest `with::<T>(..)` value. The two namespaces are separate. Values stay readable after
//! cancellation and through `without_cancel`.
//!
//! <a id="s16"></a>**S16.** `without_cancel()` keeps the parent's values but has no
//! deadline, is never done, and is not cancelled by its parent.
//!
//! # Waiting
//!
//! <a id="s17"></a>**S17.** `done()` completes with the [`Error`] once the context is done
//! (at once if already done), on any executor (tokio, async-std, smol,
//! `futures::executor::block_on`), with no runtime required for timers. `wait()` and
//! [`Done::wait`] block the thread likewise. After either returns, `err()` is `Some`.
//!
//! <a id="s18"></a>**S18.** `run(fut)` polls `fut` until it finishes (`Ok(output)`) or the
//! context is done (`Err(error)`, with `fut` dropped).
//!
//! # Callbacks
//!
//! <a id="s19"></a>**S19.** `after_func(f)`: once the context is done, `f` runs exactly once,
//! on a thread other than the one that cancelled; `cancel()` does not wait for it. If the
//! context is already done, `f` is started at once. If the context can never be done, `f`
//! never runs. A registration lasts until `f` runs or `stop()` is called, even if the
//! [`AfterFunc`] value and every clone of the context are dropped, for as long as the context
//! can still become done (as in Go: an ancestor's cancel or its own deadline still runs `f`).
//! Once nothing can make it done any more (no handle, no timer, no cancellable ancestor
//! alive), `f` is dropped unrun: no leak.
//!
//! <a id="s20"></a>**S20.** `on_cancel(f)`: `f` runs exactly once, synchronously, on the
//! thread that cancels, before `cancel()` returns (or immediately, on the calling thread, if
//! already done). When `f` runs, its context already reports done. No lock of the tree is
//! held while it runs, so `f` may cancel, derive, drop or wait on other contexts.
//!
//! <a id="s21"></a>**S21.** `stop()` returns true when it prevented `f` from running (and
//! unregisters it, dropping `f`); false if `f` already started or `stop()` was called before.
//! On a context that can never be done, the first `stop()` returns true. A panic inside a
//! callback does not stop the other callbacks or the cancellation of other descendants.
//!
//! # Resources
//!
//! <a id="s22"></a>**S22.** Dropping every clone of a derived context and its
//! `CancelHandle` frees it and removes it from its parent, cancelled or not: no leak without
//! `cancel()` (callbacks registered on it stay while it can still become done: [S19](#s19)).
//! A `with_cancel` context that was done through its parent goes with its own clones and
//! handle even while contexts derived from it later live: they hold its parent instead,
//! and still print it ([S2](#s2)). So a chain built under a cancelled context holds only its
//! live levels, however deep it is built.
//! A [`CancelGuard`] cancels when dropped; `disarm()` gives the handle back without
//! cancelling. The library never declares a `#[global_allocator]`.
//!
//! <a id="s23"></a>**S23.** Trees of any depth (1,000,000 levels) can be built, cancelled,
//! printed and dropped without overflowing the stack.
//!
//! # Merge
//!
//! <a id="s24"></a>**S24.** `a.merge(&b)` is done when `a` or `b` is done (or its own handle
//! cancels), taking err and cause from whichever finished first (from `a` if both were done
//! already). Its deadline is the earlier of the two. Values are looked up in `a` first, then
//! in `b`. It measures time on `a`'s clock.
//!
//! # Clock
//!
//! <a id="s25"></a>**S25.** `with_clock(&clock)` makes the context and all its descendants
//! (through every derivation, `without_cancel` included) measure deadlines on `clock`:
//! `with_timeout(d)` has deadline `clock.now() + d`; `remaining()` uses `clock.now()`;
//! `clock.advance(by)` fires every deadline that becomes due, and the contexts report done
//! before `advance` returns. Real time passing does not fire them.
//!
//! # Provenance
//!
//! <a id="s26"></a>**S26.** [`origin()`](Context::origin) is `None` while the context is not
//! done. Once done, it tells where the cancellation that reached the context began, and it
//! never changes (the first wins, as [S8](#s8)). Every context one cancellation reached
//! reports an equal origin: same kind, location, context name and err.
//!
//! <a id="s27"></a>**S27.** Kinds and locations. `cancel()` / `cancel_with_cause()`:
//! [`OriginKind::Cancel`], at the call site of that call. A [`CancelGuard`] dropped:
//! `Guard`, at the call site of `drop_guard()`. A deadline passing: `Deadline`, at the call
//! site of the `with_deadline` / `with_timeout` / `*_cause` / `set_deadline` / `set_timeout`
//! that set it (a deadline inherited
//! from an ancestor keeps the ancestor's origin). The first error or panic of a group
//! ([`Group`](crate::Group), `ctxkit::tokio::Group`): `Group`, at the call site of the
//! `spawn` of the task that failed. A child done at creation ([S5](#s5)) has its parent's
//! origin; one done at creation by a past deadline ([S13](#s13)) has `Deadline` at its own
//! creation site. A merge reports the origin of the cancellation that reached it.
//! `origin.err()` equals the context's `err()`; `thread_name()` is the name of the thread
//! that cancelled, when it had one. [`Origin`]'s Display is one line that names the kind,
//! the location as `file:line:column`, the thread, the context's name when there is one,
//! and the cause when it is not the err itself: `canceled by cancel() at src/api.rs:88:17 on
//! thread "worker-3" in "GET /orders"`, `deadline exceeded: set at src/api.rs:40:9 (250ms)
//! in "GET /orders"`.
//!
//! # Names
//!
//! <a id="s28"></a>**S28.** `with_name(n)` derives a context that shares its parent's
//! cancellation, deadline and values and carries the name `n`, of any length and any
//! characters. `name()` is the nearest name on the context or above it: a name is inherited
//! like a value ([S15](#s15), [S16](#s16); through a merge, the first context's name first,
//! [S24](#s24)). Display shows a name as `.WithName("n")`, escaped like a Rust string
//! literal. `with_name` allocates at most once. [`Origin::context_name`] is the name of the
//! context where the cancellation began (the name visible where it was derived).
//! `named_child(n)` is `with_name(n).with_cancel()` with its handle dropped: a named child
//! listed in the live tree ([S30](#s30)) that is done exactly when its parent is.
//!
//! <a id="s29"></a>**S29.** Cost: nothing on `err()`, `is_done()`, `clone()`; `with_name`
//! at most one allocation; a cancellation records its origin once, on the context where it
//! began, not once per descendant; deriving a context reads no clock (ages come from a clock
//! that a thread, `ctxkit-clock`, refreshes every 4 ms while contexts are being made).
//!
//! # The live tree
//!
//! <a id="s30"></a>**S30.** `inspect::Snapshot::of(ctx)` lists the
//! context and every live context derived from it, depth first, pre-order: the first entry is
//! `ctx` at depth 0 (kind `Background`, `TODO` or `WithoutCancel` when it has no
//! cancellation of its own), then one entry per derived context that can be cancelled on its
//! own (`WithCancel`, `WithDeadline`, `Merge`); value and name layers are not entries, their
//! names show on the entries below them. `kind()` uses the words of Display. A merged
//! context appears once, under the first of its parents the snapshot reaches. Contexts that
//! were dropped ([S22](#s22)) do not appear; done contexts still held appear with their
//! `err()` and `origin()`. `created_at()` is the call site of the call that derived it.
//! Contexts are found through cancellation links, from parents to children: a snapshot of a
//! root that cannot be cancelled (`Background`, `TODO`, `without_cancel`) lists that root
//! alone, and a child born done ([S5](#s5)) is in no parent's list.
//!
//! <a id="s31"></a>**S31.** Taking a snapshot never holds more than one context's lock at a
//! time, does not block a cancellation for longer than that, and keeps nothing alive once
//! it returns. A snapshot of a chain of any depth does not recurse.
//!
//! <a id="s32"></a>**S32.** `Display` of a snapshot: one line per entry, indented two spaces
//! per depth, holding the kind, the name if any, the time left if it has a deadline, its
//! age, where it was made, and for a done context its err and origin.
//! `to_json()` is a JSON object whose `"contexts"` array
//! has one object per entry with `depth`, `kind`, `name`, `created_at` (`"file:line:column"`
//! or null), `age_ms`, `deadline_in_ms` (null when none) and `err` (null or the error's
//! text), and `origin` (null or an object).
//!
//! # Deadlines that move
//!
//! <a id="s33"></a>**S33.** [`set_deadline(d)`](CancelHandle::set_deadline) moves the own
//! deadline of the handle's context to `d`, earlier or later, also on a context made by
//! `with_cancel` (which then gains one); [`set_timeout(t)`](CancelHandle::set_timeout) is
//! `set_deadline(now + t)` on the context's clock (a `t` past the end of time removes the
//! deadline, [S13](#s13)). It returns false, changing nothing, when the context is already
//! done. `deadline()` of the context and of its descendants reflects the move at once (still
//! the earliest of the ancestors', [S10](#s10)); a deadline moved to now or into the past
//! cancels at once with `DeadlineExceeded`; a deadline moved later never fires at the old
//! time. A `with_*_cause` context keeps its cause. The origin of its expiry is the call that
//! last set it ([S27](#s27)). A child made with a deadline later than its parent's had none
//! of its own ([S12](#s12)) and does not get one back when the parent's deadline moves
//! later: it follows its parent. `set_timeout` in a loop (an idle timeout touched on every
//! message) allocates nothing once the context has a deadline, and moving a deadline later
//! wakes no timer thread: the entry of the earlier deadline puts the context back at its new
//! deadline when it comes due.

#[allow(unused_imports)] // for the links above
use crate::{
    AfterFunc, CancelGuard, CancelHandle, Context, Done, Error, ManualClock, Origin, OriginKind,
};
