//! Training a linear head on pooled embeddings: softmax regression (single-label) or one-vs-rest
//! logistic regression (multi-label), L2 regularisation, class weights for imbalance, a
//! stratified validation split, early stopping, and a fixed seed: the same data and options
//! give the same head.

use serde::Serialize;

use crate::metrics::{best_f1_threshold, macro_avg, prf, Prf};
use triage_classify::Activation;

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainOptions {
    /// One-vs-rest sigmoids (several labels per example) instead of one softmax.
    pub multi_label: bool,
    /// L2 penalty on the weights (not the biases).
    pub l2: f32,
    /// Adam's step size.
    pub learning_rate: f32,
    /// Most passes over the data.
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Share of examples held out for validation (stratified by first label); 0 for none.
    pub validation_fraction: f32,
    /// Seed of the split.
    pub seed: u64,
    /// Weigh classes by inverse frequency.
    pub class_weights: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            multi_label: false,
            l2: 1e-2,
            learning_rate: 0.003,
            max_epochs: 1000,
            patience: 50,
            validation_fraction: 0.2,
            seed: 42,
            class_weights: true,
        }
    }
}

/// Loss and quality after one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Weighted loss on the training split (without the L2 term).
    pub train_loss: f64,
    /// Weighted loss on the validation split (the training loss when there is none).
    pub val_loss: f64,
    /// Macro F1 on the validation split at threshold 0.5 (single-label: the top class alone).
    pub val_macro_f1: f64,
}

/// A trained head.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedHead {
    /// `[labels x hidden]`, row-major.
    pub weight: Vec<f32>,
    /// `[labels]`.
    pub bias: Vec<f32>,
    /// Sigmoid or softmax.
    pub activation: Activation,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Every epoch's figures.
    pub history: Vec<EpochStats>,
    /// Indices of the validation examples.
    pub validation: Vec<usize>,
    /// Per label: the threshold with the best validation F1 (0.5 where validation has no positive).
    pub thresholds: Vec<f32>,
    /// Per label: validation precision, recall, F1 (multi-label: at those thresholds;
    /// single-label: of the top class).
    pub validation_scores: Vec<Prf>,
}

/// Training data: embeddings and, per example, the indices of its labels.
pub struct Dataset<'a> {
    /// Embeddings, all of one width.
    pub x: &'a [Vec<f32>],
    /// Label indices of each example (exactly one for single-label).
    pub y: &'a [Vec<usize>],
    /// Number of labels.
    pub labels: usize,
}

/// Why training could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// No examples, or embeddings of different widths, or a label index out of range.
    #[error("training data: {0}")]
    Data(String),
}

