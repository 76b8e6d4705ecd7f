//! The checked-in code for `proto/demo.proto` (`proto/gen/ctxkit.demo.v1.rs`) is what the
//! proto compiles to, with a pure-Rust compiler (protox) and tonic-build: no system `protoc`.
//!
//! Regenerate it with `CTXKIT_REGENERATE=1 cargo test -p ctxkit-tower --test proto_codegen`.

use std::path::Path;

#[test]
fn checked_in_code_matches_the_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["demo.proto"], [root.join("proto")]).expect("the proto compiles");
    let out = tempdir();
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("tonic-build generates code");
    let generated = std::fs::read_to_string(out.join("ctxkit.demo.v1.rs")).unwrap();
    let checked_in = root.join("proto/gen/ctxkit.demo.v1.rs");
    if std::env::var_os("CTXKIT_REGENERATE").is_some() {
        std::fs::create_dir_all(checked_in.parent().unwrap()).unwrap();
        std::fs::write(&checked_in, &generated).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == generated,
        "proto/gen/ctxkit.demo.v1.rs is stale: rerun with CTXKIT_REGENERATE=1"
    );
    std::fs::remove_dir_all(out).ok();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ctxkit-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
