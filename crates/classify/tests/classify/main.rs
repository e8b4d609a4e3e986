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

/// The default model directory; the tests that need it fail (never skip) when it is missing.
pub fn e5_dir() -> PathBuf {
    let dir = std::env::var_os("TRIAGE_E5_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/multilingual-e5-small"));
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `scripts/setup.sh` (it imports the default model) before the tests",
        dir.display()
    );
    dir
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}
