//! Label heads on the encoder's states: a [`LinearHead`] trained on the team's examples
//! (read and written here, `head.safetensors` and `head.json`), and a checkpoint's own
//! sequence-classification head.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::config::{Architecture, ModelConfig};
use crate::error::{read_json, Error, Result};
use crate::labels::HeadMeta;

/// A trained linear head: `head.safetensors` (`weight` `[labels, hidden]`, `bias` `[labels]`)
/// and `head.json` ([`HeadMeta`]) in one directory.
#[derive(Debug, Clone)]
pub struct LinearHead {
    weight: Tensor,
    bias: Tensor,
    /// What `head.json` says.
    pub meta: HeadMeta,
}

impl LinearHead {
    /// Reads a head directory and checks it fits an encoder of width `hidden`.
    pub fn load(dir: &Path, hidden: usize) -> Result<Self> {
        let err = |message: String| Error::Head {
            path: dir.to_owned(),
            message,
        };
        if !dir.join("head.json").exists() {
            return Err(err(
                "no head.json: train it (scripts/setup.sh builds the starter head; `triage train` one of your own), or score with prototypes (`--mode prototypes`)".into(),
            ));
        }
        let meta: HeadMeta = read_json(&dir.join("head.json"))?;
        let st = dir.join("head.safetensors");
        let tensors =
            candle_core::safetensors::load(&st, &Device::Cpu).map_err(|e| err(e.to_string()))?;
        let weight = tensors
            .get("weight")
            .ok_or_else(|| err("no tensor `weight`".into()))?;
        let bias = tensors
            .get("bias")
            .ok_or_else(|| err("no tensor `bias`".into()))?;
        let n = meta.labels.len();
        if weight.dims() != [n, hidden] || bias.dims() != [n] {
            return Err(err(format!(
                "weight {:?} and bias {:?} do not fit {n} labels on a {hidden}-wide encoder",
                weight.dims(),
                bias.dims()
            )));
        }
        Ok(LinearHead {
            weight: weight.to_dtype(DType::F32)?,
            bias: bias.to_dtype(DType::F32)?,
            meta,
        })
    }

    /// Writes a head directory that [`LinearHead::load`] reads: `weight` (`[labels, hidden]`,
    /// row-major) and `bias` (`[labels]`) into `head.safetensors`, `meta` into `head.json`
    /// (its `labels` give the number of rows).
    pub fn write(
        dir: &Path,
        weight: &[f32],
        bias: &[f32],
        hidden: usize,
        meta: &HeadMeta,
    ) -> Result<()> {
        let err = |message: String| Error::Head {
            path: dir.to_owned(),
            message,
        };
        let labels = meta.labels.len();
        if weight.len() != labels * hidden || bias.len() != labels {
            return Err(err(format!(
                "{} weights and {} biases do not fit {labels} labels on a {hidden}-wide encoder",
                weight.len(),
                bias.len()
            )));
        }
        let io = |path: &Path, source| Error::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let weight = Tensor::from_slice(weight, (labels, hidden), &Device::Cpu)?;
        let bias = Tensor::from_slice(bias, labels, &Device::Cpu)?;
        let st = dir.join("head.safetensors");
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("weight", weight), ("bias", bias)]),
            &st,
        )
        .map_err(|e| err(e.to_string()))?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| err(e.to_string()))?;
        std::fs::write(dir.join("head.json"), json).map_err(|e| io(&dir.join("head.json"), e))
    }

    /// Logits of pooled embeddings `[n, hidden]` -> `[n, labels]` (on the host), each row's
    /// the same bits whatever the other rows ([`crate::model::rowwise_products`]).
    pub fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        crate::model::rowwise_products(pooled, &self.weight, Some(&self.bias))
    }
}

pub(crate) enum CheckpointHead {
    /// BERT: pooler (dense + tanh on the first token), then `classifier`.
    Bert { pooler: Linear, classifier: Linear },
    /// RoBERTa / XLM-R: `classifier.dense` + tanh, then `classifier.out_proj`.
    Roberta { dense: Linear, out_proj: Linear },
}

impl CheckpointHead {
    pub(crate) fn load(
        root: &VarBuilder,
        config: &ModelConfig,
        n: usize,
    ) -> candle_core::Result<Self> {
        // in f32 whatever the encoder's format: it takes the encoder's f32 states
        let root = &root.clone().set_dtype(DType::F32);
        let h = config.bert().hidden_size;
        Ok(match config.architecture() {
            Architecture::Bert => {
                let pooler = if root.contains_tensor("bert.pooler.dense.weight") {
                    root.pp("bert.pooler.dense")
                } else {
                    root.pp("pooler.dense")
                };
                CheckpointHead::Bert {
                    pooler: linear(h, h, pooler)?,
                    classifier: linear(h, n, root.pp("classifier"))?,
                }
            }
            Architecture::XlmRoberta => CheckpointHead::Roberta {
                dense: linear(h, h, root.pp("classifier.dense"))?,
                out_proj: linear(h, n, root.pp("classifier.out_proj"))?,
            },
        })
    }

    pub(crate) fn forward(&self, first: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            CheckpointHead::Bert { pooler, classifier } => {
                classifier.forward(&pooler.forward(first)?.tanh()?)
            }
            CheckpointHead::Roberta { dense, out_proj } => {
                out_proj.forward(&dense.forward(first)?.tanh()?)
            }
        }
    }
}
