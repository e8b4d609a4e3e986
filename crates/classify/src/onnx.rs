//! Writes the encoder's transformer layers as an ONNX graph, for the `ort` backend.
//!
//! The graph is built from the weights candle loaded, in memory, with a small protobuf writer
//! (the handful of `onnx.proto` messages a graph needs), so the backend reads the same
//! model directories as candle and no conversion step or Python is involved. The embeddings
//! stay on candle: the graph takes their output, one window at a time (`[1, len, hidden]`), and
//! gives the last hidden states.
//!
//! With `int8`, every matrix product with a weight matrix runs in int8 ([`linear`]): weights
//! with one scale per output column, activations quantized in the graph with one scale per
//! token, so a token's states never depend on other tokens' magnitudes nor on other windows.
//! The products inside attention (scores, context) stay f32.

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
const UINT8: i64 = 2;
const INT8: i64 = 3;
const INT64: i64 = 7;

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
}

impl Graph {
    fn new() -> Self {
        Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            n: 0,
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

    /// The whole model: the graph with one input and one output, f32 `[1, len, width]` each.
    fn model(
        self,
        (input, in_width): (&str, usize),
        (output, out_width): (&str, usize),
    ) -> Vec<u8> {
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
        bytes(&mut g, 12, &value_info(output, out_width));
        let mut m = Vec::new();
        int(&mut m, 1, 8); // IR version 8 (ONNX 1.10+)
        for (domain, version) in [("", 17i64), ("com.microsoft", 1)] {
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

/// `x @ w.T + b` for a candle `Linear` weight `w` (`[out, in]`), in f32 or int8.
///
/// int8: the weights are quantized symmetrically with one scale per output column; the
/// activations symmetrically with one scale per token (row), stored as uint8 around the zero
/// point 128 so that ONNX Runtime's u8 x s8 `MatMulInteger` kernel (VNNI) takes them. The
/// product is scaled back per row and column.
fn linear(
    g: &mut Graph,
    x: &str,
    (w, b): &(Tensor, Tensor),
    int8: bool,
) -> candle_core::Result<String> {
    let (n, k) = w.dims2()?;
    let wt = values(&w.t()?.contiguous()?)?; // [k, n]
    let bias = g.floats("b", &[n], &values(b)?);
    if !int8 {
        let w = g.floats("w", &[k, n], &wt);
        let y = g.op("MatMul", &[x, &w], &[]);
        return Ok(g.op("Add", &[&y, &bias], &[]));
    }
    let (q, scale) = quantize_columns(&wt, n);
    let w = g.init("wq", &[k, n], INT8, &q);
    let ws = g.floats("ws", &[n], &scale);
    // per-token scale: max |x| / 127 over the row
    let a = g.op("Abs", &[x], &[]);
    let m = g.op(
        "ReduceMax",
        &[&a],
        &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(0))],
    );
    let c127 = g.floats("c", &[], &[127.0]);
    let tiny = g.floats("c", &[], &[1e-30]);
    let s = g.op("Div", &[&m, &c127], &[]);
    // the scale of each token, [1, len]
    let s = g.op("Max", &[&s, &tiny], &[]);
    // one fused pass: round(x / s) + 128 per token, as uint8
    let flat = g.int64s("shape", &[-1]);
    let per_token = g.op("Reshape", &[&s, &flat], &[]);
    let shape = g.op("Shape", &[&per_token], &[]);
    let c128 = g.init("zp", &[], UINT8, &[128]);
    let zp = g.op("Expand", &[&c128, &shape], &[]);
    let q = g.op(
        "QuantizeLinear",
        &[x, &per_token, &zp],
        &[("axis", Attr::Int(1))],
    );
    let y = g.op("MatMulInteger", &[&q, &w, &c128], &[]);
    let y = g.op("Cast", &[&y], &[("to", Attr::Int(FLOAT))]);
    let column = g.int64s("shape", &[1, -1, 1]);
    let s = g.op("Reshape", &[&s, &column], &[]);
    let y = g.op("Mul", &[&y, &s], &[]);
    let y = g.op("Mul", &[&y, &ws], &[]);
    Ok(g.op("Add", &[&y, &bias], &[]))
}

/// Symmetric int8 quantization of `w` (`[k, n]`, row-major) with one scale per column `n`:
/// the int8 values (as bytes) and the scales.
pub(crate) fn quantize_columns(w: &[f32], n: usize) -> (Vec<u8>, Vec<f32>) {
    let mut scale = vec![0f32; n];
    for row in w.chunks(n) {
        for (s, v) in scale.iter_mut().zip(row) {
            *s = s.max(v.abs());
        }
    }
    for s in scale.iter_mut() {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .chunks(n)
        .flat_map(|row| {
            row.iter()
                .zip(&scale)
                .map(|(v, s)| (v / s).round().clamp(-127.0, 127.0) as i8 as u8)
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
/// hidden states).
pub(crate) fn encoder_model(
    layers: &[LayerWeights],
    spec: &GraphSpec,
) -> candle_core::Result<Vec<u8>> {
    let mut g = Graph::new();
    let (h, nh) = (spec.hidden, spec.heads);
    let hd = h / nh;
    let split_shape = g.int64s("shape", &[1, -1, 3, nh as i64, hd as i64]);
    let merge_shape = g.int64s("shape", &[1, -1, h as i64]);
    let scale = g.floats("scale", &[], &[1.0 / (hd as f32).sqrt()]);
    let pick: Vec<String> = (0..3)
        .map(|i| g.init("index", &[], INT64, &(i as i64).to_le_bytes()))
        .collect();
    let mut x = "hidden".to_string();
    for l in layers {
        let qkv = linear(&mut g, &x, &l.qkv, spec.int8)?;
        // [1, len, 3, heads, hd] -> [3, 1, heads, len, hd]
        let qkv = g.op("Reshape", &[&qkv, &split_shape], &[]);
        let qkv = g.op(
            "Transpose",
            &[&qkv],
            &[("perm", Attr::Ints(vec![2, 0, 3, 1, 4]))],
        );
        let q = g.op("Gather", &[&qkv, &pick[0]], &[("axis", Attr::Int(0))]);
        let k = g.op("Gather", &[&qkv, &pick[1]], &[("axis", Attr::Int(0))]);
        let v = g.op("Gather", &[&qkv, &pick[2]], &[("axis", Attr::Int(0))]);
        let kt = g.op(
            "Transpose",
            &[&k],
            &[("perm", Attr::Ints(vec![0, 1, 3, 2]))],
        );
        let scores = g.op("MatMul", &[&q, &kt], &[]);
        let scores = g.op("Mul", &[&scores, &scale], &[]);
        let probs = g.op("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
        let ctx = g.op("MatMul", &[&probs, &v], &[]);
        let ctx = g.op(
            "Transpose",
            &[&ctx],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let ctx = g.op("Reshape", &[&ctx, &merge_shape], &[]);
        let a = linear(&mut g, &ctx, &l.attn_out, spec.int8)?;
        let a = g.op("Add", &[&a, &x], &[]);
        let x1 = layer_norm(&mut g, &a, &l.attn_norm, spec.eps)?;
        let f = linear(&mut g, &x1, &l.ffn_in, spec.int8)?;
        let f = match spec.act {
            HiddenAct::Gelu => g.node("Gelu", "com.microsoft", &[&f], 1, &[]).remove(0),
            HiddenAct::GeluNew => g.node("FastGelu", "com.microsoft", &[&f], 1, &[]).remove(0),
            HiddenAct::Relu => g.op("Relu", &[&f], &[]),
        };
        let f = linear(&mut g, &f, &l.ffn_out, spec.int8)?;
        let f = g.op("Add", &[&f, &x1], &[]);
        x = layer_norm(&mut g, &f, &l.ffn_norm, spec.eps)?;
    }
    Ok(g.model(("hidden", h), (&x, h)))
}

/// A model of one product with a weight, `x @ w.T + b` as [`encoder_model`] writes each of
/// its products (for the matrix-multiply micro-benchmark).
pub(crate) fn linear_model(w: &Tensor, b: &Tensor, int8: bool) -> candle_core::Result<Vec<u8>> {
    let (n, k) = w.dims2()?;
    let mut g = Graph::new();
    let y = linear(&mut g, "x", &(w.clone(), b.clone()), int8)?;
    Ok(g.model(("x", k), (&y, n)))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn column_quantization_is_within_half_a_step() {
        let (k, n) = (7, 5);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013 * (1 + i % n) as f32)
            .collect();
        let (q, scale) = quantize_columns(&w, n);
        for (i, (&v, &b)) in w.iter().zip(&q).enumerate() {
            let s = scale[i % n];
            let back = (b as i8) as f32 * s;
            assert!((back - v).abs() <= s / 2.0 + 1e-7, "{i}: {v} -> {back}");
        }
        // the largest magnitude of each column maps to +-127
        for c in 0..n {
            let top = (0..k).map(|r| (q[r * n + c] as i8).unsigned_abs()).max();
            assert_eq!(top, Some(127), "column {c}");
        }
    }
}
