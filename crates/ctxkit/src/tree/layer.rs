//! Request-scoped values: the value layers a context carries.
//!
//! Go finds a value by walking the chain of contexts, one layer at a time. Here a context
//! points straight at its nearest value [`Layer`] (cancellation nodes are never walked), and
//! each layer carries a flat table of every value visible above it, sorted by key. A lookup is
//! one comparison with the layer's own key and a binary search of the table: its cost
//! depends on how many distinct keys are set, never on the depth of the chain.
//!
//! Copying the table costs one row per visible key on every `with_value`, which is nothing
//! for the handful of keys real programs set, but would grow with the square of the keys for
//! a chain that sets thousands of distinct ones. So past [`ROWS_MAX`] visible keys a layer
//! carries no table and a lookup goes on to its parent, and only every [`HOPS_MAX`]-th such
//! layer carries a full table again (V5). Past `ROWS_MAX` keys a lookup then walks at most
//! `HOPS_MAX` layers before its binary search, and a chain of `n` distinct keys holds about
//! `n² / (2 · HOPS_MAX)` rows of 16 B in all (10,000 keys: about 6 MB) instead of `n² / 2`.
//!
//! A layer is one concrete type, not a trait object, so that a pointer to it is one word: a
//! `Context` is two words (16 B on 64-bit targets), and so is a row of a table. Programs
//! that hold many children of one parent pay for every word of a `Context` once per child.
//! The price is that a layer's value, whatever its type, lives in an allocation of its own
//! next to the layer's: `with_value` allocates the layer, the value (unless it is zero-sized)
//! and the table (unless it is empty).
//!
//! # Invariants
//! - **V1 (flat tables)**: a table of rows holds, for every key set above its layer and not
//!   shadowed by the layer's own key, the nearest layer that set it; sorted by [`KeyId`], one
//!   entry per key. It never holds the layer's own key.
//! - **V2 (key identity)**: a key is identified by the address of its `static`, a type by
//!   its `TypeId`; the two namespaces never compare equal ([`KeyId`],
//!   [S15](crate::guarantees#s15)).
//! - **V3 (rows point at values)**: the layer of every [`Entry`] sets a value itself, under
//!   the entry's key. A merge's layer sets none, so it is never a row of a table: it only
//!   gathers the rows of the two merged contexts.
//! - **V4 (stack safety)**: dropping a layer hands its parent context and its rows' layers to the
//!   work list of `release.rs`, which drops them from a loop (N7): a chain of 1,000,000 values, or
//!   as many nested merges, drops without recursion ([S23](crate::guarantees#s23)).
//! - **V5 (bounded tables)**: a layer has a table of rows (V1), or, past [`ROWS_MAX`] keys and
//!   for a name's layer, [`Table::Parent`]: everything visible at it but its own value is
//!   visible at its parent's
//!   layer, which is `hops - 1` layers from one with rows (`hops < HOPS_MAX`). Merges always
//!   have rows.

use std::any::Any;
use std::sync::Arc;

use super::name::Name;
use super::Pair;
use crate::key::{Key, KeyId};

/// A value as a layer holds it: of any type, behind one pointer.
pub(crate) type AnyValue = dyn Any + Send + Sync;

/// One row of a flat table: the nearest layer that set `key` (V1, V3). Two words.
struct Entry {
    /// The key that was set.
    key: KeyId,
    /// The nearest layer above that set it.
    layer: Arc<Layer>,
}

// Two words on 64-bit targets, as documented: a key and a thin pointer.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Entry>() == 16);
// A name kept inline does not make a layer larger than a value does (`name.rs`).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Layer>() == 96);

/// A layer copies its parent's table while it would have at most this many rows (V5).
pub(crate) const ROWS_MAX: usize = 128;
/// Past [`ROWS_MAX`] keys, one layer in this many has a table of rows (V5).
pub(crate) const HOPS_MAX: u32 = 128;

/// A link in a context's chain of values: the value it sets, if any, and a table of every
/// other value visible at it (V1, V5). One concrete type, so that `Arc<Layer>` is one word.
pub(crate) struct Layer {
    /// Every value visible at this layer but its own.
    inherited: Table,
    /// What made this layer, and the value it sets.
    body: Body,
}

/// Where the values visible at a layer, other than its own, are.
enum Table {
    /// Here: one row per key, sorted (V1).
    Rows(Box<[Entry]>),
    /// At the parent's layer, `hops - 1` layers from one with rows (V5).
    Parent { hops: u32 },
}

