//! The int8 graph's feed-forward block around its two int8 products, in two of triage's own
//! ONNX Runtime operators (AVX-512), where ONNX operators took eight nodes before FFN out's
//! product and four after it, each a pass over the block's activations:
//!
//! - `triage.FfnActivation` ([`activation`]): FFN in's f32 channels added to its int8 product,
//!   GELU, FFN out's smoothing and shift past GELU's minimum, and each token over its largest
//!   value (so that the product's one int8 scale for the window is each token's own).
//! - `triage.FfnOutput` ([`output`]): FFN out's product scaled back per token, its bias, f32
//!   channels and the residual added, and the layer norm.
//!
//! The arithmetic is [`crate::backend::ort::graph`]'s for the same graph in ONNX operators (GELU in the erf
//! form, by the rational function of [`crate::model::erf_f32`]), one pass over each token's
//! values, in 16 lanes.

use std::arch::x86_64::*;

use super::{check, guarded};

use ort::operator::{
    BoxedKernel, ComputeContext, KernelContext, Operator, OperatorInput, OperatorOutput,
};
use ort::value::{TensorElementType, ValueRef};

/// Whether this CPU runs the operators (AVX-512F).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// GELU (erf form) of 16 lanes: `x / 2 (1 + erf(x / sqrt 2))`, erf as
/// [`crate::model::erf_f32`] computes it.
///
/// # Safety
///
/// The CPU has AVX-512F (no memory is touched).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn gelu(x: __m512) -> __m512 {
    let c = _mm512_set1_ps;
    let z = _mm512_mul_ps(x, c(std::f32::consts::FRAC_1_SQRT_2));
    let z = _mm512_min_ps(_mm512_max_ps(z, c(-4.0)), c(4.0));
    let z2 = _mm512_mul_ps(z, z);
    let mut p = _mm512_fmadd_ps(z2, c(-2.726_142_3e-10), c(2.770_681_4e-8));
    for k in [
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ] {
        p = _mm512_fmadd_ps(z2, p, c(k));
    }
    p = _mm512_mul_ps(p, z);
    let mut q = _mm512_fmadd_ps(z2, c(-1.456_607_2e-5), c(-2.133_740_6e-4));
    for k in [-1.682_827e-3, -7.373_329e-3, -1.426_473_9e-2] {
        q = _mm512_fmadd_ps(z2, q, c(k));
    }
    let half = _mm512_mul_ps(x, c(0.5));
    _mm512_fmadd_ps(half, _mm512_div_ps(p, q), half)
}

/// The activation between the feed-forward block's two int8 products, token by token.
pub(crate) struct Activation<'a> {
    /// FFN in's int8 product without its bias (`[rows, i]`), and the bias (`[i]`)
    pub z: &'a [f32],
    pub bias: &'a [f32],
    /// FFN in's input, `[rows, h]`
    pub x: &'a [f32],
    /// FFN in's input channels left out of its int8 product, and their weight rows
    /// (`[channels, i]`)
    pub in_channels: &'a [i64],
    pub in_weights: &'a [f32],
    /// FFN out's smoothing (`1 / s`, `[i]`) and shift (`[i]`)
    pub inverse: &'a [f32],
    pub shift: &'a [f32],
    /// FFN out's input channels computed in f32
    pub out_channels: &'a [i64],
}

/// For each token: `a = z + bias + x[in_channels] @ in_weights`, `g = gelu(a)`; `exact` (`[rows,
/// out_channels]`) takes `g` at `out_channels`; `v = g * inverse + shift`, `r` (`[rows]`) its
/// largest (at least 1e-30), `q` (`[rows, i]`) `v / r`.
pub(crate) fn activation(
    a: &Activation,
    q: &mut [f32],
    r: &mut [f32],
    exact: &mut [f32],
) -> Result<(), String> {
    let i = a.inverse.len();
    let rows = r.len();
    check(
        available() && i.is_multiple_of(16) && a.shift.len() == i,
        "available() && i.is_multiple_of(16) && a.shift.len() == i",
    )?;
    check(
        a.z.len() == rows * i && q.len() == rows * i,
        "a.z.len() == rows * i && q.len() == rows * i",
    )?;
    check(a.bias.len() == i, "a.bias.len() == i")?;
    check(
        a.in_weights.len() == a.in_channels.len() * i,
        "a.in_weights.len() == a.in_channels.len() * i",
    )?;
    check(
        exact.len() == rows * a.out_channels.len(),
        "exact.len() == rows * a.out_channels.len()",
    )?;
    let h = a.x.len() / rows.max(1);
    check(a.x.len() == rows * h, "a.x.len() == rows * h")?;
    let valid = |c: &[i64], n: usize| c.iter().all(|&c| (0..n as i64).contains(&c));
    check(
        valid(a.in_channels, h) && valid(a.out_channels, i),
        "valid(a.in_channels, h) && valid(a.out_channels, i)",
    )?;
    // SAFETY: AVX-512F is there and every index is within the slices (checked above)
    unsafe { activation_avx512(a, i, h, q, r, exact) };
    Ok(())
}

