//! A live page of a server's contexts: the requests in flight, what each has derived (its
//! downstream calls among them), and the requests that ended last, with why.
//!
//! [`ServerLayer::live_page`](crate::ServerLayer::live_page) makes a [`LivePage`], a tower
//! [`Service`] to mount at a path of your choice. It answers `GET` with an HTML page that
//! refreshes itself every two seconds, or with JSON: the shape of
//! [`Snapshot::to_json`](ctxkit::inspect::Snapshot::to_json) plus a `"recent"` array.
//!
//! ```
//! use ctxkit::Context;
//! use ctxkit_tower::ServerLayer;
//!
//! let (root, _shutdown) = Context::background().with_cancel();
//! let layer = ServerLayer::new(root);
//! let page = layer.live_page();
//! // With axum: Router::new()
//! //     .route_service("/debug/contexts", page.clone())
//! //     .route_service("/debug/contexts.json", page)
//! //     .layer(layer)
//! assert!(page.json().starts_with(r#"{"contexts":[{"depth":0,"kind":"WithCancel""#));
//! ```
//!
//! The page is made for the network it is served on: everything it prints comes from
//! requests (names are paths), so every text is escaped, and the page itself loads nothing
//! from elsewhere (inline CSS and script, no framework), with a `Content-Security-Policy`
//! that forbids it. Mount it where only operators can reach it: it shows every request path.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ctxkit::inspect::{Entry, Snapshot};
use ctxkit::{Context, Error};
use http::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use tower_service::Service;

use crate::server::RequestOutcome;

/// How many ended requests the page lists: the last ones.
pub const RECENT: usize = 100;

/// How often the HTML page refreshes itself.
const REFRESH: Duration = Duration::from_secs(2);

/// The last [`RECENT`] requests that ended, kept once a live page asked for them.
#[derive(Debug)]
pub(crate) struct Recent {
    enabled: AtomicBool,
    ring: Mutex<VecDeque<Finished>>,
}

/// A request that ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) name: Option<Box<str>>,
    pub(crate) outcome: RequestOutcome,
    pub(crate) duration: Duration,
    pub(crate) ended: Instant,
    pub(crate) err: Option<Error>,
    /// The origin's one-line Display.
    pub(crate) origin: Option<Box<str>>,
}

impl Recent {
    pub(crate) fn new() -> Recent {
        Recent {
            enabled: AtomicBool::new(false),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Relaxed: a request ending just as the first page is made may go unlisted, no more.
    #[inline]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, finished: Finished) {
        // A panic while the lock was held left the ring consistent (push and pop only).
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == RECENT {
            ring.pop_front();
        }
        ring.push_back(finished);
    }

    /// Calls `f` on each, newest first, under the lock.
    fn for_each(&self, mut f: impl FnMut(&Finished)) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().for_each(&mut f);
    }
}

/// A tower [`Service`] that shows the live tree of contexts under a server's root: every
/// request in flight with its name (`GET /path` or the gRPC method), age, time left and
/// state, the contexts derived from it below it (downstream calls made through
/// [`ClientLayer`](crate::ClientLayer) are named like requests), and, when made by
/// [`ServerLayer::live_page`](crate::ServerLayer::live_page), the last [`RECENT`] requests
/// that ended, with their outcome and origin.
///
/// It answers `GET` and `HEAD`, at whatever path it is mounted:
/// - JSON when the path ends in `.json`, the query has `format=json`, or the `Accept` header
///   asks for `application/json` and not `text/html`: `{"contexts": [...], "recent": [...]}`,
///   where `"contexts"` is [`Snapshot::to_json`]'s array and each `"recent"` object has
///   `name`, `outcome`, `duration_ms`, `ended_ms_ago`, `err` and `origin` (the origin's
///   one-line text), newest first;
/// - else an HTML page (no external resources) that refreshes itself every two seconds.
///
/// Other methods get `405 Method Not Allowed`.
#[derive(Clone, Debug)]
pub struct LivePage {
    root: Context,
    recent: Option<Arc<Recent>>,
}

