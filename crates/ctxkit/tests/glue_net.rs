//! `ctxkit::net`: blocking `std::net` calls under a context. Loopback only: every peer is a
//! listener on 127.0.0.1 that this test made, and that never answers.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::net::{connect, set_timeouts, ContextStream};
use ctxkit::{Context, Error};

mod common;
use common::LONG;

/// A listener that accepts (in the kernel's backlog) and never reads or writes.
fn silent_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn is_error(err: &std::io::Error, expected: Error) -> bool {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|e| *e == expected)
}

#[test]
fn a_read_times_out_at_the_deadline_as_timed_out() {
    let listener = silent_listener();
    // Connected first: the deadline is the read's, however long a slow machine (valgrind)
    // takes to connect.
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let start = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(50));
    let mut conn = ContextStream::new(&ctx, stream).unwrap();
    let err = conn.read(&mut [0; 64]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(is_error(&err, Error::DeadlineExceeded), "{err:?}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(took < LONG, "{took:?}");
}

#[test]
fn a_write_to_a_peer_that_never_reads_times_out_as_timed_out() {
    let listener = silent_listener();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap(); // see above
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
    let mut conn = ContextStream::new(&ctx, stream).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let err = loop {
        // The socket buffers fill up; then the write blocks until the deadline.
        if let Err(err) = conn.write_all(&chunk) {
            break err;
        }
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn a_done_context_fails_fast_without_touching_the_network() {
    let listener = silent_listener();
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let err = connect(&ctx, listener.local_addr().unwrap()).unwrap_err();
    assert!(is_error(&err, Error::Canceled));
    assert_ne!(err.kind(), ErrorKind::Interrupted);
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "no connection was made");
}

#[test]
fn an_expired_deadline_fails_fast_as_timed_out() {
    let listener = silent_listener();
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    let err = connect(&ctx, listener.local_addr().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(
        set_timeouts(&ctx, &stream).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    assert_eq!(stream.read_timeout().unwrap(), None, "nothing was changed");
}

#[test]
fn a_stream_fails_fast_once_its_context_is_done() {
    let listener = silent_listener();
    let (ctx, handle) = Context::background().with_cancel();
    let mut conn = ContextStream::connect(&ctx, listener.local_addr().unwrap()).unwrap();
    handle.cancel();
    let start = Instant::now();
    assert!(is_error(
        &conn.read(&mut [0; 8]).unwrap_err(),
        Error::Canceled
    ));
    assert!(is_error(&conn.write(b"x").unwrap_err(), Error::Canceled));
    assert!(is_error(&conn.flush().unwrap_err(), Error::Canceled));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_cancel_wakes_a_read_blocked_without_a_deadline() {
    let listener = silent_listener();
    let (ctx, handle) = Context::background().with_cancel();
    let mut conn = ContextStream::connect(&ctx, listener.local_addr().unwrap()).unwrap();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        handle.cancel();
    });
    let start = Instant::now();
    let err = conn.read(&mut [0; 8]).unwrap_err();
    assert!(is_error(&err, Error::Canceled), "{err:?}");
    assert!(start.elapsed() < LONG);
    canceller.join().unwrap();
}

#[test]
fn connect_within_the_time_left_succeeds_and_sets_nothing_on_the_stream() {
    let listener = silent_listener();
    let (ctx, _h) = Context::background().with_timeout(LONG);
    let stream = connect(&ctx, listener.local_addr().unwrap()).unwrap();
    assert_eq!(stream.peer_addr().unwrap(), listener.local_addr().unwrap());
}

#[test]
fn set_timeouts_applies_the_time_left_or_none() {
    let listener = silent_listener();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(5));
    set_timeouts(&ctx, &stream).unwrap();
    let read = stream.read_timeout().unwrap().unwrap();
    let write = stream.write_timeout().unwrap().unwrap();
    assert!(read <= Duration::from_secs(5) && read > Duration::from_secs(4));
    assert!(write <= Duration::from_secs(5) && write > Duration::from_secs(4));
    set_timeouts(&Context::background(), &stream).unwrap();
    assert_eq!(stream.read_timeout().unwrap(), None);
}

#[test]
fn data_that_arrives_in_time_is_read() {
    let listener = silent_listener();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        peer.write_all(b"hello").unwrap();
        let mut buf = [0; 5];
        peer.read_exact(&mut buf).unwrap();
        buf
    });
    let (ctx, _h) = Context::background().with_timeout(LONG);
    let mut conn = ContextStream::connect(&ctx, addr).unwrap();
    let mut buf = [0; 5];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    conn.write_all(b"world").unwrap();
    assert_eq!(&server.join().unwrap(), b"world");
    // The peer closed: end of stream is an ordinary 0 while the context is live.
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
}

#[test]
fn into_inner_unbinds_the_stream_from_the_context() {
    let listener = silent_listener();
    let (ctx, handle) = Context::background().with_cancel();
    let conn = ContextStream::connect(&ctx, listener.local_addr().unwrap()).unwrap();
    assert!(!conn.context().is_done());
    let stream = conn.into_inner();
    handle.cancel();
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0; 1];
    // Not shut down: nothing to read yet, rather than end of stream.
    assert_eq!(
        (&stream).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn the_stream_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ContextStream>();
}
