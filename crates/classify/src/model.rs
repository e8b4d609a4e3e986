//! The BERT-family encoder (BERT, RoBERTa, XLM-RoBERTa) on candle, and the padded batches of
//! windows every engine takes ([`EncoderInputs`]).
//!
//! Model code does no file I/O: it is handed a [`VarBuilder`] rooted at the encoder's tensors.
//! It knows no other engine: [`BertModel::take_layers`] hands its layers' tensors out as plain
//! [`LayerWeights`] for an engine that runs them itself (ONNX Runtime).

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{
    embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder,
};

use crate::config::{Architecture, BertConfig, HiddenAct, ModelConfig};

/// Padded token windows ready for the encoder, built by [`InputsOf::inputs`].
#[derive(Debug)]
pub struct EncoderInputs {
    /// Token ids, `[batch, len]`, u32.
    pub ids: Tensor,
    /// Position ids, `[batch, len]`, u32.
    pub positions: Tensor,
    /// 1.0 for real tokens, 0.0 for padding, `[batch, len]`, f32.
    pub mask: Tensor,
    /// Each window's real tokens (its row's ones in `mask`).
    pub lens: Vec<usize>,
}

/// The tensors of one transformer layer, weights as candle holds them (`[out, in]`), each
/// with its bias: for an engine that runs the layers itself.
#[cfg_attr(not(feature = "ort"), allow(dead_code))]
pub(crate) struct LayerWeights {
    pub qkv: (Tensor, Tensor),
    pub attn_out: (Tensor, Tensor),
    pub attn_norm: (Tensor, Tensor),
    pub ffn_in: (Tensor, Tensor),
    pub ffn_out: (Tensor, Tensor),
    pub ffn_norm: (Tensor, Tensor),
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// How an architecture pads windows and numbers positions, and where the encoder runs.
#[derive(Debug, Clone)]
pub struct InputsOf {
    /// The architecture.
    pub arch: Architecture,
    /// Its padding token.
    pub pad_token_id: u32,
    /// The device the inputs are made on (the encoder's).
    pub device: Device,
}

impl InputsOf {
    /// Pads token windows (each already with its special tokens) into one batch of `len`
    /// tokens (at least the longest window), with the attention mask and the position ids of the
    /// architecture.
    pub fn inputs(&self, windows: &[&[u32]], len: usize) -> candle_core::Result<EncoderInputs> {
        let device = &self.device;
        let len = windows.iter().map(|w| w.len()).max().unwrap_or(0).max(len);
        let n = windows.len();
        let mut ids = vec![self.pad_token_id; n * len];
        let mut pos = vec![0u32; n * len];
        let mut mask = vec![0f32; n * len];
        for (r, w) in windows.iter().enumerate() {
            for (j, &id) in w.iter().enumerate() {
                ids[r * len + j] = id;
                mask[r * len + j] = 1.0;
                pos[r * len + j] = match self.arch {
                    Architecture::Bert => j as u32,
                    Architecture::XlmRoberta => self.pad_token_id + 1 + j as u32,
                };
            }
            if self.arch == Architecture::XlmRoberta {
                for p in pos[r * len + w.len()..(r + 1) * len].iter_mut() {
                    *p = self.pad_token_id;
                }
            }
        }
        Ok(EncoderInputs {
            ids: Tensor::from_vec(ids, (n, len), device)?,
            positions: Tensor::from_vec(pos, (n, len), device)?,
            mask: Tensor::from_vec(mask, (n, len), device)?,
            lens: windows.iter().map(|w| w.len()).collect(),
        })
    }
}

/// erf for f32 as a rational function on [-4, 4] (beyond, erf is +-1 in f32), after Eigen's
/// `generic_fast_erf_float`: branch-free arithmetic that the compiler vectorises, where candle's
/// `gelu_erf` calls the scalar libm `erff` on every element (about a tenth of the encoder's time).
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_473_9e-2;
    p / q
}

