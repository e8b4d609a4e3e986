//! Engines that run the encoder: candle (pure Rust, the default); behind the cargo feature
//! `tch`, libtorch through rust-bert's model code; behind the feature `ort`, ONNX Runtime (f32 or
//! int8 weights) on a graph written from the same weights (`onnx.rs`). All take triage's
//! padded windows ([`EncoderInputs`]) and give the last hidden states as a candle tensor, so
//! tokenization, windows, masking, pooling and heads are the same code whatever the engine.

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
    /// ONNX Runtime, loaded at run time from `ORT_DYLIB_PATH` (built with the feature `ort`).
    Ort,
}

named!(Backend { Candle = "candle", Tch = "tch", Ort = "ort" });

/// Number format of the encoder's weights and arithmetic (`[model] dtype`, `--dtype`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16 weights and activations (the `tch` backend on CPUs with bf16 support, or
    /// candle on a GPU).
    Bf16,
    /// int8 weights (one scale per output column) and activations quantized at run time, in
    /// every matrix product of the layers (the `ort` backend).
    Int8,
}

named!(Precision { F32 = "f32", Bf16 = "bf16", Int8 = "int8" });

/// Where candle runs the encoder (`[model] device`, `--device`): `cpu` (default), `cuda` (the
/// first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU cores.
    #[default]
    Cpu,
    /// The NVIDIA GPU of this ordinal (a build with the cargo feature `cuda`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device {s:?} (one of: cpu cuda cuda:N)")),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// Whether this is a GPU.
    pub fn is_cuda(&self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }

    /// The candle device; an error that says how to get one when this build has no CUDA or
    /// the GPU cannot be opened.
    pub fn open(&self) -> Result<candle_core::Device> {
        match *self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) if CUDA_BUILT => {
                candle_core::Device::new_cuda(n).map_err(|e| crate::error::Error::Backend {
                    // the first line: candle appends a backtrace when RUST_BACKTRACE is set
                    message: format!(
                        "cannot open the GPU cuda:{n}: {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                })
            }
            DeviceSpec::Cuda(_) => Err(crate::error::Error::Backend {
                message: "this build has no CUDA: build with `--features cuda` (the compiler: \
                          `eval \"$(scripts/setup_cuda.sh)\"`)"
                    .into(),
            }),
        }
    }
}

/// Whether this build has the CUDA device (the cargo feature `cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Whether this build has the `tch` backend.
pub const TCH_BUILT: bool = cfg!(feature = "tch");

/// Whether this build has the `ort` backend.
pub const ORT_BUILT: bool = cfg!(feature = "ort");

/// A loaded encoder on one of the engines.
pub(crate) enum AnyEncoder {
    Candle(Encoder),
    #[cfg(feature = "tch")]
    Tch(Box<tch_backend::TchEncoder>),
    #[cfg(feature = "ort")]
    Ort(Box<ort_backend::OrtEncoder>),
}

impl AnyEncoder {
    pub fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
        match self {
            AnyEncoder::Candle(e) => Ok(e.forward(x)?),
            #[cfg(feature = "tch")]
            AnyEncoder::Tch(e) => e.forward(x),
            #[cfg(feature = "ort")]
            AnyEncoder::Ort(e) => e.forward(x),
        }
    }

    /// The f32 forward pass of an int8 encoder (for the label prototypes, and for refinement,
    /// see `ModelOptions::refine_margin`); the main one otherwise.
    pub fn forward_exact(&self, x: &EncoderInputs) -> Result<Tensor> {
        match self {
            #[cfg(feature = "ort")]
            AnyEncoder::Ort(e) => e.forward_exact(x),
            _ => self.forward(x),
        }
    }

    /// Frees the f32 forward pass of an int8 encoder once it is no longer needed.
    pub fn drop_exact(&mut self) {
        #[cfg(feature = "ort")]
        if let AnyEncoder::Ort(e) = self {
            e.exact = None;
        }
    }
}

