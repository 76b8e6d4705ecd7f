//! The names the layers give request and call contexts: `METHOD /path` for HTTP, the method
//! path for gRPC.
//!
//! Names come from the network, so they may hold any bytes the `http` types let through and
//! be of any length. They are kept as given (whoever prints one escapes it: the live page
//! does, `Origin`'s Display quotes it) but cut to [`NAME_MAX`] bytes, so that a huge path
//! costs no more than a long one.

use http::{Method, Uri};

/// The longest name, in bytes, `…` included.
pub(crate) const NAME_MAX: usize = 256;

/// `GET /orders` (the path without the query) for HTTP, `/pkg.Service/Method` for gRPC.
pub(crate) fn request_name(method: &Method, uri: &Uri, grpc: bool) -> String {
    let path = uri.path();
    if grpc {
        let mut name = String::from(path);
        cap(&mut name);
        return name;
    }
    if path.is_empty() {
        // Authority-form (`CONNECT host:port`): the target is the authority.
        let mut name = format!("{method} {uri}");
        cap(&mut name);
        return name;
    }
    // Built in one allocation of the size it needs (a name per request: no `format!`).
    let method = method.as_str();
    let mut name = String::with_capacity(method.len() + 1 + path.len());
    name.push_str(method);
    name.push(' ');
    name.push_str(path);
    cap(&mut name);
    name
}

/// Cuts `name` to at most [`NAME_MAX`] bytes, on a character boundary, ending in `…`.
pub(crate) fn cap(name: &mut String) {
    if name.len() <= NAME_MAX {
        return;
    }
    let mut end = NAME_MAX - '…'.len_utf8();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_names_are_method_and_path_without_the_query() {
        let uri: Uri = "http://h/orders/7?x=1&y=%3C".parse().unwrap();
        assert_eq!(request_name(&Method::GET, &uri, false), "GET /orders/7");
        let uri: Uri = "/helloworld.Greeter/SayHello".parse().unwrap();
        assert_eq!(
            request_name(&Method::POST, &uri, true),
            "/helloworld.Greeter/SayHello"
        );
        let uri: Uri = "example.com:443".parse().unwrap();
        assert_eq!(
            request_name(&Method::CONNECT, &uri, false),
            "CONNECT example.com:443"
        );
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        for len in [0, 1, 255, 256, 257, 10_000] {
            for filler in ["a", "é", "😀"] {
                let mut name = filler.repeat(len);
                let before = name.clone();
                cap(&mut name);
                assert!(name.len() <= NAME_MAX, "{len} {filler}");
                if before.len() <= NAME_MAX {
                    assert_eq!(name, before);
                } else {
                    assert!(name.ends_with('…'));
                    assert!(before.starts_with(name.trim_end_matches('…')));
                    assert!(name.len() > NAME_MAX - 8, "cut no more than needed");
                }
            }
        }
    }
}
