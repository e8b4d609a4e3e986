//! The public classifier: a builder that loads a model directory and yields an immutable,
//! `Send + Sync` [`Classifier`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::backend::{AnyEncoder, Backend, DeviceSpec, Precision};
use crate::bert::{l2_normalize, mean_pool, Encoder, InputsOf};
use crate::checksum::{weight_files, weights_sha256};
use crate::config::{Architecture, ModelConfig, Pooling, PoolingConfig};
use crate::error::{read_json, Error, Result};
use crate::labels::{Activation, HeadMeta, LabelsConfig, Mode};
use crate::tokenize::{Prepared, TextTokenizer, WindowOptions};

/// The `[model]` section of `workspace.toml`: which model and how texts are fed to it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOptions {
    /// A folder under `models/`, or a path to a model directory.
    pub name: String,
    /// Text put before every input, as the model card says (e5: `"query: "`).
    #[serde(default)]
    pub prefix: String,
    /// Most tokens of one window (specials and prefix included); the model's maximum when absent.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Tokens shared by neighbouring windows of a long text.
    #[serde(default = "default_overlap")]
    pub window_overlap: usize,
    /// The engine that runs the encoder: `candle` (default), `tch` (libtorch) or `ort` (ONNX
    /// Runtime), the last two behind cargo features.
    #[serde(default)]
    pub backend: Backend,
    /// The encoder's number format, `dtype` in `workspace.toml`: `f32` (default), `bf16` (the
    /// `tch` backend, or candle on a GPU) or `int8` (the `ort` backend only).
    #[serde(default, rename = "dtype")]
    pub precision: Precision,
    /// With `dtype = "int8"` on the `ort` backend: a window whose int8 scores have two labels,
    /// or a label and one of its thresholds, closer than this is scored again in f32, so that
    /// the decisions near a boundary are f32's (`refine_margin` in `workspace.toml`).
    #[serde(default)]
    pub refine_margin: Option<f32>,
    /// Where candle runs the encoder: `cpu` (default), `cuda` or `cuda:N` (a build with the
    /// cargo feature `cuda`). On a GPU, `dtype` may be `f32` or `bf16`.
    #[serde(default)]
    pub device: DeviceSpec,
}

fn default_overlap() -> usize {
    64
}

impl ModelOptions {
    /// Options for the model `name` with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        ModelOptions {
            name: name.into(),
            prefix: String::new(),
            max_tokens: None,
            window_overlap: default_overlap(),
            backend: Backend::default(),
            precision: Precision::default(),
            refine_margin: None,
            device: DeviceSpec::default(),
        }
    }
}

/// Windows are padded to a multiple of this many tokens (see `Classifier::run_windows`).
pub const BUCKET: usize = 8;
/// Most tokens (windows x padded length) in one forward pass on the CPU.
pub const MAX_BATCH_TOKENS: usize = 2048;
/// Most tokens in one forward pass on a GPU, which needs large products to be busy.
pub const MAX_GPU_BATCH_TOKENS: usize = 65536;

/// Builds a [`Classifier`] from a model directory.
///
/// ```
/// use triage_classify::{ClassifierBuilder, LabelSpec, LabelsConfig};
///
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/multilingual-e5-small");
/// let mut labels = LabelsConfig::default();
/// for (name, description) in [("spam", "Advertising, scams, get rich quick."), ("news", "News reporting.")] {
///     labels.labels.push((name.into(), LabelSpec { description: Some(description.into()), ..Default::default() }));
/// }
/// let classifier = ClassifierBuilder::new(dir)
///     .prefix("query: ")
///     .labels(labels)
///     .build()?;
/// let result = classifier.classify("Gagnez 5000 euros par jour sans rien faire !")?;
/// // each label's own probability; `top()` is `None` when no label reaches its threshold
/// match result.top() {
///     Some(top) => println!("{} {:.3}", top.label(), top.score()),
///     None => println!("none of the labels"),
/// }
/// # Ok::<(), triage_classify::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClassifierBuilder {
    dir: PathBuf,
    options: ModelOptions,
    labels: LabelsConfig,
    gpu_passes: bool,
}

