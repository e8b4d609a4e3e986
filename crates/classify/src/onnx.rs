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
//! own operator ([`crate::attention`]) where the CPU has AVX-512 BF16, in f32 elsewhere; the
//! f32 graph keeps ONNX Runtime's f32 attention.

use candle_core::Tensor;

use crate::config::HiddenAct;

/// The tensors and shape of one layer, weights as candle holds them (`[out, in]`).
pub(crate) struct LayerWeights {
    pub qkv: (Tensor, Tensor),
    pub attn_out: (Tensor, Tensor),
    pub attn_norm: (Tensor, Tensor),
    pub ffn_in: (Tensor, Tensor),
    pub ffn_out: (Tensor, Tensor),
    pub ffn_norm: (Tensor, Tensor),
}

/// What the graph computes besides its weights.
#[derive(Clone, Copy)]
pub(crate) struct GraphSpec {
    pub hidden: usize,
    pub heads: usize,
    pub eps: f32,
    pub act: HiddenAct,
    /// Weights of the products as int8, activations quantized at run time.
    pub int8: bool,
    /// Self-attention in triage's bf16 operator ([`crate::attention`]) instead of ONNX
    /// Runtime's f32 nodes (sessions need [`operators`]).
    pub bf16_attention: bool,
    /// The int8 feed-forward block's work around its products in triage's operators
    /// ([`crate::ffn`]) instead of ONNX Runtime's nodes.
    pub fused_ffn: bool,
}

// ---- protobuf wire format ------------------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn int(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn f32_field(out: &mut Vec<u8>, field: u32, v: f32) {
    key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

// onnx.proto's TensorProto.DataType
const FLOAT: i64 = 1;
const INT8: i64 = 3;
const INT64: i64 = 7;

/// ONNX Runtime's operator domain.
const MS: &str = "com.microsoft";
/// The domain of triage's own operators ([`operators`]).
const OPS: &str = "triage";

/// triage's own operators, for a session's builder: on x86-64 the bf16 attention
/// ([`crate::attention`]) and the feed-forward block's three ([`crate::ffn`]); elsewhere none
/// (the graphs then keep ONNX Runtime's nodes).
pub(crate) fn operators() -> ort::Result<ort::operator::OperatorDomain> {
    let domain = ort::operator::OperatorDomain::new(OPS)?;
    #[cfg(target_arch = "x86_64")]
    let domain = domain
        .add(crate::attention::AttentionOp)?
        .add(crate::ffn::AttnNorm)?
        .add(crate::ffn::FfnActivation)?
        .add(crate::ffn::FfnOutput)?;
    Ok(domain)
}

/// An attribute of a node.
enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// An ONNX graph being written: nodes, initializers, one input and one output.
struct Graph {
    nodes: Vec<u8>,
    inits: Vec<u8>,
    n: usize,
    /// The probed input ranges, `[k]` each, in the order of the products.
    probes: Vec<String>,
}

