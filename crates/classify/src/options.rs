//! The encoder's options: which engine (`Backend`), number format (`Precision`) and device
//! (`DeviceSpec`), as `workspace.toml`'s `[model]` section and the command line name them.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

/// Whose operators the `ort` backend's int8 graph uses ([`ModelOptions::ort_operators`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrtOperators {
    /// triage's own (bf16 attention, fused feed-forward) where the CPU has AVX-512 BF16.
    #[default]
    Triage,
    /// ONNX Runtime's nodes only.
    Onnx,
}

named!(OrtOperators { Triage = "triage", Onnx = "onnx" });

impl OrtOperators {
    fn is_default(&self) -> bool {
        *self == OrtOperators::default()
    }
}

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
            DeviceSpec::Cuda(_) => Err(crate::error::Error::Unsupported {
                option: "device".into(),
                value: self.to_string(),
                requires: "this build has no CUDA: build with `--features cuda` (the compiler: \
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
    /// The `tch` backend's libtorch threads per forward pass (`torch_threads`; 1 when absent:
    /// triage runs passes in parallel on rayon's threads, and libtorch's own on top of them
    /// would oversubscribe the cores). The `triage` command fills it from
    /// `TRIAGE_TORCH_THREADS` when the workspace does not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_threads: Option<usize>,
    /// Whether the `ort` backend's int8 graph uses triage's own operators where the CPU has
    /// them (`triage`, the default) or only ONNX Runtime's nodes (`onnx`, for comparisons;
    /// `TRIAGE_ORT_OPS=onnx` on the command line).
    #[serde(default, skip_serializing_if = "OrtOperators::is_default")]
    pub ort_operators: OrtOperators,
    /// ONNX Runtime's library (`libonnxruntime.so`, 1.22 or newer) for the `ort` backend; the
    /// `triage` command fills it from `ORT_DYLIB_PATH`. A library loaded once stays loaded for
    /// the process: a later classifier naming another one gets an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_library: Option<PathBuf>,
}

fn default_overlap() -> usize {
    64
}

impl ModelOptions {
    /// Checks that this build can run these options together (the engine, its number format,
    /// the device, refinement), before anything is loaded: [`crate::Error::Unsupported`]
    /// names the option at fault, its value and what it needs.
    pub fn check(&self) -> Result<()> {
        crate::backend::check(self)
    }

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
            torch_threads: None,
            ort_operators: OrtOperators::default(),
            ort_library: None,
        }
    }
}
