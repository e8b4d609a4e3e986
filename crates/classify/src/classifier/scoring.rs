//! How the encoder's states become label scores (prototypes, a checkpoint's head, a trained
//! head) and how a text's window scores become its labels, flags and evidence.

use candle_core::{Device, IndexOp, Tensor};

use super::{Classification, Classifier, LabelScore, Span};
use crate::error::{Error, Result};
use crate::head::{CheckpointHead, LinearHead};
use crate::labels::Activation;
use crate::model::l2_normalize;
use crate::tokenize::Prepared;

/// The texts whose int8 error `refine_margin = "auto"` measures (with the calibration texts).
const ERROR_TEXTS: &str = include_str!("../../data/int8-error.txt");

/// The smallest error bound `refine_margin = "auto"` uses (logits), should the texts show none.
const MIN_BOUND: f32 = 1e-3;

/// The logit of a score (clamped inside 0 and 1, so that it is finite).
fn logit(s: f32) -> f32 {
    let s = s.clamp(1e-7, 1.0 - 1e-7);
    (s / (1.0 - s)).ln()
}

/// What a prototype of `prototypes` mode stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    /// The description or an example of label `i`.
    Positive(usize),
    /// A counter-example (hard negative) of label `i`.
    Counter(usize),
    /// Ordinary text, a negative of every label.
    Background,
}

pub(super) enum Scorer {
    None,
    Prototypes {
        protos: Tensor,
        owner: Vec<Proto>,
        labels: usize,
        temperature: f32,
    },
    Checkpoint {
        head: CheckpointHead,
        activation: Activation,
    },
    Head(LinearHead),
}

pub(super) struct LabelInfo {
    pub(super) name: String,
    pub(super) threshold: f32,
    pub(super) by_language: std::collections::BTreeMap<String, f32>,
}

impl LabelInfo {
    /// The label's own threshold and its languages'.
    pub(super) fn thresholds(&self) -> impl Iterator<Item = f32> + '_ {
        std::iter::once(self.threshold).chain(self.by_language.values().copied())
    }
}

/// Open-world scores of one text from its cosine similarity to each prototype: label `l`
/// scores `sigmoid((p - n) / temperature)`, where `p` is the text's similarity to the nearest
/// positive of `l` and `n` to the nearest of `l`'s counter-examples and the background. Each
/// score stands on its own (they do not sum to one): a text nearer to ordinary text than to
/// any label scores below 0.5 for every label.
pub(super) fn open_world_scores(
    sims: &[f32],
    owner: &[Proto],
    labels: usize,
    temperature: f32,
) -> Vec<f32> {
    let mut pos = vec![f32::NEG_INFINITY; labels];
    let mut neg = vec![f32::NEG_INFINITY; labels];
    let mut background = f32::NEG_INFINITY;
    for (&s, &o) in sims.iter().zip(owner) {
        match o {
            Proto::Positive(l) => pos[l] = pos[l].max(s),
            Proto::Counter(l) => neg[l] = neg[l].max(s),
            Proto::Background => background = background.max(s),
        }
    }
    pos.iter()
        .zip(&neg)
        .map(|(&p, &n)| 1.0 / (1.0 + (-(p - n.max(background)) / temperature).exp()))
        .collect()
}

impl Classifier {
    /// Label scores of pooled embeddings (`[n][hidden]` -> `[n][labels]`), in `prototypes` and
    /// `head` modes.
    pub fn score_embeddings(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let h = self.hidden_size();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        self.score_pooled(&Tensor::from_vec(flat, (rows.len(), h), &Device::Cpu)?)
    }

    /// Label scores of pooled embeddings `[n, hidden]` (on the host), one row per embedding.
    pub(super) fn score_pooled(&self, pooled: &Tensor) -> Result<Vec<Vec<f32>>> {
        match &self.inner.scorer {
            Scorer::None | Scorer::Checkpoint { .. } => Err(Error::Labels {
                key: "mode".into(),
                message: "scoring embeddings needs prototypes or head mode with labels".into(),
            }),
            Scorer::Prototypes {
                protos,
                owner,
                labels,
                temperature,
            } => {
                // row by row: a text's scores must not depend on its batch
                let sims: Vec<Vec<f32>> =
                    crate::model::rowwise_products(&l2_normalize(pooled)?, protos, None)?
                        .to_vec2()?;
                Ok(sims
                    .into_iter()
                    .map(|s| open_world_scores(&s, owner, *labels, *temperature))
                    .collect())
            }
            Scorer::Head(head) => {
                let mut rows: Vec<Vec<f32>> = head.logits(pooled)?.to_vec2()?;
                rows.iter_mut().for_each(|r| head.meta.activation.apply(r));
                Ok(rows)
            }
        }
    }

    /// The threshold label `label` (an index into [`Classifier::label_names`]) is flagged at in
    /// language `lang`: its `language_thresholds` entry, else its own; `None` for the label's
    /// own (the workspace's, else the head's suggestion, else `default_threshold`).
    pub fn threshold(&self, label: usize, lang: Option<&str>) -> f32 {
        let info = &self.inner.labels[label];
        lang.and_then(|l| info.by_language.get(l).copied())
            .unwrap_or(info.threshold)
    }

