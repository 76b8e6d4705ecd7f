//! An idle timeout: a connection that stays open while messages keep coming, and closes once
//! none has come for a while. Each message pushes the connection context's deadline back
//! with `set_timeout`: no new context, no new timer, no allocation per message. The
//! connection's context also has a hard cap on its whole life, set when it was made.
//!
//! Run with `cargo run -p ctxkit --example idle_timeout`.

use std::time::{Duration, Instant};

use ctxkit::{Context, Error};
use tokio::sync::mpsc;
use tokio::time::sleep;

const IDLE: Duration = Duration::from_millis(200);

/// Reads messages until the connection has been idle for `IDLE` (or its context is done for
/// another reason); returns how many it read and why it stopped.
async fn serve(
    conn: Context,
    idle: ctxkit::CancelHandle,
    mut messages: mpsc::Receiver<String>,
) -> (usize, Error) {
    let mut read = 0;
    idle.set_timeout(IDLE);
    loop {
        tokio::select! {
            err = conn.done() => return (read, err),
            message = messages.recv() => match message {
                Some(_) => {
                    read += 1;
                    idle.set_timeout(IDLE); // pushed back on every message
                }
                None => return (read, Error::Canceled), // the peer closed it
            },
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The connection lives at most 10 s, however busy it is.
    let (conn, idle) = Context::background()
        .with_name("conn 10.0.0.7:51234")
        .with_timeout(Duration::from_secs(10));
    let (tx, rx) = mpsc::channel(16);
    let client = tokio::spawn(async move {
        // Ten messages 50 ms apart, then silence.
        for i in 0..10 {
            tx.send(format!("message {i}")).await.ok();
            sleep(Duration::from_millis(50)).await;
        }
        sleep(Duration::from_secs(5)).await; // keeps the channel open, saying nothing
    });
    let start = Instant::now();
    let (read, err) = serve(conn.clone(), idle, rx).await;
    println!(
        "read {read} messages, then: {err} after {:?}",
        start.elapsed()
    );
    println!("why: {}", conn.origin().expect("done"));
    client.abort();
    assert_eq!((read, err), (10, Error::DeadlineExceeded));
}
