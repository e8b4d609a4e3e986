//! Integration tests of the classifier crate (one test binary, modules per concern).

mod backends;
mod checkpoint;
mod cuda;
mod e5;
mod ort;

use std::path::PathBuf;

/// The workspace root: `TRIAGE_ROOT`, for a test binary run from another checkout (the GPU
/// machine's copy), or where it was built.
pub fn root() -> PathBuf {
    std::env::var_os("TRIAGE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A builder for the tiny test checkpoint `name` (`tests/data/models/<name>`) in checkpoint mode.
pub fn tiny_checkpoint(name: &str) -> triage_classify::ClassifierBuilder {
    triage_classify::ClassifierBuilder::new(root().join("tests/data/models").join(name)).labels(
        triage_classify::LabelsConfig {
            mode: triage_classify::Mode::Checkpoint,
            ..Default::default()
        },
    )
}

/// The message of the error that building `builder` must give (`what`: the refusal expected).
pub fn refusal(builder: triage_classify::ClassifierBuilder, what: &str) -> String {
    match builder.build() {
        Ok(_) => panic!("built, where {what} was expected"),
        Err(e) => e.to_string(),
    }
}

/// Says why a test does not run, and returns; under `TRIAGE_TEST_STRICT` (set by
/// `scripts/test.sh`, which installs everything) no test may skip, and this fails it.
pub fn skip(why: &str) {
    if std::env::var_os("TRIAGE_TEST_STRICT").is_some() {
        panic!("{why} (TRIAGE_TEST_STRICT: no test may skip)");
    }
    eprintln!("skipped: {why}");
}

fn e5_path() -> PathBuf {
    std::env::var_os("TRIAGE_E5_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/multilingual-e5-small"))
}

/// Whether the default model is installed; if not, the test skips and says so.
pub fn have_e5() -> bool {
    let dir = e5_path();
    let there = dir.join("model.safetensors").exists();
    if !there {
        skip(&format!(
            "{} is missing: `scripts/setup.sh` imports the default model",
            dir.display()
        ));
    }
    there
}

/// The default model directory (a test checks [`have_e5`] first).
pub fn e5_dir() -> PathBuf {
    e5_path()
}

/// ONNX Runtime's library (`ORT_DYLIB_PATH`), for the builders of the `ort` backend.
pub fn ort_path() -> Option<PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
}

/// Whether ONNX Runtime's library is there; if not, the test skips and says so.
pub fn have_ort() -> bool {
    match ort_path() {
        Some(p) if p.is_file() => true,
        Some(p) => panic!("ORT_DYLIB_PATH={}: no such file", p.display()),
        None => {
            skip("ORT_DYLIB_PATH is not set: `eval \"$(scripts/setup_onnxruntime.sh)\"` installs ONNX Runtime");
            false
        }
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}
