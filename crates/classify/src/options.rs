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

/// Which int8 matrix kernels ONNX Runtime runs the `ort` backend's int8 products with
/// ([`ModelOptions::int8_kernels`]).
///
/// ONNX Runtime multiplies u8 activations by s8 weights. With VNNI (AVX-512 VNNI or AVX-VNNI)
/// each product is summed in 32 bits; on x86-64 CPUs without it (AVX2, AVX-512 without VNNI)
/// the kernel sums pairs of u8 x s8 products in 16 bits, which saturate when both factors are
/// large (255 x 127 x 2 > 32767), and the error of the result grows: measured on an AVX2 AMD
/// EPYC, 2-3 times the RMS score error of a VNNI CPU (BENCHMARKS.md). u8 x u8 kernels widen
/// to 16 bits first and sum in 32: exact on every CPU, a few per cent slower there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Int8Kernels {
    /// u8 x s8 where the CPU sums them in 32 bits (VNNI, or not x86-64), u8 x u8 elsewhere.
    #[default]
    Auto,
    /// u8 x s8 on every CPU (saturates on x86-64 without VNNI: for comparisons).
    U8s8,
    /// u8 x u8 (ONNX Runtime's `session.x64quantprecision`; the same as u8 x s8 where the CPU
    /// has VNNI).
    U8u8,
    /// u8 x s8 with weights of 7 bits (-63..63, ONNX Runtime's `reduce_range`): a pair of
    /// products never saturates a 16-bit sum (255 x 63 x 2 < 32767), so the faster u8 x s8
    /// kernels are right on x86-64 CPUs without VNNI, at about twice the weights' rounding
    /// error. Never chosen by `auto`: measured on an AVX2 AMD EPYC, 14% faster than `u8u8`
    /// with 1.9 times its RMS score error (BENCHMARKS.md).
    U8s7,
}

named!(Int8Kernels { Auto = "auto", U8s8 = "u8s8", U8u8 = "u8u8", U8s7 = "u8s7" });

impl Int8Kernels {
    fn is_default(&self) -> bool {
        *self == Int8Kernels::default()
    }

    /// The kernels `auto` stands for on this CPU, and why.
    pub fn resolve(self) -> (Int8Kernels, &'static str) {
        match self {
            Int8Kernels::Auto if cpu_sums_int8_in_32_bits() => (
                Int8Kernels::U8s8,
                "the CPU sums u8 x s8 products in 32 bits (VNNI, or not x86-64)",
            ),
            Int8Kernels::Auto => (
                Int8Kernels::U8u8,
                "x86-64 without VNNI: u8 x s8 pairs would saturate 16-bit sums",
            ),
            Int8Kernels::U8s8 => (Int8Kernels::U8s8, "asked for"),
            Int8Kernels::U8u8 => (Int8Kernels::U8u8, "asked for"),
            Int8Kernels::U8s7 => (Int8Kernels::U8s7, "asked for"),
        }
    }

    /// The int8 weights' largest code under these (resolved) kernels.
    pub(crate) fn weight_max(self) -> f32 {
        match self {
            Int8Kernels::U8s7 => 63.0,
            _ => 127.0,
        }
    }
}

/// Whether ONNX Runtime's u8 x s8 kernels sum in 32 bits on this CPU: on x86-64 only with
/// VNNI (`vpdpbusd`, AVX-512 VNNI or AVX-VNNI); other architectures' int8 dot products
/// (Arm's `sdot`/`udot`, `smmla`) do not saturate.
pub fn cpu_sums_int8_in_32_bits() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw"))
            || is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// The CPU's instructions that decide triage's engines (int8 and bf16 kernels), as
/// `/proc/cpuinfo` names them: what a run records beside its figures.
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! each {
            ($($f:tt => $name:literal),+) => {
                $(if is_x86_feature_detected!($f) { out.push($name); })+
            };
        }
        each!("avx2" => "avx2", "fma" => "fma", "avxvnni" => "avx_vnni",
              "avx512f" => "avx512f", "avx512bw" => "avx512bw", "avx512vnni" => "avx512_vnni",
              "avx512bf16" => "avx512_bf16");
    }
    #[cfg(target_arch = "aarch64")]
    out.push("aarch64");
    out
}

/// Which int8 windows are scored again in f32 ([`ModelOptions::refine_margin`]): those whose
/// int8 scores put a label near one of its thresholds (or, single-label, the two best labels
/// near each other).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refine {
    /// Nearer than this score difference (between 0 and 1), the same for every label.
    Margin(f32),
    /// Nearer than a bound of the int8 error measured when the model loads: each label's
    /// largest logit error on the built-in texts of many kinds and languages
    /// (`data/int8-error.txt`, `data/calibration.txt`) times [`AUTO_SAFETY`], compared in
    /// logits, where a linear head's or a prototype's error does not depend on the score.
    Auto,
}

