//! What a node's lock guards (N2, N3): its child list, the slots a child's `slot` names, and,
//! out of line, the rest of its state that changes.
//!
//! The first child lives in a field of its own, in the node: a node with one child at a time
//! (each level of a chain, a parent whose children come and go one by one) is one allocation,
//! and its list costs it two words. Everything else is in one box made on first use: the next
//! [`NEAR`] children in the box itself, the others as entries in a vector with a list of the
//! free ones so that insert and remove are O(1), and the `side` state most nodes never have
//! (causes, waiters, callbacks). So a parent of up to `1 + NEAR` children at a time (a
//! request's few calls, a parent two threads derive from at once) has one box and no vector,
//! and a child linked into it or removed touches the node and the box, nothing further. An
//! entry of `Option<Weak<Node>>` is 8 B (a `slab::Slab` entry is 16), which keeps a parent of
//! many children within the wide fan-out's memory budget.

/// The slot of a child in no parent's list (N3).
pub(super) const UNLINKED: u32 = u32::MAX;
/// The slot of the child kept in [`Children::first`].
pub(super) const FIRST: u32 = u32::MAX - 1;
/// How many children beyond the first are kept in the box itself (slots `0..NEAR`); the
/// vector's entries are slots `NEAR..`.
const NEAR: usize = 4;
/// [`Spill::near_free`] with every slot free.
const ALL_NEAR: u8 = (1 << NEAR) - 1;

/// The children of one node and its `side` state. `T` is `Weak<Node>` and `X` the node's
/// `Extra` in the tree.
pub(super) struct Children<T, X> {
    first: Option<T>,
    /// Made with the second child at a time, or when `side` is first needed.
    spill: Option<Box<Spill<T, X>>>,
}

/// What is kept out of line: the children beyond the first, and the side state.
struct Spill<T, X> {
    near: [Option<T>; NEAR],
    /// Bit `i` is set exactly when `near[i]` is free.
    near_free: u8,
    /// Slot `NEAR + i` is `rest[i]`.
    rest: Vec<Option<T>>,
    /// The free slots of `rest`, as indices into it.
    free: Vec<u32>,
    side: X,
}

impl<T, X> Default for Children<T, X> {
    fn default() -> Self {
        Children {
            first: None,
            spill: None,
        }
    }
}

impl<T, X: Default> Children<T, X> {
    fn spill(&mut self) -> &mut Spill<T, X> {
        self.spill
            .get_or_insert_with(|| Self::spill_with(X::default))
    }

    /// An empty list, with its side state made already by `side` if `made`.
    #[inline(always)]
    pub(super) fn new(made: bool, side: impl FnOnce() -> X) -> Self {
        Children {
            first: None,
            spill: if made {
                Some(Self::spill_with(side))
            } else {
                None
            },
        }
    }

    /// The box, with no child in it yet and `side()` as its side state: made at most once
    /// a node, out of line, so that the pointer comes back in a register.
    #[cold]
    #[inline(never)]
    fn spill_with(side: impl FnOnce() -> X) -> Box<Spill<T, X>> {
        Box::new(Spill {
            near: Default::default(),
            near_free: ALL_NEAR,
            rest: Vec::new(),
            free: Vec::new(),
            side: side(),
        })
    }

    /// The side state, made (as `X::default()`) if it was not yet.
    pub(super) fn side_or_default(&mut self) -> &mut X {
        &mut self.spill().side
    }

    /// Adds `child`; returns the slot that names it.
    #[inline(always)]
    pub(super) fn insert(&mut self, child: T) -> u32 {
        if self.first.is_none() {
            self.first = Some(child);
            return FIRST;
        }
        self.insert_spilled(child)
    }

    /// [`insert`](Self::insert) into the box, out of line.
    #[inline(never)]
    fn insert_spilled(&mut self, child: T) -> u32 {
        let spill = self.spill();
        if spill.near_free != 0 {
            let i = spill.near_free.trailing_zeros();
            spill.near_free &= spill.near_free - 1;
            spill.near[i as usize] = Some(child);
            return i;
        }
        let i = match spill.free.pop() {
            Some(i) => {
                spill.rest[i as usize] = Some(child);
                i as usize
            }
            None => {
                spill.rest.push(Some(child));
                spill.rest.len() - 1
            }
        };
        (NEAR + i) as u32
    }
}

impl<T, X> Children<T, X> {
    /// The side state, if it was ever made.
    pub(super) fn side(&self) -> Option<&X> {
        self.spill.as_deref().map(|s| &s.side)
    }

    pub(super) fn side_mut(&mut self) -> Option<&mut X> {
        self.spill.as_deref_mut().map(|s| &mut s.side)
    }

    /// Removes and returns the child in `slot` (`None` if the slot is empty).
    #[inline]
    pub(super) fn remove(&mut self, slot: u32) -> Option<T> {
        if slot == FIRST {
            return self.first.take();
        }
        self.remove_spilled(slot)
    }

    /// [`remove`](Self::remove) of a child in the box, out of line.
    #[inline(never)]
    fn remove_spilled(&mut self, slot: u32) -> Option<T> {
        let spill = self.spill.as_mut()?;
        let Some(i) = (slot as usize).checked_sub(NEAR) else {
            spill.near_free |= 1 << slot;
            return spill.near[slot as usize].take();
        };
        let child = spill.rest[i].take();
        if spill.free.len() + 1 == spill.rest.len() {
            // The last entry left: give the memory back.
            spill.rest.clear();
            spill.free.clear();
        } else {
            spill.free.push(i as u32);
        }
        child
    }

