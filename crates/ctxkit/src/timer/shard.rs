//! One shard of a timer queue: a binary min-heap of deadlines under a lock, with the counts
//! that decide when to clean it (`timer/mod.rs`, T2).
//!
//! The heap is an array where every entry is due no later than its two children, so the
//! earliest deadline is at index 0. Removing the *last* entry of the array keeps that order,
//! which is what [`Shard::forget`] uses: deadlines made one after another with the same
//! timeout arrive in increasing order and stay at the end of the array, and the context of a
//! timer dropped soon after it was made (a request that finished in time) is most often
//! among them, so its entry goes at once, in O(1).

use std::sync::Weak;

use crate::sync::{lock, AtomicI64, AtomicUsize, Mutex, Ordering};
use crate::time::{Nanos, NO_DEADLINE};

/// One pending deadline.
pub(super) struct Entry<T> {
    pub(super) at: Nanos,
    pub(super) timed: Weak<T>,
}

/// A binary min-heap of entries ordered by deadline.
pub(super) struct Heap<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Default for Heap<T> {
    fn default() -> Self {
        Heap {
            entries: Vec::new(),
        }
    }
}

impl<T> Heap<T> {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The earliest deadline, [`NO_DEADLINE`] if empty.
    pub(super) fn earliest(&self) -> Nanos {
        self.entries.first().map_or(NO_DEADLINE, |e| e.at)
    }

    pub(super) fn push(&mut self, entry: Entry<T>) {
        self.entries.push(entry);
        let mut i = self.entries.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.entries[parent].at <= self.entries[i].at {
                break;
            }
            self.entries.swap(parent, i);
            i = parent;
        }
    }

    /// Removes and returns the earliest entry.
    pub(super) fn pop(&mut self) -> Option<Entry<T>> {
        let last = self.entries.len().checked_sub(1)?;
        self.entries.swap(0, last);
        let first = self.entries.pop();
        self.sift_down(0);
        first
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.entries.len();
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if left < n && self.entries[left].at < self.entries[least].at {
                least = left;
            }
            if right < n && self.entries[right].at < self.entries[least].at {
                least = right;
            }
            if least == i {
                return;
            }
            self.entries.swap(i, least);
            i = least;
        }
    }

    /// Keeps only the entries `keep` accepts, then restores the order: O(n).
    fn retain(&mut self, keep: impl FnMut(&Entry<T>) -> bool) {
        self.entries.retain(keep);
        for i in (0..self.entries.len() / 2).rev() {
            self.sift_down(i);
        }
    }

    /// Pops entries off the end of the array while `dead` says so: each removal keeps the
    /// order. Returns how many went.
    fn trim(&mut self, mut dead: impl FnMut(&Entry<T>) -> bool) -> usize {
        let before = self.entries.len();
        while self.entries.last().is_some_and(&mut dead) {
            self.entries.pop();
        }
        before - self.entries.len()
    }

    /// Takes every entry out.
    pub(super) fn take_all(&mut self) -> Vec<Entry<T>> {
        std::mem::take(&mut self.entries)
    }
}

/// Whether an entry can go: its owner was dropped (T2). One load of the count a `Weak`
/// shares with its owner: no reference is taken, so nothing can be dropped under the lock.
fn is_dead<T>(entry: &Entry<T>) -> bool {
    entry.timed.strong_count() == 0
}

/// One heap of deadlines and its counts. Aligned to its own cache lines, so that threads
/// working on different shards do not share one.
#[repr(align(128))]
pub(super) struct Shard<T> {
    pub(super) heap: Mutex<Heap<T>>,
    /// Entries whose context was dropped since the last rebuild (T2). Counted without the
    /// lock. An estimate: an entry popped after being counted is not subtracted, which only
    /// makes the next rebuild come a little early.
    dead: AtomicUsize,
    /// The heap's length as of its last change (read without the lock by `forget`).
    len: AtomicUsize,
    /// The deadline of the last entry of the heap's array as of its last change ([`NO_DEADLINE`]
    /// if empty): `forget` locks the shard to trim the array only when its own deadline is
    /// the last one.
    last_at: AtomicI64,
}

