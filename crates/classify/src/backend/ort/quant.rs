//! The int8 maths of the `ort` backend's graphs: how each product quantizes its input,
//! SmoothQuant's smoothing and the calibrated input ranges, column-wise weight quantization.

use candle_core::Tensor;

use super::graph::{input_widths, values};
use crate::config::HiddenAct;
use crate::model::LayerWeights;

/// How [`linear`] computes a product.
#[derive(Clone, Copy)]
pub(crate) enum Product<'a> {
    F32,
    /// f32, and the largest |x| of each input channel over the window becomes an output of
    /// the graph (calibration).
    Probe,
    /// int8 (see [`Int8`]).
    Int8(Int8<'a>),
}

/// How an int8 product quantizes its input.
#[derive(Clone, Copy)]
pub(crate) struct Int8<'a> {
    /// The input channels' calibrated largest |x|, to smooth them ([`smoothing`]); none: no
    /// smoothing.
    pub(crate) range: Option<&'a [f32]>,
    /// SmoothQuant's migration strength for this product.
    pub(crate) alpha: f32,
    pub(crate) activations: Activations,
    /// How many input channels, those of largest smoothed range, are left out of the int8
    /// product and computed in f32 beside it (with calibrated ranges only).
    pub(crate) exact_channels: usize,
    /// The weights' largest code: 127, or 63 for 7-bit weights, whose products with u8
    /// activations never saturate the 16-bit pair sums of x86-64 CPUs without VNNI
    /// ([`crate::Int8Kernels::U8s7`]).
    pub(crate) weight_max: f32,
}

/// The scales of an int8 product's input.
#[derive(Clone, Copy)]
pub(crate) enum Activations {
    /// One scale for the whole window: for inputs that a layer norm has just brought to one
    /// scale per token (the QKV and FFN-in products), and the attention output's.
    PerWindow,
    /// One scale per token. `lower`: the inputs are known to be at least `-lower` (GELU's
    /// outputs, at least -0.17): they are shifted up by it, so that the 8 bits cover only the
    /// values that occur, and the bias takes the shift back.
    PerToken { lower: Option<f32> },
}

/// The int8 scheme of each of a layer's four products (QKV, attention output, FFN in, FFN
/// out), chosen by measuring each one alone against f32 on the benchmark's dump
/// (BENCHMARKS.md): one scale per window where it cost little accuracy, one per token for
/// the GELU outputs, where it cost much; smoothing strengths as measured best for each; and,
/// for the two FFN products, whose outlier channels held most of the error that smoothing
/// left, the few input channels of widest range in f32 (which took FFN out's best smoothing
/// from 0.5 down to 0.3).
pub(crate) fn int8_products<'a>(
    ranges: Option<&'a InputRanges>,
    act: HiddenAct,
    weight_max: f32,
) -> [Product<'a>; 4] {
    let lower = match act {
        HiddenAct::Gelu | HiddenAct::GeluNew => Some(GELU_LOWER),
        HiddenAct::Relu => Some(0.0),
    };
    let range = |f: fn(&'a InputRanges) -> &'a [f32]| ranges.map(f);
    [
        (range(|r| &r.qkv), 0.8, Activations::PerWindow, 0),
        // its smoothing is folded into the values' weights ([`fold_into_values`])
        (range(|r| &r.attn_out), 0.5, Activations::PerWindow, 0),
        (range(|r| &r.ffn_in), 0.5, Activations::PerWindow, 8),
        (
            range(|r| &r.ffn_out),
            0.3,
            Activations::PerToken { lower },
            4,
        ),
    ]
    .map(|(range, alpha, activations, exact_channels)| {
        Product::Int8(Int8 {
            range,
            alpha,
            activations,
            exact_channels,
            weight_max,
        })
    })
}

/// The attention output's smoothing without a pass over its input: the context is the
/// attention's average of the values, so dividing the values' weights and bias (the last third
/// of the QKV product's outputs) by `s` divides the context's channels by `s`, and the
/// attention output's weights take `s` on their input rows. Returns the new QKV and attention
/// output weights.
#[allow(clippy::type_complexity)]
pub(crate) fn fold_into_values(
    (qkv_w, qkv_b): &(Tensor, Tensor),
    (out_w, out_b): &(Tensor, Tensor),
    range: &[f32],
    alpha: f32,
) -> candle_core::Result<((Tensor, Tensor), (Tensor, Tensor))> {
    let (n, k) = out_w.dims2()?;
    let s = smoothing(&values(&out_w.t()?.contiguous()?)?, n, range, alpha);
    let device = out_w.device();
    let rows = qkv_w.dims2()?.0;
    let mut per_output = vec![1f32; rows - k];
    per_output.extend(s.iter().map(|s| 1.0 / s));
    let per_output = Tensor::from_vec(per_output, rows, device)?;
    let qkv = (
        qkv_w.broadcast_mul(&per_output.unsqueeze(1)?)?,
        qkv_b.mul(&per_output)?,
    );
    let s = Tensor::from_vec(s, (1, k), device)?;
    Ok((qkv, (out_w.broadcast_mul(&s)?, out_b.clone())))
}

/// A bound below GELU's minimum (-0.16997, at x = -0.7518), for both its erf and tanh forms.
pub(crate) const GELU_LOWER: f32 = 0.17;

/// Per-channel largest |x| over the calibration windows of the input of each product of one
/// layer (what the probe graph measures), for smoothing the int8 products.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputRanges {
    pub qkv: Vec<f32>,
    pub attn_out: Vec<f32>,
    pub ffn_in: Vec<f32>,
    pub ffn_out: Vec<f32>,
}

