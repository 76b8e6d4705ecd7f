//! Request-scoped values: [`Key`], and the value layers a context carries.
//!
//! Go finds a value by walking the chain of contexts, one layer at a time. Here a context
//! points straight at its nearest value layer (cancellation nodes are never walked), and each
//! layer carries a flat table of every value visible above it, sorted by key. A lookup is
//! one comparison with the layer's own key and a binary search of the table: its cost
//! depends on how many distinct keys are set, never on the depth of the chain.
//!
//! # Invariants
//! - **V1 (flat tables)**: `inherited` holds, for every key set above this layer and not
//!   shadowed by this layer's own key, the nearest layer that set it; sorted by [`KeyId`],
//!   one entry per key.
//! - **V2 (key identity)**: a [`Key`] is identified by the address of its `static`, a type by
//!   its `TypeId`; the two namespaces never compare equal (API S15).

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

pub(crate) type AnyValue = dyn Any + Send + Sync;

/// One row of a flat table: the nearest layer that set `key` (V1).
#[derive(Clone)]
pub(crate) struct Entry {
    key: KeyId,
    layer: Arc<dyn Layer>,
}

/// A link in a context's chain of values.
pub(crate) trait Layer: Send + Sync + 'static {
    /// The value this layer sets itself, if any.
    fn own(&self) -> Option<(KeyId, &AnyValue)>;
    /// Every other value visible at this layer (V1).
    fn inherited(&self) -> &[Entry];
    /// The context this layer was derived from; `None` for a layer that belongs to the
    /// context's node (a merge), which then displays it.
    fn display_parent(&self) -> Option<&Context>;
    /// This layer's part of the context's Display chain.
    fn fmt_link(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl dyn Layer {
    /// The value of `key` visible at this layer.
    pub(crate) fn find(&self, key: KeyId) -> Option<&AnyValue> {
        match self.own() {
            Some((own, value)) if own == key => Some(value),
            _ => {
                let table = self.inherited();
                let i = table.binary_search_by(|e| e.key.cmp(&key)).ok()?;
                table[i].layer.own().map(|(_, value)| value)
            }
        }
    }
}

/// Every value visible at `layer`, as a flat sorted table (its own value included).
fn visible(layer: &Arc<dyn Layer>) -> Vec<Entry> {
    let inherited = layer.inherited();
    let mut table = Vec::with_capacity(inherited.len() + 1);
    match layer.own() {
        None => table.extend_from_slice(inherited),
        Some((key, _)) => {
            let at = inherited.partition_point(|e| e.key < key);
            let shadowed = inherited.get(at).is_some_and(|e| e.key == key);
            table.extend_from_slice(&inherited[..at]);
            table.push(Entry {
                key,
                layer: Arc::clone(layer),
            });
            table.extend_from_slice(&inherited[at + shadowed as usize..]);
        }
    }
    table
}

/// How a value layer displays.
#[derive(Clone, Copy)]
pub(crate) enum Label {
    /// `.WithValue(<name>, <type>)`
    Value(&'static str),
    /// `.WithClock`
    Clock,
}

/// `with_value`, `with` and `with_clock`: one value on top of the parent's.
struct ValueLayer<T> {
    key: KeyId,
    label: Label,
    value: T,
    inherited: Box<[Entry]>,
    parent: Context,
}

impl<T: Send + Sync + 'static> Layer for ValueLayer<T> {
    fn own(&self) -> Option<(KeyId, &AnyValue)> {
        Some((self.key, &self.value))
    }

    fn inherited(&self) -> &[Entry] {
        &self.inherited
    }

    fn display_parent(&self) -> Option<&Context> {
        Some(&self.parent)
    }

    fn fmt_link(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.label {
            Label::Value(name) => {
                write!(f, ".WithValue({name}, {})", std::any::type_name::<T>())
            }
            Label::Clock => f.write_str(".WithClock"),
        }
    }
}

impl<T> Drop for ValueLayer<T> {
    fn drop(&mut self) {
        // Stack safety (N7): ancestors are released from a loop, not dropped recursively.
        release(std::mem::take(&mut self.parent));
        for entry in std::mem::take(&mut self.inherited).into_vec() {
            release(Context::from_layer(entry.layer));
        }
    }
}

/// A new layer setting `key` to `value` on top of `parent`'s values.
pub(crate) fn with_value<T: Send + Sync + 'static>(
    parent: &Context,
    key: KeyId,
    label: Label,
    value: T,
) -> Arc<dyn Layer> {
    let mut inherited = parent.layer().map(visible).unwrap_or_default();
    if let Ok(i) = inherited.binary_search_by(|e| e.key.cmp(&key)) {
        inherited.remove(i); // shadowed by the new layer (V1)
    }
    Arc::new(ValueLayer {
        key,
        label,
        value,
        inherited: inherited.into_boxed_slice(),
        parent: parent.clone(),
    })
}

/// The values of a merged context: `a`'s, then `b`'s for keys `a` lacks (API S24).
struct MergeLayer {
    inherited: Box<[Entry]>,
}

impl Layer for MergeLayer {
    fn own(&self) -> Option<(KeyId, &AnyValue)> {
        None
    }

    fn inherited(&self) -> &[Entry] {
        &self.inherited
    }

    fn display_parent(&self) -> Option<&Context> {
        None
    }

    fn fmt_link(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

impl Drop for MergeLayer {
    fn drop(&mut self) {
        for entry in std::mem::take(&mut self.inherited).into_vec() {
            release(Context::from_layer(entry.layer));
        }
    }
}

/// The value layer of `a.merge(b)`, or `None` if neither has values. `a_only` is a key
/// taken from `a` alone (the clock: a merge measures time on `a`'s clock, API S24).
pub(crate) fn merge(a: &Context, b: &Context, a_only: KeyId) -> Option<Arc<dyn Layer>> {
    let (a, mut b) = match (a.layer(), b.layer()) {
        (None, None) => return None,
        (Some(a), None) => return Some(Arc::clone(a)),
        (a, b) => (
            a.map(visible).unwrap_or_default(),
            b.map(visible).unwrap_or_default(),
        ),
    };
    b.retain(|e| e.key != a_only);
    let mut table = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.key < x.key => b.next(),
            (Some(x), Some(y)) if y.key == x.key => {
                b.next();
                a.next()
            }
            (Some(_), _) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        table.extend(next);
    }
    Some(Arc::new(MergeLayer {
        inherited: table.into_boxed_slice(),
    }))
}
