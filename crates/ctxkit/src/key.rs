//! Keys of request-scoped values: the public [`Key`] and the one-word [`KeyId`] the value
//! layers compare.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;

/// A typed key for [`Context::with_value`](crate::Context::with_value) and
/// [`Context::value`](crate::Context::value), declared as a `static`.
///
/// Two keys are different keys even when they have the same name and type: a key is the
/// `static` itself ([S15](crate::guarantees#s15)). The name is only for display.
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

/// The identity of a value's key, as one word so that a lookup compares integers.
///
/// A [`Key`] is the address of its `static` (always even: a `Key` is pointer-aligned); a type
/// is a 64-bit digest of its `TypeId`, made odd, so the two namespaces never meet
/// ([S15](crate::guarantees#s15)). Two types whose digests collide (about one chance in 2^64
/// per pair) would shadow each other, but a value is only ever handed out after
/// `downcast_ref` checked its full type: a collision could hide a value, never hand out one of
/// the wrong type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct KeyId(u64);

impl KeyId {
    pub(crate) fn of_key<T>(key: &'static Key<T>) -> KeyId {
        KeyId(key as *const Key<T> as usize as u64)
    }

    /// A key id from its raw word, for tests of the value tables (not built under loom).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn from_raw(raw: u64) -> KeyId {
        KeyId(raw)
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

#[cfg(test)]
mod tests {
    use super::*;

    static A: Key<u8> = Key::new("same");
    static B: Key<u8> = Key::new("same");

    #[test]
    fn keys_are_told_apart_by_their_static_not_their_name() {
        assert_ne!(KeyId::of_key(&A), KeyId::of_key(&B));
        assert_eq!(KeyId::of_key(&A), KeyId::of_key(&A));
    }

    #[test]
    fn key_and_type_namespaces_never_meet() {
        // Keys are even (pointer-aligned), types odd.
        assert_eq!(KeyId::of_key(&A).0 & 1, 0);
        assert_eq!(KeyId::of_type::<u8>().0 & 1, 1);
        assert_ne!(KeyId::of_type::<u8>(), KeyId::of_type::<u16>());
    }
}
