//! A node's state word: its err, whether a walk is still under way below it, whether its
//! lock guards anything, and whether a cancellation began at it (N1, N1b, N9, N10). One byte,
//! read with one load on every `err()` and `is_done()`.

use crate::origin::OriginKind;
use crate::sync::{AtomicU8, Ordering};
use crate::Error;

/// The err bits of a node that is not done (N1).
const LIVE: u8 = 0;
const ERR_BITS: u8 = 0b11;
/// Set on a node made done by a walk until the walk has made its whole subtree done (N1b).
const WALKING: u8 = 0b100;
/// Set once the node's lock guards anything, or a locked path is making it done (N9).
const CLAIMED: u8 = 0b1000;
/// Set once the node has left the tree, as its last reference went (`release.rs`).
const LEFT: u8 = 0b1_0000;
/// The [`OriginKind`] of the cancellation that began at this node, or 0 (N10). Set in the
/// same write that makes the node done.
const ORIGIN_SHIFT: u32 = 5;

fn encode(err: Error) -> u8 {
    match err {
        Error::Canceled => 1,
        Error::DeadlineExceeded => 2,
    }
}

/// The state bits that say a cancellation began here (N10); 0 for a node reached by one.
fn origin_bits(began: Option<OriginKind>) -> u8 {
    began.map_or(0, |kind| kind.bits() << ORIGIN_SHIFT)
}

/// The err a state tells: a table, read with one load, where a `match` compiles to six
/// instructions on the done checks' path (`encode` never makes `0b11`).
fn decode(state: u8) -> Option<Error> {
    const ERRS: [Option<Error>; 4] = [
        None, // LIVE
        Some(Error::Canceled),
        Some(Error::DeadlineExceeded),
        Some(Error::DeadlineExceeded),
    ];
    ERRS[usize::from(state & ERR_BITS)]
}

/// Whether a node made done still has a walk under way below it (N1b).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Walk {
    /// Its subtree is done already (it had no children to walk).
    Over,
    /// The walk that made it done still has children of it to reach.
    UnderWay,
}

/// The state word of a node. See the invariants in `tree/mod.rs`.
pub(super) struct State(AtomicU8);

impl State {
    /// A live node; `claimed` when its lock guards something from the start (N9).
    pub(super) fn new(claimed: bool) -> State {
        State(AtomicU8::new(if claimed { CLAIMED } else { LIVE }))
    }

    /// A node born done, under a parent done without a cause (N9b): unclaimed, for it has
    /// no cause either.
    pub(super) fn born_done(err: Error) -> State {
        State(AtomicU8::new(encode(err)))
    }

    /// The err of a node that is done and unclaimed (N9b): it was made done without a cause
    /// and has none, now or ever. `None` if it is live or claimed.
    #[inline]
    pub(super) fn done_without_cause(&self) -> Option<Error> {
        let state = self.0.load(Ordering::Acquire);
        if state & CLAIMED != 0 {
            return None;
        }
        decode(state)
    }

    /// The node's err: one `Acquire` load (N1).
    #[inline]
    pub(super) fn err(&self) -> Option<Error> {
        decode(self.0.load(Ordering::Acquire))
    }

    #[inline]
    pub(super) fn is_done(&self) -> bool {
        self.0.load(Ordering::Acquire) & ERR_BITS != LIVE
    }

    /// Called under the node's lock before putting anything behind it or making the node
    /// done on the locked path: sets `CLAIMED`, so that no lock-free cancel can make the node
    /// done any more (N9). Returns the err if the node is done already.
    pub(super) fn claim(&self) -> Option<Error> {
        let state = self.0.load(Ordering::Acquire);
        if state & CLAIMED != 0 {
            // Set already: only locked paths, which wait for our lock, can change the err.
            return decode(state);
        }
        decode(self.0.fetch_or(CLAIMED, Ordering::AcqRel))
    }

