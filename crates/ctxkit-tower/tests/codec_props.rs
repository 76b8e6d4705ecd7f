//! Properties of the timeout codec and of the server layer over arbitrary input.

use std::time::Duration;

use ctxkit::Context;
use ctxkit_tower::codec::{
    decode_grpc_timeout, decode_timeout_ms, encode_grpc_timeout, encode_timeout_ms,
};
use ctxkit_tower::{MalformedTimeout, RequestContextExt, ServerLayer};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::ServiceExt;
use tower_layer::Layer;

/// The grammar, written independently of the decoder: 1–8 ASCII digits then one unit.
fn grammatical(v: &[u8]) -> bool {
    matches!(v.split_last(), Some((u, d))
        if b"HMSmun".contains(u) && (1..=8).contains(&d.len()) && d.iter().all(u8::is_ascii_digit))
}

fn unit_size(unit: u8) -> Duration {
    match unit {
        b'H' => Duration::from_secs(3600),
        b'M' => Duration::from_secs(60),
        b'S' => Duration::from_secs(1),
        b'm' => Duration::from_millis(1),
        b'u' => Duration::from_micros(1),
        _ => Duration::from_nanos(1),
    }
}

/// Durations from nanoseconds to far beyond what `grpc-timeout` can carry.
fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..1_000_000_000).prop_map(Duration::from_nanos),
        (0u64..u64::MAX).prop_map(Duration::from_nanos),
        (0u64..400_000_000_000u64, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..u64::MAX, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Bytes that look like timeouts as well as noise.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        "[0-9]{0,12}[HMSmunsx ]?".prop_map(String::into_bytes),
        "[0-9٠-٩１-９+\\-. ]{0,10}[HMSmunµ]?".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn decoding_never_panics_and_accepts_exactly_the_grammar(v in header_bytes()) {
        let decoded = decode_grpc_timeout(&v);
        prop_assert_eq!(decoded.is_ok(), grammatical(&v), "{:?}", String::from_utf8_lossy(&v));
        let ms = decode_timeout_ms(&v);
        let ms_ok = (1..=10).contains(&v.len()) && v.iter().all(u8::is_ascii_digit);
        prop_assert_eq!(ms.is_ok(), ms_ok);
    }

    #[test]
    fn grpc_round_trips_never_shorten(d in durations()) {
        let text = encode_grpc_timeout(d);
        prop_assert!(grammatical(text.as_bytes()), "{}", text);
        let back = decode_grpc_timeout(text.as_bytes()).unwrap();
        let max = Duration::from_secs(99_999_999 * 3600);
        if d <= max {
            prop_assert!(back >= d, "{:?} -> {} -> {:?}", d, text, back);
            // And rounds up by less than one unit of the chosen size.
            prop_assert!(back - d < unit_size(*text.as_bytes().last().unwrap()));
        } else {
            prop_assert_eq!(back, max);
        }
    }

    #[test]
    fn ms_round_trips_never_shorten(d in durations()) {
        let text = encode_timeout_ms(d);
        let back = decode_timeout_ms(text.as_bytes()).unwrap();
        if d <= Duration::from_millis(9_999_999_999) {
            prop_assert!(back >= d && back - d < Duration::from_millis(1));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the headers say, the layer never panics or fails: when it ignores malformed
    /// values it calls the handler; when it rejects them it calls the handler or answers 400
    /// with a message naming the header, in printable ASCII.
    #[test]
    fn the_server_layer_accepts_any_timeout_header(
        grpc in header_bytes(), ms in header_bytes(), connect in header_bytes()
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for policy in [MalformedTimeout::Ignore, MalformedTimeout::Reject] {
                let layer = ServerLayer::new(Context::background())
                    .connect_timeout_ms(true)
                    .timeout_ms_header("x-timeout-ms")
                    .malformed_grpc_timeout(policy)
                    .malformed_timeout_ms(policy)
                    .max_timeout(Duration::from_secs(3600));
                let svc = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
                    let left = req.context().remaining().unwrap();
                    Ok::<_, std::convert::Infallible>(http::Response::new(left.as_nanos().to_string()))
                }));
                let mut req = http::Request::new(());
                for (name, value) in [("grpc-timeout", &grpc), ("x-timeout-ms", &ms), ("connect-timeout-ms", &connect)] {
                    if let Ok(value) = http::HeaderValue::from_bytes(value) {
                        req.headers_mut().insert(name, value);
                    }
                }
                let res = svc.oneshot(req).await.unwrap();
                if res.status() == http::StatusCode::OK {
                    continue;
                }
                assert_eq!(policy, MalformedTimeout::Reject);
                assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let text = std::str::from_utf8(&body).unwrap();
                assert!(text.starts_with("malformed "), "{text}");
                assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text}");
            }
        });
    }
}
