//! Deadline budgets in a chain A → B → C over gRPC on loopback: B's client keeps a headroom,
//! so C is told less time than B has; C's minimum budget turns away a call that cannot
//! finish, at once and without running its handler, so B learns of it with time to spare.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ctxkit::Context;
use ctxkit_tower::{ClientLayer, RequestContextExt, ServerLayer};

const HEADROOM: Duration = Duration::from_millis(100);

/// A (the test) → B (waits `b_delay`, then calls C with a headroom) → C (min budget 200 ms).
async fn chain(
    b_delay: Duration,
) -> (
    GrpcClient,
    ServerLayer,
    TestServer,
    TestServer,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
) {
    let c_layer = ServerLayer::new(Context::background()).min_budget(Duration::from_millis(200));
    let (c, c_seen) = grpc_server(c_layer.clone(), Duration::ZERO, None).await;
    let to_c = grpc_client_with(c.addr, ClientLayer::new().headroom(HEADROOM)).await;
    let (b, b_seen) =
        grpc_server(ServerLayer::new(Context::background()), b_delay, Some(to_c)).await;
    let to_b = grpc_client(b.addr).await;
    (to_b, c_layer, b, c, b_seen, c_seen)
}

#[tokio::test]
async fn headroom_shortens_what_the_next_hop_is_told() {
    let (mut to_b, c_layer, _b, _c, mut b_seen, mut c_seen) = chain(Duration::ZERO).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(2));
    let req = tonic::Request::new(common::pb::WorkRequest { millis: 1 }).with_context(ctx);
    let reply = to_b.work(req).await.unwrap();
    assert!(reply.get_ref().completed);
    let at_b = next_seen(&mut b_seen).await.remaining.unwrap();
    let at_c = next_seen(&mut c_seen).await.remaining.unwrap();
    // C is told B's time left less the headroom (give or take the hop).
    assert!(
        at_c + HEADROOM <= at_b && at_c + HEADROOM + Duration::from_millis(50) >= at_b,
        "B {at_b:?}, C {at_c:?}"
    );
    assert_eq!(c_layer.stats().short_budget(), 0);
}

#[tokio::test]
async fn a_short_budget_is_answered_at_once_without_the_handler() {
    // A gives 400 ms; B spends 150 ms, then tells C about 400 - 150 - 100 = 150 ms < 200 ms.
    let (mut to_b, c_layer, _b, _c, mut b_seen, mut c_seen) =
        chain(Duration::from_millis(150)).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(400));
    let start = Instant::now();
    let req = tonic::Request::new(common::pb::WorkRequest { millis: 1 }).with_context(ctx);
    let status = to_b.work(req).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    // B learnt of it just after its delay: with about 250 ms of A's deadline still to go.
    assert!(took < Duration::from_millis(300), "{took:?}");
    let _ = next_seen(&mut b_seen).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(c_seen.try_recv().is_err(), "C's handler did not run");
    assert_eq!(c_layer.stats().short_budget(), 1);
}

#[tokio::test]
async fn no_more_than_the_headroom_left_fails_at_once_without_sending() {
    // A gives 200 ms; B spends 120 ms, leaving 80 ms: no more than the headroom of 100 ms.
    let (mut to_b, c_layer, _b, c, mut b_seen, mut c_seen) =
        chain(Duration::from_millis(120)).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let req = tonic::Request::new(common::pb::WorkRequest { millis: 1 }).with_context(ctx);
    let status = to_b.work(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("headroom"),
        "the status says why: {status:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(190));
    let _ = next_seen(&mut b_seen).await;
    assert!(c_seen.try_recv().is_err(), "nothing reached C");
    assert_eq!(c_layer.stats().short_budget(), 0, "not even its layer");
    let _ = c;
}