impl ClassifierBuilder {
    /// Starts from a model directory (`config.json`, `tokenizer.json`, `*.safetensors`).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().to_owned();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ClassifierBuilder {
            dir,
            options: ModelOptions::new(name),
            labels: LabelsConfig::default(),
            gpu_passes: false,
        }
    }

    /// Sets the text prefix (e5 models want `"query: "`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.options.prefix = prefix.into();
        self
    }

    /// Sets every model option at once (the `[model]` section); keeps the directory.
    pub fn options(mut self, options: ModelOptions) -> Self {
        self.options = options;
        self
    }

    /// Chooses the engine that runs the encoder.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.options.backend = backend;
        self
    }

    /// Chooses the encoder's number format (`bf16` needs the `tch` backend or a GPU, `int8`
    /// the `ort` backend).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.options.precision = precision;
        self
    }

    /// Chooses where candle runs the encoder (a GPU needs a build with the feature `cuda`).
    pub fn device(mut self, device: DeviceSpec) -> Self {
        self.options.device = device;
        self
    }

    /// Batches windows as on a GPU (large passes in turn, each pooled at once) whatever the
    /// device, so that the CPU tests cover that code.
    #[doc(hidden)]
    pub fn gpu_passes(mut self, on: bool) -> Self {
        self.gpu_passes = on;
        self
    }

    /// Scores windows near a decision again in f32 (see [`ModelOptions::refine_margin`]).
    pub fn refine_margin(mut self, margin: Option<f32>) -> Self {
        self.options.refine_margin = margin;
        self
    }

    /// Sets the taxonomy and the scoring mode (the `[labels]` section).
    pub fn labels(mut self, labels: LabelsConfig) -> Self {
        self.labels = labels;
        self
    }

    /// Loads the model only, for embeddings (training a head, caching): no labels are scored.
    pub fn build_embedder(mut self) -> Result<Classifier> {
        self.labels = LabelsConfig {
            mode: Mode::Checkpoint,
            ..Default::default()
        };
        self.build_inner(false)
    }

    /// Loads the model and prepares the labels.
    pub fn build(self) -> Result<Classifier> {
        self.build_inner(true)
    }
    #[tracing::instrument(skip_all, fields(dir = %self.dir.display()))]
    fn build_inner(self, with_labels: bool) -> Result<Classifier> {
        let dir = &self.dir;
        let config_path = dir.join("config.json");
        if !config_path.exists() {
            return Err(Error::MissingFile {
                dir: dir.clone(),
                file: "config.json".into(),
            });
        }
        let config = ModelConfig::from_file(&config_path)?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(Error::MissingFile {
                dir: dir.clone(),
                file: "tokenizer.json".into(),
            });
        }
        let model_max = config.max_tokens();
        let max_tokens = self.options.max_tokens.unwrap_or(model_max).min(model_max);
        let tokenizer = TextTokenizer::from_file(
            &tokenizer_path,
            &self.options.prefix,
            WindowOptions {
                max_tokens,
                overlap: self.options.window_overlap,
            },
        )?;
        let pooling = PoolingConfig::from_dir(dir)?;
        let files = weight_files(dir)?;
        if self.options.device.is_cuda() && self.options.backend != Backend::Candle {
            return Err(Error::Backend {
                message: format!(
                    "device {}: only the candle backend runs on a GPU (--backend candle)",
                    self.options.device
                ),
            });
        }
        let device = self.options.device.open()?;
        let dtype = match self.options.precision {
            Precision::Bf16 if device.is_cuda() => DType::BF16,
            _ => DType::F32,
        };
        let weights_err = |e: candle_core::Error| Error::Weights {
            dir: dir.clone(),
            message: e.to_string(),
        };
        // read tensor by tensor, not memory-mapped: the builder lives through the whole load,
        // and a map's touched pages would stay resident beside their copies (`weights.rs`)
        let weights =
            crate::weights::SafetensorsFiles::open(&files).map_err(|message| Error::Weights {
                dir: dir.clone(),
                message,
            })?;
        let root = VarBuilder::from_backend(Box::new(weights), dtype, device.clone());
        let prefix = ["", "bert.", "roberta.", "model."]
            .into_iter()
            .find(|p| root.contains_tensor(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or_else(|| Error::Weights {
                dir: dir.clone(),
                message: "no tensor embeddings.word_embeddings.weight (nor under bert., roberta.)"
                    .into(),
            })?;
        let encoder_vb = if prefix.is_empty() {
            root.clone()
        } else {
            root.pp(prefix.trim_end_matches('.'))
        };
        if let Some(m) = self.options.refine_margin {
            if !(m > 0.0 && m < 1.0) {
                return Err(Error::Backend {
                    message: format!("refine_margin {m}: a score difference between 0 and 1"),
                });
            }
            if (self.options.backend, self.options.precision) != (Backend::Ort, Precision::Int8) {
                return Err(Error::Backend {
                    message: "refine_margin refines int8 scores in f32: it needs the ort backend \
                              with dtype int8 (--backend ort --dtype int8)"
                        .into(),
                });
            }
        }
        let inputs_of = InputsOf {
            arch: config.architecture(),
            pad_token_id: config.bert().pad_token_id,
            device: device.clone(),
        };
        let encoder = match (self.options.backend, self.options.precision) {
            (Backend::Candle, Precision::Bf16) if !device.is_cuda() => {
                return Err(Error::Backend {
                    message: "bf16 needs the tch backend or a GPU (--device cuda): candle has no \
                              bf16 matrix kernel on the CPU (it converts to f32 and back, which \
                              is slower)"
                        .into(),
                })
            }
            // the weights were read in `dtype`: f32, or bf16 on a GPU
            (Backend::Candle, Precision::F32 | Precision::Bf16) => {
                AnyEncoder::Candle(Encoder::load(encoder_vb, &config).map_err(weights_err)?)
            }
            (Backend::Candle | Backend::Tch, Precision::Int8) => {
                return Err(Error::Backend {
                    message: "int8 needs the ort backend (--backend ort)".into(),
                })
            }
            (Backend::Tch, precision) => {
                crate::backend::load_tch(dir, &files, prefix, &config, precision)?
            }
            (Backend::Ort, Precision::Bf16) => {
                return Err(Error::Backend {
                    message: "bf16 is the tch backend's; the ort backend runs f32 or int8".into(),
                })
            }
            (Backend::Ort, precision) => {
                let int8 = precision == Precision::Int8;
                let calibration = if int8 {
                    calibration_windows(&tokenizer, &inputs_of)?
                } else {
                    Vec::new()
                };
                crate::backend::load_ort(
                    Encoder::load(encoder_vb, &config).map_err(weights_err)?,
                    &config,
                    int8,
                    &calibration,
                )?
            }
        };
        let hidden_size = config.bert().hidden_size;
        let sha = weights_sha256(dir)?;
        let model_id = format!("{}@sha256:{}", self.options.name, sha);

        let mut classifier = Classifier {
            inner: Arc::new(Inner {
                encoder,
                gpu_passes: self.gpu_passes || device.is_cuda(),
                refine_margin: self.options.refine_margin,
                hidden_size,
                inputs_of,
                tokenizer,
                pooling,
                scorer: Scorer::None,
                labels: Vec::new(),
                multi_label: self.labels.multi_label,
                model_id,
                weights_sha256: sha,
                dir: dir.clone(),
            }),
        };
        if !with_labels {
            return Ok(classifier);
        }
        let (scorer, labels) = self.scorer(&classifier, &root, &config)?;
        let inner = Arc::get_mut(&mut classifier.inner).expect("classifier not shared yet");
        inner.scorer = scorer;
        inner.labels = labels;
        if inner.refine_margin.is_none() {
            inner.encoder.drop_exact();
        }
        Ok(classifier)
    }

    fn scorer(
        &self,
        classifier: &Classifier,
        root: &VarBuilder,
        config: &ModelConfig,
    ) -> Result<(Scorer, Vec<LabelInfo>)> {
        let lc = &self.labels;
        let info =
            |names: Vec<String>, suggested: &dyn Fn(&str) -> Option<f32>| -> Vec<LabelInfo> {
                names
                    .into_iter()
                    .map(|name| {
                        let spec = lc.labels.iter().find(|(n, _)| *n == name).map(|(_, s)| s);
                        let threshold = spec
                            .and_then(|s| s.threshold)
                            .or_else(|| suggested(&name))
                            .unwrap_or(lc.default_threshold);
                        let by_language = spec
                            .map(|s| s.language_thresholds.clone())
                            .unwrap_or_default();
                        LabelInfo {
                            name,
                            threshold,
                            by_language,
                        }
                    })
                    .collect()
            };
        let check_known = |known: &[String]| -> Result<()> {
            for (name, _) in &lc.labels {
                if !known.contains(name) {
                    return Err(Error::Labels {
                        key: name.clone(),
                        message: format!(
                            "not a label of the model (its labels: {})",
                            known.join(", ")
                        ),
                    });
                }
            }
            Ok(())
        };
        match lc.mode {
            Mode::Prototypes => {
                if lc.labels.is_empty() {
                    return Err(Error::Labels {
                        key: "mode".into(),
                        message: "prototypes mode needs at least one [labels.<name>] table".into(),
                    });
                }
                // positives (description, examples) and counter-examples of each label, then
                // the background that every label is weighed against
                let mut texts: Vec<&str> = Vec::new();
                let mut owner = Vec::new();
                for (i, (name, spec)) in lc.labels.iter().enumerate() {
                    let n0 = texts.len();
                    texts.extend(spec.description.iter().map(String::as_str));
                    texts.extend(spec.examples.iter().map(String::as_str));
                    if texts.len() == n0 {
                        return Err(Error::Labels {
                            key: name.clone(),
                            message: "has neither a description nor examples to score it by".into(),
                        });
                    }
                    owner.extend(std::iter::repeat_n(Proto::Positive(i), texts.len() - n0));
                    texts.extend(spec.counter_examples.iter().map(String::as_str));
                    owner.resize(texts.len(), Proto::Counter(i));
                }
                let builtin;
                let background: &[String] = match &lc.background {
                    Some(b) => b,
                    None => {
                        builtin = crate::labels::builtin_background();
                        &builtin
                    }
                };
                texts.extend(background.iter().map(String::as_str));
                owner.resize(texts.len(), Proto::Background);
                if background.is_empty() {
                    if let Some((name, _)) = lc
                        .labels
                        .iter()
                        .find(|(_, s)| s.counter_examples.is_empty())
                    {
                        return Err(Error::Labels {
                            key: name.clone(),
                            message: "has nothing to be weighed against: give it counter_examples, or keep a background ([labels] background, the built-in one when absent)".into(),
                        });
                    }
                }
                // in f32 whatever the encoder's number format: the prototypes are few, and
                // every text is compared with them
                let prepared = texts
                    .iter()
                    .map(|t| classifier.prepare(t))
                    .collect::<Result<Vec<_>>>()?;
                let rows = classifier.embed_prepared_on(&prepared, true)?;
                let h = classifier.inner.hidden_size;
                let flat: Vec<f32> = rows.into_iter().flatten().collect();
                let protos = Tensor::from_vec(flat, (texts.len(), h), &Device::Cpu)?;
                let names = lc.labels.iter().map(|(n, _)| n.clone()).collect();
                Ok((
                    Scorer::Prototypes {
                        protos,
                        owner,
                        labels: lc.labels.len(),
                        temperature: lc.temperature,
                    },
                    info(names, &|_| None),
                ))
            }
            Mode::Checkpoint => {
                let c = config.bert();
                let id2label = c.id2label.as_ref().ok_or_else(|| Error::Labels {
                    key: "mode".into(),
                    message: format!(
                        "checkpoint mode needs id2label in {}",
                        self.dir.join("config.json").display()
                    ),
                })?;
                let mut pairs: Vec<(usize, String)> = id2label
                    .iter()
                    .map(|(k, v)| k.parse().map(|i| (i, v.clone())))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| Error::Json {
                        path: self.dir.join("config.json"),
                        message: "id2label keys must be integers".into(),
                    })?;
                pairs.sort();
                let names: Vec<String> = pairs.into_iter().map(|(_, v)| v).collect();
                check_known(&names)?;
                let head = CheckpointHead::load(root, config, names.len()).map_err(|e| {
                    Error::Weights {
                        dir: self.dir.clone(),
                        message: format!("sequence classification head: {e}"),
                    }
                })?;
                let activation = match c.problem_type.as_deref() {
                    Some("multi_label_classification") => Activation::Sigmoid,
                    _ => Activation::Softmax,
                };
                Ok((
                    Scorer::Checkpoint { head, activation },
                    info(names, &|_| None),
                ))
            }
            Mode::Head => {
                let rel = lc.head.as_ref().ok_or_else(|| Error::Labels {
                    key: "head".into(),
                    message: "head mode needs `head = \"<dir>\"` in [labels]".into(),
                })?;
                let path = if rel.is_absolute() {
                    rel.clone()
                } else {
                    self.dir.join(rel)
                };
                let head = LinearHead::load(&path, classifier.inner.hidden_size)?;
                if let Some(trained_on) = &head.meta.encoder_sha256 {
                    if trained_on != classifier.weights_sha256() {
                        return Err(Error::Head {
                            path,
                            message: format!(
                                "trained on the encoder with weights sha256:{trained_on}, not on {} (sha256:{}); train it again on this model",
                                self.dir.display(),
                                classifier.weights_sha256()
                            ),
                        });
                    }
                }
                check_known(&head.meta.labels)?;
                let meta = head.meta.clone();
                let labels = info(meta.labels.clone(), &|n| meta.thresholds.get(n).copied());
                Ok((Scorer::Head(head), labels))
            }
        }
    }
}

