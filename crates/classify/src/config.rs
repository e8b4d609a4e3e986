//! The Hugging Face `config.json` of an encoder, mirrored field for field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{read_json, Error, Result};

/// The architecture named by `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// BERT: absolute positions counted from 0.
    Bert,
    /// XLM-RoBERTa and RoBERTa: positions counted from `pad_token_id + 1`, pads at `pad_token_id`.
    XlmRoberta,
}

/// Activation of the feed-forward block (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact GELU (erf), what Hugging Face calls `gelu`.
    #[default]
    Gelu,
    /// tanh approximation of GELU.
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    /// ReLU.
    Relu,
}

/// `position_embedding_type`: only absolute positions are implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PositionEmbeddingType {
    /// Learned absolute positions (the default when the field is absent).
    #[default]
    Absolute,
}

/// The fields of a BERT-family `config.json` (BERT, RoBERTa, XLM-RoBERTa) that inference needs.
/// Other upstream fields are ignored, as `transformers` does.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Rows of the token embedding matrix.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    #[serde(default)]
    pub hidden_act: HiddenAct,
    /// Rows of the position embedding matrix.
    pub max_position_embeddings: usize,
    /// Rows of the token type embedding matrix.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token (XLM-R also uses it as the padding position).
    #[serde(default)]
    pub pad_token_id: u32,
    /// Kind of position embedding; only `absolute` exists here.
    #[serde(default)]
    pub position_embedding_type: PositionEmbeddingType,
    /// Class index to label name, for sequence-classification checkpoints.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    /// `single_label_classification`, `multi_label_classification` or `regression`.
    #[serde(default)]
    pub problem_type: Option<String>,
    /// The `transformers` classes this checkpoint was saved from.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

/// `config.json`, tagged by `model_type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "model_type")]
#[non_exhaustive]
pub enum ModelConfig {
    /// `"bert"`.
    #[serde(rename = "bert")]
    Bert(BertConfig),
    /// `"xlm-roberta"`.
    #[serde(rename = "xlm-roberta")]
    XlmRoberta(BertConfig),
    /// `"roberta"`.
    #[serde(rename = "roberta")]
    Roberta(BertConfig),
}

impl ModelConfig {
    /// Reads `config.json`, naming the file in any error.
    pub fn from_file(path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Tag {
            model_type: Option<String>,
        }
        let tag: Tag = read_json(path)?;
        match tag.model_type.as_deref() {
            Some("bert" | "xlm-roberta" | "roberta") => read_json(path),
            other => Err(Error::UnsupportedModel {
                path: path.to_owned(),
                model_type: other.unwrap_or("<missing>").to_owned(),
            }),
        }
    }

    /// The shared encoder fields.
    pub fn bert(&self) -> &BertConfig {
        match self {
            ModelConfig::Bert(c) | ModelConfig::XlmRoberta(c) | ModelConfig::Roberta(c) => c,
        }
    }

    /// How positions are counted.
    pub fn architecture(&self) -> Architecture {
        match self {
            ModelConfig::Bert(_) => Architecture::Bert,
            ModelConfig::XlmRoberta(_) | ModelConfig::Roberta(_) => Architecture::XlmRoberta,
        }
    }

    /// Most tokens one window may hold, specials included.
    pub fn max_tokens(&self) -> usize {
        let c = self.bert();
        match self.architecture() {
            Architecture::Bert => c.max_position_embeddings,
            Architecture::XlmRoberta => c.max_position_embeddings - c.pad_token_id as usize - 1,
        }
    }
}

/// Pooling of token states into one vector (sentence-transformers' `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token states under the attention mask.
    Mean,
    /// The state of the first token.
    Cls,
}

#[derive(Deserialize)]
struct StPoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// How the sentence embedding is made from the token states: read from the model directory's
/// sentence-transformers files (`modules.json`, `1_Pooling/config.json`); mean pooling with L2
/// normalisation when the directory has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolingConfig {
    /// Mean or CLS pooling.
    pub pooling: Pooling,
    /// Whether the pooled vector is L2-normalised.
    pub normalize: bool,
}

impl PoolingConfig {
    /// Reads the pooling setup of a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            return Ok(PoolingConfig {
                pooling: Pooling::Mean,
                normalize: true,
            });
        }
        let modules: Vec<StModule> = read_json(&modules_path)?;
        let mut out = PoolingConfig {
            pooling: Pooling::Mean,
            normalize: false,
        };
        for m in &modules {
            if m.kind.ends_with("Pooling") {
                let p: StPoolingConfig = read_json(&dir.join(&m.path).join("config.json"))?;
                out.pooling = if p.pooling_mode_cls_token && !p.pooling_mode_mean_tokens {
                    Pooling::Cls
                } else {
                    Pooling::Mean
                };
            } else if m.kind.ends_with("Normalize") {
                out.normalize = true;
            }
        }
        Ok(out)
    }
}
