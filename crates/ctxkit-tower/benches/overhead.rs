//! What the layers cost: requests per second on loopback, with and without them.
//!
//! `cargo bench -p ctxkit-tower --bench overhead` runs criterion benchmarks (the layers alone
//! in process; then loopback, where each iteration is a batch of concurrent requests: see
//! the throughput lines), then an A/B run that alternates the servers in short rounds and
//! prints the overhead in percent — the number the layer is held to (under 3%): as requests
//! per second (wall time, the median over rounds) and as CPU time per request (which the
//! load of other processes on a shared machine does not distort).
//!
//! Knobs: `CTXKIT_AB_ROUNDS` (default 200); `CTXKIT_BENCH_NO_TIMEOUT=1` sends no
//! `grpc-timeout`, which separates the cost of the core's deadline timer from the layer's own;
//! `CTXKIT_BENCH_PROFILE=CASE:BATCHES` runs one case alone, for a profiler (see [`profile`]).
//!
//! - `plain`: an axum handler, no layer; the request carries `grpc-timeout` anyway.
//! - `server_layer`: the same behind [`ServerLayer`] (which parses it and makes a context with
//!   a deadline per request).
//! - `server_and_client_layers`: and the client sends through [`ClientLayer`] with a context
//!   whose deadline it writes into each request.
//! - (A/B only) the same with [`ClientLayer::call_contexts`] off: calls get no context of
//!   their own.
//! - (A/B only) no layer on either side, but each request carries its context
//!   ([`RequestContextExt::with_context`]): what the request's extension map (three
//!   allocations, made by `http`) costs by itself, a part of the layered rows' overhead that
//!   no layer can avoid.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};
use ctxkit::Context;
use ctxkit_tower::{ClientLayer, RequestContextExt, ServerLayer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::{Service, ServiceExt};
use tower_layer::Layer;

/// Requests in flight at once, and per batch.
const CONCURRENCY: usize = 16;

/// How the client sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// Without [`ClientLayer`].
    Plain,
    /// Through [`ClientLayer`].
    Layered,
    /// Through [`ClientLayer`] with [`ClientLayer::call_contexts`] off.
    NoCallContexts,
    /// Through [`ClientLayer`], the context given to the service
    /// ([`ClientService::with_context`](ctxkit_tower::ClientService::with_context)) rather
    /// than to each request.
    LayeredBound,
    /// Without [`ClientLayer`], but each request carries its context
    /// ([`RequestContextExt::with_context`]) to a plain server: what the request's extension
    /// map costs by itself.
    PlainWithContext,
}
const BATCH: usize = 256;

fn app() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))
}

/// Serves `svc` on a loopback port, on `rt`.
fn serve<S, B>(rt: &tokio::runtime::Runtime, svc: S) -> SocketAddr
where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc.clone()))
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    addr
}

