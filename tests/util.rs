//! Helpers: run the binary, find the repo's files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn triage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.current_dir(root())
        .env_remove("RUST_LOG")
        .env("TRIAGE_THREADS", "2");
    c
}

/// Runs `triage args` with `stdin` as standard input.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = triage();
    c.args(args).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("triage runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn model_installed() -> PathBuf {
    let dir = root().join("models/multilingual-e5-small");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh before the tests",
        dir.display()
    );
    dir
}

pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    json_lines(&std::fs::read(path).unwrap())
}

/// The JSON Lines of a command's output (or a file's bytes), parsed.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
