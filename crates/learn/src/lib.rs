//! Teach and measure a triage taxonomy: what `triage train`, `eval` and `calibrate` do, for
//! any program that links the classifier.
//!
//! - [`examples`]: the JSON Lines examples and gold records (`text`, `label` or `labels`,
//!   optional `lang`, `counter_to`, `kind`).
//! - [`train`]: fitting a linear head on embeddings (softmax or one-vs-rest sigmoids, L2,
//!   class weights, early stopping, a fixed seed); [`fit`] runs it on a workspace's examples
//!   and writes the head ([`triage_classify::LinearHead::write`]).
//! - [`eval`]: per label and language P/R/F1, thresholds, hard negatives, ordinary text's
//!   flag rates, a confusion matrix, and pictures ([`plots`]); [`metrics`] the arithmetic.
//! - [`calibrate`]: per-language thresholds from a background sample of ordinary text.
//! - [`embed_cache`]: window embeddings cached on disk by text hash, so training and
//!   evaluating again are fast.
#![deny(missing_docs)]

pub mod calibrate;
pub mod embed_cache;
pub mod eval;
pub mod examples;
pub mod fit;
pub mod metrics;
pub mod plots;
pub mod train;
