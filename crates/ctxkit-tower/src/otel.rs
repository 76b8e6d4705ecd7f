//! W3C trace context with OpenTelemetry's global propagator (feature `opentelemetry`).

use ctxkit::Context;
use http::HeaderMap;
use opentelemetry::global;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};

/// The OpenTelemetry context a request carries, stored in its [`Context`] (read it with
/// `ctx.get::<TraceContext>()`).
///
/// On the server, [`ServerLayer`](crate::ServerLayer) extracts it from the request headers
/// with the global text-map propagator (set one, e.g. `TraceContextPropagator`, with
/// `opentelemetry::global::set_text_map_propagator`). On the client,
/// [`ClientLayer`](crate::ClientLayer) and [`RequestBuilderExt`](crate::RequestBuilderExt)
/// inject it into the outgoing headers: the one in the request's context if there is one,
/// else `opentelemetry::Context::current()`.
///
/// ```
/// use ctxkit_tower::TraceContext;
/// let ctx = ctxkit::Context::background().with(TraceContext(opentelemetry::Context::new()));
/// assert!(ctx.get::<TraceContext>().is_some());
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
#[derive(Clone, Debug)]
pub struct TraceContext(pub opentelemetry::Context);

/// `ctx` with the trace context of `headers`, when they carry one.
pub(crate) fn extract(ctx: &Context, headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|p| {
        let mut fields = p.fields();
        if !fields.any(|f| headers.contains_key(f)) {
            return ctx.clone(); // nothing to extract: no allocation
        }
        ctx.with(TraceContext(p.extract(&HeaderExtractor(headers))))
    })
}

/// Writes the trace context of `ctx` (else the current one) into `headers`.
pub(crate) fn inject(ctx: &Context, headers: &mut HeaderMap) {
    let current;
    let otel = match ctx.get::<TraceContext>() {
        Some(t) => &t.0,
        None => {
            current = opentelemetry::Context::current();
            &current
        }
    };
    global::get_text_map_propagator(|p| p.inject_context(otel, &mut HeaderInjector(headers)));
}