impl LivePage {
    /// A page of the contexts under `root`, without a list of recent requests. `root` must
    /// be able to be cancelled (made by `with_cancel` or the like): contexts are found
    /// through cancellation links, so a page of `Context::background()` lists it alone.
    pub fn new(root: &Context) -> LivePage {
        LivePage {
            root: root.clone(),
            recent: None,
        }
    }

    pub(crate) fn with_recent(root: &Context, recent: Arc<Recent>) -> LivePage {
        LivePage {
            root: root.clone(),
            recent: Some(recent),
        }
    }

    /// The JSON the page serves.
    pub fn json(&self) -> String {
        let mut out = Snapshot::of(&self.root).to_json();
        // `{"contexts":[...]}` gets a second member.
        out.pop();
        out.push_str(",\"recent\":[");
        let now = Instant::now();
        let mut first = true;
        if let Some(recent) = &self.recent {
            recent.for_each(|f| {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str("{\"name\":");
                json_opt(&mut out, f.name.as_deref());
                out.push_str(",\"outcome\":");
                json_str(&mut out, f.outcome.as_str());
                let _ = write!(
                    out,
                    ",\"duration_ms\":{},\"ended_ms_ago\":{},\"err\":",
                    f.duration.as_millis(),
                    now.saturating_duration_since(f.ended).as_millis()
                );
                json_opt(&mut out, f.err.map(|e| e.to_string()).as_deref());
                out.push_str(",\"origin\":");
                json_opt(&mut out, f.origin.as_deref());
                out.push('}');
            });
        }
        out.push_str("]}");
        out
    }

    /// The HTML page it serves.
    pub fn html(&self) -> String {
        let snapshot = Snapshot::of(&self.root);
        let now = Instant::now();
        let mut out = String::with_capacity(8192 + snapshot.entries().len() * 400);
        out.push_str(HEAD);
        let requests = snapshot.entries().iter().filter(|e| e.depth() == 1).count();
        let _ = write!(
            out,
            "<main id=\"live\"><p class=\"meta\"><b>{requests}</b> in flight \
             &middot; {} contexts &middot; refreshed every {} s</p>",
            snapshot.entries().len(),
            REFRESH.as_secs()
        );
        out.push_str("<section><h2>In flight</h2>");
        in_flight(&mut out, &snapshot, now);
        out.push_str("</section>");
        if let Some(recent) = &self.recent {
            let _ = write!(
                out,
                "<section><h2>Recent <small>last {RECENT}, newest first</small></h2>"
            );
            recent_table(&mut out, recent, now);
            out.push_str("</section>");
        }
        out.push_str("</main>");
        out.push_str(TAIL);
        out
    }

    fn respond(&self, method: &Method, want_json: bool) -> Response<String> {
        if method != Method::GET && method != Method::HEAD {
            let mut res = Response::new(String::from("method not allowed\n"));
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let (body, content_type) = if want_json {
            (self.json(), "application/json")
        } else {
            (self.html(), "text/html; charset=utf-8")
        };
        let body = if method == Method::HEAD {
            String::new()
        } else {
            body
        };
        let mut res = Response::new(body);
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert("content-security-policy", HeaderValue::from_static(CSP));
        res
    }
}

/// Whether a request for the page asks for JSON.
fn wants_json<B>(req: &Request<B>) -> bool {
    let uri = req.uri();
    if uri.path().ends_with(".json") {
        return true;
    }
    if uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "format=json"))
    {
        return true;
    }
    req.headers().get_all(ACCEPT).iter().any(|v| {
        let v = v.as_bytes();
        contains(v, b"application/json") && !contains(v, b"text/html")
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl<B> Service<Request<B>> for LivePage {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), wants_json(&req))))
    }
}