/// # Safety
///
/// The CPU has AVX-512F, and the slices' lengths and channel indices are those
/// [`activation`] checks (its only caller).
#[target_feature(enable = "avx512f")]
unsafe fn activation_avx512(
    a: &Activation,
    i: usize,
    h: usize,
    q: &mut [f32],
    r: &mut [f32],
    exact: &mut [f32],
) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let e = a.out_channels.len();
        let mut picked = Vec::with_capacity(a.in_channels.len());
        for (t, rt) in r.iter_mut().enumerate() {
            let z = a.z.as_ptr().add(t * i);
            let out = q.as_mut_ptr().add(t * i);
            picked.clear();
            picked.extend(
                a.in_channels
                    .iter()
                    .map(|&c| _mm512_set1_ps(a.x[t * h + c as usize])),
            );
            // GELU of FFN in's product with its bias and f32 channels
            for c in (0..i).step_by(16) {
                let b = _mm512_loadu_ps(a.bias.as_ptr().add(c));
                let mut v = _mm512_add_ps(_mm512_loadu_ps(z.add(c)), b);
                for (k, x) in picked.iter().enumerate() {
                    let w = _mm512_loadu_ps(a.in_weights.as_ptr().add(k * i + c));
                    v = _mm512_fmadd_ps(*x, w, v);
                }
                _mm512_storeu_ps(out.add(c), gelu(v));
            }
            for (d, &c) in exact[t * e..(t + 1) * e].iter_mut().zip(a.out_channels) {
                *d = *out.add(c as usize);
            }
            // smoothed and shifted, then over the token's largest
            let mut m = _mm512_set1_ps(1e-30);
            for c in (0..i).step_by(16) {
                let s = _mm512_loadu_ps(a.inverse.as_ptr().add(c));
                let b = _mm512_loadu_ps(a.shift.as_ptr().add(c));
                let v = _mm512_fmadd_ps(_mm512_loadu_ps(out.add(c)), s, b);
                m = _mm512_max_ps(m, v);
                _mm512_storeu_ps(out.add(c), v);
            }
            *rt = _mm512_reduce_max_ps(m);
            let inv = _mm512_set1_ps(1.0 / *rt);
            for c in (0..i).step_by(16) {
                _mm512_storeu_ps(out.add(c), _mm512_mul_ps(_mm512_loadu_ps(out.add(c)), inv));
            }
        }
    }
}

/// The attention block's end and the feed-forward block's input, token by token.
pub(crate) struct Norm<'a> {
    /// the attention output's product with its bias, and the residual, `[rows, h]`
    pub a: &'a [f32],
    pub residual: &'a [f32],
    /// the layer norm
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
    /// FFN in's smoothing (`1 / s`, 0 for its f32 channels), `[h]`
    pub inverse: &'a [f32],
}

/// `x1` = the layer norm of `a + residual`, and `xs = x1 * inverse`. (Scaling each token of
/// `xs` by its own largest value, as FFN out's input is, gave no less error: RMS 0.00366
/// against 0.00362 from f32 on the benchmark's dump.)
pub(crate) fn norm(n: &Norm, x1: &mut [f32], xs: &mut [f32]) -> Result<(), String> {
    let h = n.gamma.len();
    let rows = x1.len() / h.max(1);
    check(
        available() && h.is_multiple_of(16),
        "available() && h.is_multiple_of(16)",
    )?;
    check(
        n.a.len() == rows * h && n.residual.len() == rows * h,
        "n.a.len() == rows * h && n.residual.len() == rows * h",
    )?;
    check(
        x1.len() == rows * h && xs.len() == rows * h,
        "x1.len() == rows * h && xs.len() == rows * h",
    )?;
    check(
        n.beta.len() == h && n.inverse.len() == h,
        "n.beta.len() == h && n.inverse.len() == h",
    )?;
    // SAFETY: AVX-512F is there and every index is within the slices (checked above)
    unsafe { norm_avx512(n, h, x1, xs) };
    Ok(())
}

