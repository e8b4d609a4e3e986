//! The public classifier: a builder ([`ClassifierBuilder`], `builder.rs`) that loads a model
//! directory and yields an immutable, `Send + Sync` [`Classifier`]; how windows are batched
//! through the encoder and pooled (`windows.rs`); how their states become label scores and a
//! text's scores become flags (`scoring.rs`).

mod builder;
mod scoring;
mod windows;

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, IndexOp, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::Encoder;
use crate::config::PoolingConfig;
use crate::error::{Error, Result};
use crate::model::InputsOf;
use crate::tokenize::{Prepared, TextTokenizer};

pub use builder::ClassifierBuilder;
use scoring::{LabelInfo, Scorer};
pub use windows::BUCKET;
use windows::{by_text, every_window};

struct Inner {
    encoder: Box<dyn Encoder>,
    /// Large passes in turn, pooled at once (a GPU's way; see `run_items`).
    gpu_passes: bool,
    /// Which int8 windows are scored again in f32 (`refine_margin`).
    refine: Option<crate::Refine>,
    /// With `refine_margin = "auto"`: each label's bound of the int8 error, in logits.
    refine_bounds: Vec<f32>,
    hidden_size: usize,
    inputs_of: InputsOf,
    tokenizer: TextTokenizer,
    pooling: PoolingConfig,
    scorer: Scorer,
    labels: Vec<LabelInfo>,
    multi_label: bool,
    model_id: String,
    weights_sha256: String,
    dir: PathBuf,
    engine: Engine,
}

/// What runs a classifier's encoder, on which CPU: what a run records beside its results
/// (`triage label`'s manifest, `triage serve`'s `/info`).
#[derive(Debug, Clone, Serialize)]
pub struct Engine {
    /// `candle`, `tch` or `ort`.
    pub backend: crate::Backend,
    /// `f32`, `bf16` or `int8`.
    pub dtype: crate::Precision,
    /// `cpu`, `cuda:N`.
    pub device: String,
    /// int8 only: the kernels its products run (`u8s8`, `u8u8`) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_kernels: Option<crate::Int8Kernels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why those kernels (chosen for the CPU, or asked for).
    pub int8_kernels_why: Option<&'static str>,
    /// The CPU's instructions that choose kernels ([`crate::cpu_features`]).
    pub cpu: Vec<&'static str>,
}

/// A loaded model with its labels: immutable, cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

/// A character span of the input text, `start..end` in chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
}

/// One label's score for one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    label: String,
    score: f32,
    flagged: bool,
}

impl LabelScore {
    /// The label's name.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// The score, within 0 and 1: the maximum over the text's windows.
    pub fn score(&self) -> f32 {
        self.score
    }
    /// Whether the score reaches the label's threshold (and, single-label, the label is the top).
    pub fn flagged(&self) -> bool {
        self.flagged
    }
}

/// The labels of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    labels: Vec<LabelScore>,
    top: usize,
    evidence: Span,
    windows: usize,
    chars: usize,
    tokens: usize,
}

impl Classification {
    /// Every label, in the configured order.
    pub fn labels(&self) -> &[LabelScore] {
        &self.labels
    }
    /// The highest-scoring label if it is flagged; `None` when the text belongs to none of the
    /// labels (no label reaches its threshold).
    pub fn top(&self) -> Option<&LabelScore> {
        self.best().filter(|l| l.flagged)
    }
    /// The highest-scoring label, flagged or not.
    pub fn best(&self) -> Option<&LabelScore> {
        self.labels.get(self.top)
    }
    /// The span of the window where the highest-scoring label scored highest.
    pub fn evidence(&self) -> Span {
        self.evidence
    }
    /// How many windows the text was cut into.
    pub fn windows(&self) -> usize {
        self.windows
    }
    /// Length of the text in characters.
    pub fn chars(&self) -> usize {
        self.chars
    }
    /// Tokens of the text (without specials and prefix).
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("model", &self.inner.model_id)
            .field("labels", &self.label_names())
            .finish()
    }
}