/// Open-world scores of one text from its cosine similarity to each prototype: label `l`
/// scores `sigmoid((p - n) / temperature)`, where `p` is the text's similarity to the nearest
/// positive of `l` and `n` to the nearest of `l`'s counter-examples and the background. Each
/// score stands on its own (they do not sum to one): a text nearer to ordinary text than to
/// any label scores below 0.5 for every label.
fn open_world_scores(sims: &[f32], owner: &[Proto], labels: usize, temperature: f32) -> Vec<f32> {
    let mut pos = vec![f32::NEG_INFINITY; labels];
    let mut neg = vec![f32::NEG_INFINITY; labels];
    let mut background = f32::NEG_INFINITY;
    for (&s, &o) in sims.iter().zip(owner) {
        match o {
            Proto::Positive(l) => pos[l] = pos[l].max(s),
            Proto::Counter(l) => neg[l] = neg[l].max(s),
            Proto::Background => background = background.max(s),
        }
    }
    pos.iter()
        .zip(&neg)
        .map(|(&p, &n)| 1.0 / (1.0 + (-(p - n.max(background)) / temperature).exp()))
        .collect()
}

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

    /// Logits of pooled embeddings `[n, hidden]` -> `[n, labels]`.
    pub fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        pooled.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

enum CheckpointHead {
    /// BERT: pooler (dense + tanh on the first token), then `classifier`.
    Bert { pooler: Linear, classifier: Linear },
    /// RoBERTa / XLM-R: `classifier.dense` + tanh, then `classifier.out_proj`.
    Roberta { dense: Linear, out_proj: Linear },
}

