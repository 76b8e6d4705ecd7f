//! Integrations with runtimes, channels and I/O: one module per integration, each behind the
//! cargo feature of the same name (except [`net`], which needs only std). They are built on
//! the public API of [`Context`](crate::Context) alone.

#[cfg(feature = "crossbeam-channel")]
pub mod crossbeam;
#[cfg(feature = "futures")]
pub mod futures;
pub mod net;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tokio-util")]
pub mod tokio_util;