/// splitmix64: a tiny deterministic generator, so a seed means the same split everywhere.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn split(data: &Dataset, opts: &TrainOptions) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng(opts.seed);
    // stratified by first label; examples of no label (multi-label) are a stratum of their own
    let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); data.labels + 1];
    for (i, y) in data.y.iter().enumerate() {
        by_label[y.first().copied().unwrap_or(data.labels)].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut group in by_label {
        rng.shuffle(&mut group);
        let k = if group.len() >= 2 {
            ((group.len() as f32 * opts.validation_fraction).round() as usize).min(group.len() - 1)
        } else {
            0
        };
        val.extend_from_slice(&group[..k]);
        train.extend_from_slice(&group[k..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

struct Model<'a> {
    data: &'a Dataset<'a>,
    h: usize,
    l: usize,
    multi: bool,
    /// single-label: weight per class; multi-label: weight of the positives of each label.
    weights: Vec<f64>,
}

impl Model<'_> {
    fn logits(&self, w: &[f32], b: &[f32], i: usize) -> Vec<f32> {
        let x = &self.data.x[i];
        (0..self.l)
            .map(|k| {
                b[k] + w[k * self.h..(k + 1) * self.h]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
            })
            .collect()
    }

    fn probs(&self, w: &[f32], b: &[f32], i: usize) -> Vec<f32> {
        let mut z = self.logits(w, b, i);
        if self.multi {
            Activation::Sigmoid.apply(&mut z);
        } else {
            Activation::Softmax.apply(&mut z);
        }
        z
    }

    /// Weighted mean loss over `idx`; with `grad`, accumulates its gradient.
    fn loss(
        &self,
        w: &[f32],
        b: &[f32],
        idx: &[usize],
        mut grad: Option<(&mut [f64], &mut [f64])>,
    ) -> f64 {
        let mut total = 0f64;
        let mut norm = 0f64;
        for &i in idx {
            let p = self.probs(w, b, i);
            let y = &self.data.y[i];
            let (ex_weight, gz): (f64, Vec<f64>) = if self.multi {
                let mut gz = vec![0f64; self.l];
                let mut loss = 0f64;
                for k in 0..self.l {
                    let pos = y.contains(&k);
                    let wk = if pos { self.weights[k] } else { 1.0 };
                    let pk = (p[k] as f64).clamp(1e-7, 1.0 - 1e-7);
                    loss -= wk * if pos { pk.ln() } else { (1.0 - pk).ln() };
                    gz[k] = wk * (pk - pos as u8 as f64);
                }
                total += loss / self.l as f64;
                (1.0, gz.into_iter().map(|g| g / self.l as f64).collect())
            } else {
                let t = y[0];
                let wt = self.weights[t];
                total += -wt * (p[t] as f64).max(1e-7).ln();
                let gz = (0..self.l)
                    .map(|k| wt * (p[k] as f64 - (k == t) as u8 as f64))
                    .collect();
                (wt, gz)
            };
            norm += ex_weight;
            if let Some((gw, gb)) = grad.as_mut() {
                let x = &self.data.x[i];
                for k in 0..self.l {
                    gb[k] += gz[k];
                    let row = &mut gw[k * self.h..(k + 1) * self.h];
                    for (g, &xv) in row.iter_mut().zip(x) {
                        *g += gz[k] * xv as f64;
                    }
                }
            }
        }
        let norm = if self.multi { idx.len() as f64 } else { norm };
        if let Some((gw, gb)) = grad {
            gw.iter_mut()
                .chain(gb.iter_mut())
                .for_each(|g| *g /= norm.max(1e-12));
        }
        total / norm.max(1e-12)
    }

    fn predictions(&self, w: &[f32], b: &[f32], idx: &[usize]) -> Vec<Vec<f32>> {
        idx.iter().map(|&i| self.probs(w, b, i)).collect()
    }
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;

/// One Adam step with bias correction `c1`, `c2` for this epoch.
struct Adam {
    lr: f64,
    c1: f64,
    c2: f64,
}

impl Adam {
    fn apply(&self, params: &mut [f32], grad: &[f64], m: &mut [f64], v: &mut [f64]) {
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= (self.lr * (*m / self.c1) / ((*v / self.c2).sqrt() + 1e-8)) as f32;
        }
    }
}

/// Per-label validation counts at thresholds (single-label: only the top class can fire).
fn score_at(model: &Model, probs: &[Vec<f32>], idx: &[usize], thresholds: &[f32]) -> Vec<Prf> {
    (0..model.l)
        .map(|k| {
            let (mut tp, mut fp, mut fn_) = (0, 0, 0);
            for (p, &i) in probs.iter().zip(idx) {
                let top = (0..model.l)
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0);
                let fired = p[k] >= thresholds[k] && (model.multi || top == k);
                match (fired, model.data.y[i].contains(&k)) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    _ => {}
                }
            }
            prf(tp, fp, fn_)
        })
        .collect()
}