    /// Calls `f` on every child, the first one first.
    #[inline]
    pub(super) fn for_each(&self, mut f: impl FnMut(&T)) {
        if let Some(first) = &self.first {
            f(first);
        }
        if let Some(spill) = &self.spill {
            // Two loops: one loop over the chain of both takes more instructions a child
            // (`tools/bench/instructions.sh`, mode `few`).
            for child in spill.near.iter().flatten() {
                f(child);
            }
            for child in spill.rest.iter().flatten() {
                f(child);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn take(&mut self) -> Vec<T> {
        let mut taken: Vec<T> = self.first.take().into_iter().collect();
        if let Some(spill) = self.spill.as_mut() {
            taken.extend(spill.near.iter_mut().filter_map(Option::take));
            spill.near_free = ALL_NEAR;
            taken.extend(std::mem::take(&mut spill.rest).into_iter().flatten());
            spill.free.clear();
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert,
        /// Remove the n-th live child (modulo their number).
        Remove(usize),
        Take,
        /// Add one to the side state.
        Side,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => Just(Op::Insert),
            4 => (0..64usize).prop_map(Op::Remove),
            1 => Just(Op::Take),
            1 => Just(Op::Side),
        ]
    }

    proptest! {
        /// Whatever the mix of inserts and removals, each child is found in the slot it was
        /// given, slots of live children are distinct, `take` gives back exactly the live
        /// ones, the box's slots marked free are exactly its empty ones, and the side state,
        /// kept in the same box as the children beyond the first, is never lost or reset by
        /// them.
        #[test]
        fn slots_name_their_children(ops in proptest::collection::vec(op(), 0..300)) {
            let mut children = Children::<_, u32>::default();
            let mut sides = 0u32;
            let mut live: Vec<(u32, u32)> = Vec::new(); // (slot, child)
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert => {
                        let slot = children.insert(next);
                        prop_assert_ne!(slot, UNLINKED);
                        prop_assert!(live.iter().all(|&(s, _)| s != slot), "slot {} reused while live", slot);
                        live.push((slot, next));
                        next += 1;
                    }
                    Op::Remove(n) if !live.is_empty() => {
                        let (slot, child) = live.swap_remove(n % live.len());
                        prop_assert_eq!(children.remove(slot), Some(child));
                    }
                    Op::Remove(_) => {}
                    Op::Take => {
                        let mut taken: Vec<u32> = children.take();
                        let mut expected: Vec<u32> = live.drain(..).map(|(_, c)| c).collect();
                        taken.sort_unstable();
                        expected.sort_unstable();
                        prop_assert_eq!(taken, expected);
                    }
                    Op::Side => {
                        *children.side_or_default() += 1;
                        sides += 1;
                    }
                }
                if let Some(spill) = &children.spill {
                    for i in 0..NEAR {
                        prop_assert_eq!(spill.near_free & (1 << i) != 0, spill.near[i].is_none());
                    }
                }
                // Made as `X::default()` with the second child if not before.
                prop_assert_eq!(children.side().copied().unwrap_or_default(), sides);
            }
        }
    }

    #[test]
    fn one_child_at_a_time_never_allocates() {
        let mut children = Children::<_, u32>::default();
        for i in 0..100 {
            let slot = children.insert(i);
            assert_eq!(children.remove(slot), Some(i));
        }
        assert!(children.spill.is_none());
        assert_eq!(children.side(), None, "no side state made either");
    }

    #[test]
    fn a_list_made_with_its_side_state_has_no_child() {
        let mut children = Children::<u32, u32>::new(true, || 7);
        assert_eq!(children.side().copied(), Some(7));
        assert_eq!(children.take(), Vec::<u32>::new());
        let slot = children.insert(1);
        assert_eq!(children.remove(slot), Some(1));
        assert_eq!(children.side_mut().map(|s| *s), Some(7));
        assert!(Children::<u32, u32>::new(false, || unreachable!())
            .side()
            .is_none());
    }

    #[test]
    fn a_few_children_at_a_time_make_no_vector() {
        let mut children = Children::<_, ()>::default();
        for round in 0..100 {
            let slots: Vec<u32> = (0..=NEAR)
                .map(|i| children.insert(round * 10 + i))
                .collect();
            let mut seen = Vec::new();
            children.for_each(|&c| seen.push(c));
            assert_eq!(seen, (0..=NEAR).map(|i| round * 10 + i).collect::<Vec<_>>());
            for (i, &slot) in slots.iter().enumerate().rev() {
                assert_eq!(children.remove(slot), Some(round * 10 + i));
            }
        }
        let spill = children.spill.as_ref().unwrap();
        assert_eq!(
            spill.rest.capacity(),
            0,
            "the children beyond the first fit in the box"
        );
        // One more than that goes to the vector, under a slot of its own.
        let slots: Vec<u32> = (0..=NEAR + 1).map(|i| children.insert(i)).collect();
        assert_eq!(slots[NEAR + 1], NEAR as u32);
        assert_eq!(children.remove(slots[NEAR + 1]), Some(NEAR + 1));
        assert_eq!(children.take().len(), NEAR + 1);
    }

    #[test]
    fn an_emptied_list_starts_over() {
        let mut children = Children::<_, ()>::default();
        let slots: Vec<u32> = (0..10usize).map(|i| children.insert(i)).collect();
        for (i, &slot) in slots.iter().enumerate() {
            assert_eq!(children.remove(slot), Some(i));
        }
        let more = children.spill.as_ref().unwrap();
        assert!(more.rest.is_empty() && more.free.is_empty());
        assert_eq!(children.take().len(), 0);
    }
}