impl CheckpointHead {
    fn load(root: &VarBuilder, config: &ModelConfig, n: usize) -> candle_core::Result<Self> {
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

    fn forward(&self, first: &Tensor) -> candle_core::Result<Tensor> {
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

/// What a prototype of `prototypes` mode stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// The description or an example of label `i`.
    Positive(usize),
    /// A counter-example (hard negative) of label `i`.
    Counter(usize),
    /// Ordinary text, a negative of every label.
    Background,
}

enum Scorer {
    None,
    Prototypes {
        protos: Tensor,
        owner: Vec<Proto>,
        labels: usize,
        temperature: f32,
    },
    Checkpoint {
        head: CheckpointHead,
        activation: Activation,
    },
    Head(LinearHead),
}

struct LabelInfo {
    name: String,
    threshold: f32,
    by_language: std::collections::BTreeMap<String, f32>,
}

struct Inner {
    encoder: AnyEncoder,
    /// Large passes in turn, pooled at once (a GPU's way; see `run_items`).
    gpu_passes: bool,
    refine_margin: Option<f32>,
    hidden_size: usize,
    inputs_of: InputsOf,
    tokenizer: TextTokenizer,
    pooling: PoolingConfig,
    scorer: Scorer,
    labels: Vec<LabelInfo>,
    multi_label: bool,
    model_id: String,
    weights_sha256: String,
    dir: PathBuf,
}

/// A loaded model with its labels: immutable, cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

/// A character span of the input text, `start..end` in chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
}

/// One label's score for one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    label: String,
    score: f32,
    flagged: bool,
}