impl Default for Table {
    fn default() -> Table {
        Table::Rows(Box::default())
    }
}

/// What made a [`Layer`].
enum Body {
    /// `with_value`, `with` and `with_clock`: one value on top of the parent's.
    Value(Own),
    /// `with_name`: a name, looked up like a value under [`name_key`], kept in the layer
    /// itself so that naming a context allocates the layer alone (see `name.rs`).
    Name(Named),
    /// `merge`: no value of its own. The merged contexts' values are all in the table, and
    /// the merge's node displays the link (S24).
    Merge,
}

/// The value a [`Layer`] sets itself.
struct Own {
    /// The key it is set under (V2).
    key: KeyId,
    /// How the layer displays.
    label: Label,
    /// `std::any::type_name` of the value's type, for `.WithValue(<name>, <type>)`.
    type_name: &'static str,
    /// The value, in an allocation of its own (none if it is zero-sized).
    value: Box<AnyValue>,
    /// The context this layer was derived from: Display continues the chain there.
    parent: Pair,
}

/// A name a layer carries.
struct Named {
    name: Name,
    /// The context this layer was derived from.
    parent: Pair,
}

/// The key under which names are found, like values (S28).
static NAME: Key<Name> = Key::new("name");

/// The key of a context's name.
pub(crate) fn name_key() -> KeyId {
    KeyId::of_key(&NAME)
}

/// What set a layer's value, which decides how it displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    /// `with_value` under a [`Key`](crate::Key) of this name.
    Key(&'static str),
    /// `with::<T>`, keyed by the value's type.
    Type,
    /// `with_clock`.
    Clock,
    /// `with_name`.
    Name,
}

impl Layer {
    /// The key and the value this layer sets itself, if any.
    fn own(&self) -> Option<(KeyId, &AnyValue)> {
        match &self.body {
            Body::Value(own) => Some((own.key, &*own.value)),
            Body::Name(named) => Some((name_key(), &named.name as &AnyValue)),
            Body::Merge => None,
        }
    }

    /// The value of `key` visible at this layer.
    pub(crate) fn find(&self, key: KeyId) -> Option<&AnyValue> {
        let mut layer = self;
        loop {
            if let Some((own, value)) = layer.own() {
                if own == key {
                    return Some(value);
                }
            }
            match &layer.inherited {
                Table::Rows(table) => {
                    let i = table.binary_search_by(|e| e.key.cmp(&key)).ok()?;
                    return table[i].layer.own().map(|(_, value)| value); // `Some` (V3)
                }
                Table::Parent { .. } => layer = layer.parent_layer()?, // V5
            }
        }
    }

    /// The name this layer sets, if it is a name's layer.
    pub(crate) fn name(&self) -> Option<&str> {
        match &self.body {
            Body::Name(named) => Some(named.name.as_str()),
            _ => None,
        }
    }

    /// The layer of the context this one was derived from (`None` for a merge's layer).
    fn parent_layer(&self) -> Option<&Arc<Layer>> {
        self.display_parent()?.nearest_layer()
    }

    /// How many layers this one is from the nearest with rows (V5).
    fn hops(&self) -> u32 {
        match self.inherited {
            Table::Rows(_) => 0,
            Table::Parent { hops } => hops,
        }
    }

    /// The context this layer was derived from; `None` for a merge's layer, which belongs to
    /// the merge's node: the node displays it.
    pub(crate) fn display_parent(&self) -> Option<&Pair> {
        match &self.body {
            Body::Value(own) => Some(&own.parent),
            Body::Name(named) => Some(&named.parent),
            Body::Merge => None,
        }
    }

    /// What set this layer's value and the value's type name; `None` for a merge's layer.
    pub(crate) fn label(&self) -> Option<(Label, &'static str)> {
        match &self.body {
            Body::Value(own) => Some((own.label, own.type_name)),
            Body::Name(_) => Some((Label::Name, "")),
            Body::Merge => None,
        }
    }
}

impl Layer {
    /// Whether this layer holds rows of a table: layers of other contexts beside its parent.
    pub(super) fn has_rows(&self) -> bool {
        matches!(&self.inherited, Table::Rows(rows) if !rows.is_empty())
    }

