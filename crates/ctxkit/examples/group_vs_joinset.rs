//! The same fan-out written twice: with tokio's `JoinSet` and with `ctxkit::tokio::Group`.
//! At most two requests at a time, the first error stops the rest, an overall deadline
//! bounds the whole, and the answers come back as values.
//!
//! ```text
//! cargo run -p ctxkit --example group_vs_joinset --features tokio
//! ```

use std::sync::Arc;
use std::time::Duration;

use ctxkit::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A backend, simulated: it answers after `ms` milliseconds, or fails.
#[derive(Clone, Copy, Debug)]
struct Backend {
    name: &'static str,
    ms: u64,
    fails: bool,
}

async fn call(backend: Backend) -> Result<String, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(backend.ms)).await;
    if backend.fails {
        return Err(std::io::Error::other(format!(
            "{} answered 503",
            backend.name
        )));
    }
    Ok(format!("{}: 200", backend.name))
}

/// With `JoinSet`: the limit is a semaphore, the deadline a `timeout` around the whole, the
/// first error aborts the other tasks (they stop at their next `.await`).
async fn with_joinset(
    backends: &[Backend],
    deadline: Duration,
) -> Result<Vec<String>, std::io::Error> {
    let limit = Arc::new(Semaphore::new(2));
    let mut set = JoinSet::new();
    for (i, &backend) in backends.iter().enumerate() {
        let limit = Arc::clone(&limit);
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            call(backend).await.map(|answer| (i, answer))
        });
    }
    let collect = async {
        let mut answers = vec![String::new(); backends.len()];
        while let Some(joined) = set.join_next().await {
            let (i, answer) = joined.expect("no task panics")?;
            answers[i] = answer;
        }
        Ok(answers)
    };
    let result = match tokio::time::timeout(deadline, collect).await {
        Ok(result) => result,
        Err(_elapsed) => Err(std::io::Error::from(ctxkit::Error::DeadlineExceeded)),
    };
    set.shutdown().await; // abort what is left, on error or timeout
    result
}

/// With `ctxkit::tokio::Group`: the limit is `set_limit`, the deadline the context's, the
/// first error cancels the context that every task runs under; each task's value comes back
/// through its handle. Tasks waiting for a slot when the group fails never start.
async fn with_group(
    backends: &[Backend],
    deadline: Duration,
) -> Result<Vec<String>, std::io::Error> {
    let (request, _cancel) = Context::background().with_timeout(deadline);
    let (group, ctx) =
        ctxkit::tokio::Group::with_cause(&request, |e: &std::io::Error| e.to_string());
    group.set_limit(2);
    let handles: Vec<_> = backends
        .iter()
        .map(|&backend| {
            let ctx = ctx.clone();
            // `?` turns the context's error into an io::Error (TimedOut for a deadline).
            group.spawn_value(async move { ctx.run(call(backend)).await? })
        })
        .collect();
    group.wait().await?;
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(
            handle
                .await
                .expect("no task panics")
                .expect("every task succeeded"),
        );
    }
    Ok(answers)
}

fn show(way: &str, result: Result<Vec<String>, std::io::Error>) {
    match result {
        Ok(answers) => println!("{way}: ok {answers:?}"),
        Err(err) => println!("{way}: failed: {err}"),
    }
}

#[tokio::main]
async fn main() {
    let b = |name, ms, fails| Backend { name, ms, fails };
    let cases = [
        (
            "every backend answers",
            vec![
                b("users", 20, false),
                b("orders", 10, false),
                b("stock", 30, false),
            ],
        ),
        (
            "one backend fails",
            vec![
                b("users", 20, false),
                b("orders", 10, true),
                b("stock", 30, false),
                b("prices", 10, false),
            ],
        ),
        (
            "too slow for the deadline",
            vec![b("users", 20, false), b("orders", 5_000, false)],
        ),
    ];
    for (what, backends) in cases {
        println!("{what}:");
        show(
            "  JoinSet",
            with_joinset(&backends, Duration::from_millis(500)).await,
        );
        show(
            "  Group  ",
            with_group(&backends, Duration::from_millis(500)).await,
        );
    }
}
