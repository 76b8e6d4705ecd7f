//! Request-scoped values: typed `static` keys with `with_value`/`value`, and type-keyed
//! values with `with`/`get`.
//!
//! Run with `cargo run --example values`.

use ctxkit::{Context, Key};

/// Keys are told apart by the identity of the `static`, not by their name.
static REQUEST_ID: Key<String> = Key::new("request_id");
static USER: Key<&str> = Key::new("user");

/// A value keyed by its type.
#[derive(Debug)]
struct Budget {
    budget_ms: u64,
}

/// Library code receives the context as its first argument and reads what it needs.
fn handle(ctx: &Context, path: &str) {
    let id = ctx.value(&REQUEST_ID).map_or("-", String::as_str);
    let user = ctx.value(&USER).copied().unwrap_or("anonymous");
    let budget = ctx.get::<Budget>().map_or(0, |d| d.budget_ms);
    println!("[{id}] {user} GET {path} (budget {budget} ms)");
}

fn main() {
    let server = Context::background().with(Budget { budget_ms: 250 });

    let request = server
        .with_value(&REQUEST_ID, "7f3a".to_string())
        .with_value(&USER, "gopher");
    handle(&request, "/orders");

    // The nearest value wins; the parent is unchanged.
    let admin = request.with_value(&USER, "admin");
    handle(&admin, "/admin");
    handle(&request, "/orders/42");

    // A context without values.
    handle(&server, "/health");

    // Values survive cancellation and `without_cancel`.
    let (ctx, cancel) = request.with_cancel();
    cancel.cancel();
    let detached = ctx.without_cancel();
    println!(
        "cancelled: {}, detached done: {}",
        ctx.is_done(),
        detached.is_done()
    );
    handle(&detached, "/audit");

    // The context prints as the chain that built it.
    println!("{admin}");
}