    /// Takes out the context this layer was derived from (none for a merge's layer).
    pub(super) fn take_parent(&mut self) -> Option<Pair> {
        match &mut self.body {
            Body::Value(own) => Some(std::mem::take(&mut own.parent)),
            Body::Name(named) => Some(std::mem::take(&mut named.parent)),
            Body::Merge => None,
        }
    }

    /// Takes out the contexts this layer holds: the one it was derived from and the layers of
    /// its rows, for `release.rs` to drop without recursion (V4). Leaves nothing behind.
    pub(super) fn take_parents(&mut self) -> impl Iterator<Item = Pair> {
        let parent = self.take_parent();
        let rows = match std::mem::take(&mut self.inherited) {
            Table::Rows(rows) => rows.into_vec(),
            Table::Parent { .. } => Vec::new(),
        };
        parent
            .into_iter()
            .chain(rows.into_iter().map(|entry| Pair::from_layer(entry.layer)))
    }
}

/// A row being read, not yet owned: a key and the layer that set it.
type Row<'a> = (KeyId, &'a Arc<Layer>);

/// Every value visible at `layer`, its own included, as rows in key order: what a layer made
/// on top of it inherits.
fn visible(layer: &Arc<Layer>) -> Visible<'_> {
    fn row(entry: &Entry) -> Row<'_> {
        (entry.key, &entry.layer)
    }
    let table = match &layer.inherited {
        Table::Rows(table) => &**table,
        Table::Parent { .. } => return Visible::Collected(collect_visible(layer).into_iter()),
    };
    let own = layer.own().map(|(key, _)| (key, layer));
    // The table lacks the own key (V1): the own row goes between the smaller and larger keys.
    let at = own.map_or(table.len(), |(key, _)| {
        table.partition_point(|e| e.key < key)
    });
    let (below, above) = table.split_at(at);
    let row: fn(&Entry) -> Row<'_> = row;
    Visible::Table(
        below
            .iter()
            .map(row)
            .chain(own)
            .chain(above.iter().map(row)),
    )
}

/// The rows of a layer without a table (V5): the values set on the way to the nearest layer
/// with rows, then that layer's rows, the nearest of each key kept, in key order.
fn collect_visible(layer: &Arc<Layer>) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    let mut at = layer;
    loop {
        rows.extend(at.own().map(|(key, _)| (key, at)));
        match &at.inherited {
            Table::Rows(table) => {
                rows.extend(table.iter().map(|e| (e.key, &e.layer)));
                break;
            }
            Table::Parent { .. } => match at.parent_layer() {
                Some(parent) => at = parent,
                None => break,
            },
        }
    }
    // Nearest first so far; a stable sort keeps that order within a key.
    rows.sort_by_key(|&(key, _)| key);
    rows.dedup_by_key(|&mut (key, _)| key);
    rows
}

/// The rows [`visible`] gives: a table's, read in place, or collected from a chain (V5).
#[derive(Clone)]
enum Visible<'a> {
    Table(TableRows<'a>),
    Collected(std::vec::IntoIter<Row<'a>>),
}

type TableRows<'a> = std::iter::Chain<
    std::iter::Chain<
        std::iter::Map<std::slice::Iter<'a, Entry>, fn(&'a Entry) -> Row<'a>>,
        std::option::IntoIter<Row<'a>>,
    >,
    std::iter::Map<std::slice::Iter<'a, Entry>, fn(&'a Entry) -> Row<'a>>,
>;

impl<'a> Iterator for Visible<'a> {
    type Item = Row<'a>;

    fn next(&mut self) -> Option<Row<'a>> {
        match self {
            Visible::Table(rows) => rows.next(),
            Visible::Collected(rows) => rows.next(),
        }
    }
}

/// `rows` as a table, allocated at its exact length: nothing for an empty table, and no
/// regrowing or shrinking on the way.
fn exact<'a>(rows: impl Iterator<Item = Row<'a>> + Clone) -> Box<[Entry]> {
    let mut table = Vec::with_capacity(rows.clone().count());
    table.extend(rows.map(|(key, layer)| Entry {
        key,
        layer: Arc::clone(layer),
    }));
    table.into_boxed_slice()
}

