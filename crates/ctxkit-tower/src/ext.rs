//! Reading and setting a request's context.
//!
//! A request carries its context in its extensions under [`Slot`], a type private to this
//! crate, never under the bare [`Context`] type: an application that puts a `Context` of its
//! own in the extensions (axum's `Extension(app_root)` layer, say) cannot hide or replace the
//! request's context, and the request's context cannot hide the application's.

use ctxkit::Context;

/// The request's context, as stored in its extensions. Only this crate names the type, so
/// only this crate reads or writes it.
#[derive(Clone, Debug)]
pub(crate) struct Slot(pub(crate) Context);

/// The context stored in `extensions`, if any.
#[inline]
pub(crate) fn get(extensions: &http::Extensions) -> Option<&Context> {
    extensions.get::<Slot>().map(|slot| &slot.0)
}

/// Stores `ctx` as the context of the request whose extensions these are.
#[inline]
pub(crate) fn set(extensions: &mut http::Extensions, ctx: Context) {
    extensions.insert(Slot(ctx));
}

/// Reading and setting the [`Context`] a request carries.
///
/// On the server, [`ServerLayer`](crate::ServerLayer) sets it; on the client,
/// [`ClientLayer`](crate::ClientLayer) reads it. It is kept in the request's extensions
/// under a type private to this crate: a `Context` the application stores there itself
/// (`req.extensions_mut().insert(ctx)`, axum's `Extension` layer) is a different entry, and
/// neither hides the other.
///
/// ```
/// use ctxkit::Context;
/// use ctxkit_tower::RequestContextExt;
///
/// let (ctx, _h) = Context::background().with_timeout(std::time::Duration::from_secs(1));
/// let mut req = http::Request::new(());
/// req.set_context(ctx);
/// // The application's own `Context` extension is another entry.
/// req.extensions_mut().insert(Context::background());
/// assert!(req.context().deadline().is_some());
/// ```
pub trait RequestContextExt {
    /// The request's context; [`Context::background`] when it has none (Go's `r.Context()`).
    fn context(&self) -> Context;

    /// Gives the request a context.
    fn set_context(&mut self, ctx: Context);

    /// Gives the request a context, by value.
    fn with_context(mut self, ctx: Context) -> Self
    where
        Self: Sized,
    {
        self.set_context(ctx);
        self
    }
}

impl<B> RequestContextExt for http::Request<B> {
    fn context(&self) -> Context {
        get(self.extensions()).cloned().unwrap_or_default()
    }

    fn set_context(&mut self, ctx: Context) {
        set(self.extensions_mut(), ctx);
    }
}

impl RequestContextExt for http::request::Parts {
    fn context(&self) -> Context {
        get(&self.extensions).cloned().unwrap_or_default()
    }

    fn set_context(&mut self, ctx: Context) {
        set(&mut self.extensions, ctx);
    }
}

/// `RequestContextExt` for the `Request` type of one tonic major version.
#[cfg(any(feature = "tonic", feature = "tonic-0_13"))]
macro_rules! tonic_request_context {
    ($tonic:ident, $feature:literal) => {
        #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
        impl<T> RequestContextExt for $tonic::Request<T> {
            fn context(&self) -> Context {
                get(self.extensions()).cloned().unwrap_or_default()
            }

            fn set_context(&mut self, ctx: Context) {
                set(self.extensions_mut(), ctx);
            }
        }
    };
}

#[cfg(feature = "tonic")]
tonic_request_context!(tonic, "tonic");
#[cfg(feature = "tonic-0_13")]
tonic_request_context!(tonic_0_13, "tonic-0_13");
