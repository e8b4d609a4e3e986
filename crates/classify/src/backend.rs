//! Engines that run the encoder: candle (pure Rust, the default) and, behind the cargo feature
//! `tch`, libtorch through rust-bert's model code. Both take triage's padded windows
//! ([`EncoderInputs`]) and give the last hidden states as a candle tensor, so tokenization,
//! windows, masking, pooling and heads are the same code whatever the engine.

use std::path::Path;
use std::str::FromStr;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::bert::{Encoder, EncoderInputs};
use crate::error::Result;

/// `FromStr` and `Display` of an option enum by the names it has in `workspace.toml`.
macro_rules! named {
    ($ty:ident { $($variant:ident = $name:literal),+ }) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", stringify!($ty), " {:?} (one of: ", $($name, " ",)+ ")"),
                        s
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($ty::$variant => $name,)+
                })
            }
        }
    };
}

/// Which engine runs the encoder (`[model] backend`, `--backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// candle, pure Rust (always built).
    #[default]
    Candle,
    /// libtorch through rust-bert (built with the cargo feature `tch`).
    Tch,
}

named!(Backend { Candle = "candle", Tch = "tch" });

/// Number format of the encoder's weights and arithmetic (`[model] dtype`, `--dtype`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16 weights and activations (the `tch` backend, on CPUs with bf16 support).
    Bf16,
}

named!(Precision { F32 = "f32", Bf16 = "bf16" });

/// Whether this build has the `tch` backend.
pub const TCH_BUILT: bool = cfg!(feature = "tch");

/// A loaded encoder on one of the engines.
pub(crate) enum AnyEncoder {
    Candle(Encoder),
    #[cfg(feature = "tch")]
    Tch(Box<tch_backend::TchEncoder>),
}

impl AnyEncoder {
    pub fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
        match self {
            AnyEncoder::Candle(e) => Ok(e.forward(x)?),
            #[cfg(feature = "tch")]
            AnyEncoder::Tch(e) => e.forward(x),
        }
    }
}

/// Loads the encoder on `backend`; `prefix` is where its tensors sit in the checkpoint
/// (`""`, `"bert."`, `"roberta."`).
#[allow(unused_variables)]
pub(crate) fn load_tch(
    dir: &Path,
    files: &[std::path::PathBuf],
    prefix: &str,
    config: &crate::config::ModelConfig,
    precision: Precision,
) -> Result<AnyEncoder> {
    #[cfg(feature = "tch")]
    {
        Ok(AnyEncoder::Tch(Box::new(tch_backend::TchEncoder::load(
            dir, files, prefix, config, precision,
        )?)))
    }
    #[cfg(not(feature = "tch"))]
    {
        Err(crate::error::Error::Backend {
            message: "this build has no tch backend: build with `--features tch` and a libtorch \
                      2.4 (scripts/setup_libtorch.sh)"
                .into(),
        })
    }
}

#[cfg(feature = "tch")]
mod tch_backend {
    use std::path::{Path, PathBuf};

    use candle_core::Tensor;
    use rust_bert::bert::{BertConfig, BertEmbeddings, BertModel};
    use rust_bert::roberta::RobertaEmbeddings;
    use tch::{nn, Device, Kind};

    use super::Precision;
    use crate::bert::EncoderInputs;
    use crate::config::{Architecture, ModelConfig};
    use crate::error::{Error, Result};

    enum Model {
        Bert(BertModel<BertEmbeddings>),
        Roberta(BertModel<RobertaEmbeddings>),
    }

    /// rust-bert's BERT or XLM-R encoder on libtorch.
    pub struct TchEncoder {
        model: Model,
        _vs: nn::VarStore,
        hidden: usize,
    }

    // SAFETY: after loading, the model's tensors are only read (forward passes under
    // `no_grad`), and libtorch's CPU kernels may run concurrently on shared read-only tensors.
    unsafe impl Sync for TchEncoder {}
    unsafe impl Send for TchEncoder {}

    fn err(dir: &Path, message: impl std::fmt::Display) -> Error {
        Error::Weights {
            dir: dir.to_owned(),
            message: format!("tch backend: {message}"),
        }
    }

    impl TchEncoder {
        pub fn load(
            dir: &Path,
            files: &[PathBuf],
            prefix: &str,
            config: &ModelConfig,
            precision: Precision,
        ) -> Result<Self> {
            let text = std::fs::read_to_string(dir.join("config.json"))
                .map_err(|e| err(dir, format!("config.json: {e}")))?;
            let bert_config: BertConfig = serde_json::from_str(&text)
                .map_err(|e| err(dir, format!("config.json as rust-bert's BertConfig: {e}")))?;
            // triage runs windows in parallel on rayon's threads; libtorch's own intra-op
            // threads on top of them would oversubscribe the cores
            tch::set_num_threads(
                std::env::var("TRIAGE_TORCH_THREADS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            );
            let mut vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let p = if prefix.is_empty() {
                root
            } else {
                root / prefix.trim_end_matches('.')
            };
            let model = match config.architecture() {
                Architecture::Bert => {
                    Model::Bert(BertModel::new_with_optional_pooler(p, &bert_config, false))
                }
                Architecture::XlmRoberta => {
                    Model::Roberta(BertModel::new_with_optional_pooler(p, &bert_config, false))
                }
            };
            let wanted: Vec<String> = vs.variables().into_keys().collect();
            let mut missing: Vec<String> = wanted.clone();
            for file in files {
                let still = vs
                    .load_partial(file)
                    .map_err(|e| err(dir, format!("{}: {e}", file.display())))?;
                missing.retain(|m| still.contains(m));
            }
            if !missing.is_empty() {
                missing.sort();
                return Err(err(
                    dir,
                    format!("tensors missing from the weights: {}", missing.join(", ")),
                ));
            }
            if precision == Precision::Bf16 {
                vs.bfloat16();
            }
            Ok(TchEncoder {
                model,
                _vs: vs,
                hidden: config.bert().hidden_size,
            })
        }

        pub fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
            let _guard = tch::no_grad_guard();
            let (b, t) = x.ids.dims2()?;
            let long = |v: Vec<i64>| tch::Tensor::from_slice(&v).view([b as i64, t as i64]);
            let ids = long(
                x.ids
                    .flatten_all()?
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            );
            let pos = long(
                x.positions
                    .flatten_all()?
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            );
            let mask = long(
                x.mask
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(|m| m as i64)
                    .collect(),
            );
            let types = ids.zeros_like();
            let out = match &self.model {
                Model::Bert(m) => m.forward_t(
                    Some(&ids),
                    Some(&mask),
                    Some(&types),
                    Some(&pos),
                    None,
                    None,
                    None,
                    false,
                ),
                Model::Roberta(m) => m.forward_t(
                    Some(&ids),
                    Some(&mask),
                    Some(&types),
                    Some(&pos),
                    None,
                    None,
                    None,
                    false,
                ),
            }
            .map_err(|e| Error::Backend {
                message: format!("tch forward: {e}"),
            })?;
            let hidden = out
                .hidden_state
                .to_kind(Kind::Float)
                .contiguous()
                .view([-1]);
            let v: Vec<f32> = Vec::<f32>::try_from(&hidden).map_err(|e| Error::Backend {
                message: format!("tch output: {e}"),
            })?;
            Ok(Tensor::from_vec(
                v,
                (b, t, self.hidden),
                &candle_core::Device::Cpu,
            )?)
        }
    }
}
