//! libtorch through rust-bert's model code (the cargo feature `tch`).

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use rust_bert::bert::{BertConfig, BertEmbeddings, BertModel};
use rust_bert::roberta::RobertaEmbeddings;
use tch::{nn, Device, Kind};

use super::Encoder;
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::model::EncoderInputs;
use crate::options::{ModelOptions, Precision};

enum Model {
    Bert(BertModel<BertEmbeddings>),
    Roberta(BertModel<RobertaEmbeddings>),
}

/// rust-bert's BERT or XLM-R encoder on libtorch.
pub(crate) struct TchEncoder {
    model: Model,
    _vs: nn::VarStore,
    hidden: usize,
}

// SAFETY: after loading, the model's tensors are only read (forward passes under
// `no_grad`), and libtorch's CPU kernels may run concurrently on shared read-only tensors.
unsafe impl Sync for TchEncoder {}
// SAFETY: as for Sync: the tensors are owned by the encoder and only read after loading.
unsafe impl Send for TchEncoder {}

fn err(dir: &Path, message: impl std::fmt::Display) -> Error {
    Error::Weights {
        dir: dir.to_owned(),
        message: format!("tch backend: {message}"),
    }
}

/// Copies tensor `name` of the weights (its element type, shape and byte length as
/// [`crate::weights::SafetensorsFiles::describe`] gives them) into `var`, a slice of rows at a time: libtorch's
/// own loader reads a whole file and then copies each tensor out of it, which held the
/// weights three times over at the load's peak (1,752 MiB for the default model, above
/// Python's); here, at most a slice of about 16 MiB is held beside the variables.
fn fill(
    weights: &crate::weights::SafetensorsFiles,
    name: &str,
    (dtype, shape, bytes): (safetensors::Dtype, &[usize], usize),
    var: tch::Tensor,
) -> std::result::Result<(), String> {
    use safetensors::Dtype;
    let want: Vec<i64> = var.size();
    let have: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    if have != want {
        return Err(format!(
            "{name}: shape {have:?} in the weights, {want:?} in the model"
        ));
    }
    let kind = match dtype {
        Dtype::F32 => tch::Kind::Float,
        Dtype::F16 => tch::Kind::Half,
        Dtype::BF16 => tch::Kind::BFloat16,
        Dtype::F64 => tch::Kind::Double,
        Dtype::I64 => tch::Kind::Int64,
        Dtype::I32 => tch::Kind::Int,
        Dtype::I16 => tch::Kind::Int16,
        Dtype::I8 => tch::Kind::Int8,
        Dtype::U8 => tch::Kind::Uint8,
        Dtype::BOOL => tch::Kind::Bool,
        other => return Err(format!("{name}: element type {other:?} is not supported")),
    };
    let tch_err = |e: tch::TchError| format!("{name}: {e}");
    let rows = have.first().copied().unwrap_or(1).max(1) as usize;
    let row_bytes = bytes / rows;
    let step = ((16 << 20) / row_bytes.max(1)).max(1);
    let mut buf = vec![0u8; step.min(rows) * row_bytes];
    let mut r0 = 0;
    while r0 < rows {
        let n = step.min(rows - r0);
        let part = &mut buf[..n * row_bytes];
        weights.read_into(name, r0 * row_bytes, part)?;
        let mut size = have.clone();
        if let Some(first) = size.first_mut() {
            *first = n as i64;
        }
        let src = tch::Tensor::f_from_data_size(part, &size, kind).map_err(tch_err)?;
        let mut dst = if have.is_empty() {
            var.shallow_clone()
        } else {
            var.f_narrow(0, r0 as i64, n as i64).map_err(tch_err)?
        };
        dst.f_copy_(&src).map_err(tch_err)?;
        r0 += n;
    }
    Ok(())
}

impl TchEncoder {
    pub fn load(
        dir: &Path,
        files: &[PathBuf],
        prefix: &str,
        config: &ModelConfig,
        options: &ModelOptions,
    ) -> Result<Self> {
        let precision = options.precision;
        let text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| err(dir, format!("config.json: {e}")))?;
        let bert_config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| err(dir, format!("config.json as rust-bert's BertConfig: {e}")))?;
        // triage runs windows in parallel on rayon's threads; libtorch's own intra-op
        // threads on top of them would oversubscribe the cores
        tch::set_num_threads(options.torch_threads.unwrap_or(1).max(1) as i32);
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
        let mut missing = Vec::new();
        let weights = crate::weights::SafetensorsFiles::open(files).map_err(|m| err(dir, m))?;
        let _no_grad = tch::no_grad_guard();
        for (name, var) in vs.variables() {
            match weights.describe(&name) {
                Some(tensor) => fill(&weights, &name, tensor, var).map_err(|m| err(dir, m))?,
                None => missing.push(name),
            }
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
}

impl Encoder for TchEncoder {
    fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let (b, t) = x.ids.dims2()?;
        // the inputs as libtorch int64 tensors [b, t]
        let long = |x: &Tensor| -> Result<tch::Tensor> {
            let v: Vec<i64> = x
                .to_dtype(candle_core::DType::I64)?
                .flatten_all()?
                .to_vec1()?;
            Ok(tch::Tensor::from_slice(&v).view([b as i64, t as i64]))
        };
        let ids = long(&x.ids)?;
        let pos = long(&x.positions)?;
        let mask = long(&x.mask)?;
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