/// SmoothQuant's per-input-channel factors `s`: the product `x @ w` becomes
/// `(x / s) @ (s * w)`, the same in exact arithmetic, with the activations' outlier channels
/// divided down and the weights' rows scaled up, so that one int8 scale fits the activations
/// better. `s_j = x_j^alpha / w_j^(1 - alpha)`, with `x_j` the largest |x| of input channel `j`
/// (`range`) and `w_j` the largest |w| of its row of `wt` (`[k, n]`).
pub(crate) fn smoothing(wt: &[f32], n: usize, range: &[f32], alpha: f32) -> Vec<f32> {
    range
        .iter()
        .zip(wt.chunks(n))
        .map(|(&x, row)| {
            let w = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            if x > 0.0 && w > 0.0 {
                x.powf(alpha) / w.powf(1.0 - alpha)
            } else {
                1.0
            }
        })
        .collect()
}

/// An int8 product's input treatment, from [`int8_weights`].
pub(crate) struct Int8Weights {
    /// Each input channel's factor before the product (`1 / s`, 0 for the exact channels).
    pub(crate) inverse: Vec<f32>,
    /// The input channels computed in f32 beside the int8 product, with their weight rows
    /// (`[channels, n]`).
    pub(crate) exact: Option<(Vec<i64>, Vec<f32>)>,
}

/// Smooths `wt` (`[k, n]`) in place for an int8 product ([`smoothing`]) and zeroes the weight
/// rows of its `exact_channels` of widest smoothed range, which are left out of the int8
/// product (their input and weights zeroed, so that neither sets a scale) and multiplied in
/// f32 beside it. Without calibrated ranges, nothing changes.
pub(crate) fn int8_weights(wt: &mut [f32], n: usize, int8: &Int8) -> Int8Weights {
    let k = wt.len() / n;
    let Some(range) = int8.range else {
        return Int8Weights {
            inverse: vec![1f32; k],
            exact: None,
        };
    };
    let s = smoothing(wt, n, range, int8.alpha);
    let mut channels: Vec<usize> = (0..k).collect();
    channels.sort_by(|&a, &b| (range[b] / s[b]).total_cmp(&(range[a] / s[a])));
    // at least one channel stays in the int8 product
    channels.truncate(int8.exact_channels.min(k - 1));
    channels.sort_unstable();
    let exact = (!channels.is_empty()).then(|| {
        let rows = channels
            .iter()
            .flat_map(|&j| wt[j * n..(j + 1) * n].iter().copied())
            .collect();
        (channels.iter().map(|&j| j as i64).collect(), rows)
    });
    for (row, s) in wt.chunks_mut(n).zip(&s) {
        row.iter_mut().for_each(|v| *v *= s);
    }
    let mut inverse: Vec<f32> = s.iter().map(|s| 1.0 / s).collect();
    for &j in &channels {
        inverse[j] = 0.0;
        wt[j * n..(j + 1) * n].iter_mut().for_each(|v| *v = 0.0);
    }
    Int8Weights { inverse, exact }
}