/// A new layer setting `key` to `value` on top of `parent`'s values.
pub(crate) fn with_value<T: Send + Sync + 'static>(
    parent: &Pair,
    key: KeyId,
    label: Label,
    value: T,
) -> Arc<Layer> {
    let inherited = match parent.nearest_layer() {
        None => Table::default(),
        Some(p) => {
            let small = matches!(&p.inherited, Table::Rows(rows) if rows.len() < ROWS_MAX);
            let hops = p.hops() + 1;
            if small || hops == HOPS_MAX {
                // Shadowed by the new layer: its own key is not a row (V1).
                Table::Rows(exact(visible(p).filter(move |&(k, _)| k != key)))
            } else {
                Table::Parent { hops } // V5
            }
        }
    };
    Arc::new(Layer {
        inherited,
        body: Body::Value(Own {
            key,
            label,
            type_name: std::any::type_name::<T>(),
            value: Box::new(value),
            parent: parent.as_parent(), // N12
        }),
    })
}

/// A new layer naming the context on top of `parent`'s values (S28). It copies no table
/// (V5), so that naming allocates the layer alone, except once every [`HOPS_MAX`] layers.
pub(crate) fn with_name(parent: &Pair, name: Name) -> Arc<Layer> {
    let inherited = match parent.nearest_layer() {
        None => Table::default(),
        Some(p) if p.hops() + 1 < HOPS_MAX => Table::Parent { hops: p.hops() + 1 },
        Some(p) => {
            let key = name_key();
            Table::Rows(exact(visible(p).filter(move |&(k, _)| k != key)))
        }
    };
    Arc::new(Layer {
        inherited,
        body: Body::Name(Named {
            name,
            parent: parent.as_parent(), // N12
        }),
    })
}

