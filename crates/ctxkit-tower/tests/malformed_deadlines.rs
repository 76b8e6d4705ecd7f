//! The policy for malformed deadline headers, with requests written by hand on a raw TCP
//! socket: by default a bad `grpc-timeout` is rejected (HTTP 400, or gRPC `INVALID_ARGUMENT`
//! for a gRPC request) and a bad millisecond header is ignored; each policy can be switched.

mod common;

use std::time::Duration;

use common::*;
use ctxkit::Context;
use ctxkit_tower::{MalformedTimeout, ServerLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `GET /ok` with the extra header lines `headers` (raw bytes) over HTTP/1.1 and returns
/// the whole response as text (non-UTF-8 bytes replaced).
async fn raw_request(server: &TestServer, headers: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut req = b"GET /ok HTTP/1.1\r\nhost: test\r\nconnection: close\r\n".to_vec();
    req.extend_from_slice(headers);
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req).await.unwrap();
    let mut res = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut res))
        .await
        .expect("the server answers and closes within 5 s")
        .unwrap();
    String::from_utf8_lossy(&res).into_owned()
}

fn status_line(res: &str) -> &str {
    res.lines().next().unwrap_or_default()
}

fn layer() -> ServerLayer {
    ServerLayer::new(Context::background()).timeout_ms_header("x-timeout-ms")
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_rejected_by_default() {
    let layer = layer();
    let stats = layer.stats();
    let (server, mut seen) = http_server(layer).await;

    // Plain HTTP: 400, the message names the header and the value.
    let res = raw_request(&server, b"grpc-timeout: 12x\r\n").await;
    assert_eq!(status_line(&res), "HTTP/1.1 400 Bad Request", "{res}");
    assert!(
        res.ends_with(
            "malformed grpc-timeout header \"12x\": timeout unit is not one of H M S m u n"
        ),
        "{res}"
    );

    // gRPC: a trailers-only INVALID_ARGUMENT, its message percent-encoded where needed.
    let res = raw_request(
        &server,
        b"content-type: application/grpc\r\ngrpc-timeout: 100%\r\n",
    )
    .await;
    assert_eq!(status_line(&res), "HTTP/1.1 200 OK", "{res}");
    assert!(res.contains("grpc-status: 3\r\n"), "{res}");
    assert!(
        res.contains("grpc-message: malformed grpc-timeout header \"100%25\": timeout unit is not one of H M S m u n\r\n"),
        "{res}"
    );

    // A long value with bytes outside ASCII: escaped, and cut to 40 bytes.
    let mut line = b"grpc-timeout: ".to_vec();
    line.extend_from_slice(b"\xff\"1");
    line.extend(std::iter::repeat_n(b'9', 100));
    line.extend_from_slice(b"\r\n");
    let res = raw_request(&server, &line).await;
    assert_eq!(status_line(&res), "HTTP/1.1 400 Bad Request", "{res}");
    let quoted = format!("\"\\xff\\\"1{}...\"", "9".repeat(37));
    assert!(res.contains(&quoted), "{quoted} in {res}");

    assert_eq!(stats.malformed_rejected(), 3);
    assert!(seen.try_recv().is_err(), "no handler ran");
}

#[tokio::test]
async fn a_malformed_milliseconds_header_is_ignored_by_default() {
    let layer = layer().max_timeout(Duration::from_secs(3));
    let stats = layer.stats();
    let (server, _seen) = http_server(layer).await;
    let res = raw_request(&server, b"x-timeout-ms: 12ms\r\n").await;
    assert_eq!(status_line(&res), "HTTP/1.1 200 OK", "{res}");
    assert!(res.ends_with("ok"), "{res}");
    assert_eq!(stats.malformed_ignored(), 1);
    assert_eq!(stats.malformed_rejected(), 0);
}

#[tokio::test]
async fn each_policy_can_be_switched() {
    let layer = layer()
        .malformed_grpc_timeout(MalformedTimeout::Ignore)
        .malformed_timeout_ms(MalformedTimeout::Reject);
    let stats = layer.stats();
    let (server, _seen) = http_server(layer).await;

    let res = raw_request(&server, b"grpc-timeout: 1x\r\n").await;
    assert_eq!(status_line(&res), "HTTP/1.1 200 OK", "{res}");
    assert!(res.ends_with("ok"), "{res}");

    let res = raw_request(&server, b"x-timeout-ms: -5\r\n").await;
    assert_eq!(status_line(&res), "HTTP/1.1 400 Bad Request", "{res}");
    assert!(
        res.ends_with("malformed x-timeout-ms header \"-5\": timeout value is not ASCII digits"),
        "{res}"
    );
    // A valid value still sets the deadline.
    let res = raw_request(&server, b"x-timeout-ms: 500\r\n").await;
    assert_eq!(status_line(&res), "HTTP/1.1 200 OK", "{res}");
    assert_eq!(
        (stats.malformed_ignored(), stats.malformed_rejected()),
        (1, 1)
    );
}
