//! The engines that run the encoder, behind one trait ([`Encoder`]): candle (pure Rust, always
//! built, [`candle`]); libtorch through rust-bert's model code (the cargo feature `tch`,
//! [`tch`]); ONNX Runtime with f32 or int8 weights (the feature `ort`, [`ort`]). All take
//! triage's padded windows ([`EncoderInputs`], which carry each window's length) and give the
//! last hidden states as a candle tensor, so tokenization, windows, masking, pooling and heads
//! are the same code whatever the engine.
//!
//! [`load`] owns the rules of which engine runs which number format on which device, and
//! answers a combination it cannot run with [`Error::Unsupported`], naming the option, its
//! value and what it needs.

pub(crate) mod candle;
#[cfg(feature = "ort")]
pub(crate) mod ort;
#[cfg(feature = "tch")]
pub(crate) mod tch;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::EncoderInputs;
use crate::options::{Backend, ModelOptions, Precision};

/// Most tokens (windows x padded length) in one forward pass on the CPU.
pub const MAX_BATCH_TOKENS: usize = 2048;
/// Most tokens in one forward pass on a GPU, which needs large products to be busy.
pub const MAX_GPU_BATCH_TOKENS: usize = 65536;

/// An engine that runs a loaded encoder.
pub(crate) trait Encoder: Send + Sync {
    /// The last hidden states `[windows, len, hidden]` (f32) of a batch of windows padded to
    /// one length. The states of padding are not used.
    fn forward(&self, batch: &EncoderInputs) -> Result<Tensor>;

    /// The forward pass in f32 of an encoder whose main one is not (int8): for the label
    /// prototypes, and for refinement (see [`ModelOptions::refine_margin`]). The main pass
    /// otherwise.
    fn forward_exact(&self, batch: &EncoderInputs) -> Result<Tensor> {
        self.forward(batch)
    }

    /// [`Encoder::forward`] of a pass that runs alone (nothing beside it): an engine may give
    /// it more threads (`ModelOptions::lone_window_threads`), with the same results.
    fn forward_alone(&self, batch: &EncoderInputs) -> Result<Tensor> {
        self.forward(batch)
    }

    /// Frees what [`Encoder::forward_exact`] needs once it is no longer used.
    fn drop_exact(&mut self) {}

    /// The most tokens (windows x padded length) this engine wants in one forward pass.
    fn batch_tokens(&self) -> usize {
        MAX_BATCH_TOKENS
    }

    /// The int8 kernels the engine runs, and why (int8 engines only).
    fn int8_kernels(&self) -> Option<(crate::options::Int8Kernels, &'static str)> {
        None
    }

    /// What an int8 engine's results depend on besides the windows (weights, graph settings,
    /// calibration, library, kernels): the key under which measurements of its error are
    /// cached. `None` where nothing is cached.
    fn int8_identity(&self) -> Option<&str> {
        None
    }
}

fn unsupported(option: &str, value: impl std::fmt::Display, requires: &str) -> Error {
    Error::Unsupported {
        option: option.into(),
        value: value.to_string(),
        requires: requires.into(),
    }
}

