//! candle (pure Rust): the BERT-family model of [`crate::model`] on the CPU or, with the
//! cargo feature `cuda`, a GPU.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::{Encoder, MAX_BATCH_TOKENS, MAX_GPU_BATCH_TOKENS};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::{BertModel, EncoderInputs};

/// The encoder on candle.
pub(crate) struct CandleEncoder {
    model: BertModel,
    gpu: bool,
}

impl CandleEncoder {
    /// Builds the model from its tensors (`vb`, on the device it runs on).
    pub fn load(vb: VarBuilder, config: &ModelConfig, gpu: bool) -> candle_core::Result<Self> {
        Ok(CandleEncoder {
            model: BertModel::load(vb, config)?,
            gpu,
        })
    }
}

impl Encoder for CandleEncoder {
    fn forward(&self, batch: &EncoderInputs) -> Result<Tensor> {
        Ok(self.model.forward(batch)?)
    }

    fn batch_tokens(&self) -> usize {
        if self.gpu {
            MAX_GPU_BATCH_TOKENS
        } else {
            MAX_BATCH_TOKENS
        }
    }
}
