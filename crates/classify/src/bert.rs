//! The BERT-family encoder (BERT, RoBERTa, XLM-RoBERTa) on candle.
//!
//! Model code does no file I/O: it is handed a [`VarBuilder`] rooted at the encoder's tensors.

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{
    embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder,
};

use crate::config::{Architecture, BertConfig, HiddenAct, ModelConfig};

/// Padded token windows ready for the encoder, built by [`Encoder::inputs`].
#[derive(Debug)]
pub struct EncoderInputs {
    /// Token ids, `[batch, len]`, u32.
    pub ids: Tensor,
    /// Position ids, `[batch, len]`, u32.
    pub positions: Tensor,
    /// 1.0 for real tokens, 0.0 for padding, `[batch, len]`, f32.
    pub mask: Tensor,
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

/// How an architecture pads windows and numbers positions.
#[derive(Debug, Clone, Copy)]
pub struct InputsOf {
    /// The architecture.
    pub arch: Architecture,
    /// Its padding token.
    pub pad_token_id: u32,
}

impl InputsOf {
    /// Pads token windows (each already with its special tokens) into one batch of `len`
    /// tokens (at least the longest window), with the attention mask and the position ids of the
    /// architecture.
    pub fn inputs(&self, windows: &[&[u32]], len: usize) -> candle_core::Result<EncoderInputs> {
        let device = Device::Cpu;
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
            ids: Tensor::from_vec(ids, (n, len), &device)?,
            positions: Tensor::from_vec(pos, (n, len), &device)?,
            mask: Tensor::from_vec(mask, (n, len), &device)?,
        })
    }
}

/// A BERT-family transformer encoder.
pub struct Encoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    act: HiddenAct,
    arch: Architecture,
    pad_token_id: u32,
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

impl Encoder {
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
        Ok(Encoder {
            embeddings,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
            act: c.hidden_act,
            arch: config.architecture(),
            pad_token_id: c.pad_token_id,
        })
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Pads token windows into one batch (see [`InputsOf::inputs`]).
    pub fn inputs(&self, windows: &[&[u32]], len: usize) -> candle_core::Result<EncoderInputs> {
        InputsOf {
            arch: self.arch,
            pad_token_id: self.pad_token_id,
        }
        .inputs(windows, len)
    }

    /// Runs the encoder: last hidden states `[batch, len, hidden]`. Padding never changes the
    /// states of real tokens: the mask removes padded keys from every attention.
    pub fn forward(&self, x: &EncoderInputs) -> candle_core::Result<Tensor> {
        let _span = tracing::trace_span!("encoder").entered();
        let e = &self.embeddings;
        let types = x.ids.zeros_like()?;
        let hidden = e
            .word
            .forward(&x.ids)?
            .add(&e.position.forward(&x.positions)?)?
            .add(&e.token_type.forward(&types)?)?;
        let mut hidden = e.norm.forward(&hidden)?;
        let (b, t) = x.ids.dims2()?;
        // Additive bias: 0 for real keys, a large negative number for padded ones.
        let bias = ((x.mask.ones_like()? - &x.mask)? * -1e9f64)?.reshape((b, 1, 1, t))?;
        for layer in &self.layers {
            hidden = self.layer(layer, &hidden, &bias)?;
        }
        Ok(hidden)
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
            HiddenAct::Gelu => f.gelu_erf()?,
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

/// Rows divided by their L2 norm.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}