/// The bias that takes back an input shift `c` (`[k]`) from an int8 product: `(x + c) @ w' =
/// x @ w' + c @ w'`, with the int8 weights `q` (`[k, n]`) and column scales as the product
/// computes it.
pub(crate) fn take_back_shift(bias: &mut [f32], c: &[f32], q: &[u8], scale: &[f32]) {
    for (cj, row) in c.iter().zip(q.chunks(scale.len())) {
        for ((b, &qv), s) in bias.iter_mut().zip(row).zip(scale) {
            *b -= cj * f32::from(qv as i8) * s;
        }
    }
}

/// Symmetric int8 quantization of `w` (`[k, n]`, row-major) with one scale per column `n`:
/// the int8 values (as bytes) and the scales. Each column's scale is the one, from its largest
/// |w| / 127 down to 60% of that, whose rounding (and clipping) error has the least sum of
/// squares.
pub(crate) fn quantize_columns(w: &[f32], n: usize, qmax: f32) -> (Vec<u8>, Vec<f32>) {
    use rayon::prelude::*;
    // round half to even by the float trick (|v / s| < 2^22), which vectorises where `round`
    // is a call to libm
    const MAGIC: f32 = 12_582_912.0; // 1.5 x 2^23
    let quantize = |v: f32, s: f32| ((v / s + MAGIC) - MAGIC).clamp(-qmax, qmax);
    let scale: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|c| {
            let column: Vec<f32> = w.chunks(n).map(|row| row[c]).collect();
            let top = column.iter().fold(0f32, |m, v| m.max(v.abs()));
            if top == 0.0 {
                return 1.0;
            }
            let error = |s: f32| -> f32 {
                column
                    .iter()
                    .map(|&v| {
                        let d = v - quantize(v, s) * s;
                        d * d
                    })
                    .sum()
            };
            (0..=20)
                .map(|i| top / qmax * (1.0 - 0.02 * i as f32))
                .map(|s| (error(s), s))
                .fold(
                    (f32::INFINITY, 1.0),
                    |best, e| if e.0 < best.0 { e } else { best },
                )
                .1
        })
        .collect();
    let q = w
        .chunks(n)
        .flat_map(|row| {
            row.iter()
                .zip(&scale)
                .map(|(&v, &s)| quantize(v, s) as i8 as u8)
        })
        .collect();
    (q, scale)
}

