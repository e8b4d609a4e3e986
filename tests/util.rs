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

/// Says why a test does not run; under `TRIAGE_TEST_STRICT` (set by `scripts/test.sh`, which
/// installs everything first) no test may skip, and this fails it.
pub fn skip(why: &str) {
    if std::env::var_os("TRIAGE_TEST_STRICT").is_some() {
        panic!("{why} (TRIAGE_TEST_STRICT: no test may skip)");
    }
    eprintln!("skipped: {why}");
}

/// The default model's directory when it and the starter head that `workspace.toml` labels
/// with are installed (`scripts/setup.sh`); `None`, after saying so, when they are not.
pub fn model_installed() -> Option<PathBuf> {
    let dir = root().join("models/multilingual-e5-small");
    for need in ["model.safetensors", "heads/starter/head.json"] {
        if !dir.join(need).exists() {
            skip(&format!(
                "{} is missing: scripts/setup.sh installs it",
                dir.join(need).display()
            ));
            return None;
        }
    }
    Some(dir)
}

/// Whether ONNX Runtime's library is there (`ORT_DYLIB_PATH`); if not, says so.
pub fn ort_installed() -> bool {
    let there = std::env::var_os("ORT_DYLIB_PATH").is_some();
    if !there {
        skip("ORT_DYLIB_PATH is not set: `eval \"$(scripts/setup_onnxruntime.sh)\"` installs ONNX Runtime");
    }
    there
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

/// `dir/w.toml`: a configuration that labels with the checkpoint head of the model in `model`
/// (one of the tiny test checkpoints, or a copy of one).
pub fn checkpoint_config(dir: &Path, model: &Path) -> PathBuf {
    let p = dir.join("w.toml");
    std::fs::write(
        &p,
        format!(
            "[model]\nname = {:?}\n[labels]\nmode = \"checkpoint\"\n",
            model.to_str().unwrap()
        ),
    )
    .unwrap();
    p
}

/// The string field `key` of every element of the JSON array `array` (a manifest's file roles,
/// its steps' commands).
pub fn field_of_each<'a>(array: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap())
        .collect()
}

/// JSON Lines of `{"id": "r1", "text": ...}`, `r2`, ... for `texts`.
pub fn dump_of(texts: &[&str]) -> String {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": format!("r{}", i + 1), "text": t}).to_string() + "\n"
        })
        .collect()
}
