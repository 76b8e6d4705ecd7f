//! The checked-in code for `proto/demo.proto` is what the proto compiles to, with a pure-Rust
//! compiler (protox) and tonic's code generator: no system `protoc`. One file per supported
//! tonic major version: `proto/gen/ctxkit.demo.v1.rs` (tonic 0.14, tonic-prost-build) and
//! `proto/gen/tonic-0.13/ctxkit.demo.v1.rs` (tonic 0.13, tonic-build).
//!
//! Regenerate them with `CTXKIT_REGENERATE=1 cargo test -p ctxkit-tower --test proto_codegen`.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `generated` with the checked-in file `gen` (or writes it when regenerating).
fn compare(generated: &str, gen: &str) {
    let checked_in = root().join(gen);
    if std::env::var_os("CTXKIT_REGENERATE").is_some() {
        std::fs::create_dir_all(checked_in.parent().unwrap()).unwrap();
        std::fs::write(&checked_in, generated).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == generated,
        "{gen} is stale: rerun with CTXKIT_REGENERATE=1"
    );
}

#[test]
fn checked_in_code_matches_the_proto_tonic_0_14() {
    let fds = protox::compile(["demo.proto"], [root().join("proto")]).expect("the proto compiles");
    let out = tempdir("0.14");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("tonic-prost-build generates code");
    let generated = std::fs::read_to_string(out.join("ctxkit.demo.v1.rs")).unwrap();
    compare(&generated, "proto/gen/ctxkit.demo.v1.rs");
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn checked_in_code_matches_the_proto_tonic_0_13() {
    let fds =
        protox_0_7::compile(["demo.proto"], [root().join("proto")]).expect("the proto compiles");
    let out = tempdir("0.13");
    tonic_build_0_13::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)
        .expect("tonic-build generates code");
    let generated = std::fs::read_to_string(out.join("ctxkit.demo.v1.rs")).unwrap();
    compare(&generated, "proto/gen/tonic-0.13/ctxkit.demo.v1.rs");
    std::fs::remove_dir_all(out).ok();
}

fn tempdir(version: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ctxkit-proto-{}-{version}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