/// The value layer of `a.merge(b)`: `a`'s values, then `b`'s for keys `a` lacks
/// ([S24](crate::guarantees#s24)); `None` if that makes no value at all. `a_only` is a key
/// taken from `a` alone (the clock: a merge measures time on `a`'s clock, S24).
pub(crate) fn merge(a: &Pair, b: &Pair, a_only: KeyId) -> Option<Arc<Layer>> {
    let (a, b) = match (a.nearest_layer(), b.nearest_layer()) {
        (a, None) => return a.cloned(),
        (a, Some(b)) => (a, b),
    };
    let mut a = a.into_iter().flat_map(visible).peekable();
    let mut b = visible(b).filter(move |&(k, _)| k != a_only).peekable();
    // Both in key order; where both have a key, `a`'s row.
    let rows = std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => b.next(),
        (Some(x), Some(y)) if y.0 == x.0 => {
            b.next();
            a.next()
        }
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    });
    let inherited = exact(rows);
    if inherited.is_empty() {
        return None; // `b` had nothing but a clock: a layer would hold no value
    }
    Some(Arc::new(Layer {
        inherited: Table::Rows(inherited),
        body: Body::Merge,
    }))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A key whose identity is `n`, made odd so it never meets a real key's address.
    fn key(n: u64) -> KeyId {
        KeyId::from_raw(n * 2 + 1)
    }

    /// A context carrying `(key, value)` pairs, set one after another.
    fn chain(values: &[(u64, u32)]) -> Pair {
        values.iter().fold(Pair::default(), |pair, &(k, v)| {
            Pair::from_layer(with_value(&pair, key(k), Label::Type, v))
        })
    }

    fn find(pair: &Pair, k: u64) -> Option<u32> {
        pair.layer.as_ref()?.find(key(k))?.downcast_ref().copied()
    }

    fn rows(layer: &Layer) -> &[Entry] {
        match &layer.inherited {
            Table::Rows(rows) => rows,
            Table::Parent { .. } => &[],
        }
    }

    /// V1: one row per key, sorted, never the layer's own key.
    fn check_table(layer: &Layer) {
        let keys: Vec<KeyId> = rows(layer).iter().map(|e| e.key).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "sorted, one row per key"
        );
        if let Some((own, _)) = layer.own() {
            assert!(!keys.contains(&own), "the own key is not inherited");
        }
        assert!(rows(layer).iter().all(|e| e.layer.own().is_some()), "V3");
    }

    #[test]
    fn the_nearest_value_of_a_key_wins_and_tables_stay_flat() {
        let pair = chain(&[(3, 30), (1, 10), (3, 31), (2, 20)]);
        assert_eq!(find(&pair, 3), Some(31));
        assert_eq!(find(&pair, 1), Some(10));
        assert_eq!(find(&pair, 2), Some(20));
        assert_eq!(find(&pair, 4), None);
        let layer = pair.layer.as_ref().unwrap();
        check_table(layer);
        assert_eq!(
            rows(layer).len(),
            2,
            "keys 1 and 3; its own key 2 is not a row"
        );
    }

    #[test]
    fn a_merge_takes_a_first_then_b_for_the_keys_a_lacks() {
        let a = chain(&[(1, 10), (5, 50)]);
        let b = chain(&[(1, 11), (2, 21), (9, 91)]);
        let merged = Pair::from_layer(merge(&a, &b, key(100)).unwrap());
        assert_eq!(find(&merged, 1), Some(10), "a first");
        assert_eq!(find(&merged, 2), Some(21));
        assert_eq!(find(&merged, 5), Some(50));
        assert_eq!(find(&merged, 9), Some(91));
        let layer = merged.layer.as_ref().unwrap();
        check_table(layer);
        assert_eq!(rows(layer).len(), 4);
        assert!(layer.label().is_none(), "a merge's layer sets no value");
    }

    #[test]
    fn a_merge_keeps_a_only_keys_from_a() {
        let clock = 7;
        let a = chain(&[(1, 10)]);
        let b = chain(&[(clock, 70), (2, 20)]);
        let merged = Pair::from_layer(merge(&a, &b, key(clock)).unwrap());
        assert_eq!(find(&merged, clock), None, "b's clock is not taken");
        assert_eq!(find(&merged, 2), Some(20));
        // `b` with nothing but a clock adds no layer at all.
        let only_clock = chain(&[(clock, 70)]);
        assert!(merge(&Pair::default(), &only_clock, key(clock)).is_none());
        let merged = merge(&a, &only_clock, key(clock)).unwrap();
        assert_eq!(rows(&merged).len(), 1);
    }

    #[test]
    fn merging_without_values_on_one_side_reuses_the_other() {
        let a = chain(&[(1, 10)]);
        let same = merge(&a, &Pair::default(), key(100)).unwrap();
        assert!(Arc::ptr_eq(&same, a.layer.as_ref().unwrap()));
        assert!(merge(&Pair::default(), &Pair::default(), key(100)).is_none());
    }

    #[test]
    fn past_rows_max_keys_tables_are_bounded_and_every_value_is_found() {
        let n = 2000u64;
        let mut values: Vec<(u64, u32)> = (0..n).map(|k| (k, k as u32)).collect();
        values.push((5, 555)); // shadows the first value of key 5, past a checkpoint
        let pair = chain(&values);
        for k in 0..n {
            let expected = if k == 5 { 555 } else { k as u32 };
            assert_eq!(find(&pair, k), Some(expected), "key {k}");
        }
        assert_eq!(find(&pair, n + 1), None);
        // V5: the rows of the whole chain, and the longest walk to a layer with rows.
        let (mut total, mut at) = (0usize, pair.layer.clone());
        while let Some(layer) = at {
            assert!(layer.hops() < HOPS_MAX);
            if let Table::Rows(_) = layer.inherited {
                check_table(&layer);
            }
            total += rows(&layer).len();
            at = layer.parent_layer().cloned();
        }
        let n = n as usize;
        let bound = ROWS_MAX * ROWS_MAX / 2 + n * n / (2 * HOPS_MAX as usize) + n;
        assert!(total <= bound, "{total} rows for {n} keys (bound {bound})");
    }

    #[test]
    fn a_merge_of_chains_past_rows_max_finds_every_value() {
        let a = chain(&(0..300).map(|k| (k, 1)).collect::<Vec<_>>());
        let b = chain(&(200..600).map(|k| (k, 2)).collect::<Vec<_>>());
        let merged = Pair::from_layer(merge(&a, &b, key(10_000)).unwrap());
        check_table(merged.layer.as_ref().unwrap());
        for k in 0..600 {
            let expected = if k < 300 { 1 } else { 2 };
            assert_eq!(find(&merged, k), Some(expected), "key {k}");
        }
        // And a chain on top of the merge goes on past it.
        let on_top = (600..900).fold(merged, |pair, k| {
            Pair::from_layer(with_value(&pair, key(k), Label::Type, 3u32))
        });
        assert_eq!(find(&on_top, 0), Some(1));
        assert_eq!(find(&on_top, 599), Some(2));
        assert_eq!(find(&on_top, 899), Some(3));
    }
}