/// # Safety
///
/// The CPU has AVX-512F, and the slices' lengths are those [`norm`] checks (its only caller).
#[target_feature(enable = "avx512f")]
unsafe fn norm_avx512(n: &Norm, h: usize, x1: &mut [f32], xs: &mut [f32]) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let at = |v: &[f32], k: usize| _mm512_loadu_ps(v.as_ptr().add(k));
        for (t, (row, srow)) in x1
            .chunks_exact_mut(h)
            .zip(xs.chunks_exact_mut(h))
            .enumerate()
        {
            let mut sum = _mm512_setzero_ps();
            for c in (0..h).step_by(16) {
                let v = _mm512_add_ps(at(n.a, t * h + c), at(n.residual, t * h + c));
                sum = _mm512_add_ps(sum, v);
                _mm512_storeu_ps(row.as_mut_ptr().add(c), v);
            }
            layer_norm(row, sum, (n.gamma, n.beta, n.eps));
            for c in (0..h).step_by(16) {
                let v = _mm512_mul_ps(at(row, c), at(n.inverse, c));
                _mm512_storeu_ps(srow.as_mut_ptr().add(c), v);
            }
        }
    }
}

/// The layer norm of one token's `row` in place, given the sum of its values in 16 lanes.
///
/// # Safety
///
/// The CPU has AVX-512F; `row`, `gamma` and `beta` have the same length, a multiple of 16.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn layer_norm(row: &mut [f32], sum: __m512, (gamma, beta, eps): (&[f32], &[f32], f32)) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let h = row.len();
        let at = |v: &[f32], k: usize| _mm512_loadu_ps(v.as_ptr().add(k));
        let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / h as f32);
        let mut var = _mm512_setzero_ps();
        for c in (0..h).step_by(16) {
            let d = _mm512_sub_ps(at(row, c), mean);
            var = _mm512_fmadd_ps(d, d, var);
        }
        let var = _mm512_reduce_add_ps(var) / h as f32;
        let scale = _mm512_set1_ps(1.0 / (var + eps).sqrt());
        for c in (0..h).step_by(16) {
            let d = _mm512_mul_ps(_mm512_sub_ps(at(row, c), mean), scale);
            let v = _mm512_fmadd_ps(d, at(gamma, c), at(beta, c));
            _mm512_storeu_ps(row.as_mut_ptr().add(c), v);
        }
    }
}

/// The end of the feed-forward block, token by token.
pub(crate) struct Output<'a> {
    /// FFN out's int8 product on the scaled tokens, `[rows, h]`, and the tokens' scales
    pub y: &'a [f32],
    pub r: &'a [f32],
    /// the f32 channels' values (`[rows, channels]`) and weight rows (`[channels, h]`)
    pub exact: &'a [f32],
    pub weights: &'a [f32],
    pub bias: &'a [f32],
    pub residual: &'a [f32],
    /// the layer norm
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

/// `o = y r + bias + exact @ weights + residual`, then the layer norm of each token.
pub(crate) fn output(o: &Output, out: &mut [f32]) -> Result<(), String> {
    let h = o.bias.len();
    let rows = o.r.len();
    check(
        available() && h.is_multiple_of(16),
        "available() && h.is_multiple_of(16)",
    )?;
    check(
        o.y.len() == rows * h && o.residual.len() == rows * h && out.len() == rows * h,
        "o.y.len() == rows * h && o.residual.len() == rows * h && out.len() == rows * h",
    )?;
    check(
        o.gamma.len() == h && o.beta.len() == h,
        "o.gamma.len() == h && o.beta.len() == h",
    )?;
    let e = o.exact.len() / rows.max(1);
    check(
        o.exact.len() == rows * e && o.weights.len() == e * h,
        "o.exact.len() == rows * e && o.weights.len() == e * h",
    )?;
    // SAFETY: AVX-512F is there and every index is within the slices (checked above)
    unsafe { output_avx512(o, h, e, out) };
    Ok(())
}

