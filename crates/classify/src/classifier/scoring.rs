//! How the encoder's states become label scores (prototypes, a checkpoint's head, a trained
//! head) and how a text's window scores become its labels, flags and evidence.

use candle_core::{Device, IndexOp, Tensor};

use super::{Classification, Classifier, LabelScore, Span};
use crate::error::{Error, Result};
use crate::head::{CheckpointHead, LinearHead};
use crate::labels::Activation;
use crate::model::l2_normalize;
use crate::tokenize::Prepared;

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
                let sims: Vec<Vec<f32>> = l2_normalize(pooled)?.matmul(&protos.t()?)?.to_vec2()?;
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

    /// Whether a window's scores have a label and one of its thresholds, or (single-label,
    /// where only the best label can be flagged) the two best labels, closer than `margin`.
    /// Multi-label, the labels decide apart: two scores near zero are no decision.
    pub(super) fn near_a_decision(&self, scores: &[f32], margin: f32) -> bool {
        if !self.inner.multi_label {
            let mut sorted = scores.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted.len() > 1 && sorted[0] - sorted[1] < margin {
                return true;
            }
        }
        scores.iter().zip(&self.inner.labels).any(|(&s, info)| {
            std::iter::once(&info.threshold)
                .chain(info.by_language.values())
                .any(|&t| (s - t).abs() < margin)
        })
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
