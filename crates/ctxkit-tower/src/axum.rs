//! The axum extractor (feature `axum`).

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use ctxkit::Context;

/// The request's [`Context`] as an axum extractor. Needs [`ServerLayer`](crate::ServerLayer)
/// around the router; without it the request is answered `500` with a message saying so.
///
/// It is always the context the layer made for the request, whatever else the application
/// puts in the request's extensions: an `Extension(Context)` layer of the application's own
/// is a separate entry, read with `Extension<Context>`.
///
/// ```
/// use ctxkit_tower::RequestContext;
///
/// async fn handler(RequestContext(ctx): RequestContext) -> String {
///     format!("{:?} left", ctx.remaining())
/// }
/// let app: axum::Router = axum::Router::new().route("/", axum::routing::get(handler));
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Debug)]
pub struct RequestContext(pub Context);

impl Deref for RequestContext {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match crate::ext::get(&parts.extensions) {
            Some(ctx) => Ok(RequestContext(ctx.clone())),
            None => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "no request context: ctxkit_tower::ServerLayer is not installed",
            )),
        }
    }
}
