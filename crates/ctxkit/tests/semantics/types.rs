//! The trait promises of the public types (`Clone`, `Send`, `Sync`, `'static`, `Debug`,
//! `Display`, `Error`, `Future`, `Copy`, `Eq`, `Hash`), checked at compile time.

use std::fmt;
use std::future::Future;

use ctxkit::{AfterFunc, CancelGuard, CancelHandle, Cause, Context, Done, Error, Key, ManualClock};

#[test]
fn public_types_have_the_promised_traits() {
    fn clone_send_sync_static_debug_display<
        T: Clone + Send + Sync + 'static + fmt::Debug + fmt::Display,
    >() {
    }
    fn clone_send_sync_debug<T: Clone + Send + Sync + fmt::Debug>() {}
    fn send_sync<T: Send + Sync>() {}
    fn error_like<T: Clone + Send + Sync + fmt::Debug + fmt::Display + std::error::Error>() {}
    fn done_like<T: Future<Output = Error> + Send + Unpin + 'static>() {}
    clone_send_sync_static_debug_display::<Context>();
    clone_send_sync_debug::<CancelHandle>();
    send_sync::<CancelGuard>();
    send_sync::<AfterFunc>();
    send_sync::<Key<u8>>();
    send_sync::<ManualClock>();
    let _ = ManualClock::new().clone();
    error_like::<Cause>();
    done_like::<Done>();
    fn copy_eq_hash<T: Copy + fmt::Debug + PartialEq + Eq + std::hash::Hash>() {}
    copy_eq_hash::<Error>();
}
