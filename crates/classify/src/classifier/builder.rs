//! [`ClassifierBuilder`]: reads a model directory, loads the encoder on the engine the options
//! name ([`crate::backend::load`]) and prepares the labels' scorer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use super::scoring::{LabelInfo, Proto, Scorer};
use super::{Classifier, Inner};
use crate::checksum::{weight_files, weights_sha256};
use crate::config::{ModelConfig, PoolingConfig};
use crate::error::{Error, Result};
use crate::head::{CheckpointHead, LinearHead};
use crate::labels::{Activation, LabelsConfig, Mode};
use crate::model::InputsOf;
use crate::options::{Backend, DeviceSpec, ModelOptions, Precision};
use crate::tokenize::{TextTokenizer, WindowOptions};

/// Builds a [`Classifier`] from a model directory.
///
/// ```
/// use triage_classify::{ClassifierBuilder, LabelSpec, LabelsConfig};
///
/// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/multilingual-e5-small");
/// # if !std::path::Path::new(dir).join("model.safetensors").exists() {
/// #     assert!(std::env::var_os("TRIAGE_TEST_STRICT").is_none(), "{dir} is missing");
/// #     eprintln!("skipped: {dir} is missing (scripts/setup.sh imports it)");
/// #     return Ok(());
/// # }
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

    /// Names ONNX Runtime's library for the `ort` backend ([`ModelOptions::ort_library`]).
    pub fn ort_library(mut self, library: Option<PathBuf>) -> Self {
        self.options.ort_library = library;
        self
    }

    /// Scores windows near a decision again in f32 (see [`ModelOptions::refine_margin`]).
    pub fn refine_margin(mut self, margin: Option<crate::Refine>) -> Self {
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
        let windows = WindowOptions {
            max_tokens,
            overlap: self.options.window_overlap,
        };
        // the tokenizer (a large JSON file, most of a second) loads on its own thread while
        // the weights are read and the engine is made; the int8 engine's calibration is the
        // first to need it
        std::thread::scope(|scope| {
            let job = scope
                .spawn(|| TextTokenizer::from_file(&tokenizer_path, &self.options.prefix, windows));
            self.build_with(with_labels, config, job)
        })
    }

    fn build_with(
        &self,
        with_labels: bool,
        config: ModelConfig,
        tokenizer_job: std::thread::ScopedJoinHandle<'_, Result<TextTokenizer>>,
    ) -> Result<Classifier> {
        let dir = &self.dir;
        let mut job = Some(tokenizer_job);
        let mut tokenizer: Option<TextTokenizer> = None;
        let join = |job: &mut Option<std::thread::ScopedJoinHandle<'_, Result<TextTokenizer>>>| {
            job.take()
                .expect("the tokenizer is joined once")
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Tokenizer {
                        path: dir.join("tokenizer.json"),
                        message: "loading it panicked".into(),
                    })
                })
        };
        let pooling = PoolingConfig::from_dir(dir)?;
        let files = weight_files(dir)?;
        // the combination of options is checked before anything is opened or read
        crate::backend::check(&self.options)?;
        let device = self.options.device.open()?;
        let dtype = crate::backend::weights_dtype(&self.options, &device);
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
        let inputs_of = InputsOf {
            arch: config.architecture(),
            pad_token_id: config.bert().pad_token_id,
            device: device.clone(),
        };
        let source = crate::backend::Source {
            dir,
            files: &files,
            prefix,
            config: &config,
            vb: encoder_vb,
            calibration_id: calibration_id(
                &dir.join("tokenizer.json"),
                &self.options.prefix,
                self.options.max_tokens,
                self.options.window_overlap,
            ),
        };
        let encoder = crate::backend::load(source, &self.options, || {
            let t = join(&mut job)?;
            let windows = calibration_windows(&t, &inputs_of);
            tokenizer = Some(t);
            windows
        })?;
        let tokenizer = match tokenizer {
            Some(t) => t,
            None => join(&mut job)?,
        };
        let hidden_size = config.bert().hidden_size;
        let sha = weights_sha256(dir)?;
        let model_id = format!("{}@sha256:{}", self.options.name, sha);

        let kernels = encoder.int8_kernels();
        let engine = super::Engine {
            backend: self.options.backend,
            dtype: self.options.precision,
            device: self.options.device.to_string(),
            int8_kernels: kernels.map(|k| k.0),
            int8_kernels_why: kernels.map(|k| k.1),
            cpu: crate::cpu_features(),
        };
        let mut classifier = Classifier {
            inner: Arc::new(Inner {
                engine,
                encoder,
                gpu_passes: self.gpu_passes || device.is_cuda(),
                refine: self.options.refine_margin,
                refine_bounds: Vec::new(),
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
        if inner.refine.is_none() {
            inner.encoder.drop_exact();
        }
        if inner.refine == Some(crate::Refine::Auto) {
            let bounds = classifier.int8_error_bounds()?;
            Arc::get_mut(&mut classifier.inner)
                .expect("classifier not shared yet")
                .refine_bounds = bounds;
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

/// Texts whose f32 activations calibrate the int8 encoder's smoothing: a few sentences of
/// news, chat, advertising and violence in the 15 languages of the design, written for triage.
pub(super) const CALIBRATION: &str = include_str!("../../data/calibration.txt");

/// The calibration texts as the encoder's inputs, one window each.
/// What decides [`calibration_windows`] without tokenizing: the texts, the tokenizer file
/// (size and modification time, as the weights' checksum cache keys files) and the window
/// options.
fn calibration_id(
    tokenizer: &Path,
    prefix: &str,
    max_tokens: Option<usize>,
    overlap: usize,
) -> Vec<u8> {
    let file = std::fs::metadata(tokenizer)
        .map(|m| {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} {t}", m.len())
        })
        .unwrap_or_default();
    format!("{CALIBRATION}\n{file}\n{prefix:?} {max_tokens:?} {overlap}").into_bytes()
}

fn calibration_windows(
    tokenizer: &TextTokenizer,
    inputs_of: &InputsOf,
) -> Result<Vec<crate::model::EncoderInputs>> {
    let mut out = Vec::new();
    for text in CALIBRATION.lines().filter(|l| !l.trim().is_empty()) {
        for w in tokenizer.prepare(text)?.windows {
            out.push(inputs_of.inputs(&[&w.ids], 0)?);
        }
    }
    Ok(out)
}
