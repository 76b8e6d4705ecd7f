//! A context's name as its layer keeps it ([S28](crate::guarantees#s28)).
//!
//! A name is given as a `Cow<'static, str>`. A borrowed one is kept as it is. An owned one
//! of up to [`INLINE_MAX`] bytes (`GET /orders/{id}`, a gRPC method path) is copied into the
//! layer itself and the caller's `String` is freed at once, so that a named context keeps no
//! allocation of its own besides its layer. That matters where names are made per request:
//! a `String` that lives as long as a call, with many calls in flight, misses the
//! allocator's per-thread cache on both ends, where one freed at once does not. The copy
//! fits in the space the layer already has for a value (the layer stays the same size).

use std::borrow::Cow;

/// The longest owned name kept in the layer itself. The name's `Inline` variant is then as
/// large as the layer's value body, so naming does not grow the layer.
pub(crate) const INLINE_MAX: usize = 54;

/// A name: borrowed for the whole program, copied inline, or owned on the heap.
pub(crate) enum Name {
    Static(&'static str),
    /// The first `len` bytes of `bytes`, a copy of a `str` (so valid UTF-8).
    Inline {
        len: u8,
        bytes: [u8; INLINE_MAX],
    },
    Owned(String),
}

impl Name {
    /// The name as given: a borrowed one kept, a short owned one copied inline (its `String`
    /// freed here), a long one kept on the heap.
    pub(crate) fn new(name: Cow<'static, str>) -> Name {
        match name {
            Cow::Borrowed(name) => Name::Static(name),
            Cow::Owned(name) if name.len() <= INLINE_MAX => {
                let mut bytes = [0; INLINE_MAX];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline {
                    len: name.len() as u8, // at most INLINE_MAX
                    bytes,
                }
            }
            Cow::Owned(name) => Name::Owned(name),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Name::Static(name) => name,
            Name::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("an inline name is a copy of a `str`"),
            Name::Owned(name) => name,
        }
    }

    /// The name as a `Cow` of its own, for an origin or a snapshot entry to keep: borrowed
    /// (no allocation) if it was given borrowed.
    pub(crate) fn to_cow(&self) -> Cow<'static, str> {
        match self {
            Name::Static(name) => Cow::Borrowed(name),
            _ => Cow::Owned(self.as_str().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_as_given() {
        let long = "x".repeat(INLINE_MAX + 1);
        let edge = "é".repeat(INLINE_MAX / 2); // multi-byte, exactly at the limit
        for given in [
            Cow::Borrowed("static"),
            Cow::Owned(String::new()),
            Cow::Owned("GET /orders".to_owned()),
            Cow::Owned(edge.clone()),
            Cow::Owned(long.clone()),
        ] {
            let name = Name::new(given.clone());
            assert_eq!(name.as_str(), given);
            assert_eq!(name.to_cow(), given);
        }
        assert!(matches!(Name::new(Cow::Owned(edge)), Name::Inline { .. }));
        assert!(matches!(Name::new(Cow::Owned(long)), Name::Owned(_)));
        assert!(matches!(
            Name::new(Cow::Borrowed("s")).to_cow(),
            Cow::Borrowed("s")
        ));
    }
}