/// # Safety
///
/// The CPU has AVX-512F, and the slices' lengths are those [`output`] checks (its only
/// caller).
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512(o: &Output, h: usize, e: usize, out: &mut [f32]) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let at = |v: &[f32], k: usize| _mm512_loadu_ps(v.as_ptr().add(k));
        for (t, row) in out.chunks_exact_mut(h).enumerate() {
            let rt = _mm512_set1_ps(o.r[t]);
            let exact = &o.exact[t * e..(t + 1) * e];
            let mut sum = _mm512_setzero_ps();
            for c in (0..h).step_by(16) {
                let mut v = _mm512_fmadd_ps(at(o.y, t * h + c), rt, at(o.bias, c));
                v = _mm512_add_ps(v, at(o.residual, t * h + c));
                for (k, &x) in exact.iter().enumerate() {
                    v = _mm512_fmadd_ps(_mm512_set1_ps(x), at(o.weights, k * h + c), v);
                }
                sum = _mm512_add_ps(sum, v);
                _mm512_storeu_ps(row.as_mut_ptr().add(c), v);
            }
            layer_norm(row, sum, (o.gamma, o.beta, o.eps));
        }
    }
}

fn missing(what: &str) -> ort::Error {
    ort::Error::new(format!("triage feed-forward operator: {what}"))
}

/// The first `n` inputs of an operator's run.
fn inputs<'a>(ctx: &'a ComputeContext, n: usize) -> ort::Result<Vec<ValueRef<'a>>> {
    (0..n)
        .map(|i| ctx.input(i)?.ok_or_else(|| missing("an input is missing")))
        .collect()
}

/// An f32 input's data.
fn f32_data<'a>(v: &'a ValueRef) -> ort::Result<&'a [f32]> {
    Ok(v.try_extract_tensor::<f32>()?.1)
}

fn f32s() -> OperatorInput {
    OperatorInput::required(TensorElementType::Float32)
}

fn i64s() -> OperatorInput {
    OperatorInput::required(TensorElementType::Int64)
}

fn f32_out() -> OperatorOutput {
    OperatorOutput::required(TensorElementType::Float32)
}

/// `triage.FfnActivation` ([`activation`]): inputs `z`, `bias`, `x`,
/// `in_channels`, `in_weights`, `inverse`, `shift`, `out_channels`; outputs `q` (`[rows, i]`), `r` (`[rows, 1]`), `exact`
/// (`[rows, out_channels]`).
pub(crate) struct FfnActivation;

impl Operator for FfnActivation {
    type Kernel<'attr> = BoxedKernel<'attr>;

    fn name(&self) -> &str {
        "FfnActivation"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [
            f32s(),
            f32s(),
            f32s(),
            i64s(),
            f32s(),
            f32s(),
            f32s(),
            i64s(),
        ]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [f32_out(), f32_out(), f32_out()]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        if !available() {
            return Err(missing("this CPU has no AVX-512"));
        }
        Ok(Box::new(|ctx: &ComputeContext| {
            guarded("FfnActivation", || {
                let inputs = inputs(ctx, 8)?;
                let data = |i: usize| f32_data(&inputs[i]);
                let channels = |i: usize| -> ort::Result<&[i64]> {
                    Ok(inputs[i].try_extract_tensor::<i64>()?.1)
                };
                let (shape, z) = inputs[0].try_extract_tensor::<f32>()?;
                let (rows, width) = match **shape {
                    [rows, width] => (rows, width),
                    _ => return Err(missing("z is not [rows, i]")),
                };
                let out_channels = channels(7)?;
                let a = Activation {
                    z,
                    bias: data(1)?,
                    x: data(2)?,
                    in_channels: channels(3)?,
                    in_weights: data(4)?,
                    inverse: data(5)?,
                    shift: data(6)?,
                    out_channels,
                };
                let e = out_channels.len() as i64;
                let mut q = ctx
                    .output(0, vec![rows, width])?
                    .ok_or_else(|| missing("q"))?;
                let mut r = ctx.output(1, vec![rows, 1])?.ok_or_else(|| missing("r"))?;
                let mut exact = ctx
                    .output(2, vec![rows, e])?
                    .ok_or_else(|| missing("exact"))?;
                activation(
                    &a,
                    q.try_extract_tensor_mut::<f32>()?.1,
                    r.try_extract_tensor_mut::<f32>()?.1,
                    exact.try_extract_tensor_mut::<f32>()?.1,
                )
                .map_err(|e| missing(&e))
            })
        }))
    }
}

