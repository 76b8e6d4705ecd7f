//! The live page over loopback: requests in flight with the contexts under them, the recent
//! ring with outcomes and origins, and everything a request can put in a name escaped.

mod common;

use common::live::*;
use ctxkit_tower::ServerCause;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_lists_requests_in_flight_with_the_contexts_under_them() {
    let (server, _shutdown) = live_server().await;
    start(&server, "/slow/one", Some(30_000));
    start(&server, "/slow/two", None);
    start(&server, "/lookup?q=orders", None);
    // The request contexts exist before their handlers run: wait for the lookup's own too.
    let json = json_when(&server, |j| {
        live_names(j, 1).len() >= 4 && !live_names(j, 2).is_empty()
    })
    .await;
    let requests = live_names(&json, 1);
    for name in ["GET /slow/one", "GET /slow/two", "GET /lookup"] {
        assert!(requests.iter().any(|n| n == name), "{name} in {requests:?}");
    }
    assert_eq!(live_names(&json, 2), ["lookup orders"], "{json:#}");
    let one = json["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GET /slow/one")
        .unwrap();
    assert_eq!(one["kind"], "WithDeadline");
    let left = one["deadline_in_ms"].as_i64().unwrap();
    assert!((25_000..=30_000).contains(&left), "{one}");
    assert!(json["recent"].is_array());

    let (parts, html) = fetch(&server, "/debug/contexts").await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "text/html; charset=utf-8");
    assert!(parts.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    for text in [
        "GET /slow/one",
        "GET /slow/two",
        "lookup orders",
        "In flight",
    ] {
        assert!(html.contains(text), "{text} in the page");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing loaded from elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_requests_show_their_outcome_and_origin() {
    let (server, shutdown) = live_server().await;
    // Completed: the page's own requests. Deadline: 50 ms from a header.
    start(&server, "/slow/deadline", Some(50));
    // Client gone: the client gives up.
    let client = common::http_client(false);
    let req = http::Request::get(server.url("/slow/gone"))
        .body(http_body_util::Full::default())
        .unwrap();
    let gone = tokio::spawn(async move { client.request(req).await });
    json_when(&server, |j| {
        live_names(j, 1).iter().any(|n| n == "GET /slow/gone")
    })
    .await;
    gone.abort();
    let json = json_when(&server, |j| {
        let outcomes: Vec<_> = j["recent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].clone())
            .collect();
        outcomes.contains(&"deadline".into()) && outcomes.contains(&"client_gone".into())
    })
    .await;
    let find = |outcome: &str| {
        json["recent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("{outcome} in {json:#}"))
            .clone()
    };
    let deadline = find("deadline");
    assert_eq!(deadline["name"], "GET /slow/deadline");
    assert_eq!(deadline["err"], "context deadline exceeded");
    let origin = deadline["origin"].as_str().unwrap();
    assert!(origin.starts_with("deadline exceeded: set at "), "{origin}");
    assert!(
        origin.contains("(50ms)") && origin.ends_with("x-timeout-ms header"),
        "{origin}"
    );
    let took = deadline["duration_ms"].as_u64().unwrap();
    assert!((40..2000).contains(&took), "{deadline}");
    let gone = find("client_gone");
    assert_eq!(gone["name"], "GET /slow/gone");
    assert!(gone["origin"]
        .as_str()
        .unwrap()
        .ends_with("in \"GET /slow/gone\": client went away before the response was complete"));
    let completed = find("completed");
    assert_eq!(completed["name"], "GET /debug/contexts.json");

    // Shutdown: the root cancelled with its cause, at this line.
    start(&server, "/slow/shutdown", None);
    json_when(&server, |j| {
        live_names(j, 1).iter().any(|n| n == "GET /slow/shutdown")
    })
    .await;
    shutdown.cancel_with_cause(ServerCause::Shutdown);
    let line = line!() - 1;
    let json = json_when(&server, |j| {
        j["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["outcome"] == "shutdown")
    })
    .await;
    let down = json["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "shutdown")
        .unwrap();
    assert_eq!(down["name"], "GET /slow/shutdown");
    let origin = down["origin"].as_str().unwrap();
    assert!(
        origin.contains(&format!("tests/live_page.rs:{line}:")),
        "{origin}"
    );
    assert!(origin.ends_with(": server shutting down"), "{origin}");
    let (_, html) = fetch(&server, "/debug/contexts").await;
    assert!(html.contains("client went away before the response was complete"));
    assert!(html.contains("server shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_prints_what_requests_send_as_text() {
    let (server, _shutdown) = live_server().await;
    let query: String = SCRIPT.bytes().map(|b| format!("%{b:02X}")).collect();
    start(&server, &format!("/lookup?q={query}"), None);
    start(&server, QUOTED_PATH, None);
    let json = json_when(&server, |j| {
        !live_names(j, 2).is_empty() && live_names(j, 1).len() >= 3
    })
    .await;
    // Kept as given in the JSON (escaped as JSON only).
    assert_eq!(live_names(&json, 2), [format!("lookup {SCRIPT}")]);
    assert!(live_names(&json, 1).contains(&format!("GET {QUOTED_PATH}")));
    // Served as JSON, never sniffed as a page.
    let (parts, _) = fetch(&server, "/debug/contexts.json").await;
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["x-content-type-options"], "nosniff");

    let (_, html) = fetch(&server, "/debug/contexts").await;
    assert!(
        !html.contains("<script>alert"),
        "markup from a request shows as text"
    );
    assert!(!html.contains("<img"));
    assert!(!html.contains("'\"onmouseover"));
    assert!(
        html.contains("lookup &lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;")
    );
    assert!(html.contains("GET /q&#39;&quot;onmouseover=alert(1)"));
    // The page's own script is the only one.
    assert_eq!(html.matches("<script").count(), 1);
}

#[tokio::test]
async fn only_get_and_head_are_answered() {
    use tower::ServiceExt;
    let (root, _h) = ctxkit::Context::background().with_cancel();
    let page = ctxkit_tower::LivePage::new(&root);
    let res = page
        .clone()
        .oneshot(http::Request::post("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let res = page
        .clone()
        .oneshot(http::Request::head("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.body().is_empty());
    let res = page
        .oneshot(http::Request::get("/x?format=json").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(json["contexts"][0]["kind"], "WithCancel");
    assert_eq!(json["recent"], serde_json::json!([]));
}
