//! "Why was it cancelled, and what is still alive?": origins and the live tree.
//!
//! A server root, two requests with a deadline each and the calls they make downstream; one
//! request runs past its deadline, the other is cancelled by its handler, one call is
//! forgotten. Prints each request's origin, then the live tree and the suspected leaks.
//!
//! `cargo run -p ctxkit --example why_cancelled`

use std::thread;
use std::time::Duration;

use ctxkit::inspect::Snapshot;
use ctxkit::Context;

fn main() {
    let (server, _shutdown) = Context::background().with_name("server").with_cancel();

    // A request whose work outlives its 50 ms budget.
    let (orders, _orders_handle) = server
        .with_name("GET /orders")
        .with_timeout(Duration::from_millis(50));
    let (db_call, _db) = orders.with_cancel();

    // A request its handler gives up on, from a worker thread.
    let (upload, upload_handle) = server
        .with_name("POST /upload")
        .with_timeout(Duration::from_secs(30));
    thread::Builder::new()
        .name("worker-3".into())
        .spawn(move || upload_handle.cancel_with_cause("payload too large"))
        .expect("a thread")
        .join()
        .expect("the worker");

    // A context someone made and forgot: no deadline, never cancelled, never dropped.
    let forgotten = server.with_name("GET /report").with_cancel();

    db_call.wait();
    println!("db call:  {}", db_call.origin().expect("done"));
    println!("upload:   {}", upload.origin().expect("done"));

    thread::sleep(Duration::from_millis(20));
    let snapshot = Snapshot::of(&server);
    println!("\nthe live tree under the server:\n{snapshot}");
    println!("alive for 10 ms or more, no deadline, not done:");
    for entry in snapshot.suspected_leaks(Duration::from_millis(10)).skip(1) {
        let site = entry.created_at().expect("derived contexts have a site");
        let name = entry.name().unwrap_or("(no name)");
        println!("  {name:?} made at {site}, {:?} ago", entry.age());
    }
    drop(forgotten);
}
