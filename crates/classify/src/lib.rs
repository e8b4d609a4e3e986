//! Transformer text classification for triage, on candle (pure Rust, CPU).
//!
//! Loads any Hugging Face model directory of the BERT family (`config.json`, `tokenizer.json`,
//! `*.safetensors`) and labels text in one of three modes (see [`Mode`]): by similarity to label
//! descriptions (`prototypes`), with the checkpoint's own sequence-classification head
//! (`checkpoint`), or with a linear head trained on the team's examples (`head`). Long texts are
//! cut into overlapping windows; a label's score is its maximum over windows, and the
//! [`Classification::evidence`] is the span of the best window.
//!
//! A service links only this crate:
//!
//! ```no_run
//! use triage_classify::{ClassifierBuilder, LabelSpec, LabelsConfig};
//!
//! let mut labels = LabelsConfig::default();
//! labels.labels.push(("spam".into(), LabelSpec { description: Some("Scams and advertising.".into()), ..Default::default() }));
//! labels.labels.push(("other".into(), LabelSpec { description: Some("Everyday conversation.".into()), ..Default::default() }));
//! let classifier = ClassifierBuilder::new("models/multilingual-e5-small").prefix("query: ").labels(labels).build()?;
//! for label in classifier.classify("Cliquez ici pour gagner un iPhone gratuit")?.labels() {
//!     println!("{}: {:.3} flagged={}", label.label(), label.score(), label.flagged());
//! }
//! # Ok::<(), triage_classify::Error>(())
//! ```
#![deny(missing_docs)]

pub mod bert;
pub mod checksum;
mod classifier;
pub mod config;
mod error;
pub mod labels;
pub mod tokenize;

pub use classifier::{
    Classification, Classifier, ClassifierBuilder, LabelScore, LinearHead, ModelOptions, Span,
};
pub use error::{Error, Result};
pub use labels::{Activation, HeadMeta, LabelSpec, LabelsConfig, Mode};
pub use tokenize::{Prepared, TextTokenizer, Window, WindowOptions};