impl LabelScore {
    /// The label's name.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// The score, within 0 and 1: the maximum over the text's windows.
    pub fn score(&self) -> f32 {
        self.score
    }
    /// Whether the score reaches the label's threshold (and, single-label, the label is the top).
    pub fn flagged(&self) -> bool {
        self.flagged
    }
}

/// The labels of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    labels: Vec<LabelScore>,
    top: usize,
    evidence: Span,
    windows: usize,
    chars: usize,
    tokens: usize,
}

impl Classification {
    /// Every label, in the configured order.
    pub fn labels(&self) -> &[LabelScore] {
        &self.labels
    }
    /// The highest-scoring label if it is flagged; `None` when the text belongs to none of the
    /// labels (no label reaches its threshold).
    pub fn top(&self) -> Option<&LabelScore> {
        self.best().filter(|l| l.flagged)
    }
    /// The highest-scoring label, flagged or not.
    pub fn best(&self) -> Option<&LabelScore> {
        self.labels.get(self.top)
    }
    /// The span of the window where the highest-scoring label scored highest.
    pub fn evidence(&self) -> Span {
        self.evidence
    }
    /// How many windows the text was cut into.
    pub fn windows(&self) -> usize {
        self.windows
    }
    /// Length of the text in characters.
    pub fn chars(&self) -> usize {
        self.chars
    }
    /// Tokens of the text (without specials and prefix).
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("model", &self.inner.model_id)
            .field("labels", &self.label_names())
            .finish()
    }
}

