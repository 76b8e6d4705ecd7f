//! A grpc-go server behind `ClientLayer`: a call that times out ends, in the Go handler, as
//! `context.DeadlineExceeded` (the server's own deadline fired), not `context.Canceled` (a
//! reset that beat it), while the caller sees `DEADLINE_EXCEEDED` at its deadline.
//!
//! Needs Go and grpc-go (Debian: `apt-get install golang-go golang-google-grpc-dev`); skipped
//! with a message when they are missing, unless `CTXKIT_GRPCGO_REQUIRED=1` (`.ci/run`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pb::worker_client::WorkerClient;
use common::pb::WorkRequest;
use ctxkit::Context;
use ctxkit_tower::{ClientLayer, RequestContextExt};
use tower_layer::Layer;

/// Where Debian's golang-google-grpc-dev puts grpc-go.
const GOPATH: &str = "/usr/share/gocode";

/// The Go server, built into the target directory; `None` (with the reason) when Go or
/// grpc-go is missing.
fn go_server() -> Result<PathBuf, String> {
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return Err("no `go` on the PATH".into());
    }
    if !Path::new(GOPATH)
        .join("src/google.golang.org/grpc")
        .is_dir()
    {
        return Err(format!("no grpc-go under {GOPATH}"));
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grpcgo");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("server");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpcgo/server.go");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("cache"))
        .env("GOFLAGS", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(bin)
}

struct GoServer {
    child: Child,
    addr: String,
    /// One line per handler that ended: `deadline_exceeded` or `canceled`.
    lines: mpsc::Receiver<String>,
}

impl GoServer {
    fn start(bin: &Path) -> GoServer {
        let mut child = Command::new(bin).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_owned();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        GoServer { child, addr, lines }
    }

    /// How the next `n` handlers ended: (deadline exceeded, canceled).
    fn endings(&self, n: usize) -> (usize, usize) {
        let (mut deadline, mut canceled) = (0, 0);
        for _ in 0..n {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(5))
                .expect("each handler reports within 5 s");
            match line.as_str() {
                "deadline_exceeded" => deadline += 1,
                "canceled" => canceled += 1,
                other => panic!("unexpected line {other:?}"),
            }
        }
        (deadline, canceled)
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CALLS: usize = 50;
const AT_ONCE: usize = 10;
const DEADLINE: Duration = Duration::from_millis(150);

/// Makes `CALLS` calls that time out, `AT_ONCE` at a time; checks what the caller sees, and
/// returns how the Go handlers ended.
async fn timed_out_calls(server: &GoServer, layer: ClientLayer) -> (usize, usize) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = WorkerClient::new(layer.layer(channel));
    for _ in 0..CALLS / AT_ONCE {
        let calls: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    let (ctx, _h) = Context::background().with_timeout(DEADLINE);
                    let req = tonic::Request::new(WorkRequest { millis: 0 }).with_context(ctx);
                    let status = client.work(req).await.unwrap_err();
                    (status, start.elapsed())
                })
            })
            .collect();
        for call in calls {
            let (status, took) = call.await.unwrap();
            // What the caller sees: DEADLINE_EXCEEDED, at the deadline.
            assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
            // The origin's line, the err when the call failed at the deadline a moment
            // before the context's timer fired, or the server's answer when its deadline
            // fired first (a busy client polls late).
            let message = status.message();
            assert!(
                message.starts_with("deadline exceeded: set at ")
                    || message == "context deadline exceeded"
                    || message == "handler: deadline exceeded",
                "{status:?}"
            );
            assert!(
                took >= DEADLINE && took < DEADLINE + Duration::from_millis(100),
                "{took:?}"
            );
        }
    }
    server.endings(CALLS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_go_handler_sees_its_deadline_not_a_cancel() {
    let bin = match go_server() {
        Ok(bin) => bin,
        Err(why) if std::env::var_os("CTXKIT_GRPCGO_REQUIRED").is_none() => {
            eprintln!("skipping the grpc-go test: {why} (apt-get install golang-go golang-google-grpc-dev)");
            return;
        }
        Err(why) => panic!("CTXKIT_GRPCGO_REQUIRED is set, but {why}"),
    };
    let server = GoServer::start(&bin);

    // With the reset at the deadline itself, for comparison (not asserted: a race).
    let (deadline, canceled) =
        timed_out_calls(&server, ClientLayer::new().deadline_slack(Duration::ZERO)).await;
    eprintln!("reset at the deadline: {deadline} DeadlineExceeded, {canceled} Canceled of {CALLS}");

    // With the default slack: at least 45 of 50.
    let (deadline, canceled) = timed_out_calls(&server, ClientLayer::new()).await;
    eprintln!(
        "reset 20 ms after it (default): {deadline} DeadlineExceeded, {canceled} Canceled of {CALLS}"
    );
    assert!(
        deadline >= 45,
        "only {deadline} of {CALLS} Go handlers saw DeadlineExceeded"
    );
}
