//! The two examples of Go's `context` documentation, with the same timing and output.
//!
//! Go:
//!
//! ```go
//! ctx, cancel := context.WithCancel(context.Background())
//! go func() { time.Sleep(2 * time.Second); cancel() }()
//! for {
//!     select {
//!     case <-ctx.Done():
//!         fmt.Println("Work canceled:", ctx.Err())
//!         return
//!     default:
//!         fmt.Println("Working...")
//!         time.Sleep(500 * time.Millisecond)
//!     }
//! }
//!
//! ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
//! defer cancel()
//! select {
//! case <-time.After(5 * time.Second):
//!     fmt.Println("Work completed")
//! case <-ctx.Done():
//!     fmt.Println("Timeout:", ctx.Err())
//! }
//! ```
//!
//! Run with `cargo run --example quickstart` (takes about 5 s).

use std::thread;
use std::time::Duration;

use ctxkit::Context;

/// Cancellation: another thread cancels the worker's context after 2 s.
fn cancel_example() {
    let (ctx, handle) = Context::background().with_cancel();
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(2));
        handle.cancel();
    });
    loop {
        println!("Working...");
        // Go's `time.Sleep(500ms)`, except that cancellation wakes it at once.
        if let Some(err) = ctx.wait_timeout(Duration::from_millis(500)) {
            println!("Work canceled: {err}");
            return;
        }
    }
}

/// Timeout: 5 s of work raced against a 3 s deadline.
fn timeout_example() {
    let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(3));
    let _cancel = handle.drop_guard(); // Go's `defer cancel()`
                                       // Go's `select` on `time.After(5s)` and `ctx.Done()`.
    match ctx.wait_timeout(Duration::from_secs(5)) {
        None => println!("Work completed"),
        Some(err) => println!("Timeout: {err}"),
    }
}

fn main() {
    cancel_example();
    timeout_example();
}