/// Trains a head; `on_epoch` sees each epoch's figures.
pub fn train(
    data: &Dataset,
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<TrainedHead, TrainError> {
    let n = data.x.len();
    if n == 0 || data.labels == 0 {
        return Err(TrainError::Data("no examples or no labels".into()));
    }
    let h = data.x[0].len();
    if let Some(i) = data.x.iter().position(|x| x.len() != h) {
        return Err(TrainError::Data(format!(
            "example {i} has width {}, not {h}",
            data.x[i].len()
        )));
    }
    if let Some(i) = data
        .y
        .iter()
        .position(|y| y.iter().any(|&k| k >= data.labels) || (!opts.multi_label && y.len() != 1))
    {
        return Err(TrainError::Data(format!(
            "example {i} has labels {:?}",
            data.y[i]
        )));
    }
    let l = data.labels;
    let (train_idx, val_idx) = split(data, opts);
    let mut counts = vec![0f64; l];
    for &i in &train_idx {
        for &k in &data.y[i] {
            counts[k] += 1.0;
        }
    }
    let weights: Vec<f64> = if !opts.class_weights {
        vec![1.0; l]
    } else if opts.multi_label {
        // positives of a rare label weigh as much as its negatives
        counts
            .iter()
            .map(|&c| {
                if c > 0.0 {
                    ((train_idx.len() as f64 - c) / c).clamp(1.0, 100.0)
                } else {
                    1.0
                }
            })
            .collect()
    } else {
        let present = counts.iter().filter(|&&c| c > 0.0).count().max(1) as f64;
        counts
            .iter()
            .map(|&c| {
                if c > 0.0 {
                    train_idx.len() as f64 / (present * c)
                } else {
                    1.0
                }
            })
            .collect()
    };
    // Features are standardised with the training split's mean and spread (pooled embeddings are
    // unit vectors with a tiny spread per dimension, which makes plain gradient steps crawl);
    // the scaling is folded back into the weights at the end, so the head reads raw embeddings.
    let mut mean = vec![0f64; h];
    for &i in &train_idx {
        mean.iter_mut()
            .zip(&data.x[i])
            .for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= train_idx.len() as f64);
    let mut std = vec![0f64; h];
    for &i in &train_idx {
        std.iter_mut()
            .zip(&data.x[i])
            .zip(&mean)
            .for_each(|((s, &v), m)| *s += (v as f64 - m).powi(2));
    }
    std.iter_mut()
        .for_each(|s| *s = (*s / train_idx.len() as f64).sqrt().max(1e-6));
    let scaled: Vec<Vec<f32>> = data
        .x
        .iter()
        .map(|x| {
            x.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((&v, m), s)| ((v as f64 - m) / s) as f32)
                .collect()
        })
        .collect();
    let scaled_data = Dataset {
        x: &scaled,
        y: data.y,
        labels: data.labels,
    };
    let model = Model {
        data: &scaled_data,
        h,
        l,
        multi: opts.multi_label,
        weights,
    };
    let mut w = vec![0f32; l * h];
    let mut b = vec![0f32; l];
    let (mut mw, mut vw) = (vec![0f64; l * h], vec![0f64; l * h]);
    let (mut mb, mut vb) = (vec![0f64; l], vec![0f64; l]);
    let mut best = (f64::INFINITY, 0usize, w.clone(), b.clone());
    let mut history = Vec::new();
    let eval_idx = if val_idx.is_empty() {
        &train_idx
    } else {
        &val_idx
    };
    for epoch in 1..=opts.max_epochs {
        let mut gw = vec![0f64; l * h];
        let mut gb = vec![0f64; l];
        let train_loss = model.loss(&w, &b, &train_idx, Some((&mut gw, &mut gb)));
        for (g, &wv) in gw.iter_mut().zip(&w) {
            *g += 2.0 * opts.l2 as f64 * wv as f64;
        }
        let step = Adam {
            lr: opts.learning_rate as f64,
            c1: 1.0 - BETA1.powi(epoch as i32),
            c2: 1.0 - BETA2.powi(epoch as i32),
        };
        step.apply(&mut w, &gw, &mut mw, &mut vw);
        step.apply(&mut b, &gb, &mut mb, &mut vb);
        let val_loss = model.loss(&w, &b, eval_idx, None);
        let probs = model.predictions(&w, &b, eval_idx);
        let cut = if opts.multi_label { 0.5 } else { 0.0 };
        let val_macro_f1 = macro_avg(&score_at(&model, &probs, eval_idx, &vec![cut; l])).f1;
        let stats = EpochStats {
            epoch,
            train_loss,
            val_loss,
            val_macro_f1,
        };
        on_epoch(&stats);
        history.push(stats);
        if val_loss < best.0 - 1e-6 {
            best = (val_loss, epoch, w.clone(), b.clone());
        } else if epoch - best.1 >= opts.patience {
            break;
        }
    }
    let (_, best_epoch, w, b) = best;
    let probs = model.predictions(&w, &b, eval_idx);
    let thresholds: Vec<f32> = (0..l)
        .map(|k| {
            let scored: Vec<(f32, bool)> = probs
                .iter()
                .zip(eval_idx)
                .map(|(p, &i)| (p[k], data.y[i].contains(&k)))
                .collect();
            best_f1_threshold(&scored).map_or(0.5, |t| t.threshold)
        })
        .collect();
    let cut = if opts.multi_label {
        thresholds.clone()
    } else {
        vec![0.0; l]
    };
    let validation_scores = score_at(&model, &probs, eval_idx, &cut);
    // Fold the standardisation into the weights: w.(x - m)/s + b = (w/s).x + (b - sum w m/s).
    let mut weight = vec![0f32; l * h];
    let mut bias = b.clone();
    for k in 0..l {
        for j in 0..h {
            let wj = w[k * h + j] as f64 / std[j];
            weight[k * h + j] = wj as f32;
            bias[k] -= (wj * mean[j]) as f32;
        }
    }
    Ok(TrainedHead {
        weight,
        bias,
        activation: if opts.multi_label {
            Activation::Sigmoid
        } else {
            Activation::Softmax
        },
        best_epoch,
        history,
        validation: val_idx,
        thresholds,
        validation_scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 8 dimensions, with noise.
    fn clusters(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<usize>>) {
        let mut rng = Rng(seed);
        let mut noise = || (rng.next() % 1000) as f32 / 1000.0 - 0.5;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % 3;
            let mut v: Vec<f32> = (0..8).map(|_| noise() * 0.6).collect();
            v[c] += 2.0;
            x.push(v);
            y.push(vec![c]);
        }
        (x, y)
    }

    #[test]
    fn softmax_head_separates_clusters() {
        let (x, y) = clusters(300, 1);
        let data = Dataset {
            x: &x,
            y: &y,
            labels: 3,
        };
        let mut epochs = 0;
        let head = train(&data, &TrainOptions::default(), &mut |_| epochs += 1).unwrap();
        assert!(epochs > 5 && head.history.len() == epochs);
        assert!(
            head.history.last().unwrap().val_macro_f1 > 0.99,
            "{:?}",
            head.history.last()
        );
        assert!(head.validation_scores.iter().all(|p| p.f1 > 0.99));
        assert_eq!(head.validation.len(), 60);
        // the weights point at the cluster's own dimension
        for c in 0..3 {
            let row = &head.weight[c * 8..(c + 1) * 8];
            let argmax = (0..8).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(argmax, c);
        }
    }

    #[test]
    fn multi_label_head_learns_each_label_and_weighs_rare_ones() {
        // label 0 iff dim 0 > 0; label 1 iff dim 1 > 0 (rare: threshold 1.2)
        let mut rng = Rng(7);
        let mut x = Vec::new();
        let mut y = Vec::new();
        while x.len() < 400 {
            let v: Vec<f32> = (0..4)
                .map(|_| (rng.next() % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            let mut labels = Vec::new();
            if v[0] > 0.0 {
                labels.push(0);
            }
            if v[1] > 0.6 {
                labels.push(1);
            }
            if labels.is_empty() {
                labels.push(2);
            }
            x.push(v);
            y.push(labels);
        }
        let data = Dataset {
            x: &x,
            y: &y,
            labels: 3,
        };
        let opts = TrainOptions {
            multi_label: true,
            learning_rate: 0.05,
            max_epochs: 3000,
            patience: 200,
            ..Default::default()
        };
        let head = train(&data, &opts, &mut |_| {}).unwrap();
        assert_eq!(head.activation, Activation::Sigmoid);
        assert!(
            head.validation_scores[0].f1 > 0.95,
            "{:?}",
            head.validation_scores
        );
        assert!(
            head.validation_scores[1].f1 > 0.9,
            "{:?}",
            head.validation_scores
        );
    }

    #[test]
    fn examples_of_no_label_teach_every_sigmoid_to_stay_low() {
        // clusters 0 and 1 are labels; cluster 2 is ordinary text of no label
        let (x, y3) = clusters(300, 5);
        let y: Vec<Vec<usize>> = y3
            .iter()
            .map(|c| if c[0] == 2 { Vec::new() } else { c.clone() })
            .collect();
        let data = Dataset {
            x: &x,
            y: &y,
            labels: 2,
        };
        let opts = TrainOptions {
            multi_label: true,
            learning_rate: 0.05,
            ..Default::default()
        };
        let head = train(&data, &opts, &mut |_| {}).unwrap();
        // the split keeps the unlabelled stratum in validation too (a fifth of 100)
        assert_eq!(
            head.validation.iter().filter(|&&i| y[i].is_empty()).count(),
            20
        );
        let m = Model {
            data: &data,
            h: 8,
            l: 2,
            multi: true,
            weights: vec![1.0; 2],
        };
        for (i, c) in y3.iter().enumerate() {
            let p = m.probs(&head.weight, &head.bias, i);
            match c[0] {
                2 => assert!(p.iter().all(|&v| v < 0.2), "{i}: {p:?}"),
                k => assert!(p[k] > 0.8 && p[1 - k] < 0.2, "{i}: {p:?}"),
            }
        }
        // a softmax cannot be taught that no label applies
        let single = TrainOptions {
            multi_label: false,
            ..Default::default()
        };
        assert!(train(&data, &single, &mut |_| {}).is_err());
    }

    #[test]
    fn same_data_and_seed_give_the_same_head() {
        let (x, y) = clusters(90, 3);
        let data = Dataset {
            x: &x,
            y: &y,
            labels: 3,
        };
        let a = train(&data, &TrainOptions::default(), &mut |_| {}).unwrap();
        let b = train(&data, &TrainOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(a.weight, b.weight);
        assert_eq!(a.validation, b.validation);
        let c = train(
            &data,
            &TrainOptions {
                seed: 9,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
        assert_ne!(a.validation, c.validation);
    }

    #[test]
    fn the_stored_head_reads_raw_features() {
        // shift and squash the features: standardisation must be folded back exactly
        let (x, y) = clusters(150, 5);
        let x: Vec<Vec<f32>> = x
            .iter()
            .map(|v| v.iter().map(|a| 0.01 * a + 3.0).collect())
            .collect();
        let data = Dataset {
            x: &x,
            y: &y,
            labels: 3,
        };
        let head = train(&data, &TrainOptions::default(), &mut |_| {}).unwrap();
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(v, t)| {
                let z: Vec<f32> = (0..3)
                    .map(|k| {
                        head.bias[k]
                            + head.weight[k * 8..(k + 1) * 8]
                                .iter()
                                .zip(*v)
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                    })
                    .collect();
                (0..3).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap() == t[0]
            })
            .count();
        assert!(
            correct as f64 / x.len() as f64 > 0.98,
            "{correct}/{}",
            x.len()
        );
    }

    #[test]
    fn bad_data_is_an_error() {
        let x = vec![vec![1.0, 2.0], vec![1.0]];
        let y = vec![vec![0], vec![1]];
        assert!(train(
            &Dataset {
                x: &x,
                y: &y,
                labels: 2
            },
            &TrainOptions::default(),
            &mut |_| {}
        )
        .is_err());
        let x = vec![vec![1.0], vec![1.0]];
        let y = vec![vec![0], vec![5]];
        assert!(train(
            &Dataset {
                x: &x,
                y: &y,
                labels: 2
            },
            &TrainOptions::default(),
            &mut |_| {}
        )
        .is_err());
    }
}
