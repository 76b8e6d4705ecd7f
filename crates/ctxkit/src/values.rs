//! Request-scoped values: [`Key`], and the value layers a context carries.
//!
//! Go finds a value by walking the chain of contexts, one layer at a time. Here a context
//! points straight at its nearest value [`Layer`] (cancellation nodes are never walked), and
//! each layer carries a flat table of every value visible above it, sorted by key. A lookup is
//! one comparison with the layer's own key and a binary search of the table: its cost
//! depends on how many distinct keys are set, never on the depth of the chain.
//!
//! A layer is one concrete type, not a trait object, so that a pointer to it is one word: a
//! [`Context`] is two words (16 B on 64-bit targets), and so is a row of a table. Programs
//! that hold many children of one parent pay for every word of a `Context` once per child.
//! The price is that a layer's value, whatever its type, lives in an allocation of its own
//! next to the layer's: `with_value` allocates the layer, the value (unless it is zero-sized)
//! and the table (unless it is empty).
//!
//! # Invariants
//! - **V1 (flat tables)**: `inherited` holds, for every key set above this layer and not
//!   shadowed by this layer's own key, the nearest layer that set it; sorted by [`KeyId`],
//!   one entry per key. It never holds the layer's own key.
//! - **V2 (key identity)**: a [`Key`] is identified by the address of its `static`, a type by
//!   its `TypeId`; the two namespaces never compare equal (API S15).
//! - **V3 (rows point at values)**: the layer of every [`Entry`] sets a value itself, under
//!   the entry's key. A merge's layer sets none, so it is never a row of a table: it only
//!   gathers the rows of the two merged contexts.
//! - **V4 (stack safety)**: dropping a layer hands its parent context and its rows' layers to
//!   [`release`], which drops them from a loop (N7): a chain of 1,000,000 values, or as many
//!   nested merges, drops without recursion (API S23).

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::Context;
use crate::node::release;

/// A typed key for [`Context::with_value`] and [`Context::value`], declared as a `static`.
///
/// Two keys are different keys even when they have the same name and type: a key is the
/// `static` itself (API S15). The name is only for display.
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Key};
///
/// static REQUEST_ID: Key<u64> = Key::new("request_id");
///
/// let ctx = Context::background().with_value(&REQUEST_ID, 42);
/// assert_eq!(ctx.value(&REQUEST_ID), Some(&42));
/// assert_eq!(REQUEST_ID.name(), "request_id");
/// ```
pub struct Key<T> {
    name: &'static str,
    // `fn() -> T`: the key neither owns a T nor needs T: Send/Sync to be shared.
    _type: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// A key named `name`. Declare it as a `static`: its address is its identity.
    ///
    /// ```
    /// static USER: ctxkit::Key<String> = ctxkit::Key::new("user");
    /// ```
    pub const fn new(name: &'static str) -> Key<T> {
        Key {
            name,
            _type: PhantomData,
        }
    }

    /// The name given to [`Key::new`].
    ///
    /// ```
    /// static USER: ctxkit::Key<String> = ctxkit::Key::new("user");
    /// assert_eq!(USER.name(), "user");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Key").field(&self.name).finish()
    }
}

/// The identity of a value's key, as one word so that a lookup compares integers (V2).
///
/// A [`Key`] is the address of its `static` (always even: a `Key` is pointer-aligned); a type
/// is a 64-bit digest of its `TypeId`, made odd, so the two namespaces never meet. Two types
/// whose digests collide (about one chance in 2^64 per pair) would shadow each other, but a
/// value is only ever handed out after `downcast_ref` checked its full type: a collision could
/// hide a value, never hand out one of the wrong type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct KeyId(u64);

impl KeyId {
    pub(crate) fn of_key<T>(key: &'static Key<T>) -> KeyId {
        KeyId(key as *const Key<T> as usize as u64)
    }

    pub(crate) fn of_type<T: 'static>() -> KeyId {
        /// Folds whatever `TypeId` feeds it into one word (FxHash's step).
        struct Digest(u64);
        impl std::hash::Hasher for Digest {
            fn write(&mut self, bytes: &[u8]) {
                bytes.iter().for_each(|&b| self.write_u64(b as u64));
            }
            fn write_u64(&mut self, word: u64) {
                self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
            }
            fn finish(&self) -> u64 {
                self.0
            }
        }
        let mut digest = Digest(0);
        std::hash::Hash::hash(&TypeId::of::<T>(), &mut digest);
        KeyId(digest.0 | 1)
    }
}

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