/// Serves the app behind the server layer.
fn serve_layered(rt: &tokio::runtime::Runtime) -> SocketAddr {
    serve(rt, ServerLayer::new(Context::background()).layer(app()))
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn request(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::get(format!("http://{addr}/"))
        .body(Full::default())
        .unwrap();
    if std::env::var_os("CTXKIT_BENCH_NO_TIMEOUT").is_none() {
        req.headers_mut()
            .insert("grpc-timeout", "10S".parse().unwrap());
    }
    req
}

/// Sends `BATCH` requests, `CONCURRENCY` at a time, and reads every body. Both paths clone
/// the client per request (a tower service is called through a clone).
async fn batch(client: &HttpClient, addr: SocketAddr, sender: Sender) {
    use futures_util::StreamExt;
    let ctx = (sender != Sender::Plain)
        .then(|| Context::background().with_timeout(Duration::from_secs(10)));
    let layer = ClientLayer::new().call_contexts(sender != Sender::NoCallContexts);
    let layered = layer.layer(client.clone());
    futures_util::stream::iter(0..BATCH)
        .for_each_concurrent(CONCURRENCY, |_| {
            let ctx = ctx.as_ref().map(|(c, _)| c.clone());
            let (client, layered) = (client.clone(), layered.clone());
            async move {
                let body = match ctx {
                    Some(ctx) if sender == Sender::PlainWithContext => {
                        let res = client
                            .oneshot(request(addr).with_context(ctx))
                            .await
                            .unwrap();
                        res.into_body().collect().await.unwrap().to_bytes()
                    }
                    Some(ctx) if sender == Sender::LayeredBound => {
                        let res = layered
                            .with_context(ctx)
                            .oneshot(request(addr))
                            .await
                            .unwrap();
                        res.into_body().collect().await.unwrap().to_bytes()
                    }
                    Some(ctx) => {
                        let res = layered
                            .oneshot(request(addr).with_context(ctx))
                            .await
                            .unwrap();
                        res.into_body().collect().await.unwrap().to_bytes()
                    }
                    None => {
                        let res = client.oneshot(request(addr)).await.unwrap();
                        res.into_body().collect().await.unwrap().to_bytes()
                    }
                };
                assert_eq!(body, "ok");
            }
        })
        .await;
}

struct Setup {
    server_rt: tokio::runtime::Runtime,
    client_rt: tokio::runtime::Runtime,
    plain: SocketAddr,
    layered: SocketAddr,
    client: HttpClient,
}

fn setup() -> Setup {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain = serve(&server_rt, app());
    let layered = serve_layered(&server_rt);
    let client = {
        let _guard = client_rt.enter();
        Client::builder(TokioExecutor::new()).build_http()
    };
    Setup {
        server_rt,
        client_rt,
        plain,
        layered,
        client,
    }
}

fn requests_per_second(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("loopback");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let cases = [
        ("plain", s.plain, Sender::Plain),
        ("server_layer", s.layered, Sender::Plain),
        ("server_and_client_layers", s.layered, Sender::Layered),
    ];
    for (name, addr, sender) in cases {
        group.bench_function(name, |b| {
            b.iter(|| s.client_rt.block_on(batch(&s.client, addr, sender)))
        });
    }
    group.finish();
    drop(s.server_rt);
}

/// Alternates plain and layered rounds, so both see the same machine load, and prints the
/// median over rounds of each layered round's cost relative to the plain round next to it:
/// the overhead in percent of requests per second. Medians shrug off the load spikes of a
/// shared machine.
fn ab_overhead() {
    let s = setup();
    let rounds: usize = std::env::var("CTXKIT_AB_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let cases = [
        (s.plain, Sender::Plain),
        (s.layered, Sender::Plain),
        (s.layered, Sender::Layered),
        (s.layered, Sender::NoCallContexts),
        (s.plain, Sender::PlainWithContext),
        (s.layered, Sender::LayeredBound),
    ];
    for _ in 0..5 {
        s.client_rt
            .block_on(batch(&s.client, s.plain, Sender::Plain)); // warm up
    }
    const CASES: usize = 6;
    let mut overheads: [Vec<f64>; CASES - 1] = Default::default();
    let mut total = [Duration::ZERO; CASES];
    let mut cpu = [Duration::ZERO; CASES];
    for round in 0..rounds {
        let mut time = [Duration::ZERO; CASES];
        // Rotate the order, so no case always runs first.
        for k in 0..CASES {
            let i = (round + k) % CASES;
            let (addr, sender) = cases[i];
            let (start, start_cpu) = (Instant::now(), process_cpu_time());
            s.client_rt.block_on(batch(&s.client, addr, sender));
            time[i] = start.elapsed();
            total[i] += time[i];
            cpu[i] += process_cpu_time().saturating_sub(start_cpu);
        }
        for (o, t) in overheads.iter_mut().zip(&time[1..]) {
            // Requests per second lost: 1 - plain_time / layered_time.
            o.push((1.0 - time[0].as_secs_f64() / t.as_secs_f64()) * 100.0);
        }
    }
    let n = (rounds * BATCH) as f64;
    let rps = |t: Duration| n / t.as_secs_f64();
    let cpu_us = |t: Duration| t.as_secs_f64() * 1e6 / n;
    println!("\nA/B, {rounds} rounds of {BATCH} requests each, {CONCURRENCY} in flight:");
    println!(
"  plain                         {:>8.0} req/s                       {:>6.2} µs CPU/request",
        rps(total[0]),
        cpu_us(cpu[0])
    );
    let names = [
        "server layer",
        "server + client layers",
        "  the same, no call contexts",
        "no layer, context in request",
        "both layers, context on service",
    ];
    for (i, (name, mut o)) in names.into_iter().zip(overheads).enumerate() {
        o.sort_by(f64::total_cmp);
        let median = o[o.len() / 2];
        let extra = (cpu[i + 1].as_secs_f64() / cpu[0].as_secs_f64() - 1.0) * 100.0;
        println!(
            "  {name:<29} {:>8.0} req/s  (median {median:+.2}%)   {:>6.2} µs CPU/request ({extra:+.2}%)",
            rps(total[i + 1]),
            cpu_us(cpu[i + 1])
        );
    }
}

/// CPU time used by this process (client and server threads) so far: unlike wall time, other
/// processes on the machine do not inflate it.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The layer alone, in process: what one request costs it, without any I/O.
fn layer_alone(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handler = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let mut group = c.benchmark_group("in_process");
    let req = || {
        let mut req = http::Request::new(());
        req.headers_mut()
            .insert("grpc-timeout", "10S".parse().unwrap());
        req
    };
    group.bench_function("handler", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = handler.oneshot(req()).await.unwrap();
                res.into_body().collect().await.unwrap()
            })
        })
    });
    let client = ClientLayer::new().layer(handler);
    // One context for the whole benchmark: its deadline must outlast criterion's warm-up and
    // samples (a 10 s one ran out during them, and the calls then failed fast, as they should).
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(3600));
    group.bench_function("client_layer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = client
                    .clone()
                    .oneshot(req().with_context(ctx.clone()))
                    .await
                    .unwrap();
                res.into_body().collect().await.unwrap()
            })
        })
    });
    let layered = ServerLayer::new(Context::background()).layer(handler);
    group.bench_function("server_layer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = layered.clone().oneshot(req()).await.unwrap();
                res.into_body().collect().await.unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, layer_alone, requests_per_second);