/// GELU with the exact (erf) form: on the CPU over the contiguous f32 data of `x`, elsewhere
/// candle's own kernel.
fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.device().is_cpu() {
        return x.gelu_erf();
    }
    let shape = x.shape().clone();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    for a in v.iter_mut() {
        *a = 0.5 * *a * (1.0 + erf_f32(*a * std::f32::consts::FRAC_1_SQRT_2));
    }
    Tensor::from_vec(v, shape, x.device())
}

/// A BERT-family transformer encoder.
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    act: HiddenAct,
}

fn ln(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    layer_norm(
        size,
        LayerNormConfig {
            eps,
            ..Default::default()
        },
        vb,
    )
}

impl BertModel {
    /// Builds the encoder from its tensors (`embeddings.*`, `encoder.layer.*`).
    pub fn load(vb: VarBuilder, config: &ModelConfig) -> candle_core::Result<Self> {
        let c: &BertConfig = config.bert();
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            word: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_type: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: ln(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let s = l.pp("attention.self");
            // Query, key and value are fused into one product: one pass over the activations.
            let (q, k, v) = (s.pp("query"), s.pp("key"), s.pp("value"));
            let w = Tensor::cat(
                &[
                    q.get((h, h), "weight")?,
                    k.get((h, h), "weight")?,
                    v.get((h, h), "weight")?,
                ],
                0,
            )?;
            let b = Tensor::cat(
                &[q.get(h, "bias")?, k.get(h, "bias")?, v.get(h, "bias")?],
                0,
            )?;
            layers.push(Layer {
                qkv: Linear::new(w, Some(b)),
                attn_out: linear(h, h, l.pp("attention.output.dense"))?,
                attn_norm: ln(h, c.layer_norm_eps, l.pp("attention.output.LayerNorm"))?,
                ffn_in: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                ffn_out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                ffn_norm: ln(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(BertModel {
            embeddings,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
            act: c.hidden_act,
        })
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder: last hidden states `[batch, len, hidden]`, in f32 whatever the
    /// weights' format. Padding never changes the states of real tokens: the mask removes
    /// padded keys from every attention.
    pub fn forward(&self, x: &EncoderInputs) -> candle_core::Result<Tensor> {
        let _span = tracing::trace_span!("encoder").entered();
        let mut hidden = self.embed(x)?;
        let (b, t) = x.ids.dims2()?;
        // Additive bias: 0 for real keys, a large negative number for padded ones (-1e9 in
        // f32; in bf16 it rounds to about the same, far below any score).
        let bias = ((x.mask.ones_like()? - &x.mask)? * -1e9f64)?
            .reshape((b, 1, 1, t))?
            .to_dtype(hidden.dtype())?;
        for layer in &self.layers {
            hidden = self.layer(layer, &hidden, &bias)?;
        }
        hidden.to_dtype(candle_core::DType::F32)
    }

    /// The embeddings' output (word, position and type embeddings, layer norm):
    /// `[batch, len, hidden]`.
    pub(crate) fn embed(&self, x: &EncoderInputs) -> candle_core::Result<Tensor> {
        let e = &self.embeddings;
        let types = x.ids.zeros_like()?;
        let hidden = e
            .word
            .forward(&x.ids)?
            .add(&e.position.forward(&x.positions)?)?
            .add(&e.token_type.forward(&types)?)?;
        e.norm.forward(&hidden)
    }

    /// Attention heads of each layer.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> HiddenAct {
        self.act
    }

    /// Removes the transformer layers (for another engine to run them), leaving the
    /// embeddings ([`BertModel::embed`]).
    #[cfg_attr(not(feature = "ort"), allow(dead_code))]
    pub(crate) fn take_layers(&mut self) -> Vec<LayerWeights> {
        let pair = |l: &Linear| {
            (
                l.weight().clone(),
                l.bias().expect("encoder linears have a bias").clone(),
            )
        };
        let norm = |n: &LayerNorm| {
            (
                n.weight().clone(),
                n.bias().expect("encoder layer norms have a bias").clone(),
            )
        };
        std::mem::take(&mut self.layers)
            .iter()
            .map(|l| LayerWeights {
                qkv: pair(&l.qkv),
                attn_out: pair(&l.attn_out),
                attn_norm: norm(&l.attn_norm),
                ffn_in: pair(&l.ffn_in),
                ffn_out: pair(&l.ffn_out),
                ffn_norm: norm(&l.ffn_norm),
            })
            .collect()
    }

    fn layer(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let _span = tracing::trace_span!("layer").entered();
        let (b, t, h) = x.dims3()?;
        let nh = self.heads;
        let hd = h / nh;
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((b, t, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(bias)?)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let f = l.ffn_in.forward(&x)?;
        let f = match self.act {
            HiddenAct::Gelu => gelu_erf(&f)?,
            HiddenAct::GeluNew => f.gelu()?,
            HiddenAct::Relu => f.relu()?,
        };
        l.ffn_norm.forward(&(l.ffn_out.forward(&f)? + x)?)
    }
}

/// Mean of the states under the mask (`[batch, hidden]`).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.unsqueeze(2)?.to_dtype(hidden.dtype())?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    sum.broadcast_div(&count)
}

/// `x @ w.T` (+ `bias`), `[n, k] x [m, k] -> [n, m]`, each row on its own in a fixed order of
/// sums: a matrix product's bits for a row depend on how many rows it is computed with (its
/// kernels block and split the rows), and a text's scores must not depend on what else was in
/// its batch (a request to `triage serve` against the same text in a `triage label` run).
pub fn rowwise_products(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let x = x.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let w = w.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let b = match bias {
        Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
        None => vec![0.0; w.len()],
    };
    let out: Vec<f32> = x
        .iter()
        .flat_map(|row| {
            w.iter().zip(&b).map(move |(wl, bl)| {
                // one sum from the first value to the last: the same order for every row
                bl + row.iter().zip(wl).map(|(x, y)| x * y).sum::<f32>()
            })
        })
        .collect();
    Tensor::from_vec(out, (x.len(), w.len()), &candle_core::Device::Cpu)
}

/// Rows divided by their L2 norm.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// Each row's products are the same bits alone as among 300 rows, and they are the
    /// products (against sums in f64).
    #[test]
    fn rowwise_products_do_not_depend_on_the_other_rows() {
        let values = crate::test_values::values_of;
        let (n, k, m) = (300, 384, 3);
        let x = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(values(m * k, 2), (m, k), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(values(m, 3), m, &Device::Cpu).unwrap();
        let all = super::rowwise_products(&x, &w, Some(&b))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let (xv, wv, bv) = (
            x.to_vec2::<f32>().unwrap(),
            w.to_vec2::<f32>().unwrap(),
            b.to_vec1::<f32>().unwrap(),
        );
        for r in [0, 1, 17, 299] {
            let alone = super::rowwise_products(&x.narrow(0, r, 1).unwrap(), &w, Some(&b))
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(alone[0], all[r], "row {r}");
            for l in 0..m {
                let want: f64 = bv[l] as f64
                    + xv[r]
                        .iter()
                        .zip(&wv[l])
                        .map(|(a, c)| *a as f64 * *c as f64)
                        .sum::<f64>();
                assert!(
                    (all[r][l] as f64 - want).abs() < 1e-4,
                    "{} vs {want}",
                    all[r][l]
                );
            }
        }
    }

    #[test]
    fn fast_erf_matches_libm() {
        let mut worst = 0f32;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-4;
            let want = libm_erf(x);
            worst = worst.max((super::erf_f32(x) - want).abs());
        }
        assert!(worst < 1e-6, "largest error {worst}");
        assert!((super::erf_f32(10.0) - 1.0).abs() < 1e-6);
        assert!((super::erf_f32(-10.0) + 1.0).abs() < 1e-6);
    }

    /// erf in f64 by its Taylor series (|x| < 3) or continued fraction, as an independent check.
    fn libm_erf(x: f32) -> f32 {
        let x = x as f64;
        if x.abs() < 3.0 {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
        } else {
            // erfc by a continued fraction
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / (std::f64::consts::PI.sqrt() * (a + f));
            ((1.0 - erfc) * x.signum()) as f32
        }
    }
}