/// Loads the encoder's layers on ONNX Runtime; `encoder` is candle's, which keeps the
/// embeddings.
#[allow(unused_variables, unused_mut)]
pub(crate) fn load_ort(
    mut encoder: Encoder,
    config: &crate::config::ModelConfig,
    int8: bool,
    calibration: &[EncoderInputs],
) -> Result<AnyEncoder> {
    #[cfg(feature = "ort")]
    {
        Ok(AnyEncoder::Ort(Box::new(ort_backend::OrtEncoder::load(
            encoder,
            config,
            int8,
            calibration,
        )?)))
    }
    #[cfg(not(feature = "ort"))]
    {
        Err(crate::error::Error::Backend {
            message: "this build has no ort backend: build with `--features ort`".into(),
        })
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

        pub fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
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
}

#[cfg(feature = "ort")]
#[doc(hidden)]
pub use ort_backend::OrtLinear;

#[cfg(feature = "ort")]
mod ort_backend {
    use std::sync::{Condvar, Mutex, OnceLock};

    use candle_core::{Device, Tensor};
    use ort::environment::Environment;
    use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
    use ort::session::Session;
    use ort::value::TensorRef;

    use crate::bert::{Encoder, EncoderInputs};
    use crate::config::ModelConfig;
    use crate::error::{Error, Result};

    fn err(what: &str, e: impl std::fmt::Display) -> Error {
        Error::Backend {
            message: format!("ort backend: {what}: {e}"),
        }
    }

    /// Loads the ONNX Runtime library named by `ORT_DYLIB_PATH` and makes triage's environment,
    /// once per process.
    fn runtime() -> Result<&'static Environment> {
        static LOADED: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
        LOADED
            .get_or_init(|| {
                let path = std::env::var_os("ORT_DYLIB_PATH").ok_or_else(|| {
                    "ORT_DYLIB_PATH is not set: it names ONNX Runtime's library \
                     (libonnxruntime.so, 1.22 or newer); `eval \"$(scripts/setup_onnxruntime.sh)\"` \
                     installs 1.32.0 from PyPI and sets it"
                        .to_string()
                })?;
                if !std::path::Path::new(&path).is_file() {
                    return Err(format!(
                        "ORT_DYLIB_PATH={}: no such file",
                        path.to_string_lossy()
                    ));
                }
                ort::init_from(&path)
                    .map_err(|e| format!("loading {}: {e}", path.to_string_lossy()))?
                    .with_name("triage")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| format!("ONNX Runtime environment: {e}"))
            })
            .as_ref()
            .map_err(|message| Error::Backend {
                message: format!("ort backend: {message}"),
            })
    }

    /// The encoder on ONNX Runtime: candle computes the embeddings, ONNX Runtime the layers, one
    /// window per run (no padding, and a window's states never depend on its batch).
    pub struct OrtEncoder {
        embeddings: Encoder,
        main: Pool,
        /// The f32 graph beside an int8 one (for the label prototypes, and for refinement).
        pub(super) exact: Option<Pool>,
        hidden: usize,
    }

    /// A graph's sessions, one per thread of rayon's pool, made at load time; they share their
    /// prepacked weights, and the graph's bytes are not kept.
    pub(super) struct Pool {
        idle: Mutex<Vec<Session>>,
        returned: Condvar,
        _weights: PrepackedWeights,
    }

    impl Pool {
        fn new(model: &[u8]) -> Result<Self> {
            let weights = PrepackedWeights::new();
            let sessions = (0..rayon::current_num_threads().max(1))
                .map(|_| session(model, &weights))
                .collect::<Result<Vec<_>>>()?;
            Ok(Pool {
                idle: Mutex::new(sessions),
                returned: Condvar::new(),
                _weights: weights,
            })
        }

        fn take(&self) -> Session {
            let mut idle = self.idle.lock().expect("session pool");
            loop {
                if let Some(s) = idle.pop() {
                    return s;
                }
                // more callers than rayon threads (another thread pool): wait for a session
                idle = self.returned.wait(idle).expect("session pool");
            }
        }

        /// Runs `f` with one of the pool's sessions, which goes back to the pool afterwards.
        fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
            let mut session = self.take();
            let result = f(&mut session);
            self.idle.lock().expect("session pool").push(session);
            self.returned.notify_one();
            result
        }

        /// The second output of the graph on one window `emb` (`[1, len, h]`).
        fn second_output(&self, emb: &[f32], len: usize) -> Result<Vec<f32>> {
            self.with_session(|session| run_window(session, emb, len, 1, <[f32]>::to_vec))
        }

        /// Runs the graph on each row of `emb` (`[rows, t, h]`) up to its length; the states of
        /// padding stay 0.
        fn run(&self, emb: &[f32], lens: &[usize], t: usize, h: usize) -> Result<Vec<f32>> {
            self.with_session(|session| {
                let mut out = vec![0f32; lens.len() * t * h];
                for (r, &len) in lens.iter().enumerate() {
                    let span = r * t * h..r * t * h + len * h;
                    let into = &mut out[span.clone()];
                    run_window(session, &emb[span], len, 0, |states| {
                        into.copy_from_slice(states)
                    })?;
                }
                Ok(out)
            })
        }
    }

    /// Runs `session` on one window `emb` (`[1, len, h]`) and gives its output `i` to `f`
    /// (without a copy).
    fn run_window<T>(
        session: &mut Session,
        emb: &[f32],
        len: usize,
        i: usize,
        f: impl FnOnce(&[f32]) -> T,
    ) -> Result<T> {
        let h = emb.len() / len.max(1);
        let input =
            TensorRef::from_array_view(([1usize, len, h], emb)).map_err(|e| err("input", e))?;
        let outputs = session
            .run(ort::inputs![input])
            .map_err(|e| err("run", e))?;
        let (_, v) = outputs[i]
            .try_extract_tensor::<f32>()
            .map_err(|e| err("output", e))?;
        Ok(f(v))
    }

    /// The element-wise largest of the probe graph's second output over the calibration
    /// windows (one window each), which run in parallel on the pool's sessions.
    fn calibrate(
        embeddings: &Encoder,
        probe: &Pool,
        windows: &[EncoderInputs],
    ) -> Result<Vec<f32>> {
        use rayon::prelude::*;
        let ranges = windows
            .par_iter()
            .map(|x| -> Result<Vec<f32>> {
                let emb = embeddings.embed(x)?.flatten_all()?.to_vec1::<f32>()?;
                probe.second_output(&emb, x.ids.dims2()?.1)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ranges
            .into_iter()
            .reduce(|a, b| a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect())
            .unwrap_or_default())
    }

    fn session(model: &[u8], weights: &PrepackedWeights) -> Result<Session> {
        let env = runtime()?;
        let build = || -> ort::Result<Session> {
            Session::builder(env)?
                .with_operators(crate::onnx::operators()?)?
                .with_prepacked_weights(weights)?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                // triage runs windows in parallel on rayon's threads, each with a session of
                // its own: ONNX Runtime's own threads would oversubscribe the cores
                .with_intra_threads(1)?
                .with_inter_threads(1)?
                .commit_from_memory(model)
        };
        build().map_err(|e| err("building the session", e))
    }

    /// One product `x @ w.T + b` on ONNX Runtime, as the encoder's graph computes it (f32, or
    /// int8 with the quantization of the activations): for the matrix-multiply benchmark.
    pub struct OrtLinear {
        session: Session,
        k: usize,
    }

    impl OrtLinear {
        /// A product with a random `[n, k]` weight, on `threads` threads.
        pub fn new(k: usize, n: usize, int8: bool, threads: usize) -> Result<Self> {
            let env = runtime()?;
            let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)?;
            let b = Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu)?;
            let model = crate::onnx::linear_model(&w, &b, int8, None, 0)?;
            let build = || -> ort::Result<Session> {
                Session::builder(env)?
                    .with_intra_threads(threads)?
                    .commit_from_memory(&model)
            };
            let session = build().map_err(|e| err("building the session", e))?;
            Ok(OrtLinear { session, k })
        }

        /// One product of `m` rows.
        pub fn run(&mut self, x: &[f32], m: usize) -> Result<()> {
            let input = TensorRef::from_array_view(([1usize, m, self.k], &x[..m * self.k]))
                .map_err(|e| err("input", e))?;
            self.session
                .run(ort::inputs![input])
                .map_err(|e| err("run", e))?;
            Ok(())
        }
    }

    impl OrtEncoder {
        /// With `int8`, the products' inputs are smoothed with the ranges measured in f32 on
        /// the `calibration` windows (one window each); with none, they are not smoothed.
        pub fn load(
            mut encoder: Encoder,
            config: &ModelConfig,
            int8: bool,
            calibration: &[EncoderInputs],
        ) -> Result<Self> {
            runtime()?;
            let eps = config.bert().layer_norm_eps;
            let (layers, mut spec) = encoder.take_layers(eps, int8);
            // triage's own operators in the int8 graph where the CPU has them
            // (`TRIAGE_ORT_OPS=onnx` keeps ONNX Runtime's nodes, for comparisons)
            let own = int8 && std::env::var("TRIAGE_ORT_OPS").as_deref() != Ok("onnx");
            spec.bf16_attention = own && crate::attention::available();
            spec.fused_ffn = own && crate::ffn::available();
            // peak memory: each graph is written, becomes sessions and its bytes are freed; the
            // layers' tensors are freed before the last graph's sessions are made
            let f32_spec = crate::onnx::GraphSpec {
                int8: false,
                bf16_attention: false,
                fused_ffn: false,
                ..spec
            };
            let exact = if !int8 {
                None
            } else if calibration.is_empty() {
                Some(Pool::new(&crate::onnx::encoder_model(
                    &layers, &f32_spec, None,
                )?)?)
            } else {
                // the f32 graph that also measures its products' inputs. Its second output costs
                // 5-10% of each f32 run (prototypes, refinement; ONNX Runtime computes it even
                // when only the states are fetched), but a probe graph of its own, freed before
                // this one is made, raised the peak by about 60 MiB and the load by 0.4 s
                Some(Pool::new(&crate::onnx::probe_model(&layers, &spec)?)?)
            };
            let ranges = match &exact {
                Some(exact) if !calibration.is_empty() => {
                    let ranges = calibrate(&encoder, exact, calibration)?;
                    Some(crate::onnx::InputRanges::from_probe(&ranges, &layers)?)
                }
                _ => None,
            };
            let main = crate::onnx::encoder_model(&layers, &spec, ranges.as_deref())?;
            drop(layers);
            let main = Pool::new(&main)?;
            Ok(OrtEncoder {
                embeddings: encoder,
                main,
                exact,
                hidden: spec.hidden,
            })
        }

        pub fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
            self.forward_on(&self.main, x)
        }

        pub fn forward_exact(&self, x: &EncoderInputs) -> Result<Tensor> {
            self.forward_on(self.exact.as_ref().unwrap_or(&self.main), x)
        }

        fn forward_on(&self, pool: &Pool, x: &EncoderInputs) -> Result<Tensor> {
            let (b, t) = x.ids.dims2()?;
            let h = self.hidden;
            let emb = self.embeddings.embed(x)?.flatten_all()?.to_vec1::<f32>()?;
            let lens: Vec<usize> = x
                .mask
                .to_vec2::<f32>()?
                .iter()
                .map(|row| row.iter().filter(|&&m| m > 0.0).count())
                .collect();
            let out = pool.run(&emb, &lens, t, h)?;
            Ok(Tensor::from_vec(out, (b, t, h), &Device::Cpu)?)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::config::HiddenAct;
        use crate::onnx::{GraphSpec, InputRanges, LayerWeights};

        use crate::onnx::tests::values_of as values;

        fn tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
            let n = shape.iter().product();
            let v: Vec<f32> = values(n, seed).iter().map(|x| x * scale).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        }

        /// Runs a graph with input `[1, len, width]` and returns its output `i`.
        fn run_output(model: &[u8], x: &[f32], len: usize, i: usize) -> Vec<f32> {
            let mut session = session(model, &PrepackedWeights::new()).unwrap();
            let width = x.len() / len;
            let input = TensorRef::from_array_view(([1usize, len, width], x)).unwrap();
            let outputs = session.run(ort::inputs![input]).unwrap();
            outputs[i].try_extract_tensor::<f32>().unwrap().1.to_vec()
        }

        fn run(model: &[u8], x: &[f32], len: usize) -> Vec<f32> {
            run_output(model, x, len, 0)
        }

        fn rms(a: &[f32], b: &[f32]) -> f32 {
            let s: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
            (s / a.len() as f32).sqrt()
        }

        #[test]
        fn smoothing_and_f32_outliers_cut_the_int8_error_of_outlier_channels() {
            crate::backend::ort_backend::runtime()
                .expect("ORT_DYLIB_PATH: run `eval \"$(scripts/setup_onnxruntime.sh)\"` first");
            let (len, k, n) = (64, 256, 128);
            let w = tensor(&[n, k], 1, 0.05);
            let b = tensor(&[n], 2, 0.1);
            // four channels 50 times the others, as transformers' outlier channels are
            let mut x = values(len * k, 3);
            for row in x.chunks_mut(k) {
                for c in [7, 60, 130, 201] {
                    row[c] *= 50.0;
                }
            }
            let mut range = vec![0f32; k];
            for row in x.chunks(k) {
                for (r, v) in range.iter_mut().zip(row) {
                    *r = r.max(v.abs());
                }
            }
            let model =
                |int8, range, exact| crate::onnx::linear_model(&w, &b, int8, range, exact).unwrap();
            let exact = run(&model(false, None, 0), &x, len);
            let plain = rms(&run(&model(true, None, 0), &x, len), &exact);
            let smoothed = rms(&run(&model(true, Some(&range), 0), &x, len), &exact);
            assert!(plain > 0.0 && smoothed > 0.0, "{plain} {smoothed}");
            assert!(
                smoothed < plain / 2.0,
                "smoothed int8 error {smoothed}, without smoothing {plain}"
            );
            // the four outlier channels computed in f32 beside the product (measured: 8 times
            // less error than smoothing alone)
            let split = rms(&run(&model(true, Some(&range), 4), &x, len), &exact);
            eprintln!("int8 error: plain {plain}, smoothed {smoothed}, outliers in f32 {split}");
            assert!(split > 0.0, "the product is still int8");
            assert!(
                split < smoothed / 4.0,
                "with the outlier channels in f32 {split}, smoothed only {smoothed}"
            );
        }

        fn layer(h: usize, inter: usize, seed: u64) -> LayerWeights {
            let norm = |s| {
                (
                    tensor(&[h], s, 0.2).affine(1.0, 1.0).unwrap(),
                    tensor(&[h], s + 1, 0.1),
                )
            };
            LayerWeights {
                qkv: (
                    tensor(&[3 * h, h], seed, 0.3),
                    tensor(&[3 * h], seed + 1, 0.1),
                ),
                attn_out: (tensor(&[h, h], seed + 2, 0.3), tensor(&[h], seed + 3, 0.1)),
                attn_norm: norm(seed + 4),
                ffn_in: (
                    tensor(&[inter, h], seed + 6, 0.3),
                    tensor(&[inter], seed + 7, 0.1),
                ),
                ffn_out: (
                    tensor(&[h, inter], seed + 8, 0.3),
                    tensor(&[h], seed + 9, 0.1),
                ),
                ffn_norm: norm(seed + 10),
            }
        }

        /// The encoder's graph with triage's own operators against the same graph in ONNX
        /// Runtime's nodes: bf16 attention in the f32 graph within bf16's rounding of the
        /// attention's inputs; in the int8 graph (smoothed, with f32 channels, as the backend
        /// builds it), the attention and the fused feed-forward work each add little to int8's
        /// own error. And each changed the result (the operator ran), which is far from the f32
        /// graph on other inputs.
        #[test]
        fn own_operators_keep_the_graphs_error() {
            runtime()
                .expect("ORT_DYLIB_PATH: run `eval \"$(scripts/setup_onnxruntime.sh)\"` first");
            if !crate::attention::available() {
                eprintln!("skipped: this CPU has no AVX-512 BF16");
                return;
            }
            let (h, inter, len) = (64, 128, 37);
            let layers = vec![layer(h, inter, 10), layer(h, inter, 30)];
            let x = values(len * h, 4);
            let probe = test_spec(h, (false, false, false));
            let probe = crate::onnx::probe_model(&layers, &probe).unwrap();
            let ranges = InputRanges::from_probe(&run_output(&probe, &x, len, 1), &layers).unwrap();
            let graph = |variant: (bool, bool, bool)| {
                let model = crate::onnx::encoder_model(
                    &layers,
                    &test_spec(h, variant),
                    variant.0.then_some(&ranges[..]),
                );
                run(&model.unwrap(), &x, len)
            };
            let exact = graph((false, false, false));
            let other = rms(&run_f32_on(&layers, h, len, 5), &exact);
            assert!(other > 0.5, "{other}");
            // f32 products: the states have unit variance (a layer norm ends each layer), and
            // bf16 keeps 8 bits of each input of the attention's products
            let bf16 = rms(&graph((false, true, false)), &exact);
            eprintln!("f32 with bf16 attention: RMS difference {bf16} (other inputs {other})");
            assert!(bf16 > 0.0 && bf16 < 0.01, "{bf16}");
            // int8 products: a small change flips some of the activations' roundings, so int8
            // with and without an operator differ about as much as int8 and f32 do; the bound
            // is int8's own error
            let onnx = graph((true, false, false));
            let int8 = rms(&onnx, &exact);
            for variant in [(true, true, false), (true, false, true), (true, true, true)] {
                let got = graph(variant);
                let error = rms(&got, &exact);
                eprintln!("int8 {variant:?}: RMS difference {error}, ONNX nodes' {int8}");
                assert!(got != onnx, "{variant:?}: the operators ran");
                assert!(error < int8 * 1.25, "{variant:?}: {error} against {int8}");
            }
        }

        /// The test layers' graph of width `h`, two heads, GELU: `(int8, bf16_attention,
        /// fused_ffn)`.
        fn test_spec(h: usize, (int8, bf16_attention, fused_ffn): (bool, bool, bool)) -> GraphSpec {
            GraphSpec {
                hidden: h,
                heads: 2,
                eps: 1e-12,
                act: HiddenAct::Gelu,
                int8,
                bf16_attention,
                fused_ffn,
            }
        }

        /// The f32 graph of `layers` on the test input of `seed`.
        fn run_f32_on(layers: &[LayerWeights], h: usize, len: usize, seed: u64) -> Vec<f32> {
            let spec = test_spec(h, (false, false, false));
            let model = crate::onnx::encoder_model(layers, &spec, None).unwrap();
            run(&model, &values(len * h, seed), len)
        }

        #[test]
        fn the_probe_measures_each_products_input() {
            runtime()
                .expect("ORT_DYLIB_PATH: run `eval \"$(scripts/setup_onnxruntime.sh)\"` first");
            let (h, inter, len) = (8, 16, 5);
            let layers = vec![layer(h, inter, 10), layer(h, inter, 30)];
            let spec = test_spec(h, (false, false, false));
            let x = values(len * h, 4);
            let probe = crate::onnx::probe_model(&layers, &spec).unwrap();
            let out = run_output(&probe, &x, len, 1);
            assert_eq!(out.len(), 2 * (3 * h + inter));
            assert_eq!(crate::onnx::probe_width(&layers).unwrap(), out.len());
            let ranges = InputRanges::from_probe(&out, &layers).unwrap();
            assert_eq!(ranges.len(), 2);
            let column_max = |v: &[f32], width: usize| {
                let mut m = vec![0f32; width];
                for row in v.chunks(width) {
                    for (m, x) in m.iter_mut().zip(row) {
                        *m = m.max(x.abs());
                    }
                }
                m
            };
            // the first product's input is the graph's input
            assert_eq!(ranges[0].qkv, column_max(&x, h));
            // the second layer's is the first layer's output
            let first = crate::onnx::encoder_model(&layers[..1], &spec, None).unwrap();
            let states = run(&first, &x, len);
            for (a, b) in ranges[1].qkv.iter().zip(column_max(&states, h)) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
            // its first output is the f32 graph's
            let all = crate::onnx::encoder_model(&layers, &spec, None).unwrap();
            assert_eq!(run(&probe, &x, len), run(&all, &x, len));
            for r in &ranges {
                assert_eq!(r.ffn_out.len(), inter);
                // GELU's outputs, at least -0.17, reach above 0 somewhere
                assert!(r.ffn_out.iter().all(|v| v.is_finite() && *v >= 0.0));
                assert!(r.attn_out.iter().chain(&r.ffn_in).all(|v| *v > 0.0));
            }
        }
    }
}