impl Classifier {
    /// `<name>@sha256:<checksum of the weights>`.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }
    /// SHA-256 of the weights.
    pub fn weights_sha256(&self) -> &str {
        &self.inner.weights_sha256
    }
    /// The model directory.
    pub fn model_dir(&self) -> &Path {
        &self.inner.dir
    }
    /// Label names, in output order.
    pub fn label_names(&self) -> Vec<&str> {
        self.inner.labels.iter().map(|l| l.name.as_str()).collect()
    }
    /// Width of the embeddings.
    pub fn hidden_size(&self) -> usize {
        self.inner.hidden_size
    }
    /// The tokenizer with the windowing rules.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.inner.tokenizer
    }

    /// Labels one text.
    pub fn classify(&self, text: &str) -> Result<Classification> {
        Ok(self.classify_batch(&[text])?.remove(0))
    }

    /// Labels several texts; each text's scores are the same as if it were alone.
    #[tracing::instrument(skip_all, fields(texts = texts.len()))]
    pub fn classify_batch(&self, texts: &[&str]) -> Result<Vec<Classification>> {
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>>>()?;
        self.classify_prepared(&prepared)
    }

    /// Tokenizes a text into windows (the CPU-light half of the work; thread-safe).
    pub fn prepare(&self, text: &str) -> Result<Prepared> {
        self.inner.tokenizer.prepare(text)
    }

    /// Labels prepared texts (their windows run in parallel).
    pub fn classify_prepared(&self, prepared: &[Prepared]) -> Result<Vec<Classification>> {
        Ok(self.aggregate(prepared, self.window_scores(prepared)?))
    }

    /// Label scores of every window of every text (`[text][window][label]`); with
    /// [`Classifier::classify_scored`] the same result as [`Classifier::classify_prepared`].
    /// A window's scores depend only on its tokens (bit for bit), so they can be reused for
    /// another text with the same tokens.
    pub fn window_scores(&self, prepared: &[Prepared]) -> Result<Vec<Vec<Vec<f32>>>> {
        let all = every_window(prepared);
        let mut out = by_text(prepared, self.scores_of(prepared, &all, false)?);
        if let Some(margin) = self.inner.refine_margin {
            // decided by the window's own scores, so a window's scores still depend only on
            // its tokens
            let near: Vec<(usize, usize)> = all
                .into_iter()
                .filter(|&(d, w)| self.near_a_decision(&out[d][w], margin))
                .collect();
            tracing::debug!(windows = near.len(), "refined in f32");
            for ((d, w), row) in near.iter().zip(self.scores_of(prepared, &near, true)?) {
                out[*d][*w] = row;
            }
        }
        Ok(out)
    }

    /// Label scores of the windows `items` (`(text, window)`), on the main encoder or, with
    /// `exact`, its f32 one.
    fn scores_of(
        &self,
        prepared: &[Prepared],
        items: &[(usize, usize)],
        exact: bool,
    ) -> Result<Vec<Vec<f32>>> {
        if self.uses_embeddings() {
            let pooled = self.run_items(prepared, items, exact, |this, hidden, mask| {
                Ok(this.pool(hidden, mask)?.to_vec2::<f32>()?)
            })?;
            return self.score_embeddings(&pooled);
        }
        self.run_items(prepared, items, exact, |this, hidden, _| {
            this.checkpoint_rows(hidden)
        })
    }

    /// Whether a window's scores have a label and one of its thresholds, or (single-label,
    /// where only the best label can be flagged) the two best labels, closer than `margin`.
    /// Multi-label, the labels decide apart: two scores near zero are no decision.
    fn near_a_decision(&self, scores: &[f32], margin: f32) -> bool {
        if !self.inner.multi_label {
            let mut sorted = scores.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted.len() > 1 && sorted[0] - sorted[1] < margin {
                return true;
            }
        }
        scores.iter().zip(&self.inner.labels).any(|(&s, info)| {
            std::iter::once(&info.threshold)
                .chain(info.by_language.values())
                .any(|&t| (s - t).abs() < margin)
        })
    }

    /// Labels texts from their window scores (see [`Classifier::window_scores`]).
    pub fn classify_scored(
        &self,
        prepared: &[Prepared],
        window_scores: Vec<Vec<Vec<f32>>>,
    ) -> Vec<Classification> {
        self.aggregate(prepared, window_scores)
    }

    /// Whether the encoder runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.inner.inputs_of.device.is_cuda()
    }

    /// Whether labels are scored from pooled window embeddings (`prototypes`, `head`), so that
    /// [`Classifier::window_embeddings`] can be cached and fed to [`Classifier::classify_embedded`].
    pub fn uses_embeddings(&self) -> bool {
        !matches!(self.inner.scorer, Scorer::Checkpoint { .. })
    }

    /// The pooled embedding of every window of every text (`[text][window][hidden]`).
    pub fn window_embeddings(&self, prepared: &[Prepared]) -> Result<Vec<Vec<Vec<f32>>>> {
        self.window_embeddings_on(prepared, false)
    }

    fn window_embeddings_on(
        &self,
        prepared: &[Prepared],
        exact: bool,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        self.run_windows(prepared, exact, |this, hidden, mask| {
            Ok(this.pool(hidden, mask)?.to_vec2::<f32>()?)
        })
    }

    /// Labels texts from their window embeddings (as [`Classifier::window_embeddings`] made them);
    /// the same result as [`Classifier::classify_prepared`].
    pub fn classify_embedded(
        &self,
        prepared: &[Prepared],
        windows: &[Vec<Vec<f32>>],
    ) -> Result<Vec<Classification>> {
        Ok(self.aggregate(prepared, self.scores_of_window_embeddings(windows)?))
    }

    fn scores_of_window_embeddings(&self, windows: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<Vec<f32>>>> {
        let flat: Vec<Vec<f32>> = windows.iter().flatten().cloned().collect();
        let mut scores = self.score_embeddings(&flat)?.into_iter();
        Ok(windows
            .iter()
            .map(|w| scores.by_ref().take(w.len()).collect())
            .collect())
    }

    /// Label scores of pooled embeddings (`[n][hidden]` -> `[n][labels]`), in `prototypes` and
    /// `head` modes.
    pub fn score_embeddings(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let h = self.hidden_size();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let pooled = Tensor::from_vec(flat, (rows.len(), h), &Device::Cpu)?;
        match &self.inner.scorer {
            Scorer::None | Scorer::Checkpoint { .. } => Err(Error::Labels {
                key: "mode".into(),
                message: "scoring embeddings needs prototypes or head mode with labels".into(),
            }),
            Scorer::Prototypes {
                protos,
                owner,
                labels,
                temperature,
            } => {
                let sims: Vec<Vec<f32>> = l2_normalize(&pooled)?.matmul(&protos.t()?)?.to_vec2()?;
                Ok(sims
                    .into_iter()
                    .map(|s| open_world_scores(&s, owner, *labels, *temperature))
                    .collect())
            }
            Scorer::Head(head) => {
                let mut rows: Vec<Vec<f32>> = head.logits(&pooled)?.to_vec2()?;
                rows.iter_mut().for_each(|r| head.meta.activation.apply(r));
                Ok(rows)
            }
        }
    }

    /// The threshold label `label` (an index into [`Classifier::label_names`]) is flagged at in
    /// language `lang`: its `language_thresholds` entry, else its own; `None` for the label's
    /// own (the workspace's, else the head's suggestion, else `default_threshold`).
    pub fn threshold(&self, label: usize, lang: Option<&str>) -> f32 {
        let info = &self.inner.labels[label];
        lang.and_then(|l| info.by_language.get(l).copied())
            .unwrap_or(info.threshold)
    }

    /// Re-applies the thresholds of `lang` (`[labels.<name>.language_thresholds]`) to a result.
    pub fn apply_language_thresholds(&self, c: &mut Classification, lang: &str) {
        let top = c.top;
        for (l, score) in c.labels.iter_mut().enumerate() {
            let t = self.threshold(l, Some(lang));
            score.flagged = score.score >= t && (self.inner.multi_label || l == top);
        }
    }

    fn aggregate(
        &self,
        prepared: &[Prepared],
        window_scores: Vec<Vec<Vec<f32>>>,
    ) -> Vec<Classification> {
        let n_labels = self.inner.labels.len();
        let mut out = Vec::with_capacity(prepared.len());
        for (p, rows) in prepared.iter().zip(window_scores) {
            let mut best = vec![f32::NEG_INFINITY; n_labels];
            let mut best_window = vec![0usize; n_labels];
            for (w, row) in rows.iter().enumerate() {
                for (l, &s) in row.iter().enumerate() {
                    if s > best[l] {
                        best[l] = s;
                        best_window[l] = w;
                    }
                }
            }
            let top = (0..n_labels)
                .max_by(|&a, &b| best[a].total_cmp(&best[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            let labels = self
                .inner
                .labels
                .iter()
                .enumerate()
                .map(|(l, info)| LabelScore {
                    label: info.name.clone(),
                    score: best[l],
                    flagged: best[l] >= info.threshold && (self.inner.multi_label || l == top),
                })
                .collect();
            let ew = &p.windows[best_window.get(top).copied().unwrap_or(0)];
            out.push(Classification {
                labels,
                top,
                evidence: Span {
                    start: ew.start,
                    end: ew.end,
                },
                windows: p.windows.len(),
                chars: p.chars,
                tokens: p.tokens,
            });
        }
        out
    }

    /// Sentence embeddings as the model's pooling makes them (`modules.json`), one per text;
    /// the windows of a long text are averaged, weighted by their token counts.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let prepared = texts
            .iter()
            .map(|t| self.prepare(t))
            .collect::<Result<Vec<_>>>()?;
        self.embed_prepared(&prepared)
    }

    /// [`Classifier::embed`] for prepared texts.
    pub fn embed_prepared(&self, prepared: &[Prepared]) -> Result<Vec<Vec<f32>>> {
        self.embed_prepared_on(prepared, false)
    }

    /// [`Classifier::embed_prepared`] on the main encoder or, with `exact`, its f32 one.
    fn embed_prepared_on(&self, prepared: &[Prepared], exact: bool) -> Result<Vec<Vec<f32>>> {
        let per_window = self.window_embeddings_on(prepared, exact)?;
        let h = self.hidden_size();
        Ok(prepared
            .iter()
            .zip(per_window)
            .map(|(p, rows)| {
                let mut v = vec![0f32; h];
                let mut total = 0f32;
                for (w, row) in p.windows.iter().zip(&rows) {
                    let weight = w.ids.len() as f32;
                    total += weight;
                    v.iter_mut().zip(row).for_each(|(a, b)| *a += weight * b);
                }
                v.iter_mut().for_each(|a| *a /= total);
                if self.inner.pooling.normalize || rows.len() > 1 {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    if self.inner.pooling.normalize {
                        v.iter_mut().for_each(|a| *a /= norm);
                    }
                }
                v
            })
            .collect())
    }

    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = match self.inner.pooling.pooling {
            Pooling::Mean => mean_pool(hidden, mask)?,
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
        };
        if self.inner.pooling.normalize {
            l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// Runs every window of `prepared` through the encoder in length-sorted batches and maps
    /// each batch's hidden states to rows with `f`; returns the rows of each text in order.
    ///
    /// Every window is padded to its length bucket (the next multiple of [`BUCKET`] tokens) and
    /// only windows of one bucket share a batch, so the arithmetic a window goes through, and
    /// with it every bit of its scores, does not depend on which other texts, how many, or how
    /// many threads there are.
    fn run_windows<F>(&self, prepared: &[Prepared], exact: bool, f: F) -> Result<Vec<Vec<Vec<f32>>>>
    where
        F: Fn(&Self, &Tensor, &Tensor) -> Result<Vec<Vec<f32>>> + Sync,
    {
        let rows = self.run_items(prepared, &every_window(prepared), exact, f)?;
        Ok(by_text(prepared, rows))
    }

    /// `f` of the encoder's states of the windows `items` (`(text, window)`), in that order; on
    /// the f32 encoder with `exact` (see [`AnyEncoder::forward_exact`]).
    fn run_items<F>(
        &self,
        prepared: &[Prepared],
        items: &[(usize, usize)],
        exact: bool,
        f: F,
    ) -> Result<Vec<Vec<f32>>>
    where
        F: Fn(&Self, &Tensor, &Tensor) -> Result<Vec<Vec<f32>>> + Sync,
    {
        use rayon::prelude::*;
        // Windows of one padded length share forward passes, up to MAX_BATCH_TOKENS tokens a
        // pass. Every window in a pass has exactly its own bucket's length, so attention, layer
        // norms and activations see the same rows as if it ran alone; the matrix products give
        // each row the same bits for any number of rows from BUCKET up (each output element is
        // one dot product over the same K in the same order), which the tests check. The
        // passes run in parallel.
        //
        // On a GPU the passes are larger (MAX_GPU_BATCH_TOKENS) and run in turn, and that bit
        // for bit independence does not hold: cuBLAS picks its kernels by the products' shapes,
        // so a window's scores can move in their last bits with the batch it is in.
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> =
            std::collections::BTreeMap::new();
        for (i, &(d, w)) in items.iter().enumerate() {
            let padded = prepared[d].windows[w].ids.len().div_ceil(BUCKET).max(1) * BUCKET;
            groups.entry(padded).or_default().push(i);
        }
        let gpu = self.inner.gpu_passes;
        let budget = if gpu {
            MAX_GPU_BATCH_TOKENS
        } else {
            MAX_BATCH_TOKENS
        };
        let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
        for (len, members) in groups {
            let per = (budget / len).max(1);
            // equal-sized passes, so that the two cores get even work
            let n = members.len().div_ceil(per);
            let size = members.len().div_ceil(n);
            for part in members.chunks(size) {
                batches.push((len, part.to_vec()));
            }
        }
        // the longest first, so that the last pass to finish is a short one
        batches.sort_by_key(|b| std::cmp::Reverse(b.0 * b.1.len()));
        let run = |(len, members): &(usize, Vec<usize>)| -> Result<Vec<Vec<f32>>> {
            let ids: Vec<&[u32]> = members
                .iter()
                .map(|&i| prepared[items[i].0].windows[items[i].1].ids.as_slice())
                .collect();
            let inputs = self.inner.inputs_of.inputs(&ids, *len)?;
            let hidden = if exact {
                self.inner.encoder.forward_exact(&inputs)?
            } else {
                self.inner.encoder.forward(&inputs)?
            };
            if gpu {
                // the whole batch at once: one copy back to the host instead of one per window
                return f(self, &hidden, &inputs.mask);
            }
            // pooling and heads run window by window, as small products of one row give
            // other bits than the same row among several
            let mut rows = Vec::with_capacity(members.len());
            for r in 0..members.len() {
                let h = hidden.narrow(0, r, 1)?;
                let m = inputs.mask.narrow(0, r, 1)?;
                rows.push(f(self, &h, &m)?.remove(0));
            }
            Ok(rows)
        };
        // A GPU takes the passes one after another: it is busy with one large pass, and
        // threads would only queue on its stream.
        let results: Vec<Result<Vec<Vec<f32>>>> = if gpu {
            batches.iter().map(run).collect()
        } else {
            batches.par_iter().map(run).collect()
        };
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); items.len()];
        for ((_, members), r) in batches.iter().zip(results) {
            for (&i, row) in members.iter().zip(r?) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    /// Checkpoint-head scores of each window of a batch.
    fn checkpoint_rows(&self, hidden: &Tensor) -> Result<Vec<Vec<f32>>> {
        let Scorer::Checkpoint { head, activation } = &self.inner.scorer else {
            return Err(Error::Labels {
                key: "mode".into(),
                message: "no checkpoint head is loaded".into(),
            });
        };
        let first = hidden.i((.., 0))?.contiguous()?;
        let mut rows: Vec<Vec<f32>> = head.forward(&first)?.to_vec2()?;
        rows.iter_mut().for_each(|r| activation.apply(r));
        Ok(rows)
    }

    /// Raw logits of the checkpoint head for each text's first window (for reference checks).
    pub fn checkpoint_logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let Scorer::Checkpoint { head, .. } = &self.inner.scorer else {
            return Err(Error::Labels {
                key: "mode".into(),
                message: "checkpoint_logits needs checkpoint mode".into(),
            });
        };
        let ids = texts
            .iter()
            .map(|t| {
                self.inner
                    .tokenizer
                    .prepare(t)
                    .map(|p| p.windows[0].ids.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let inputs = self.inner.inputs_of.inputs(&refs, 0)?;
        let hidden = self.inner.encoder.forward(&inputs)?;
        Ok(head.forward(&hidden.i((.., 0))?.contiguous()?)?.to_vec2()?)
    }
}

/// `(text, window)` of every window of `prepared`, in order.
fn every_window(prepared: &[Prepared]) -> Vec<(usize, usize)> {
    prepared
        .iter()
        .enumerate()
        .flat_map(|(d, p)| (0..p.windows.len()).map(move |w| (d, w)))
        .collect()
}

/// Rows of every window (in [`every_window`]'s order) grouped by text.
fn by_text<T>(prepared: &[Prepared], rows: Vec<T>) -> Vec<Vec<T>> {
    let mut rows = rows.into_iter();
    prepared
        .iter()
        .map(|p| rows.by_ref().take(p.windows.len()).collect())
        .collect()
}

/// Texts whose f32 activations calibrate the int8 encoder's smoothing: a few sentences of
/// news, chat, advertising and violence in the 15 languages of the design, written for triage.
const CALIBRATION: &str = include_str!("../data/calibration.txt");

/// The calibration texts as the encoder's inputs, one window each.
fn calibration_windows(
    tokenizer: &TextTokenizer,
    inputs_of: &InputsOf,
) -> Result<Vec<crate::bert::EncoderInputs>> {
    let mut out = Vec::new();
    for text in CALIBRATION.lines().filter(|l| !l.trim().is_empty()) {
        for w in tokenizer.prepare(text)?.windows {
            out.push(inputs_of.inputs(&[&w.ids], 0)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_world_scores_weigh_the_nearest_positive_against_the_nearest_negative() {
        use Proto::*;
        let owner = [
            Positive(0),
            Positive(0),
            Counter(0),
            Positive(1),
            Background,
            Background,
        ];
        let sims = [0.80, 0.86, 0.83, 0.70, 0.81, 0.75];
        let s = open_world_scores(&sims, &owner, 2, 0.02);
        // label 0: 0.86 against max(0.83, 0.81); label 1: 0.70 against the background's 0.81
        let sig = |x: f32| 1.0 / (1.0 + (-x / 0.02).exp());
        assert!((s[0] - sig(0.86 - 0.83)).abs() < 1e-6, "{s:?}");
        assert!((s[1] - sig(0.70 - 0.81)).abs() < 1e-6, "{s:?}");
        assert!(s[0] > 0.8 && s[1] < 0.01);
        // independent: they need not sum to one, and nearer the background means below 0.5
        assert!((s[0] + s[1] - 1.0).abs() > 0.1);
        let ordinary = open_world_scores(&[0.7, 0.7, 0.6, 0.6, 0.9, 0.5], &owner, 2, 0.02);
        assert!(ordinary.iter().all(|&x| x < 0.5), "{ordinary:?}");
    }
}