impl InputRanges {
    /// Splits [`probe_model`]'s second output (or the element-wise largest of several) into
    /// the layers' products.
    pub(crate) fn from_probe(
        v: &[f32],
        layers: &[LayerWeights],
    ) -> candle_core::Result<Vec<InputRanges>> {
        let mut rest = v;
        let mut take = |n: usize| -> candle_core::Result<Vec<f32>> {
            if rest.len() < n {
                candle_core::bail!("probe output of {} values is too short", v.len());
            }
            let (a, b) = rest.split_at(n);
            rest = b;
            Ok(a.to_vec())
        };
        let mut out = Vec::new();
        for l in layers {
            let [qkv, attn_out, ffn_in, ffn_out] = input_widths(l)?;
            out.push(InputRanges {
                qkv: take(qkv)?,
                attn_out: take(attn_out)?,
                ffn_in: take(ffn_in)?,
                ffn_out: take(ffn_out)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::values_of;

    #[test]
    fn column_quantization_has_the_least_squared_error_of_its_candidates() {
        let (k, n) = (300, 4);
        // column c: multiples of a step g_c (as a block-quantized model's weights are), and one
        // value off that grid, 129.6 steps out: the largest-|w| scale misses the grid, the
        // scale g_c hits it and clips the one value
        let step = |c: usize| 0.001 * (c + 1) as f32;
        let mut w: Vec<f32> = values_of(k * n, 9)
            .iter()
            .enumerate()
            .map(|(i, v)| (v * 100.0).round() * step(i % n))
            .collect();
        for c in 0..n {
            w[(17 + 31 * c) * n + c] = 127.0 / 0.98 * step(c);
        }
        let (q, scale) = quantize_columns(&w, n, 127.0);
        let error = |c: usize, s: f32| -> f32 {
            (0..k)
                .map(|r| {
                    let v = w[r * n + c];
                    let d = v - (v / s).round().clamp(-127.0, 127.0) * s;
                    d * d
                })
                .sum()
        };
        for c in 0..n {
            let top = (0..k).map(|r| w[r * n + c].abs()).fold(0f32, f32::max);
            let s = scale[c];
            assert!((s - step(c)).abs() < 1e-6 * step(c), "column {c}: {s}");
            assert!(error(c, s) < error(c, top / 127.0) / 2.0, "column {c}");
            for r in 0..k {
                let v = w[r * n + c];
                let back = f32::from(q[r * n + c] as i8) * s;
                if v.abs() <= 127.0 * s {
                    assert!((back - v).abs() <= s / 2.0 + 1e-7, "{r},{c}: {v} -> {back}");
                } else {
                    assert_eq!(back, 127.0 * s * v.signum(), "{r},{c}: clipped");
                }
            }
        }
        // a column of evenly spread values keeps the largest |w| / 127
        let even: Vec<f32> = values_of(k, 5);
        let (q, scale) = quantize_columns(&even, 1, 127.0);
        let top = even.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(scale[0], top / 127.0);
        assert!(q.iter().any(|&b| (b as i8).unsigned_abs() == 127));
    }

    #[test]
    fn smoothing_balances_activations_and_weights() {
        let (k, n) = (5, 3);
        let wt = values_of(k * n, 3);
        let range = [0.5, 40.0, 1.0, 3.0, 0.0];
        let s = smoothing(&wt, n, &range, 0.5);
        for j in 0..k {
            let w = wt[j * n..(j + 1) * n]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            if range[j] == 0.0 {
                assert_eq!(s[j], 1.0);
                continue;
            }
            // at alpha 0.5 the channel's activations and weights end with the same range
            let (x, w) = (range[j] / s[j], w * s[j]);
            assert!((x - w).abs() < 1e-5 * x.max(w), "channel {j}: {x} vs {w}");
        }
        // alpha 1: the activations all end at 1, the weights take their whole range
        let s = smoothing(&wt, n, &range, 1.0);
        for j in 0..4 {
            assert!((range[j] / s[j] - 1.0).abs() < 1e-6, "channel {j}");
        }
    }

    #[test]
    fn folding_into_the_values_keeps_the_attention_output() {
        use candle_core::{Device, D};
        let (h, len) = (8, 4);
        let t = |shape: &[usize], seed| {
            Tensor::from_vec(values_of(shape.iter().product(), seed), shape, &Device::Cpu).unwrap()
        };
        let qkv = (t(&[3 * h, h], 1), t(&[3 * h], 2));
        let out = (t(&[h, h], 3), t(&[h], 4));
        let range: Vec<f32> = (0..h).map(|j| 0.5 + j as f32 * 3.0).collect();
        let (qkv2, out2) = fold_into_values(&qkv, &out, &range, 0.5).unwrap();
        let x = t(&[len, h], 5);
        // any attention weights: rows that sum to 1
        let p = candle_nn::ops::softmax(&t(&[len, len], 6), D::Minus1).unwrap();
        let output = |(w, b): &(Tensor, Tensor), (ow, ob): &(Tensor, Tensor)| {
            let v = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(b)
                .unwrap()
                .narrow(1, 2 * h, h)
                .unwrap();
            let ctx = p.matmul(&v).unwrap();
            let y = ctx
                .matmul(&ow.t().unwrap())
                .unwrap()
                .broadcast_add(ob)
                .unwrap();
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let (a, b) = (output(&qkv, &out), output(&qkv2, &out2));
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // the queries and keys are untouched; the values are not
        let (w, w2) = (values(&qkv.0).unwrap(), values(&qkv2.0).unwrap());
        assert_eq!(w[..2 * h * h], w2[..2 * h * h]);
        assert_ne!(w[2 * h * h..], w2[2 * h * h..]);
    }
}