    /// Re-applies the thresholds of `lang` (`[labels.<name>.language_thresholds]`) to a result.
    pub fn apply_language_thresholds(&self, c: &mut Classification, lang: &str) {
        let top = c.top;
        for (l, score) in c.labels.iter_mut().enumerate() {
            let t = self.threshold(l, Some(lang));
            score.flagged = score.score >= t && (self.inner.multi_label || l == top);
        }
    }

    pub(super) fn aggregate(
        &self,
        prepared: &[Prepared],
        window_scores: Vec<Vec<Vec<f32>>>,
    ) -> Vec<Classification> {
        prepared
            .iter()
            .zip(window_scores)
            .map(|(p, rows)| self.aggregate_one(p, &rows, None))
            .collect()
    }

    /// One text's labels from its windows' scores: each label's score is its largest over the
    /// windows, flagged at its threshold for `lang`; the evidence is the window where the best
    /// label scored highest.
    pub(super) fn aggregate_one(
        &self,
        p: &Prepared,
        rows: &[Vec<f32>],
        lang: Option<&str>,
    ) -> Classification {
        let n_labels = self.inner.labels.len();
        let mut best = vec![f32::NEG_INFINITY; n_labels];
        let mut best_window = vec![0usize; n_labels];
        for (w, row) in rows.iter().enumerate() {
            for (l, &s) in row.iter().enumerate() {
                if s > best[l] {
                    best[l] = s;
                    best_window[l] = w;
                }
            }
        }
        let top = (0..n_labels)
            .max_by(|&a, &b| best[a].total_cmp(&best[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        let labels = self
            .inner
            .labels
            .iter()
            .enumerate()
            .map(|(l, info)| LabelScore {
                label: info.name.clone(),
                score: best[l],
                flagged: best[l] >= self.threshold(l, lang) && (self.inner.multi_label || l == top),
            })
            .collect();
        let ew = &p.windows[best_window.get(top).copied().unwrap_or(0)];
        Classification {
            labels,
            top,
            evidence: Span {
                start: ew.start,
                end: ew.end,
            },
            windows: p.windows.len(),
            chars: p.chars,
            tokens: p.tokens,
        }
    }

    /// Whether a window's int8 scores put a label near one of its thresholds or (single-label,
    /// where only the best label can be flagged) the two best labels near each other: within
    /// the fixed score margin, or with `refine_margin = "auto"` within the labels' error bounds
    /// in logits ([`crate::Refine`]).
    pub(super) fn near_a_decision(&self, scores: &[f32]) -> bool {
        let labels = &self.inner.labels;
        match self.inner.refine {
            None => false,
            Some(crate::Refine::Margin(margin)) => {
                if !self.inner.multi_label {
                    let mut sorted = scores.to_vec();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    if sorted.len() > 1 && sorted[0] - sorted[1] < margin {
                        return true;
                    }
                }
                scores
                    .iter()
                    .zip(labels)
                    .any(|(&s, info)| info.thresholds().any(|t| (s - t).abs() < margin))
            }
            Some(crate::Refine::Auto) => {
                let bounds = &self.inner.refine_bounds;
                if !self.inner.multi_label && scores.len() > 1 {
                    let mut order: Vec<usize> = (0..scores.len()).collect();
                    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
                    let (a, b) = (order[0], order[1]);
                    if logit(scores[a]) - logit(scores[b]) < bounds[a] + bounds[b] {
                        return true;
                    }
                }
                scores
                    .iter()
                    .zip(labels)
                    .zip(bounds)
                    .any(|((&s, info), &b)| {
                        info.thresholds().any(|t| (logit(s) - logit(t)).abs() < b)
                    })
            }
        }
    }

    /// Each label's bound of the int8 error in logits, for `refine_margin = "auto"`: the
    /// largest difference between a window's int8 and f32 logits over the built-in
    /// error-measuring texts, times [`crate::AUTO_SAFETY`]. The texts' pooled embeddings are
    /// cached beside the model under the engine's int8 identity (weights, graph, calibration,
    /// library, kernels), so a second start scores them without running the encoder.
    pub(super) fn int8_error_bounds(&self) -> Result<Vec<f32>> {
        let texts: Vec<&str> = ERROR_TEXTS
            .lines()
            .chain(super::builder::CALIBRATION.lines())
            .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
            .collect();
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>>>()?;
        let all = super::windows::every_window(&prepared);
        let (int8, exact) = if self.uses_embeddings() {
            let (int8, exact) = self.error_rows(&prepared, &all)?;
            (
                self.score_embeddings(&int8)?,
                self.score_embeddings(&exact)?,
            )
        } else {
            (
                self.scores_of(&prepared, &all, false)?,
                self.scores_of(&prepared, &all, true)?,
            )
        };
        let n = self.inner.labels.len();
        let mut largest = vec![0f32; n];
        let mut measured = vec![0usize; n];
        for (a, b) in int8.iter().zip(&exact) {
            for l in 0..n {
                // a score that f32 rounds to 0 or 1 has no logit to compare
                let sound = |s: f32| s > 1e-6 && s < 1.0 - 1e-6;
                if sound(a[l]) && sound(b[l]) {
                    largest[l] = largest[l].max((logit(a[l]) - logit(b[l])).abs());
                    measured[l] += 1;
                }
            }
        }
        let bounds: Vec<f32> = largest
            .iter()
            .map(|e| (e * crate::AUTO_SAFETY).max(MIN_BOUND))
            .collect();
        for ((info, b), m) in self.inner.labels.iter().zip(&bounds).zip(&measured) {
            tracing::info!(
                label = %info.name,
                bound = b,
                windows = m,
                "int8 error bound (logits) for refine_margin = auto"
            );
        }
        Ok(bounds)
    }

    /// The pooled embeddings of `items` in int8 and in f32, from the cache beside the model
    /// when it holds them for this engine and these windows, else computed (and cached).
    #[allow(clippy::type_complexity)]
    fn error_rows(
        &self,
        prepared: &[Prepared],
        items: &[(usize, usize)],
    ) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>)> {
        let h = self.hidden_size();
        let cache = self.inner.encoder.int8_identity().map(|identity| {
            let mut tokens = Vec::new();
            for &(d, w) in items {
                tokens.extend(
                    prepared[d].windows[w]
                        .ids
                        .iter()
                        .flat_map(|t| t.to_le_bytes()),
                );
                tokens.extend(u32::MAX.to_le_bytes());
            }
            let pooling = format!("{:?}", self.inner.pooling);
            crate::cache::RangeCache::of_kind(
                &self.inner.dir,
                crate::cache::Kind::Errors,
                &[identity.as_bytes(), pooling.as_bytes(), &tokens],
            )
        });
        let count = 2 * items.len() * h;
        if let Some(c) = &cache {
            match c.load() {
                crate::cache::Cached::Values(v) if v.len() == count => {
                    tracing::debug!("int8 error measurement read from its cache");
                    let mut int8: Vec<Vec<f32>> = v.chunks(h).map(<[f32]>::to_vec).collect();
                    let exact = int8.split_off(items.len());
                    return Ok((int8, exact));
                }
                crate::cache::Cached::Missing => {}
                other => {
                    let why = match other {
                        crate::cache::Cached::Damaged(why) => why,
                        _ => format!("not {count} values"),
                    };
                    tracing::warn!(
                        "{}: {why}: measuring again and rewriting it",
                        c.path().display()
                    );
                }
            }
        }
        let (_, int8) = self.scores_and_rows_of(prepared, items, false, true)?;
        let (_, exact) = self.scores_and_rows_of(prepared, items, true, true)?;
        if let Some(c) = &cache {
            let flat: Vec<f32> = int8.iter().chain(&exact).flatten().copied().collect();
            if let Err(e) = c.store(&flat) {
                tracing::warn!(
                    "cannot cache the int8 error measurement at {}: {e}",
                    c.path().display()
                );
            }
        }
        Ok((int8, exact))
    }

    /// Checkpoint-head scores of each window of a batch.
    pub(super) fn checkpoint_rows(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        let Scorer::Checkpoint { head, activation } = &self.inner.scorer else {
            return Err(Error::Labels {
                key: "mode".into(),
                message: "no checkpoint head is loaded".into(),
            });
        };
        let first = hidden.i((.., 0))?.contiguous()?;
        let mut rows: Vec<Vec<f32>> = head.forward(&first)?.to_vec2()?;
        rows.iter_mut().for_each(|r| activation.apply(r));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_world_scores_weigh_the_nearest_positive_against_the_nearest_negative() {
        use Proto::*;
        let owner = [
            Positive(0),
            Positive(0),
            Counter(0),
            Positive(1),
            Background,
            Background,
        ];
        let sims = [0.80, 0.86, 0.83, 0.70, 0.81, 0.75];
        let s = open_world_scores(&sims, &owner, 2, 0.02);
        // label 0: 0.86 against max(0.83, 0.81); label 1: 0.70 against the background's 0.81
        let sig = |x: f32| 1.0 / (1.0 + (-x / 0.02).exp());
        assert!((s[0] - sig(0.86 - 0.83)).abs() < 1e-6, "{s:?}");
        assert!((s[1] - sig(0.70 - 0.81)).abs() < 1e-6, "{s:?}");
        assert!(s[0] > 0.8 && s[1] < 0.01);
        // independent: they need not sum to one, and nearer the background means below 0.5
        assert!((s[0] + s[1] - 1.0).abs() > 0.1);
        let ordinary = open_world_scores(&[0.7, 0.7, 0.6, 0.6, 0.9, 0.5], &owner, 2, 0.02);
        assert!(ordinary.iter().all(|&x| x < 0.5), "{ordinary:?}");
    }
}