/// `triage.AttnNorm` ([`norm`]): inputs `a`, `residual`, `gamma`, `beta`, `eps` (`[1]`),
/// `inverse`; outputs `x1`, `xs` (`[rows, h]`).
pub(crate) struct AttnNorm;

impl Operator for AttnNorm {
    type Kernel<'attr> = BoxedKernel<'attr>;

    fn name(&self) -> &str {
        "AttnNorm"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        std::iter::repeat_with(f32s).take(6)
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [f32_out(), f32_out()]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        if !available() {
            return Err(missing("this CPU has no AVX-512"));
        }
        Ok(Box::new(|ctx: &ComputeContext| {
            guarded("AttnNorm", || {
                let inputs = inputs(ctx, 6)?;
                let data = |i: usize| f32_data(&inputs[i]);
                let shape = inputs[0].try_extract_tensor::<f32>()?.0.to_vec();
                let n = Norm {
                    a: data(0)?,
                    residual: data(1)?,
                    gamma: data(2)?,
                    beta: data(3)?,
                    eps: *data(4)?.first().ok_or_else(|| missing("eps is empty"))?,
                    inverse: data(5)?,
                };
                let mut x1 = ctx.output(0, shape.clone())?.ok_or_else(|| missing("x1"))?;
                let mut xs = ctx.output(1, shape)?.ok_or_else(|| missing("xs"))?;
                norm(
                    &n,
                    x1.try_extract_tensor_mut::<f32>()?.1,
                    xs.try_extract_tensor_mut::<f32>()?.1,
                )
                .map_err(|e| missing(&e))
            })
        }))
    }
}

/// `triage.FfnOutput` ([`output`]): inputs `y`, `r`, `exact`, `weights`, `bias`, `residual`,
/// `gamma`, `beta`, `eps` (`[1]`); output `[rows, h]`.
pub(crate) struct FfnOutput;

impl Operator for FfnOutput {
    type Kernel<'attr> = BoxedKernel<'attr>;