/// A link in a context's chain of values: the value it sets, if any, and a table of every
/// other value visible at it (V1). One concrete type, so that `Arc<Layer>` is one word.
pub(crate) struct Layer {
    /// Every value visible at this layer but its own, one row per key, sorted (V1).
    inherited: Box<[Entry]>,
    /// What made this layer, and the value it sets.
    body: Body,
}

/// What made a [`Layer`].
enum Body {
    /// `with_value`, `with` and `with_clock`: one value on top of the parent's.
    Value(Own),
    /// `merge`: no value of its own. The merged contexts' values are all in the table, and
    /// the merge's node displays the link (API S24).
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
    parent: Context,
}

/// How a value layer displays.
#[derive(Clone, Copy)]
pub(crate) enum Label {
    /// `.WithValue(<name>, <type>)`
    Value(&'static str),
    /// `.WithClock`
    Clock,
}

impl Layer {
    /// The key and the value this layer sets itself, if any.
    fn own(&self) -> Option<(KeyId, &AnyValue)> {
        match &self.body {
            Body::Value(own) => Some((own.key, &*own.value)),
            Body::Merge => None,
        }
    }

    /// The value of `key` visible at this layer.
    pub(crate) fn find(&self, key: KeyId) -> Option<&AnyValue> {
        match self.own() {
            Some((own, value)) if own == key => Some(value),
            _ => {
                let table = &self.inherited;
                let i = table.binary_search_by(|e| e.key.cmp(&key)).ok()?;
                table[i].layer.own().map(|(_, value)| value) // always `Some` (V3)
            }
        }
    }

    /// The context this layer was derived from; `None` for a merge's layer, which belongs to
    /// the merge's node: the node displays it.
    pub(crate) fn display_parent(&self) -> Option<&Context> {
        match &self.body {
            Body::Value(own) => Some(&own.parent),
            Body::Merge => None,
        }
    }

    /// This layer's part of the context's Display chain (API S2); nothing for a merge's.
    pub(crate) fn fmt_link(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            Body::Value(own) => match own.label {
                Label::Value(name) => write!(f, ".WithValue({name}, {})", own.type_name),
                Label::Clock => f.write_str(".WithClock"),
            },
            Body::Merge => Ok(()),
        }
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        // Stack safety (V4, N7): ancestors are released from a loop, not dropped recursively.
        if let Body::Value(own) = &mut self.body {
            release(std::mem::take(&mut own.parent));
        }
        for entry in std::mem::take(&mut self.inherited).into_vec() {
            release(Context::from_layer(entry.layer));
        }
    }
}

/// A row being read, not yet owned: a key and the layer that set it.
type Row<'a> = (KeyId, &'a Arc<Layer>);

/// Every value visible at `layer`, its own included, as rows in key order: what a layer made
/// on top of it inherits.
fn visible(layer: &Arc<Layer>) -> impl Iterator<Item = Row<'_>> + Clone {
    fn row(entry: &Entry) -> Row<'_> {
        (entry.key, &entry.layer)
    }
    let table = &*layer.inherited;
    let own = layer.own().map(|(key, _)| (key, layer));
    // The table lacks the own key (V1): the own row goes between the smaller and larger keys.
    let at = own.map_or(table.len(), |(key, _)| {
        table.partition_point(|e| e.key < key)
    });
    let (below, above) = table.split_at(at);
    below
        .iter()
        .map(row)
        .chain(own)
        .chain(above.iter().map(row))
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
    parent: &Context,
    key: KeyId,
    label: Label,
    value: T,
) -> Arc<Layer> {
    let rows = parent.layer().into_iter().flat_map(visible);
    let inherited = exact(rows.filter(move |&(k, _)| k != key)); // shadowed by the new layer (V1)
    Arc::new(Layer {
        inherited,
        body: Body::Value(Own {
            key,
            label,
            type_name: std::any::type_name::<T>(),
            value: Box::new(value),
            parent: parent.clone(),
        }),
    })
}

/// The value layer of `a.merge(b)`: `a`'s values, then `b`'s for keys `a` lacks (API S24);
/// `None` if that makes no value at all. `a_only` is a key taken from `a` alone (the clock: a
/// merge measures time on `a`'s clock, API S24).
pub(crate) fn merge(a: &Context, b: &Context, a_only: KeyId) -> Option<Arc<Layer>> {
    let (a, b) = match (a.layer(), b.layer()) {
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
        inherited,
        body: Body::Merge,
    }))
}