/// Only inline style and script, and fetches of the page itself.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live contexts</title>
<style>
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#f6f8fa;--card:#fff}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap;margin-bottom:4px}
h1{font-size:20px;margin:0}
h2{font-size:15px;margin:20px 0 8px}
h2 small{font-weight:normal;color:var(--muted);margin-left:6px}
header label,header a{color:var(--muted);font-size:13px}
.meta{color:var(--muted);margin:4px 0 0}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:6px;overflow:hidden}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;font-weight:600;color:var(--muted);background:#eef1f4;white-space:nowrap}
tr:last-child td{border-bottom:0}
td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
.name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;word-break:break-all}
.unnamed{color:var(--muted);font-style:italic}
.kind{color:var(--muted);font-size:12px;margin-left:6px}
.site{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;color:var(--muted)}
td.site{white-space:nowrap}
.origin{font-size:12px;color:#57606a;word-break:break-word}
.origin.quiet{color:#8c959f}
td:first-child{min-width:240px}
.tree{color:#afb8c1;margin-right:4px}
.empty{color:var(--muted);font-style:italic}
.b{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.active{background:#ddf4ff;color:#0969da}
.completed{background:#dafbe1;color:#1a7f37}
.client_gone{background:#fff8c5;color:#9a6700}
.deadline{background:#ffebe9;color:#cf222e}
.shutdown{background:#eaeef2;color:#57606a}
.canceled{background:#fff1e5;color:#bc4c00}
</style></head><body>
<header><h1>Live contexts</h1>
<label><input type="checkbox" id="auto" checked> auto-refresh</label>
<a href="?format=json">JSON</a></header>
"#;

const TAIL: &str = r#"
<script>
(function () {
  var auto = document.getElementById("auto");
  function refresh() {
    if (!auto.checked) return;
    fetch(location.href, {cache: "no-store", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (fresh && live) live.replaceWith(document.adoptNode(fresh));
      })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();
</script>
</body></html>
"#;

/// The table of live contexts: every entry below the root, indented by depth.
fn in_flight(out: &mut String, snapshot: &Snapshot, now: Instant) {
    let entries = snapshot.entries();
    if let Some(root) = entries.first() {
        out.push_str("<p class=\"meta\">under ");
        root_line(out, root);
        out.push_str("</p>");
    }
    out.push_str(
        "<table><thead><tr><th>Context</th><th>Age</th><th>Time left</th><th>State</th>\
         <th>Created at</th></tr></thead><tbody>",
    );
    if entries.len() <= 1 {
        out.push_str("<tr><td colspan=\"5\" class=\"empty\">no requests in flight</td></tr>");
    }
    for e in entries.iter().skip(1) {
        let indent = (e.depth() - 1).min(16);
        let _ = write!(
            out,
            "<tr class=\"d{}\"><td style=\"padding-left:{}px\">",
            e.depth(),
            10 + indent * 22
        );
        if indent > 0 {
            out.push_str("<span class=\"tree\">&#x2514;</span>");
        }
        name_html(out, e.name());
        out.push_str("<span class=\"kind\">");
        esc(out, e.kind());
        out.push_str("</span></td><td class=\"num\">");
        duration(out, e.age());
        out.push_str("</td><td class=\"num\">");
        match e.deadline() {
            None => out.push_str("&mdash;"),
            Some(at) if at > now => duration(out, at - now),
            Some(at) => {
                out.push_str("past ");
                duration(out, now - at);
            }
        }
        out.push_str("</td><td>");
        match e.err() {
            None => out.push_str("<span class=\"b active\">active</span>"),
            Some(err) => {
                let class = match err {
                    Error::DeadlineExceeded => "deadline",
                    Error::Canceled => "canceled",
                };
                let _ = write!(out, "<span class=\"b {class}\">");
                esc(out, &err.to_string());
                out.push_str("</span>");
                if let Some(origin) = e.origin() {
                    out.push_str("<div class=\"origin\">");
                    esc(out, &origin.to_string());
                    out.push_str("</div>");
                }
            }
        }
        out.push_str("</td><td class=\"site\">");
        match e.created_at() {
            Some(at) => esc(out, &at.to_string()),
            None => out.push_str("&mdash;"),
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

fn root_line(out: &mut String, root: &Entry) {
    out.push_str("<span class=\"name\">");
    esc(out, root.kind());
    out.push_str("</span>");
    if let Some(name) = root.name() {
        out.push(' ');
        name_html(out, Some(name));
    }
    if let Some(at) = root.created_at() {
        out.push_str(" made at <span class=\"site\">");
        esc(out, &at.to_string());
        out.push_str("</span>");
    }
    if let Some(err) = root.err() {
        out.push_str(" &middot; <span class=\"b shutdown\">");
        esc(out, &err.to_string());
        out.push_str("</span>");
    }
}

/// The table of the requests that ended last.
fn recent_table(out: &mut String, recent: &Recent, now: Instant) {
    out.push_str(
        "<table><thead><tr><th>Request</th><th>Outcome</th><th>Took</th><th>Ended</th>\
         <th>Origin</th></tr></thead><tbody>",
    );
    let mut any = false;
    recent.for_each(|f| {
        any = true;
        out.push_str("<tr><td>");
        name_html(out, f.name.as_deref());
        let outcome = f.outcome.as_str();
        let _ = write!(
            out,
            "</td><td><span class=\"b {outcome}\">{}</span></td><td class=\"num\">",
            outcome.replace('_', " ")
        );
        duration(out, f.duration);
        out.push_str("</td><td class=\"num\">");
        duration(out, now.saturating_duration_since(f.ended));
        let quiet = if f.outcome == RequestOutcome::Completed {
            " quiet"
        } else {
            ""
        };
        let _ = write!(out, " ago</td><td class=\"origin{quiet}\">");
        match &f.origin {
            Some(origin) => esc(out, origin),
            None => out.push_str("&mdash;"),
        }
        out.push_str("</td></tr>");
    });
    if !any {
        out.push_str("<tr><td colspan=\"5\" class=\"empty\">none yet</td></tr>");
    }
    out.push_str("</tbody></table>");
}

fn name_html(out: &mut String, name: Option<&str>) {
    match name {
        Some(name) => {
            out.push_str("<span class=\"name\">");
            esc(out, name);
            out.push_str("</span>");
        }
        None => out.push_str("<span class=\"unnamed\">unnamed</span>"),
    }
}

/// `850 ms`, `12.4 s`, `3 min 5 s`.
fn duration(out: &mut String, d: Duration) {
    let ms = d.as_millis();
    let _ = if ms < 1000 {
        write!(out, "{ms} ms")
    } else if ms < 60_000 {
        write!(out, "{:.1} s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        write!(out, "{} min {} s", s / 60, s % 60)
    };
}

/// `s` as HTML text or a quoted attribute value: the five characters that could end either
/// escaped, and control characters shown as `\u{..}` (they are invisible, or worse).
fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// `s` as a JSON string. `<` and `>` are escaped too, so the JSON is safe to put in a page.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20
                || c == '<'
                || c == '>'
                || c == '\u{2028}'
                || c == '\u{2029}' =>
            {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl fmt::Display for LivePage {
    /// The tree under the page's root, as [`Snapshot`]'s Display prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Snapshot::of(&self.root), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_quotes_and_control_characters() {
        let mut out = String::new();
        esc(&mut out, "<script>alert('x\")</script>&\u{0}\u{1b}é");
        assert_eq!(
            out,
            "&lt;script&gt;alert(&#39;x&quot;)&lt;/script&gt;&amp;\\u{0}\\u{1b}é"
        );
    }

    #[test]
    fn json_strings_stay_one_value() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\n<\u{1}>\u{2028}é");
        assert_eq!(out, r#""a\"b\\c\n\u003c\u0001\u003e\u2028é""#);
    }

    #[test]
    fn the_ring_keeps_the_last_hundred() {
        let recent = Recent::new();
        for i in 0..RECENT + 5 {
            recent.push(Finished {
                name: Some(i.to_string().into()),
                outcome: RequestOutcome::Completed,
                duration: Duration::ZERO,
                ended: Instant::now(),
                err: Some(Error::Canceled),
                origin: None,
            });
        }
        let mut names = Vec::new();
        recent.for_each(|f| names.push(f.name.as_deref().unwrap().to_owned()));
        assert_eq!(names.len(), RECENT);
        assert_eq!(names[0], (RECENT + 4).to_string());
        assert_eq!(names[RECENT - 1], "5");
    }
}