impl Classifier {
    /// `<name>@sha256:<checksum of the weights>`.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }
    /// SHA-256 of the weights.
    pub fn weights_sha256(&self) -> &str {
        &self.inner.weights_sha256
    }
    /// The model directory.
    pub fn model_dir(&self) -> &Path {
        &self.inner.dir
    }
    /// Label names, in output order.
    pub fn label_names(&self) -> Vec<&str> {
        self.inner.labels.iter().map(|l| l.name.as_str()).collect()
    }
    /// Width of the embeddings.
    pub fn hidden_size(&self) -> usize {
        self.inner.hidden_size
    }
    /// The tokenizer with the windowing rules.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.inner.tokenizer
    }

    /// Labels one text.
    pub fn classify(&self, text: &str) -> Result<Classification> {
        Ok(self.classify_batch(&[text])?.remove(0))
    }

    /// Labels several texts; each text's scores are the same as if it were alone.
    #[tracing::instrument(skip_all, fields(texts = texts.len()))]
    pub fn classify_batch(&self, texts: &[&str]) -> Result<Vec<Classification>> {
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>>>()?;
        self.classify_prepared(&prepared)
    }

    /// Tokenizes a text into windows (the CPU-light half of the work; thread-safe).
    pub fn prepare(&self, text: &str) -> Result<Prepared> {
        self.inner.tokenizer.prepare(text)
    }

    /// Labels prepared texts (their windows run in parallel).
    pub fn classify_prepared(&self, prepared: &[Prepared]) -> Result<Vec<Classification>> {
        Ok(self.aggregate(prepared, self.window_scores(prepared)?))
    }

    /// Label scores of every window of every text (`[text][window][label]`); with
    /// [`Classifier::classify_scored`] the same result as [`Classifier::classify_prepared`].
    /// A window's scores depend only on its tokens (bit for bit), so they can be reused for
    /// another text with the same tokens.
    pub fn window_scores<P: Borrow<Prepared> + Sync>(
        &self,
        prepared: &[P],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let all = every_window(prepared);
        let mut out = by_text(prepared, self.scores_of(prepared, &all, false)?);
        if self.inner.refine.is_some() {
            // decided by the window's own scores, so a window's scores still depend only on
            // its tokens
            let near: Vec<(usize, usize)> = all
                .into_iter()
                .filter(|&(d, w)| self.near_a_decision(&out[d][w]))
                .collect();
            tracing::debug!(windows = near.len(), "refined in f32");
            for ((d, w), row) in near.iter().zip(self.scores_of(prepared, &near, true)?) {
                out[*d][*w] = row;
            }
        }
        Ok(out)
    }

    /// [`Classifier::window_scores`] and, from the same passes, the pooled embedding of every
    /// window (`[text][window][hidden]`, as [`Classifier::window_embeddings`] gives them; a
    /// refined window's from the f32 pass). The scores are the same bits as
    /// `window_scores`'. Needs `prototypes` or `head` mode.
    #[allow(clippy::type_complexity)]
    pub fn window_scores_and_embeddings<P: Borrow<Prepared> + Sync>(
        &self,
        prepared: &[P],
    ) -> Result<(Vec<Vec<Vec<f32>>>, Vec<Vec<Vec<f32>>>)> {
        if !self.uses_embeddings() {
            return Err(Error::Labels {
                key: "mode".into(),
                message: "window embeddings need prototypes or head mode".into(),
            });
        }
        let all = every_window(prepared);
        let (scores, rows) = self.scores_and_rows_of(prepared, &all, false, true)?;
        let mut out = by_text(prepared, scores);
        let mut emb = by_text(prepared, rows);
        if self.inner.refine.is_some() {
            let near: Vec<(usize, usize)> = all
                .into_iter()
                .filter(|&(d, w)| self.near_a_decision(&out[d][w]))
                .collect();
            let (scores, rows) = self.scores_and_rows_of(prepared, &near, true, true)?;
            for (((d, w), s), r) in near.iter().zip(scores).zip(rows) {
                out[*d][*w] = s;
                emb[*d][*w] = r;
            }
        }
        Ok((out, emb))
    }

    /// Label scores of the windows `items` (`(text, window)`), on the main encoder or, with
    /// `exact`, its f32 one.
    pub(super) fn scores_of<P: Borrow<Prepared> + Sync>(
        &self,
        prepared: &[P],
        items: &[(usize, usize)],
        exact: bool,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self.scores_and_rows_of(prepared, items, exact, false)?.0)
    }

    /// [`Classifier::scores_of`], and with `keep_rows` the pooled rows the scores came from.
    #[allow(clippy::type_complexity)]
    pub(super) fn scores_and_rows_of<P: Borrow<Prepared> + Sync>(
        &self,
        prepared: &[P],
        items: &[(usize, usize)],
        exact: bool,
        keep_rows: bool,
    ) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>)> {
        if self.uses_embeddings() {
            // each window's pooled row stays a tensor (on the host), and the rows are scored
            // together as one matrix
            let pooled: Vec<Tensor> =
                self.run_items(prepared, items, exact, |this, hidden, mask| {
                    let pooled = this.pool(hidden, mask)?.to_device(&Device::Cpu)?;
                    Ok((0..pooled.dim(0)?)
                        .map(|r| pooled.narrow(0, r, 1))
                        .collect::<candle_core::Result<Vec<_>>>()?)
                })?;
            if pooled.is_empty() {
                return Ok((Vec::new(), Vec::new()));
            }
            let matrix = Tensor::cat(&pooled, 0)?;
            let rows = if keep_rows {
                matrix.to_vec2::<f32>()?
            } else {
                Vec::new()
            };
            return Ok((self.score_pooled(&matrix)?, rows));
        }
        let scores = self.run_items(prepared, items, exact, |this, hidden, _| {
            this.checkpoint_rows(hidden)
        })?;
        Ok((scores, Vec::new()))
    }

    /// Labels one text from its window scores (see [`Classifier::window_scores`]), flagged at
    /// the thresholds of language `lang` (`[labels.<name>.language_thresholds]`, each label's
    /// own where it has none for `lang`, or with `None`).
    pub fn classify_window_scores(
        &self,
        prepared: &Prepared,
        window_scores: &[Vec<f32>],
        lang: Option<&str>,
    ) -> Classification {
        self.aggregate_one(prepared, window_scores, lang)
    }

    /// Labels texts from their window scores (see [`Classifier::window_scores`]).
    pub fn classify_scored(
        &self,
        prepared: &[Prepared],
        window_scores: Vec<Vec<Vec<f32>>>,
    ) -> Vec<Classification> {
        self.aggregate(prepared, window_scores)
    }

    /// What runs the encoder ([`Engine`]).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Everything that decides which windows refinement scores again in f32 (the rule, the
    /// bounds, every threshold, single- or multi-label), as text; `None` without refinement.
    /// A window's refined embedding depends on it, so caches of embeddings key on it.
    pub fn refinement_key(&self) -> Option<String> {
        let rule = self.inner.refine?;
        let thresholds: Vec<(&str, Vec<u32>)> = self
            .inner
            .labels
            .iter()
            .map(|i| (i.name.as_str(), i.thresholds().map(f32::to_bits).collect()))
            .collect();
        let bounds: Vec<u32> = self
            .inner
            .refine_bounds
            .iter()
            .map(|b| b.to_bits())
            .collect();
        Some(format!(
            "refine={rule} bounds={bounds:?} thresholds={thresholds:?} multi_label={}",
            self.inner.multi_label
        ))
    }

    /// With `refine_margin = "auto"`: each label's bound of the int8 error in logits (in
    /// [`Classifier::label_names`]' order), within which of a threshold a window is scored
    /// again in f32; empty otherwise.
    pub fn refine_bounds(&self) -> &[f32] {
        &self.inner.refine_bounds
    }

    /// Whether the encoder runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.inner.inputs_of.device.is_cuda()
    }

    /// Whether labels are scored from pooled window embeddings (`prototypes`, `head`), so that
    /// [`Classifier::window_embeddings`] can be cached and fed to [`Classifier::classify_embedded`].
    pub fn uses_embeddings(&self) -> bool {
        !matches!(self.inner.scorer, Scorer::Checkpoint { .. })
    }

    /// The pooled embedding of every window of every text (`[text][window][hidden]`). With
    /// labels and refinement, a window near a decision has its f32 embedding, so that
    /// [`Classifier::classify_embedded`] gives [`Classifier::classify_prepared`]'s result.
    pub fn window_embeddings(&self, prepared: &[Prepared]) -> Result<Vec<Vec<Vec<f32>>>> {
        // (checkpoint mode scores from states, not embeddings: its windows stay as they are)
        if self.inner.refine.is_some()
            && matches!(
                self.inner.scorer,
                Scorer::Prototypes { .. } | Scorer::Head(_)
            )
        {
            return Ok(self.window_scores_and_embeddings(prepared)?.1);
        }
        self.window_embeddings_on(prepared, false)
    }

    fn window_embeddings_on(
        &self,
        prepared: &[Prepared],
        exact: bool,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        self.run_windows(prepared, exact, |this, hidden, mask| {
            Ok(this.pool(hidden, mask)?.to_vec2::<f32>()?)
        })
    }

    /// Labels texts from their window embeddings (as [`Classifier::window_embeddings`] made them);
    /// the same result as [`Classifier::classify_prepared`].
    pub fn classify_embedded(
        &self,
        prepared: &[Prepared],
        windows: &[Vec<Vec<f32>>],
    ) -> Result<Vec<Classification>> {
        Ok(self.aggregate(prepared, self.scores_of_window_embeddings(windows)?))
    }

    fn scores_of_window_embeddings(&self, windows: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<Vec<f32>>>> {
        let flat: Vec<Vec<f32>> = windows.iter().flatten().cloned().collect();
        let mut scores = self.score_embeddings(&flat)?.into_iter();
        Ok(windows
            .iter()
            .map(|w| scores.by_ref().take(w.len()).collect())
            .collect())
    }

    /// Sentence embeddings as the model's pooling makes them (`modules.json`), one per text;
    /// the windows of a long text are averaged, weighted by their token counts.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>>>()?;
        self.embed_prepared(&prepared)
    }

    /// [`Classifier::embed`] for prepared texts.
    pub fn embed_prepared(&self, prepared: &[Prepared]) -> Result<Vec<Vec<f32>>> {
        self.embed_prepared_on(prepared, false)
    }

    /// Raw logits of the checkpoint head for each text's first window (for reference checks).
    pub fn checkpoint_logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let Scorer::Checkpoint { head, .. } = &self.inner.scorer else {
            return Err(Error::Labels {
                key: "mode".into(),
                message: "checkpoint_logits needs checkpoint mode".into(),
            });
        };
        let ids = texts
            .iter()
            .map(|t| {
                self.inner
                    .tokenizer
                    .prepare(t)
                    .map(|p| p.windows[0].ids.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let inputs = self.inner.inputs_of.inputs(&refs, 0)?;
        let hidden = self.inner.encoder.forward(&inputs)?;
        Ok(head.forward(&hidden.i((.., 0))?.contiguous()?)?.to_vec2()?)
    }
}

#[cfg(test)]
mod tests;