impl Graph {
    fn new() -> Self {
        Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            n: 0,
            probes: Vec::new(),
        }
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.n += 1;
        format!("{stem}_{}", self.n)
    }

    /// Adds a node; returns the name of its (first) output.
    fn node(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: &[(&str, Attr)],
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh(op)).collect();
        let mut m = Vec::new();
        for i in inputs {
            bytes(&mut m, 1, i.as_bytes());
        }
        for o in &outs {
            bytes(&mut m, 2, o.as_bytes());
        }
        bytes(&mut m, 3, outs[0].as_bytes());
        bytes(&mut m, 4, op.as_bytes());
        for (name, value) in attrs {
            let mut a = Vec::new();
            bytes(&mut a, 1, name.as_bytes());
            match value {
                Attr::Float(f) => {
                    f32_field(&mut a, 2, *f);
                    int(&mut a, 20, 1);
                }
                Attr::Int(i) => {
                    int(&mut a, 3, *i);
                    int(&mut a, 20, 2);
                }
                Attr::Ints(v) => {
                    for i in v {
                        int(&mut a, 8, *i);
                    }
                    int(&mut a, 20, 7);
                }
            }
            bytes(&mut m, 5, &a);
        }
        if !domain.is_empty() {
            bytes(&mut m, 7, domain.as_bytes());
        }
        bytes(&mut self.nodes, 1, &m);
        outs
    }

    fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.node(op, "", inputs, 1, attrs).remove(0)
    }

    /// Adds a constant tensor; returns its name.
    fn init(&mut self, stem: &str, dims: &[usize], data_type: i64, raw: &[u8]) -> String {
        let name = self.fresh(stem);
        let mut t = Vec::new();
        for d in dims {
            int(&mut t, 1, *d as i64);
        }
        int(&mut t, 2, data_type);
        bytes(&mut t, 8, name.as_bytes());
        bytes(&mut t, 9, raw);
        bytes(&mut self.inits, 5, &t);
        name
    }

    fn floats(&mut self, stem: &str, dims: &[usize], v: &[f32]) -> String {
        let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(stem, dims, FLOAT, &raw)
    }

    fn int64s(&mut self, stem: &str, v: &[i64]) -> String {
        let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(stem, &[v.len()], INT64, &raw)
    }

    /// The whole model: the graph with one input and its outputs, f32 `[1, len, width]` each.
    fn model(self, (input, in_width): (&str, usize), outputs: &[(&str, usize)]) -> Vec<u8> {
        let value_info = |name: &str, width: usize| {
            let mut dims = Vec::new();
            for value in [Some(1i64), None, Some(width as i64)] {
                let mut d = Vec::new();
                match value {
                    Some(v) => int(&mut d, 1, v),
                    None => bytes(&mut d, 2, b"len"),
                }
                bytes(&mut dims, 1, &d);
            }
            let mut tensor = Vec::new();
            int(&mut tensor, 1, FLOAT);
            bytes(&mut tensor, 2, &dims);
            let mut ty = Vec::new();
            bytes(&mut ty, 1, &tensor);
            let mut vi = Vec::new();
            bytes(&mut vi, 1, name.as_bytes());
            bytes(&mut vi, 2, &ty);
            vi
        };
        let mut g = self.nodes;
        bytes(&mut g, 2, b"encoder");
        g.extend_from_slice(&self.inits);
        bytes(&mut g, 11, &value_info(input, in_width));
        for (output, width) in outputs {
            bytes(&mut g, 12, &value_info(output, *width));
        }
        let mut m = Vec::new();
        int(&mut m, 1, 8); // IR version 8 (ONNX 1.10+)
        for (domain, version) in [("", 17i64), (MS, 1), (OPS, 1)] {
            let mut o = Vec::new();
            bytes(&mut o, 1, domain.as_bytes());
            int(&mut o, 2, version);
            bytes(&mut m, 8, &o);
        }
        bytes(&mut m, 2, b"triage");
        bytes(&mut m, 7, &g);
        m
    }
}

// ---- the encoder layers --------------------------------------------------------------------

fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// How [`linear`] computes a product.
#[derive(Clone, Copy)]
enum Product<'a> {
    F32,
    /// f32, and the largest |x| of each input channel over the window becomes an output of
    /// the graph (calibration).
    Probe,
    /// int8 (see [`Int8`]).
    Int8(Int8<'a>),
}

/// How an int8 product quantizes its input.
#[derive(Clone, Copy)]
struct Int8<'a> {
    /// The input channels' calibrated largest |x|, to smooth them ([`smoothing`]); none: no
    /// smoothing.
    range: Option<&'a [f32]>,
    /// SmoothQuant's migration strength for this product.
    alpha: f32,
    activations: Activations,
    /// How many input channels, those of largest smoothed range, are left out of the int8
    /// product and computed in f32 beside it (with calibrated ranges only).
    exact_channels: usize,
}

/// The scales of an int8 product's input.
#[derive(Clone, Copy)]
enum Activations {
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
fn int8_products<'a>(ranges: Option<&'a InputRanges>, act: HiddenAct) -> [Product<'a>; 4] {
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
        })
    })
}

