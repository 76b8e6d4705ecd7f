//! The demo server as a child process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The demo binary, built by `cargo test` with the other examples (or built here).
pub fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("demo_server");
    // Built every time (nothing to do when it is up to date): a binary left by an older
    // build must not stand in for the current source.
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "ctxkit-tower", "--example", "demo_server"])
        .status()
        .unwrap();
    assert!(status.success());
    bin
}

pub struct Demo {
    pub child: Child,
    pub addr: String,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    pub fn start() -> Demo {
        Demo::start_with(&[])
    }

    /// The demo server with these arguments after `--addr 127.0.0.1:0`.
    pub fn start_with(args: &[&str]) -> Demo {
        let mut child = Command::new(demo_binary())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_owned();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || forward(stdout, tx));
        Demo { child, addr, lines }
    }

    /// The next JSON line.
    pub fn next_line(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(5))
            .expect("a JSON line within 5 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

fn forward(stdout: BufReader<ChildStdout>, tx: mpsc::Sender<String>) {
    for line in stdout.lines() {
        let Ok(line) = line else { return };
        if tx.send(line).is_err() {
            return;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
