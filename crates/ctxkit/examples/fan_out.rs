//! Async fan-out: one request asks several backends at once with a `ctxkit::tokio::Group`.
//! The first failure cancels the other requests, an overall deadline bounds the whole, and
//! the cause of the cancellation is printed.
//!
//! ```text
//! cargo run -p ctxkit --example fan_out --features tokio
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctxkit::Context;

/// One backend of the fan-out, simulated: it answers after `latency`, or fails.
#[derive(Clone, Copy)]
struct Backend {
    name: &'static str,
    latency: Duration,
    fails: bool,
}

/// Why a backend request did not answer.
#[derive(Debug)]
enum FetchError {
    /// The backend answered with an error.
    Backend { name: &'static str, status: u16 },
    /// The request gave up because its context was done.
    Stopped {
        name: &'static str,
        why: ctxkit::Error,
    },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Backend { name, status } => write!(f, "{name} answered {status}"),
            FetchError::Stopped { name, why } => write!(f, "{name} gave up: {why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A request to one backend that stops as soon as `ctx` is done.
async fn fetch(ctx: Context, backend: Backend) -> Result<String, FetchError> {
    let name = backend.name;
    tokio::select! {
        why = ctx.done() => Err(FetchError::Stopped { name, why }),
        _ = tokio::time::sleep(backend.latency) => {
            if backend.fails {
                Err(FetchError::Backend { name, status: 503 })
            } else {
                Ok(format!("{name}: 200 OK"))
            }
        }
    }
}

/// Asks every backend at once, within `deadline`; all answers, or the first failure.
async fn fan_out(backends: &[Backend], deadline: Duration) -> Result<Vec<String>, FetchError> {
    let start = Instant::now();
    let (request, _cancel) = Context::background().with_timeout(deadline);
    // The cause the other requests see: the first error's text.
    let (group, ctx) = ctxkit::tokio::Group::with_cause(&request, |e: &FetchError| e.to_string());
    let answers = Arc::new(Mutex::new(Vec::new()));
    for &backend in backends {
        let (ctx, answers) = (ctx.clone(), answers.clone());
        group.spawn(async move {
            let result = fetch(ctx, backend).await;
            let ms = start.elapsed().as_millis();
            match &result {
                Ok(answer) => println!("  {ms:>4} ms  {answer}"),
                Err(err) => println!("  {ms:>4} ms  {err}"),
            }
            answers.lock().unwrap().push(result?);
            Ok(())
        });
    }
    if let Err(err) = group.wait().await {
        // What the other requests saw when they were cancelled.
        println!("  cause of the cancellation: {}", ctx.cause().unwrap());
        return Err(err);
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    Ok(answers)
}

#[tokio::main]
async fn main() {
    let backend = |name, ms, fails| Backend {
        name,
        latency: Duration::from_millis(ms),
        fails,
    };

    println!("every backend answers in time:");
    let all = [
        backend("users", 20, false),
        backend("orders", 40, false),
        backend("stock", 30, false),
    ];
    println!("=> {:?}\n", fan_out(&all, Duration::from_secs(1)).await);

    println!("one backend fails, the others are cancelled:");
    let failing = [
        backend("users", 200, false),
        backend("orders", 30, true),
        backend("stock", 300, false),
    ];
    match fan_out(&failing, Duration::from_secs(1)).await {
        Ok(answers) => println!("=> {answers:?}\n"),
        Err(err) => println!("=> failed: {err}\n"),
    }

    println!("one backend is too slow for the overall deadline:");
    let slow = [
        backend("users", 10, false),
        backend("orders", 5_000, false),
        backend("stock", 20, false),
    ];
    match fan_out(&slow, Duration::from_millis(100)).await {
        Ok(answers) => println!("=> {answers:?}"),
        Err(err) => println!("=> failed: {err}"),
    }
}
