//! Callbacks and merging: `after_func` (Go's `context.AfterFunc`), `on_cancel`, `stop`, and
//! a request context merged with a server shutdown context.
//!
//! Run with `cargo run --example after_func_merge`.

use std::sync::mpsc;
use std::time::Duration;

use ctxkit::Context;

#[derive(Debug)]
struct ServerShutdown;

impl std::fmt::Display for ServerShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("server shutting down")
    }
}

impl std::error::Error for ServerShutdown {}

fn main() {
    let (server, shutdown) = Context::background().with_cancel();

    // Request 1 finishes normally: its cleanup is stopped before it runs.
    {
        let (request, done) = Context::background().with_timeout(Duration::from_secs(30));
        let (ctx, _handle) = request.merge(&server);
        let cleanup = ctx.after_func(|| println!("request 1: cleanup (never printed)"));
        println!("request 1: served");
        println!(
            "request 1: stop() prevented the cleanup: {}",
            cleanup.stop()
        );
        done.cancel();
        println!("request 1: stop() again: {}", cleanup.stop());
    }

    // Request 2 is in flight when the server shuts down.
    let (request, _request_handle) = Context::background().with_timeout(Duration::from_secs(30));
    let (ctx, _handle) = request.merge(&server);
    println!("request 2: {ctx}");

    let (tx, rx) = mpsc::channel();
    let _cleanup = ctx.after_func(move || {
        // Runs on another thread; cancel() does not wait for it.
        tx.send("request 2: after_func released the connection")
            .unwrap();
    });
    let log = ctx.clone();
    let _on_cancel = ctx.on_cancel(move || {
        // Runs on the cancelling thread, before cancel() returns; the context is done already.
        println!("request 2: on_cancel sees err = {:?}", log.err());
    });

    println!("server: shutting down");
    shutdown.cancel_with_cause(ServerShutdown);
    println!("server: cancel returned");

    println!("{}", rx.recv_timeout(Duration::from_secs(2)).unwrap());
    println!(
        "request 2: err = {}, cause = {}",
        ctx.err().unwrap(),
        ctx.cause().unwrap()
    );
    assert!(ctx.cause().unwrap().is::<ServerShutdown>());
    assert!(
        !request.is_done(),
        "the request context itself was not cancelled"
    );
}
