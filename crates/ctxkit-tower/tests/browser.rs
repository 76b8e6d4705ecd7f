//! The live page in a real browser: headless Chromium loads it while requests are in flight,
//! the DOM it builds shows them (and shows markup from a request as text, running none of
//! it), and a screenshot is written for a person to look at.
//!
//! Skipped, with a message, when no Chromium is found (`chromium` or `chromium-browser` on
//! the PATH, or the binary named by `CTXKIT_CHROMIUM`); with `CTXKIT_BROWSER_REQUIRED=1`
//! (as `.ci/run` sets) a missing browser fails the test. The screenshot goes to
//! `CTXKIT_SCREENSHOT`, by default `target/live-page.png` in the workspace.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::live::*;

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CTXKIT_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|path| path.is_file())
}

/// Runs headless Chromium on `url` with `args`, with a fresh profile; returns its stdout.
fn run_chromium(browser: &Path, args: &[String], url: &str) -> String {
    let profile = std::env::temp_dir().join(format!(
        "ctxkit-chromium-{}-{}",
        std::process::id(),
        args.len()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_shows_the_requests_in_flight() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CTXKIT_BROWSER_REQUIRED").is_none(),
            "CTXKIT_BROWSER_REQUIRED is set but no chromium was found on the PATH"
        );
        eprintln!(
            "skipped: no chromium found (install Debian's `chromium` package, or set \
             CTXKIT_CHROMIUM to a Chromium binary)"
        );
        return;
    };
    let (server, _shutdown) = live_server().await;
    start(&server, "/slow/orders", Some(30_000));
    start(&server, "/slow/inventory", Some(8_000));
    start(&server, "/slow/report", None);
    let query: String = SCRIPT.bytes().map(|b| format!("%{b:02X}")).collect();
    start(&server, &format!("/lookup?q={query}"), Some(20_000));
    start(&server, QUOTED_PATH, None);
    // And some that ended: a deadline from a header, a client that went away.
    start(&server, "/slow/too-late", Some(40));
    let client = common::http_client(false);
    let req = http::Request::get(server.url("/slow/abandoned"))
        .body(http_body_util::Full::default())
        .unwrap();
    let gone = tokio::spawn(async move { client.request(req).await });
    json_when(&server, |j| {
        live_names(j, 1).iter().any(|n| n == "GET /slow/abandoned") && live_names(j, 2).len() == 1
    })
    .await;
    gone.abort();
    json_when(&server, |j| j["recent"].as_array().unwrap().len() >= 2).await;

    let url = server.url("/debug/contexts");
    let (b, u) = (browser.clone(), url.clone());
    let dom = tokio::task::spawn_blocking(move || run_chromium(&b, &["--dump-dom".into()], &u))
        .await
        .unwrap();
    for name in [
        "GET /slow/orders",
        "GET /slow/inventory",
        "GET /slow/report",
        "GET /lookup",
        "GET /slow/too-late",
        "client went away before the response was complete",
        "deadline sent by the client in its x-timeout-ms header",
    ] {
        assert!(dom.contains(name), "the DOM shows {name:?}:\n{dom}");
    }
    // Markup from requests is text in the DOM: serialised escaped, never an element.
    assert!(
        dom.contains("lookup &lt;script&gt;alert(1)&lt;/script&gt;&lt;img"),
        "{dom}"
    );
    assert!(dom.contains("GET /q'\"onmouseover=alert(1)"), "{dom}");
    assert!(!dom.contains("<script>alert"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(
        !dom.contains("data-pwned=\"1\""),
        "no injected handler ran: {dom}"
    );
    assert!(!dom.contains("onmouseover=\"alert"), "{dom}");

    let shot = std::env::var_os("CTXKIT_SCREENSHOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/live-page.png"),
        PathBuf::from,
    );
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let args = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1200,800".into(),
    ];
    tokio::task::spawn_blocking(move || run_chromium(&browser, &args, &url))
        .await
        .unwrap();
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());
}