    fn name(&self) -> &str {
        "FfnOutput"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        std::iter::repeat_with(f32s).take(9)
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [f32_out()]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        if !available() {
            return Err(missing("this CPU has no AVX-512"));
        }
        Ok(Box::new(|ctx: &ComputeContext| {
            guarded("FfnOutput", || {
                let inputs = inputs(ctx, 9)?;
                let data = |i: usize| f32_data(&inputs[i]);
                let shape = inputs[0].try_extract_tensor::<f32>()?.0.to_vec();
                let o = Output {
                    y: data(0)?,
                    r: data(1)?,
                    exact: data(2)?,
                    weights: data(3)?,
                    bias: data(4)?,
                    residual: data(5)?,
                    gamma: data(6)?,
                    beta: data(7)?,
                    eps: *data(8)?.first().ok_or_else(|| missing("eps is empty"))?,
                };
                let mut out = ctx.output(0, shape)?.ok_or_else(|| missing("output"))?;
                output(&o, out.try_extract_tensor_mut::<f32>()?.1).map_err(|e| missing(&e))
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::erf_f32;
    use crate::test_values::values_of as values;

    fn gelu_ref(x: f32) -> f32 {
        0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-5 * b.abs().max(1.0)
    }

    /// Against the same arithmetic written plainly, element by element.
    #[test]
    fn activation_is_the_plain_arithmetic() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (rows, h, i) = (3, 32, 48);
        let z: Vec<f32> = values(rows * i, 1).iter().map(|v| v * 4.0).collect();
        let x = values(rows * h, 2);
        let in_channels = [3i64, 17];
        let in_weights = values(2 * i, 3);
        let inverse: Vec<f32> = values(i, 4).iter().map(|v| 1.0 + v.abs()).collect();
        let shift: Vec<f32> = inverse.iter().map(|v| 0.17 * v).collect();
        let out_channels = [0i64, 40, 47];
        let bias = values(i, 6);
        let a = Activation {
            z: &z,
            bias: &bias,
            x: &x,
            in_channels: &in_channels,
            in_weights: &in_weights,
            inverse: &inverse,
            shift: &shift,
            out_channels: &out_channels,
        };
        let (mut q, mut r, mut exact) = (vec![0f32; rows * i], vec![0f32; rows], vec![0f32; 9]);
        activation(&a, &mut q, &mut r, &mut exact).unwrap();
        for t in 0..rows {
            let g: Vec<f32> = (0..i)
                .map(|c| {
                    let extra: f32 = in_channels
                        .iter()
                        .enumerate()
                        .map(|(k, &ch)| x[t * h + ch as usize] * in_weights[k * i + c])
                        .sum();
                    gelu_ref(z[t * i + c] + bias[c] + extra)
                })
                .collect();
            let v: Vec<f32> = (0..i).map(|c| g[c] * inverse[c] + shift[c]).collect();
            let m = v.iter().copied().fold(1e-30, f32::max);
            assert!(close(r[t], m), "token {t}: {} vs {m}", r[t]);
            for c in 0..i {
                assert!(close(q[t * i + c], v[c] / m), "token {t} value {c}");
            }
            for (k, &ch) in out_channels.iter().enumerate() {
                assert!(
                    close(exact[t * 3 + k], g[ch as usize]),
                    "token {t} channel {ch}"
                );
            }
        }
    }

    /// The layer norm of the sum in f64, then the smoothing.
    #[test]
    fn norm_is_the_plain_arithmetic() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (rows, h) = (3, 48);
        let (a, residual) = (values(rows * h, 1), values(rows * h, 2));
        let (gamma, beta, inverse) = (values(h, 3), values(h, 4), values(h, 5));
        let n = Norm {
            a: &a,
            residual: &residual,
            gamma: &gamma,
            beta: &beta,
            eps: 1e-12,
            inverse: &inverse,
        };
        let (mut x1, mut xs) = (vec![0f32; rows * h], vec![0f32; rows * h]);
        norm(&n, &mut x1, &mut xs).unwrap();
        for t in 0..rows {
            let v: Vec<f64> = (0..h)
                .map(|c| f64::from(a[t * h + c] + residual[t * h + c]))
                .collect();
            let mean = v.iter().sum::<f64>() / h as f64;
            let var = v.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            for c in 0..h {
                let want = ((v[c] - mean) / (var + 1e-12).sqrt() * f64::from(gamma[c])
                    + f64::from(beta[c])) as f32;
                assert!(close(x1[t * h + c], want), "token {t} value {c}");
                assert!(
                    close(xs[t * h + c], want * inverse[c]),
                    "token {t} value {c}"
                );
            }
        }
    }

    #[test]
    fn output_is_the_plain_arithmetic() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (rows, h, e) = (4, 48, 2);
        let (y, r, exact) = (values(rows * h, 1), values(rows, 2), values(rows * e, 3));
        let (weights, bias, residual) = (values(e * h, 4), values(h, 5), values(rows * h, 6));
        let (gamma, beta) = (values(h, 7), values(h, 8));
        let o = Output {
            y: &y,
            r: &r,
            exact: &exact,
            weights: &weights,
            bias: &bias,
            residual: &residual,
            gamma: &gamma,
            beta: &beta,
            eps: 1e-12,
        };
        let mut out = vec![0f32; rows * h];
        output(&o, &mut out).unwrap();
        for t in 0..rows {
            let v: Vec<f64> = (0..h)
                .map(|c| {
                    let mut v = y[t * h + c] * r[t] + bias[c] + residual[t * h + c];
                    for k in 0..e {
                        v += exact[t * e + k] * weights[k * h + c];
                    }
                    f64::from(v)
                })
                .collect();
            let mean = v.iter().sum::<f64>() / h as f64;
            let var = v.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            for c in 0..h {
                let want =
                    (v[c] - mean) / (var + 1e-12).sqrt() * f64::from(gamma[c]) + f64::from(beta[c]);
                assert!(close(out[t * h + c], want as f32), "token {t} value {c}");
            }
        }
    }
}