/// Checks that the options name a combination this build can run, before anything is loaded.
pub(crate) fn check(options: &ModelOptions) -> Result<()> {
    let (backend, precision, device) = (options.backend, options.precision, options.device);
    if device.is_cuda() && backend != Backend::Candle {
        return Err(unsupported(
            "device",
            device,
            "only the candle backend runs on a GPU (--backend candle)",
        ));
    }
    match (backend, precision) {
        (Backend::Candle, Precision::Bf16) if !device.is_cuda() => {
            return Err(unsupported(
                "dtype",
                precision,
                "bf16 needs the tch backend or a GPU (--device cuda): candle has no bf16 matrix \
                 kernel on the CPU (it converts to f32 and back, which is slower)",
            ))
        }
        (Backend::Candle | Backend::Tch, Precision::Int8) => {
            return Err(unsupported(
                "dtype",
                precision,
                "int8 needs the ort backend (--backend ort)",
            ))
        }
        (Backend::Ort, Precision::Bf16) => {
            return Err(unsupported(
                "dtype",
                precision,
                "bf16 is the tch backend's; the ort backend runs f32 or int8",
            ))
        }
        _ => {}
    }
    // what combines first (it holds in every build), then what this build has
    match backend {
        Backend::Tch if !TCH_BUILT => {
            return Err(unsupported(
                "backend",
                backend,
                "this build has no tch backend: build with `--features tch` and a libtorch 2.4 \
                 (scripts/setup_libtorch.sh)",
            ))
        }
        Backend::Ort if !ORT_BUILT => {
            return Err(unsupported(
                "backend",
                backend,
                "this build has no ort backend: build with `--features ort`",
            ))
        }
        _ => {}
    }
    if let Some(m) = options.refine_margin {
        if let crate::options::Refine::Margin(d) = m {
            if !(d > 0.0 && d < 1.0) {
                return Err(unsupported(
                    "refine_margin",
                    m,
                    "a score difference between 0 and 1, or \"auto\"",
                ));
            }
        }
        if (backend, precision) != (Backend::Ort, Precision::Int8) {
            return Err(unsupported(
                "refine_margin",
                m,
                "refine_margin refines int8 scores in f32: it needs the ort backend with dtype \
                 int8 (--backend ort --dtype int8)",
            ));
        }
    }
    Ok(())
}

/// The element type candle reads the weights in for these options: bf16 on a GPU when asked,
/// f32 otherwise.
pub(crate) fn weights_dtype(options: &ModelOptions, device: &Device) -> DType {
    match options.precision {
        Precision::Bf16 if device.is_cuda() => DType::BF16,
        _ => DType::F32,
    }
}

/// Where an encoder's weights are and how they are read.
pub(crate) struct Source<'a> {
    /// The model directory.
    pub dir: &'a Path,
    /// Its safetensors files.
    #[cfg_attr(not(feature = "tch"), allow(dead_code))]
    pub files: &'a [PathBuf],
    /// Where the encoder's tensors sit in the checkpoint (`""`, `"bert."`, `"roberta."`).
    #[cfg_attr(not(feature = "tch"), allow(dead_code))]
    pub prefix: &'a str,
    /// `config.json`.
    pub config: &'a ModelConfig,
    /// The encoder's tensors, read in [`weights_dtype`] on the encoder's device.
    pub vb: VarBuilder<'a>,
    /// What decides the calibration windows without making them (their texts, the
    /// tokenizer file's size and time, the window options): the int8 calibration's cache is
    /// looked up by it, so a cached start never waits for the tokenizer.
    #[cfg_attr(not(feature = "ort"), allow(dead_code))]
    pub calibration_id: Vec<u8>,
}

