//! Reading and setting a request's context.

use ctxkit::Context;

/// Reading and setting the [`Context`] a request carries in its extensions.
///
/// On the server, [`ServerLayer`](crate::ServerLayer) sets it; on the client,
/// [`ClientLayer`](crate::ClientLayer) reads it.
///
/// ```
/// use ctxkit::Context;
/// use ctxkit_tower::RequestContextExt;
///
/// let (ctx, _h) = Context::background().with_timeout(std::time::Duration::from_secs(1));
/// let mut req = http::Request::new(());
/// req.set_context(ctx);
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
        self.extensions()
            .get::<Context>()
            .cloned()
            .unwrap_or_default()
    }

    fn set_context(&mut self, ctx: Context) {
        self.extensions_mut().insert(ctx);
    }
}

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<T> RequestContextExt for tonic::Request<T> {
    fn context(&self) -> Context {
        self.extensions()
            .get::<Context>()
            .cloned()
            .unwrap_or_default()
    }

    fn set_context(&mut self, ctx: Context) {
        self.extensions_mut().insert(ctx);
    }
}
