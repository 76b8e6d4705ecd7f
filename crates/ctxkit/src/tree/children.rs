//! A node's child list (N2, N3): the slots a child's `slot` names.
//!
//! The first child lives in a field of its own: a node with one child at a time (each level
//! of a chain, a parent whose children come and go one by one) never allocates, and the list
//! is two words, so that a chain's levels stay small. The others are entries in one boxed
//! vector with a list of the free ones, so that insert and remove are O(1). An entry of
//! `Option<Weak<Node>>` is 8 B (a `slab::Slab` entry is 16), which keeps a parent of many
//! children within the wide fan-out's memory budget.

/// The slot of a child in no parent's list (N3).
pub(super) const UNLINKED: u32 = u32::MAX;
/// The slot of the child kept in [`Children::first`].
const FIRST: u32 = u32::MAX - 1;

/// The children of one node. `T` is `Weak<Node>` in the tree.
pub(super) struct Children<T> {
    first: Option<T>,
    /// Made with the second child at a time.
    more: Option<Box<More<T>>>,
}

/// The children beyond the first.
struct More<T> {
    rest: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Children<T> {
    fn default() -> Self {
        Children {
            first: None,
            more: None,
        }
    }
}

impl<T> Children<T> {
    /// A list of `child` alone, and its slot.
    pub(super) fn with_first(child: T) -> (Self, u32) {
        let children = Children {
            first: Some(child),
            more: None,
        };
        (children, FIRST)
    }

    /// Adds `child`; returns the slot that names it.
    #[inline]
    pub(super) fn insert(&mut self, child: T) -> u32 {
        if self.first.is_none() {
            self.first = Some(child);
            return FIRST;
        }
        let more = self.more.get_or_insert_with(|| {
            Box::new(More {
                rest: Vec::new(),
                free: Vec::new(),
            })
        });
        match more.free.pop() {
            Some(slot) => {
                more.rest[slot as usize] = Some(child);
                slot
            }
            None => {
                more.rest.push(Some(child));
                (more.rest.len() - 1) as u32
            }
        }
    }

    /// Removes and returns the child in `slot` (`None` if the slot is empty).
    pub(super) fn remove(&mut self, slot: u32) -> Option<T> {
        if slot == FIRST {
            return self.first.take();
        }
        let more = self.more.as_mut()?;
        let child = more.rest[slot as usize].take();
        if more.free.len() + 1 == more.rest.len() {
            // The last entry left: give the memory back.
            more.rest.clear();
            more.free.clear();
        } else {
            more.free.push(slot);
        }
        child
    }

    /// Calls `f` on every child, the first one first.
    #[inline]
    pub(super) fn for_each(&self, mut f: impl FnMut(&T)) {
        if let Some(first) = &self.first {
            f(first);
        }
        if let Some(more) = &self.more {
            more.rest.iter().flatten().for_each(f);
        }
    }

    #[cfg(test)]
    pub(super) fn take(&mut self) -> Vec<T> {
        let mut taken: Vec<T> = self.first.take().into_iter().collect();
        if let Some(more) = self.more.take() {
            taken.extend(more.rest.into_iter().flatten());
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
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => Just(Op::Insert),
            4 => (0..64usize).prop_map(Op::Remove),
            1 => Just(Op::Take),
        ]
    }

    proptest! {
        /// Whatever the mix of inserts and removals, each child is found in the slot it was
        /// given, slots of live children are distinct, and `take` gives back exactly the
        /// live ones.
        #[test]
        fn slots_name_their_children(ops in proptest::collection::vec(op(), 0..300)) {
            let mut children = Children::default();
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
                }
            }
        }
    }

    #[test]
    fn one_child_at_a_time_never_allocates() {
        let mut children = Children::default();
        for i in 0..100 {
            let slot = children.insert(i);
            assert_eq!(children.remove(slot), Some(i));
        }
        assert!(children.more.is_none());
    }

    #[test]
    fn an_emptied_list_starts_over() {
        let mut children = Children::default();
        let slots: Vec<u32> = (0..10usize).map(|i| children.insert(i)).collect();
        for (i, &slot) in slots.iter().enumerate() {
            assert_eq!(children.remove(slot), Some(i));
        }
        let more = children.more.as_ref().unwrap();
        assert!(more.rest.is_empty() && more.free.is_empty());
        assert_eq!(children.take().len(), 0);
    }
}