    /// N9: makes an unclaimed node (nothing behind its lock) done with one compare-and-swap.
    /// Returns `false`, changing nothing, if the node is claimed or done.
    /// `began`: the kind of the cancellation if it begins at this node (N10).
    pub(super) fn cancel_unclaimed(&self, err: Error, began: Option<OriginKind>) -> bool {
        // A state never goes back to `LIVE`: once it is not, the swap would fail, and a load
        // tells so without the cost of a failing read-modify-write (every claimed node, each
        // level of a live chain, comes here first).
        if self.0.load(Ordering::Relaxed) != LIVE {
            return false;
        }
        let done = encode(err) | origin_bits(began);
        self.0
            .compare_exchange(LIVE, done, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Makes the node done, under its lock, after its cause was written (N1). `CLAIMED`
    /// stays set: a done node's cause is behind its lock.
    pub(super) fn finish(&self, err: Error, walk: Walk, began: Option<OriginKind>) {
        let walking = match walk {
            Walk::Over => 0,
            Walk::UnderWay => WALKING,
        };
        let done = encode(err) | walking | CLAIMED | origin_bits(began);
        self.0.store(done, Ordering::Release);
    }

    /// Whether the node is done with no origin of its own: made done from a parent (N13).
    #[inline]
    pub(super) fn done_from_parent(&self) -> bool {
        let state = self.0.load(Ordering::Acquire);
        state & ERR_BITS != LIVE && state >> ORIGIN_SHIFT == 0
    }

    /// The kind of the cancellation that began at this node, once done (N10).
    pub(super) fn began(&self) -> Option<OriginKind> {
        OriginKind::from_bits(self.0.load(Ordering::Acquire) >> ORIGIN_SHIFT)
    }

    /// Clears the walking bit set by [`finish`](Self::finish) (N1b), with a plain store: while
    /// the bit is set, the walk that set it is the only writer of the word. `finish` wrote it
    /// on a node already claimed and done, and every other write needs the node live
    /// (`cancel_unclaimed`, `finish`), unclaimed (`claim`) or gone from every reference
    /// (`leave_once`, and the walk holds one). The `Release` store publishes the subtree the
    /// walk made done; the waiters' side of the protocol is in `walk.rs` (`walks_ended`).
    pub(super) fn end_walk(&self) {
        let state = self.0.load(Ordering::Relaxed);
        if state & WALKING != 0 {
            self.0.store(state & !WALKING, Ordering::Release);
        }
    }

    /// Whether the node has left the tree ([`leave_once`](Self::leave_once)). Read only by
    /// the owner of the node's last reference, as `leave_once` is.
    #[inline]
    pub(super) fn has_left(&self) -> bool {
        self.0.load(Ordering::Relaxed) & LEFT != 0
    }

    /// Marks the node as having left the tree; true the first time. Called only by the owner
    /// of the node's last reference, so plain loads and stores are exact.
    pub(super) fn leave_once(&self) -> bool {
        let state = self.0.load(Ordering::Relaxed);
        self.0.store(state | LEFT, Ordering::Relaxed);
        state & LEFT == 0
    }

    /// Whether a walk is under way below this node (N1b; `SeqCst`, see `walk.rs`).
    pub(super) fn is_walking(&self) -> bool {
        self.0.load(Ordering::SeqCst) & WALKING != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn err_is_none_until_done_then_final() {
        let state = State::new(false);
        assert_eq!(state.err(), None);
        assert!(!state.is_done());
        assert!(state.cancel_unclaimed(Error::DeadlineExceeded, None));
        assert_eq!(state.err(), Some(Error::DeadlineExceeded));
        assert!(
            !state.cancel_unclaimed(Error::Canceled, None),
            "done is final"
        );
        assert_eq!(state.claim(), Some(Error::DeadlineExceeded));
    }

    #[test]
    fn a_claimed_node_is_not_cancelled_lock_free() {
        let state = State::new(false);
        assert_eq!(state.claim(), None);
        assert!(!state.cancel_unclaimed(Error::Canceled, None));
        assert!(!state.is_done());
        assert!(!State::new(true).cancel_unclaimed(Error::Canceled, None));
    }

    #[test]
    fn the_walking_bit_does_not_change_the_err() {
        let state = State::new(true);
        state.finish(Error::Canceled, Walk::UnderWay, None);
        assert!(state.is_walking());
        assert_eq!(state.err(), Some(Error::Canceled));
        state.end_walk();
        assert!(!state.is_walking());
        assert_eq!(state.err(), Some(Error::Canceled));
        state.end_walk(); // once more: nothing to clear
        assert_eq!(state.claim(), Some(Error::Canceled));
    }

    #[test]
    fn a_walk_without_children_is_over_at_once() {
        let state = State::new(false);
        assert_eq!(state.claim(), None);
        state.finish(
            Error::DeadlineExceeded,
            Walk::Over,
            Some(OriginKind::Deadline),
        );
        assert_eq!(state.began(), Some(OriginKind::Deadline));
        assert!(!state.is_walking());
        assert_eq!(state.err(), Some(Error::DeadlineExceeded));
    }
}