impl<T> Default for Shard<T> {
    fn default() -> Shard<T> {
        Shard {
            heap: Mutex::default(),
            dead: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            last_at: AtomicI64::new(NO_DEADLINE),
        }
    }
}

impl<T> Shard<T> {
    /// Publishes the heap's length and last deadline for lock-free readers.
    pub(super) fn changed(&self, heap: &Heap<T>) {
        self.len.store(heap.len(), Ordering::Relaxed);
        let last = heap.entries.last().map_or(NO_DEADLINE, |e| e.at);
        self.last_at.store(last, Ordering::Relaxed);
    }

    /// Takes every entry due at `now` out of the heap; returns the earliest deadline left.
    pub(super) fn take_due(&self, heap: &mut Heap<T>, now: Nanos, due: &mut Vec<Weak<T>>) -> Nanos {
        while heap.earliest() <= now {
            due.extend(heap.pop().map(|e| e.timed));
        }
        self.changed(heap);
        heap.earliest()
    }

    /// Counts the entry whose deadline was `at` as dead: its owner is being dropped (T2). If
    /// the entry is the last of the heap's array, it and the dead entries before it are
    /// removed now, in O(1) each; otherwise the shard is rebuilt without its dead entries
    /// once they outnumber the live ones, so removal is amortised O(1) either way.
    pub(super) fn forget(&self, at: Nanos) {
        // Relaxed: the counts only decide when to clean; the cleaning itself is exact.
        let dead = self.dead.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_at.load(Ordering::Relaxed) == at;
        let rebuild = dead >= 64 && dead * 2 >= self.len.load(Ordering::Relaxed);
        if !last && !rebuild {
            return;
        }
        let mut heap = lock(&self.heap);
        if rebuild {
            heap.retain(|e| !is_dead(e));
            self.dead.store(0, Ordering::Relaxed);
        } else {
            let trimmed = heap.trim(is_dead);
            let fewer = |d: usize| Some(d.saturating_sub(trimmed));
            let _ = self
                .dead
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, fewer);
        }
        self.changed(&heap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(at: Nanos) -> Entry<()> {
        Entry {
            at,
            timed: Weak::new(),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(Nanos),
        Pop,
        TrimAbove(Nanos),
        RetainBelow(Nanos),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..50i64).prop_map(Op::Push),
            2 => Just(Op::Pop),
            1 => (0..50i64).prop_map(Op::TrimAbove),
            1 => (0..50i64).prop_map(Op::RetainBelow),
        ]
    }

    proptest! {
        /// The heap pops in deadline order whatever mix of pushes, pops, trims and retains
        /// came before; a trim removes only a run of entries at the end of the array.
        #[test]
        fn heap_pops_in_deadline_order(ops in proptest::collection::vec(op(), 0..200)) {
            let mut heap = Heap::<()>::default();
            let mut model: Vec<Nanos> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(at) => {
                        heap.push(entry(at));
                        model.push(at);
                    }
                    Op::Pop => {
                        model.sort_unstable();
                        let expected = (!model.is_empty()).then(|| model.remove(0));
                        prop_assert_eq!(heap.pop().map(|e| e.at), expected);
                    }
                    Op::TrimAbove(bound) => {
                        let tail: Vec<Nanos> = heap.entries.iter().rev()
                            .take_while(|e| e.at > bound).map(|e| e.at).collect();
                        let trimmed = heap.trim(|e| e.at > bound);
                        prop_assert_eq!(trimmed, tail.len());
                        for at in tail {
                            let i = model.iter().position(|&m| m == at).unwrap();
                            model.swap_remove(i);
                        }
                    }
                    Op::RetainBelow(bound) => {
                        heap.retain(|e| e.at < bound);
                        model.retain(|&at| at < bound);
                    }
                }
                prop_assert_eq!(heap.len(), model.len());
                prop_assert_eq!(heap.earliest(), model.iter().copied().min().unwrap_or(NO_DEADLINE));
            }
            model.sort_unstable();
            let drained: Vec<Nanos> = std::iter::from_fn(|| heap.pop().map(|e| e.at)).collect();
            prop_assert_eq!(drained, model);
        }
    }
}