/// `CTXKIT_BENCH_PROFILE=CASE:BATCHES`: sends only `BATCHES` batches of one case (`plain`,
/// `server`, `layered`, `no_call_contexts` or `plain_with_context`) and exits, for a profiler (`perf record`,
/// `valgrind --tool=callgrind`): the difference between two cases' counts, divided by the
/// requests sent, is what the layers cost per request.
fn profile(spec: &str) {
    let (case, batches) = spec
        .split_once(':')
        .expect("CTXKIT_BENCH_PROFILE=CASE:BATCHES");
    let batches: usize = batches.parse().expect("BATCHES: a number");
    let s = setup();
    let (addr, sender) = match case {
        "plain" => (s.plain, Sender::Plain),
        "server" => (s.layered, Sender::Plain),
        "layered" => (s.layered, Sender::Layered),
        "no_call_contexts" => (s.layered, Sender::NoCallContexts),
        "plain_with_context" => (s.plain, Sender::PlainWithContext),
        "layered_bound" => (s.layered, Sender::LayeredBound),
        other => panic!(
            "CASE: plain, server, layered, no_call_contexts, plain_with_context or layered_bound, not {other}"
        ),
    };
    for _ in 0..batches {
        s.client_rt.block_on(batch(&s.client, addr, sender));
    }
    println!("{case}: {} requests", batches * BATCH);
}

fn main() {
    if let Some(spec) = std::env::var_os("CTXKIT_BENCH_PROFILE") {
        return profile(spec.to_str().expect("CTXKIT_BENCH_PROFILE: UTF-8"));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    ab_overhead();
}
