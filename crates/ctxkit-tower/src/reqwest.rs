//! reqwest support: one module per supported major version (features `reqwest` for 0.13,
//! `reqwest-0_12` for 0.12), made from one definition.

/// The items of one reqwest major version: `$reqwest` is the crate, `$feature` its feature,
/// `$use_path` where users import them from, `$doc_crate` the crate's name in doctests.
macro_rules! reqwest_support {
    ($reqwest:ident, $feature:literal, $use_path:literal, $doc_crate:literal) => {
        use std::fmt;

        use ctxkit::Context;
        use http::HeaderName;

        use crate::client::send_deadline;

        /// The error of [`ContextRequestBuilder::send`].
        #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
        #[derive(Debug)]
        pub enum SendError {
            /// The context was done before the response headers arrived; the request was aborted or
            /// never sent. The [`ContextError`](crate::ContextError) tells why: the context's
            /// `err()`, `cause()` and `origin()`, and as its `source()` reqwest's own error
            /// when reqwest failed as the deadline passed (its timeout).
            Context(crate::ContextError),
            /// reqwest failed.
            Reqwest($reqwest::Error),
        }

        impl fmt::Display for SendError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    SendError::Context(e) => fmt::Display::fmt(e, f),
                    SendError::Reqwest(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl std::error::Error for SendError {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    SendError::Context(e) => Some(e),
                    SendError::Reqwest(e) => Some(e),
                }
            }
        }

        impl SendError {
            /// Why the context cut the call short, when it did.
            pub fn context_error(&self) -> Option<&crate::ContextError> {
                match self {
                    SendError::Context(e) => Some(e),
                    SendError::Reqwest(_) => None,
                }
            }
        }

        /// Gives a reqwest request a [`Context`].
        ///
        #[doc = concat!("```no_run
use ", $use_path, "::RequestBuilderExt;
# async fn f() -> Result<(), Box<dyn std::error::Error>> {
let (ctx, _h) = ctxkit::Context::background().with_timeout(std::time::Duration::from_secs(2));
let res = ", $doc_crate, "::Client::new()
    .get(\"http://127.0.0.1:8080/work?ms=10\")
    .context(&ctx)
    .timeout_ms_header(\"x-timeout-ms\")
    .send()
    .await?;
let body = ctx.run(res.bytes()).await??; // the body, too, stops with the context
# Ok(()) }
```")]
        #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
        pub trait RequestBuilderExt {
            /// The request, to be sent under `ctx`.
            fn context(self, ctx: &Context) -> ContextRequestBuilder;
        }

        impl RequestBuilderExt for $reqwest::RequestBuilder {
            fn context(self, ctx: &Context) -> ContextRequestBuilder {
                ContextRequestBuilder {
                    builder: self,
                    ctx: ctx.clone(),
                    header: None,
                }
            }
        }

        /// A reqwest request with a [`Context`]; see [`RequestBuilderExt`].
        #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
        #[derive(Debug)]
        pub struct ContextRequestBuilder {
            builder: $reqwest::RequestBuilder,
            ctx: Context,
            header: Option<HeaderName>,
        }

        impl ContextRequestBuilder {
            /// Send the time left as whole milliseconds (rounded up) in the header `name`. A request
            /// with `content-type: application/grpc...` gets `grpc-timeout` instead.
            ///
            /// # Panics
            /// If `name` is not a valid header name.
            pub fn timeout_ms_header(mut self, name: &str) -> Self {
                self.header = Some(HeaderName::try_from(name).expect("a valid header name"));
                self
            }

            /// Sends the request: fails at once if the context is done, else sends the deadline and
            /// races the call against the context, dropping (aborting) it when the context is done
            /// first.
            pub async fn send(self) -> Result<$reqwest::Response, SendError> {
                use crate::ContextError;
                if let Some(err) = self.ctx.err() {
                    return Err(SendError::Context(ContextError::new(&self.ctx, err, None)));
                }
                let (client, request) = self.builder.build_split();
                let mut request = request.map_err(SendError::Reqwest)?;
                let grpc = crate::server::is_grpc(request.headers());
                send_deadline(
                    &self.ctx,
                    request.headers_mut(),
                    grpc,
                    self.header.as_ref(),
                    std::time::Duration::ZERO,
                );
                #[cfg(feature = "opentelemetry")]
                crate::otel::inject(&self.ctx, request.headers_mut());
                let uri = http::Uri::try_from(request.url().as_str()).unwrap_or_default();
                let call = crate::client::call_context(&self.ctx, request.method(), &uri, grpc);
                match call.run(client.execute(request)).await {
                    Ok(result) => result.map_err(|e| {
                        if e.is_timeout() && self.ctx.err() == Some(ctxkit::Error::DeadlineExceeded) {
                            let err = ctxkit::Error::DeadlineExceeded;
                            SendError::Context(ContextError::new(&call, err, Some(Box::new(e))))
                        } else {
                            SendError::Reqwest(e)
                        }
                    }),
                    Err(err) => Err(SendError::Context(ContextError::new(&call, err, None))),
                }
            }
        }
    };
}

/// reqwest 0.13 (feature `reqwest`).
#[cfg(feature = "reqwest")]
pub(crate) mod current {
    reqwest_support!(reqwest, "reqwest", "ctxkit_tower", "reqwest");
}

/// reqwest 0.12 (feature `reqwest-0_12`): the same items as at the crate root for reqwest
/// 0.13, for `reqwest` 0.12 request builders.
#[cfg(feature = "reqwest-0_12")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-0_12")))]
pub mod reqwest_0_12 {
    reqwest_support!(
        reqwest_0_12,
        "reqwest-0_12",
        "ctxkit_tower::reqwest_0_12",
        "reqwest_0_12"
    );
}