/// The attention output's smoothing without a pass over its input: the context is the
/// attention's average of the values, so dividing the values' weights and bias (the last third
/// of the QKV product's outputs) by `s` divides the context's channels by `s`, and the
/// attention output's weights take `s` on their input rows. Returns the new QKV and attention
/// output weights.
#[allow(clippy::type_complexity)]
fn fold_into_values(
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
const GELU_LOWER: f32 = 0.17;

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
struct Int8Weights {
    /// Each input channel's factor before the product (`1 / s`, 0 for the exact channels).
    inverse: Vec<f32>,
    /// The input channels computed in f32 beside the int8 product, with their weight rows
    /// (`[channels, n]`).
    exact: Option<(Vec<i64>, Vec<f32>)>,
}

/// Smooths `wt` (`[k, n]`) in place for an int8 product ([`smoothing`]) and zeroes the weight
/// rows of its `exact_channels` of widest smoothed range, which are left out of the int8
/// product (their input and weights zeroed, so that neither sets a scale) and multiplied in
/// f32 beside it. Without calibrated ranges, nothing changes.
fn int8_weights(wt: &mut [f32], n: usize, int8: &Int8) -> Int8Weights {
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
fn linear(
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
    let (q, scale) = quantize_columns(&wt, n);
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

/// The bias that takes back an input shift `c` (`[k]`) from an int8 product: `(x + c) @ w' =
/// x @ w' + c @ w'`, with the int8 weights `q` (`[k, n]`) and column scales as the product
/// computes it.
fn take_back_shift(bias: &mut [f32], c: &[f32], q: &[u8], scale: &[f32]) {
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
pub(crate) fn quantize_columns(w: &[f32], n: usize) -> (Vec<u8>, Vec<f32>) {
    use rayon::prelude::*;
    // round half to even by the float trick (|v / s| < 2^22), which vectorises where `round`
    // is a call to libm
    const MAGIC: f32 = 12_582_912.0; // 1.5 x 2^23
    let quantize = |v: f32, s: f32| ((v / s + MAGIC) - MAGIC).clamp(-127.0, 127.0);
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
                .map(|i| top / 127.0 * (1.0 - 0.02 * i as f32))
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

fn layer_norm(
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
            int8_products(ranges.map(|r| &r[i]), spec.act)
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
fn input_widths(l: &LayerWeights) -> candle_core::Result<[usize; 4]> {
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

/// The layers' nodes; `products(i)` says how layer `i` computes its four products (QKV,
/// attention output, FFN in, FFN out). Returns the graph and its last hidden states.
fn layers_graph<'a>(
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
            g.node("Attention", OPS, &[&qkv], 1, &[("heads", heads)])
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
/// each), with triage's operators ([`crate::ffn`]) for the work around the two int8 products:
/// the same arithmetic as the attention block's end ([`layer_norm`]) and [`linear`], GELU and
/// the layer norm in ONNX operators, in 5 nodes instead of 17. Returns the layer's output.
fn ffn_fused(
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
        .node("AttnNorm", OPS, &inputs, 2, &[])
        .try_into()
        .expect("two outputs");
    let x1 = x1.as_str();
    // FFN in: the int8 product; the activation's operator adds its bias
    let (q, scale) = quantize_columns(&wt, i);
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
    let (q, scale) = quantize_columns(&wt, h);
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
        .node("FfnActivation", OPS, &inputs, 3, &[])
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
    Ok(g.node("FfnOutput", OPS, &inputs, 1, &[]).remove(0))
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
) -> candle_core::Result<Vec<u8>> {
    let (n, k) = w.dims2()?;
    let mut g = Graph::new();
    let product = if int8 {
        Product::Int8(Int8 {
            range,
            alpha: 0.5,
            activations: Activations::PerToken { lower: None },
            exact_channels,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn varints_are_protobuf_varints() {
        // examples from the protobuf encoding guide
        for (v, want) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
        // a negative int64 takes ten bytes, as protobuf writes it
        let mut out = Vec::new();
        int(&mut out, 3, -1);
        assert_eq!(out.len(), 11);
        assert_eq!(out[0], 3 << 3);
    }

    /// Deterministic values in [-1, 1) (a linear congruential generator), for tests.
    pub(crate) fn values_of(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

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
        let (q, scale) = quantize_columns(&w, n);
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
        let (q, scale) = quantize_columns(&even, 1);
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
