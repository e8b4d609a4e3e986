//! Writes the encoder's transformer layers as an ONNX graph, for the `ort` backend.
//!
//! The graph is built from the weights candle loaded, in memory, with a small protobuf writer
//! (the handful of `onnx.proto` messages a graph needs), so the backend reads the same
//! model directories as candle and no conversion step or Python is involved. The embeddings
//! stay on candle: the graph takes their output, one window at a time (`[1, len, hidden]`), and
//! gives the last hidden states.
//!
//! With `int8`, every matrix product with a weight matrix runs in int8 ([`linear`]): weights
//! with one scale per output column, activations quantized at run time with one scale per
//! window (the inputs a layer norm has just evened out: QKV and FFN in, and the attention
//! output) or per token (the GELU outputs), so a window's states never depend on other
//! windows. Before that, SmoothQuant moves each input channel's range partly into the weights
//! ([`smoothing`]), with ranges measured in f32 on built-in calibration texts
//! ([`probe_model`]). The products inside attention (scores, context) run in bf16 in triage's
//! own operator ([`crate::backend::ort::ops::attention`]) where the CPU has AVX-512 BF16, in f32 elsewhere; the
//! f32 graph keeps ONNX Runtime's f32 attention.

use candle_core::Tensor;

use super::proto::{Attr, Graph, INT8, MS};
use super::quant::*;
use crate::config::HiddenAct;
use crate::model::LayerWeights;

/// What the graph computes besides its weights.
#[derive(Clone, Copy)]
pub(crate) struct GraphSpec {
    pub hidden: usize,
    pub heads: usize,
    pub eps: f32,
    pub act: HiddenAct,
    /// Weights of the products as int8, activations quantized at run time.
    pub int8: bool,
    /// Self-attention in triage's bf16 operator ([`crate::backend::ort::ops::attention`]) instead of ONNX
    /// Runtime's f32 nodes (sessions need [`operators`]).
    pub bf16_attention: bool,
    /// The int8 feed-forward block's work around its products in triage's operators
    /// ([`crate::backend::ort::ops::ffn`]) instead of ONNX Runtime's nodes.
    pub fused_ffn: bool,
    /// The int8 weights' largest code (127; 63 for 7-bit weights, [`crate::Int8Kernels::U8s7`]).
    pub weight_max: f32,
}

// ---- the encoder layers --------------------------------------------------------------------