/// How far past the largest int8 error seen on the built-in texts `refine_margin = "auto"`
/// refines: the largest of a few hundred windows is a low estimate of the largest of millions.
/// Chosen before measuring on any held-out text (BENCHMARKS.md: "int8 agreement by kind").
pub const AUTO_SAFETY: f32 = 2.0;

impl FromStr for Refine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "auto" {
            return Ok(Refine::Auto);
        }
        match s.parse::<f32>() {
            Ok(m) => Ok(Refine::Margin(m)),
            Err(_) => Err(format!(
                "refine_margin {s:?}: \"auto\" or a score difference such as 0.005"
            )),
        }
    }
}

impl std::fmt::Display for Refine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refine::Margin(m) => write!(f, "{m}"),
            Refine::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for Refine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Refine::Margin(m) => s.serialize_f32(*m),
            Refine::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Refine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(m) => Ok(Refine::Margin(m as f32)),
            Raw::Text(t) if t == "auto" => Ok(Refine::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "refine_margin {t:?}: \"auto\" or a score difference such as 0.005"
            ))),
        }
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
    /// the decisions near a boundary are f32's (`refine_margin` in `workspace.toml`: a score
    /// difference, or `"auto"` for a bound of the int8 error measured at load, [`Refine`]).
    #[serde(default)]
    pub refine_margin: Option<Refine>,
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
    /// The int8 kernels of the `ort` backend: `auto` (default; chosen for the CPU, see
    /// [`Int8Kernels`]), `u8s8` or `u8u8` (`TRIAGE_INT8_KERNELS` on the command line).
    #[serde(default, skip_serializing_if = "Int8Kernels::is_default")]
    pub int8_kernels: Int8Kernels,
    /// ONNX Runtime's library (`libonnxruntime.so`, 1.22 or newer) for the `ort` backend; the
    /// `triage` command fills it from `ORT_DYLIB_PATH`. A library loaded once stays loaded for
    /// the process: a later classifier naming another one gets an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime threads for a pass of one window that runs alone (nothing else to run
    /// beside it): `triage serve` sets the cores, so that a lone request uses them all. 0 or 1
    /// (the default): one, as every pass (a run's passes already fill the cores). A window's
    /// result is the same bits either way (tested). Not part of the configuration's meaning.
    #[serde(skip)]
    pub lone_window_threads: usize,
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
            int8_kernels: Int8Kernels::default(),
            ort_library: None,
            lone_window_threads: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refine_margin_is_auto_or_a_number_in_toml_and_on_the_command_line() {
        #[derive(Deserialize, Serialize)]
        struct M {
            refine_margin: Refine,
        }
        let auto: M = toml::from_str("refine_margin = \"auto\"").unwrap();
        assert_eq!(auto.refine_margin, Refine::Auto);
        let fixed: M = toml::from_str("refine_margin = 0.005").unwrap();
        assert_eq!(fixed.refine_margin, Refine::Margin(0.005));
        let e = toml::from_str::<M>("refine_margin = \"wide\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"wide\"") && e.contains("auto"), "{e}");
        // written back as it was read (a manifest's thresholds, the configuration's hash)
        assert_eq!(
            serde_json::to_string(&auto).unwrap(),
            r#"{"refine_margin":"auto"}"#
        );
        assert_eq!(
            serde_json::to_string(&fixed).unwrap(),
            r#"{"refine_margin":0.005}"#
        );
        assert_eq!("auto".parse::<Refine>(), Ok(Refine::Auto));
        assert_eq!("0.02".parse::<Refine>(), Ok(Refine::Margin(0.02)));
        assert!("off".parse::<Refine>().is_err());
        assert_eq!(Refine::Margin(0.005).to_string(), "0.005");
    }

    #[test]
    fn int8_kernels_resolve_to_a_kernel_with_a_reason() {
        for k in [Int8Kernels::U8s8, Int8Kernels::U8u8] {
            assert_eq!(k.resolve(), (k, "asked for"));
        }
        let (auto, why) = Int8Kernels::Auto.resolve();
        assert_ne!(auto, Int8Kernels::Auto);
        assert_eq!(
            auto == Int8Kernels::U8s8,
            cpu_sums_int8_in_32_bits(),
            "{why}"
        );
        assert_eq!("u8u8".parse::<Int8Kernels>(), Ok(Int8Kernels::U8u8));
    }
}