/// Loads the encoder the options ask for (checked by [`check`]). `calibration` gives the
/// windows an int8 encoder calibrates its smoothing on (called only for int8).
#[cfg_attr(not(feature = "ort"), allow(unused_variables))]
pub(crate) fn load(
    source: Source,
    options: &ModelOptions,
    calibration: impl FnOnce() -> Result<Vec<EncoderInputs>>,
) -> Result<Box<dyn Encoder>> {
    check(options)?;
    let weights_err = |e: candle_core::Error| Error::Weights {
        dir: source.dir.to_owned(),
        message: e.to_string(),
    };
    match options.backend {
        Backend::Candle => Ok(Box::new(
            candle::CandleEncoder::load(source.vb, source.config, options.device.is_cuda())
                .map_err(weights_err)?,
        )),
        #[cfg(feature = "tch")]
        Backend::Tch => Ok(Box::new(tch::TchEncoder::load(
            source.dir,
            source.files,
            source.prefix,
            source.config,
            options,
        )?)),
        #[cfg(feature = "ort")]
        Backend::Ort => {
            let int8 = options.precision == Precision::Int8;
            let model =
                crate::model::BertModel::load(source.vb, source.config).map_err(weights_err)?;
            // the calibration's cache is named by the weights' checksum (itself cached)
            let sha = if int8 {
                Some(crate::checksum::weights_sha256(source.dir)?)
            } else {
                None
            };
            Ok(Box::new(ort::OrtEncoder::load(
                model,
                source.config,
                int8,
                options,
                // windows made only when the calibration is not cached (the tokenizer loads
                // meanwhile), and only for int8
                || if int8 { calibration() } else { Ok(Vec::new()) },
                sha.as_deref()
                    .map(|s| (source.dir, s, source.calibration_id.as_slice())),
            )?))
        }
        #[allow(unreachable_patterns)]
        other => Err(unsupported(
            "backend",
            other,
            "a build with its cargo feature",
        )),
    }
}

/// Whether this build has the CUDA device (the cargo feature `cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Whether this build has the `tch` backend.
pub const TCH_BUILT: bool = cfg!(feature = "tch");

/// Whether this build has the `ort` backend.
pub const ORT_BUILT: bool = cfg!(feature = "ort");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{DeviceSpec, Refine};

    fn options(backend: Backend, precision: Precision) -> ModelOptions {
        ModelOptions {
            backend,
            precision,
            ..ModelOptions::new("m")
        }
    }

    /// The option an unsupported combination names.
    fn refused_option(o: &ModelOptions) -> Option<String> {
        match check(o) {
            Err(Error::Unsupported { option, .. }) => Some(option),
            _ => None,
        }
    }

    #[test]
    fn the_rules_name_the_option_its_value_and_what_it_needs() {
        use Backend::{Candle, Ort, Tch};
        use Precision::{Bf16, Int8};
        let cases = [
            (Candle, Int8, "int8", "ort"),
            (Tch, Int8, "int8", "ort"),
            (Ort, Bf16, "bf16", "tch"),
            (Candle, Bf16, "bf16", "GPU"),
        ];
        for (backend, precision, value, needs) in cases {
            let (o, option) = (options(backend, precision), "dtype");
            match check(&o) {
                Err(Error::Unsupported {
                    option: got,
                    value: v,
                    requires,
                }) => {
                    assert_eq!((got.as_str(), v.as_str()), (option, value));
                    assert!(requires.contains(needs), "{requires}");
                }
                other => panic!("{option}={value}: {other:?}"),
            }
        }
        let gpu_tch = ModelOptions {
            device: DeviceSpec::Cuda(0),
            ..options(Backend::Tch, Precision::F32)
        };
        assert_eq!(refused_option(&gpu_tch).as_deref(), Some("device"));
        for margin in [0.0, 1.0, f32::NAN] {
            let o = ModelOptions {
                refine_margin: Some(Refine::Margin(margin)),
                ..options(Backend::Ort, Precision::Int8)
            };
            assert_eq!(refused_option(&o).as_deref(), Some("refine_margin"));
        }
        let f32_refined = ModelOptions {
            refine_margin: Some(Refine::Auto),
            ..options(Backend::Ort, Precision::F32)
        };
        assert_eq!(
            refused_option(&f32_refined).as_deref(),
            Some("refine_margin")
        );
        assert!(check(&options(Backend::Candle, Precision::F32)).is_ok());
        for refine in [Refine::Margin(0.01), Refine::Auto] {
            let refined = ModelOptions {
                refine_margin: Some(refine),
                ..options(Backend::Ort, Precision::Int8)
            };
            assert_eq!(check(&refined).is_ok(), ORT_BUILT);
        }
        assert_eq!(
            check(&options(Backend::Tch, Precision::Bf16)).is_ok(),
            TCH_BUILT
        );
    }
}