pub(crate) fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `x @ w.T + b` for a candle `Linear` weight `w` (`[out, in]`), in f32 or int8.
///
/// int8: the weights are quantized symmetrically with one scale per output column
/// ([`quantize_columns`]). The activations are quantized at run time by ONNX Runtime's
/// `DynamicQuantizeMatMul` (u8 x s8 products on VNNI, scaled back in the same kernel), which
/// takes one scale for its whole input; for one scale per token, each token is first divided by
/// its largest |x| and the product multiplied back by it. With calibrated input ranges, the
/// input channels are smoothed first ([`smoothing`]), and the `exact_channels` of widest
/// smoothed range are left out of the int8 product and multiplied in f32 beside it. `x` is
/// `[len, in]`; with `residual`, it is added to the result.
pub(crate) fn linear(
    g: &mut Graph,
    x: &str,
    (w, b): &(Tensor, Tensor),
    product: Product,
    residual: Option<&str>,
) -> candle_core::Result<String> {
    let with_residual = |g: &mut Graph, y: String| match residual {
        Some(r) => g.op("Add", &[&y, r], &[]),
        None => y,
    };
    let (n, k) = w.dims2()?;
    let mut wt = values(&w.t()?.contiguous()?)?; // [k, n]
    let mut bias = values(b)?;
    let int8 = match product {
        Product::F32 | Product::Probe => {
            if let Product::Probe = product {
                let a = g.op("Abs", &[x], &[]);
                let m = g.op(
                    "ReduceMax",
                    &[&a],
                    &[("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(0))],
                );
                g.probes.push(m);
            }
            let w = g.floats("w", &[k, n], &wt);
            let bias = g.floats("b", &[n], &bias);
            let y = g.op("MatMul", &[x, &w], &[]);
            let y = g.op("Add", &[&y, &bias], &[]);
            return Ok(with_residual(g, y));
        }
        Product::Int8(int8) => int8,
    };
    let input = x;
    let mut x = x.to_string();
    let Int8Weights { inverse, exact } = int8_weights(&mut wt, n, &int8);
    // smoothed when calibrated ranges were given
    if int8.range.is_some() {
        let i = g.floats("smooth", &[k], &inverse);
        x = g.op("Mul", &[&x, &i], &[]);
    }
    // `c` + the exact channels' product (`[len, n]`, one `Gemm`); `c` alone without them
    let add_exact = |g: &mut Graph, c: &str| -> String {
        match &exact {
            None => c.to_string(),
            Some((channels, rows)) => {
                let idx = g.int64s("channels", channels);
                let picked = g.op("Gather", &[input, &idx], &[("axis", Attr::Int(-1))]);
                let w = g.floats("w_exact", &[channels.len(), n], rows);
                g.op("Gemm", &[&picked, &w, c], &[])
            }
        }
    };
    let (q, scale) = quantize_columns(&wt, n, int8.weight_max);
    let w = g.init("wq", &[k, n], INT8, &q);
    let ws = g.floats("ws", &[n], &scale);
    let wz = g.init("wz", &[n], INT8, &vec![0u8; n]);
    let lower = match int8.activations {
        Activations::PerWindow => {
            let bias = g.floats("b", &[n], &bias);
            let inputs = [x.as_str(), &w, &ws, &wz, &bias];
            let y = g
                .node("DynamicQuantizeMatMul", MS, &inputs, 1, &[])
                .remove(0);
            let y = add_exact(g, &y);
            return Ok(with_residual(g, y));
        }
        Activations::PerToken { lower } => lower,
    };
    // x >= 0 after the shift: its largest value is its largest |x|
    let mut shifted = false;
    let a = match lower {
        Some(lower) => {
            if lower > 0.0 {
                shifted = true;
                // x + c with c_j = lower / s_j >= -x_j: (x + c) @ w' = x @ w' + c @ w', so the
                // bias gives back c @ w' (with the int8 weights, as the product computes it)
                let c: Vec<f32> = inverse.iter().map(|i| lower * i).collect();
                take_back_shift(&mut bias, &c, &q, &scale);
                let c = g.floats("shift", &[k], &c);
                x = g.op("Add", &[&x, &c], &[]);
            }
            x.clone()
        }
        None => g.op("Abs", &[&x], &[]),
    };
    let bias = g.floats("b", &[n], &bias);
    // each token over its largest |x|, so that the window's one scale is each token's own
    let m = g.op(
        "ReduceMax",
        &[&a],
        &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
    );
    // shifted past the activation's minimum (GELU's -0.16997 by 0.17), every channel that is
    // not left out is above zero, so the largest is too; otherwise guard against all zeros
    let r = if shifted {
        m
    } else {
        let tiny = g.floats("c", &[], &[1e-30]);
        g.op("Max", &[&m, &tiny], &[])
    };
    // times the reciprocal: one division per token instead of one per value (about 1% faster
    // end to end on the benchmark's dump, the same error)
    let inverse_r = g.op("Reciprocal", &[&r], &[]);
    let x = g.op("Mul", &[&x, &inverse_r], &[]);
    let y = g
        .node("DynamicQuantizeMatMul", MS, &[&x, &w, &ws, &wz], 1, &[])
        .remove(0);
    let y = g.op("Mul", &[&y, &r], &[]);
    // the bias (with the exact channels' part) and the residual in one node
    let mut terms = vec![y, add_exact(g, &bias)];
    if let Some(r) = residual {
        terms.push(r.to_string());
    }
    let refs: Vec<&str> = terms.iter().map(String::as_str).collect();
    Ok(g.op("Sum", &refs, &[]))
}

pub(crate) fn layer_norm(
    g: &mut Graph,
    x: &str,
    (w, b): &(Tensor, Tensor),
    eps: f32,
) -> candle_core::Result<String> {
    let n = w.dims1()?;
    let w = g.floats("ln_w", &[n], &values(w)?);
    let b = g.floats("ln_b", &[n], &values(b)?);
    Ok(g.op(
        "LayerNormalization",
        &[x, &w, &b],
        &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
    ))
}

/// The ONNX model of `layers`: input `hidden` (the embeddings' output), one output (the last
/// hidden states). An int8 model smooths its products' inputs when given their calibrated
/// ranges (one per layer, from [`probe_model`]).
pub(crate) fn encoder_model(
    layers: &[LayerWeights],
    spec: &GraphSpec,
    ranges: Option<&[InputRanges]>,
) -> candle_core::Result<Vec<u8>> {
    let products = |i: usize| {
        if spec.int8 {
            int8_products(ranges.map(|r| &r[i]), spec.act, spec.weight_max)
        } else {
            [Product::F32; 4]
        }
    };
    let (g, x) = layers_graph(layers, spec, products)?;
    Ok(g.model(("hidden", spec.hidden), &[(&x, spec.hidden)]))
}

/// The f32 model of `layers` (its first output, the last hidden states, as [`encoder_model`]
/// computes them in f32) whose second output, `[1, 1, `[`probe_width`]`]` per window, is the
/// largest |x| of each input channel of each product, layer by layer (for
/// [`InputRanges::from_probe`]).
pub(crate) fn probe_model(
    layers: &[LayerWeights],
    spec: &GraphSpec,
) -> candle_core::Result<Vec<u8>> {
    let spec = GraphSpec {
        int8: false,
        bf16_attention: false,
        fused_ffn: false,
        ..*spec
    };
    let (mut g, x) = layers_graph(layers, &spec, |_| [Product::Probe; 4])?;
    let probes = std::mem::take(&mut g.probes);
    let refs: Vec<&str> = probes.iter().map(String::as_str).collect();
    let all = g.op("Concat", &refs, &[("axis", Attr::Int(0))]);
    let shape = g.int64s("shape", &[1, 1, -1]);
    let ranges = g.op("Reshape", &[&all, &shape], &[]);
    let width = probe_width(layers)?;
    Ok(g.model(
        ("hidden", spec.hidden),
        &[(&x, spec.hidden), (&ranges, width)],
    ))
}

/// The input widths of a layer's four products (QKV, attention output, FFN in, FFN out).
pub(crate) fn input_widths(l: &LayerWeights) -> candle_core::Result<[usize; 4]> {
    Ok([
        l.qkv.0.dims2()?.1,
        l.attn_out.0.dims2()?.1,
        l.ffn_in.0.dims2()?.1,
        l.ffn_out.0.dims2()?.1,
    ])
}

/// The width of [`probe_model`]'s second output: every product's input width, layer by layer.
pub(crate) fn probe_width(layers: &[LayerWeights]) -> candle_core::Result<usize> {
    let mut width = 0;
    for l in layers {
        width += input_widths(l)?.iter().sum::<usize>();
    }
    Ok(width)
}

/// attention output, FFN in, FFN out). Returns the graph and its last hidden states.
pub(crate) fn layers_graph<'a>(
    layers: &[LayerWeights],
    spec: &GraphSpec,
    products: impl Fn(usize) -> [Product<'a>; 4],
) -> candle_core::Result<(Graph, String)> {
    let mut g = Graph::new();
    let (h, nh) = (spec.hidden, spec.heads);
    let hd = h / nh;
    // the layers work on `[len, h]`: the exact channels' products are then one `Gemm`
    let split_shape = g.int64s("shape", &[-1, 3, nh as i64, hd as i64]);
    let merge_shape = g.int64s("shape", &[-1, h as i64]);
    let out_shape = g.int64s("shape", &[1, -1, h as i64]);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut x = g.op("Reshape", &["hidden", &merge_shape], &[]);
    for (i, l) in layers.iter().enumerate() {
        let [p_qkv, mut p_attn_out, p_ffn_in, p_ffn_out] = products(i);
        let folded;
        let (qkv_weights, attn_out_weights) = match &mut p_attn_out {
            Product::Int8(Int8 {
                range: range @ Some(_),
                alpha,
                ..
            }) => {
                folded =
                    fold_into_values(&l.qkv, &l.attn_out, range.take().unwrap_or(&[]), *alpha)?;
                (&folded.0, &folded.1)
            }
            _ => (&l.qkv, &l.attn_out),
        };
        let qkv = linear(&mut g, &x, qkv_weights, p_qkv, None)?;
        let ctx = if spec.bf16_attention {
            let heads = Attr::Int(nh as i64);
            g.node(
                "Attention",
                super::ops::DOMAIN,
                &[&qkv],
                1,
                &[("heads", heads)],
            )
            .remove(0)
        } else {
            // [len, 3, heads, hd] -> [3, heads, len, hd] -> q, k, v [1, heads, len, hd]; the
            // scores take k transposed and the scale in the same node
            let qkv = g.op("Reshape", &[&qkv, &split_shape], &[]);
            let qkv = g.op(
                "Transpose",
                &[&qkv],
                &[("perm", Attr::Ints(vec![1, 2, 0, 3]))],
            );
            let [q, k, v]: [String; 3] = g
                .node("Split", "", &[&qkv], 3, &[("axis", Attr::Int(0))])
                .try_into()
                .expect("three outputs");
            let scores = g
                .node(
                    "FusedMatMul",
                    MS,
                    &[&q, &k],
                    1,
                    &[("transB", Attr::Int(1)), ("alpha", Attr::Float(scale))],
                )
                .remove(0);
            let probs = g.op("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
            let ctx = g.op("MatMul", &[&probs, &v], &[]);
            let ctx = g.op(
                "Transpose",
                &[&ctx],
                &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
            );
            g.op("Reshape", &[&ctx, &merge_shape], &[])
        };
        let a = linear(&mut g, &ctx, attn_out_weights, p_attn_out, None)?;
        if let (
            HiddenAct::Gelu,
            Product::Int8(
                ffn_in @ Int8 {
                    range: Some(_),
                    activations: Activations::PerWindow,
                    ..
                },
            ),
            Product::Int8(
                ffn_out @ Int8 {
                    range: Some(_),
                    activations: Activations::PerToken { lower: Some(lower) },
                    ..
                },
            ),
        ) = (spec.act, p_ffn_in, p_ffn_out)
        {
            let (i, h) = l.ffn_in.0.dims2()?;
            if spec.fused_ffn && lower == GELU_LOWER && i.is_multiple_of(16) && h.is_multiple_of(16)
            {
                x = ffn_fused(&mut g, (&a, &x), l, (&ffn_in, &ffn_out), spec.eps)?;
                continue;
            }
        }
        let a = g.op("Add", &[&a, &x], &[]);
        let x1 = layer_norm(&mut g, &a, &l.attn_norm, spec.eps)?;
        let f = linear(&mut g, &x1, &l.ffn_in, p_ffn_in, None)?;
        let f = match spec.act {
            HiddenAct::Gelu => g.node("Gelu", MS, &[&f], 1, &[]).remove(0),
            HiddenAct::GeluNew => g.node("FastGelu", MS, &[&f], 1, &[]).remove(0),
            HiddenAct::Relu => g.op("Relu", &[&f], &[]),
        };
        let f = linear(&mut g, &f, &l.ffn_out, p_ffn_out, Some(&x1))?;
        x = layer_norm(&mut g, &f, &l.ffn_norm, spec.eps)?;
    }
    let x = g.op("Reshape", &[&x, &out_shape], &[]);
    Ok((g, x))
}

/// The feed-forward block of an int8 layer with GELU, FFN in one scale per window and FFN out
/// one per token shifted past GELU's minimum (what [`int8_products`] gives with calibrated
/// ranges), from the attention output's product `a` and the layer's input `x` (`[len, h]`
/// each), with triage's operators ([`crate::backend::ort::ops::ffn`]) for the work around the two int8 products:
/// the same arithmetic as the attention block's end ([`layer_norm`]) and [`linear`], GELU and
/// the layer norm in ONNX operators, in 5 nodes instead of 17. Returns the layer's output.
pub(crate) fn ffn_fused(
    g: &mut Graph,
    (a, x): (&str, &str),
    l: &LayerWeights,
    (ffn_in, ffn_out): (&Int8, &Int8),
    eps: f32,
) -> candle_core::Result<String> {
    let (i, h) = l.ffn_in.0.dims2()?;
    // the attention block's residual and layer norm, and FFN in's smoothed input; its f32
    // channels go to the activation's operator
    let mut wt = values(&l.ffn_in.0.t()?.contiguous()?)?; // [h, i]
    let w_in = int8_weights(&mut wt, i, ffn_in);
    let norm = [
        g.floats("ln_w", &[h], &values(&l.attn_norm.0)?),
        g.floats("ln_b", &[h], &values(&l.attn_norm.1)?),
        g.floats("eps", &[1], &[eps]),
        g.floats("smooth", &[h], &w_in.inverse),
    ];
    let inputs = [a, x, &norm[0], &norm[1], &norm[2], &norm[3]];
    let [x1, xs]: [String; 2] = g
        .node("AttnNorm", super::ops::DOMAIN, &inputs, 2, &[])
        .try_into()
        .expect("two outputs");
    let x1 = x1.as_str();
    // FFN in: the int8 product; the activation's operator adds its bias
    let (q, scale) = quantize_columns(&wt, i, ffn_in.weight_max);
    let w = g.init("wq", &[h, i], INT8, &q);
    let ws = g.floats("ws", &[i], &scale);
    let wz = g.init("wz", &[i], INT8, &vec![0u8; i]);
    let bias_in = g.floats("b", &[i], &values(&l.ffn_in.1)?);
    let z = g
        .node("DynamicQuantizeMatMul", MS, &[&xs, &w, &ws, &wz], 1, &[])
        .remove(0);
    let (in_channels, in_rows) = w_in.exact.unwrap_or_default();
    // FFN out: the inputs shifted by GELU's minimum and smoothed; the bias takes the shift back
    let mut wt = values(&l.ffn_out.0.t()?.contiguous()?)?; // [i, h]
    let mut bias = values(&l.ffn_out.1)?;
    let w_out = int8_weights(&mut wt, h, ffn_out);
    let (q, scale) = quantize_columns(&wt, h, ffn_out.weight_max);
    let shift: Vec<f32> = w_out.inverse.iter().map(|v| GELU_LOWER * v).collect();
    take_back_shift(&mut bias, &shift, &q, &scale);
    let (out_channels, out_rows) = w_out.exact.unwrap_or_default();
    let names = [
        g.int64s("channels", &in_channels),
        g.floats("w_exact", &[in_channels.len(), i], &in_rows),
        g.floats("smooth", &[i], &w_out.inverse),
        g.floats("shift", &[i], &shift),
        g.int64s("channels", &out_channels),
    ];
    let mut inputs = vec![z.as_str(), &bias_in, x1];
    inputs.extend(names.iter().map(String::as_str));
    let [a, r, exact]: [String; 3] = g
        .node("FfnActivation", super::ops::DOMAIN, &inputs, 3, &[])
        .try_into()
        .expect("three outputs");
    let w = g.init("wq", &[i, h], INT8, &q);
    let ws = g.floats("ws", &[h], &scale);
    let wz = g.init("wz", &[h], INT8, &vec![0u8; h]);
    let y = g
        .node("DynamicQuantizeMatMul", MS, &[&a, &w, &ws, &wz], 1, &[])
        .remove(0);
    let names = [
        g.floats("w_exact", &[out_channels.len(), h], &out_rows),
        g.floats("b", &[h], &bias),
    ];
    let norm = [
        g.floats("ln_w", &[h], &values(&l.ffn_norm.0)?),
        g.floats("ln_b", &[h], &values(&l.ffn_norm.1)?),
        g.floats("eps", &[1], &[eps]),
    ];
    let inputs = [
        y.as_str(),
        &r,
        &exact,
        &names[0],
        &names[1],
        x1,
        &norm[0],
        &norm[1],
        &norm[2],
    ];
    Ok(g.node("FfnOutput", super::ops::DOMAIN, &inputs, 1, &[])
        .remove(0))
}

/// A model of one product with a weight, `x @ w.T + b` as [`encoder_model`] writes each of
/// its products (for the matrix-multiply micro-benchmark).
/// An int8 product takes one scale per token, and with `range` (its input channels' largest
/// |x|) smooths them and computes `exact_channels` of them in f32.
pub(crate) fn linear_model(
    w: &Tensor,
    b: &Tensor,
    int8: bool,
    range: Option<&[f32]>,
    exact_channels: usize,
    weight_max: f32,
) -> candle_core::Result<Vec<u8>> {
    let (n, k) = w.dims2()?;
    let mut g = Graph::new();
    let product = if int8 {
        Product::Int8(Int8 {
            range,
            alpha: 0.5,
            activations: Activations::PerToken { lower: None },
            exact_channels,
            weight_max,
        })
    } else {
        Product::F32
    };
    let flat = g.int64s("shape", &[-1, k as i64]);
    let x = g.op("Reshape", &["x", &flat], &[]);
    let y = linear(&mut g, &x, &(w.clone(), b.clone()), product, None)?;
    let shape = g.int64s("shape", &[1, -1, n as i64]);
    let y = g.op("Reshape", &[&y, &shape], &[]);
    Ok(g.model(("x", k), &[(&y, n)]))
}
