//! ONNX Runtime (the cargo feature `ort`): f32 or int8 weights, on a graph written from the
//! weights candle loaded ([`graph`], [`proto`], [`quant`]) with triage's own operators ([`ops`]).

pub(crate) mod graph;
pub(crate) mod ops;
pub(crate) mod proto;
pub(crate) mod quant;

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use candle_core::{Device, Tensor};
use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::Session;
use ort::value::TensorRef;

use crate::backend::Encoder;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::{BertModel, EncoderInputs};
use crate::options::{Int8Kernels, ModelOptions, OrtOperators};

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        message: format!("ort backend: {what}: {e}"),
    }
}

/// ONNX Runtime's library, loaded once per process, with triage's environment.
static LOADED: Mutex<Option<(PathBuf, &'static Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime's `library` and makes triage's environment, once per process: a load
/// that failed is tried again by the next call; one that succeeded serves every later call
/// (and a later call naming another library gets an error: a process holds one).
pub(crate) fn runtime(library: Option<&Path>) -> Result<&'static Environment> {
    let fail = |message: String| Error::Backend {
        message: format!("ort backend: {message}"),
    };
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, env)) = &*loaded {
        return match library {
            Some(asked) if asked != path => Err(fail(format!(
                "ONNX Runtime is already loaded from {} in this process; it cannot load {} too",
                path.display(),
                asked.display()
            ))),
            _ => Ok(env),
        };
    }
    // no library, or no such file: the configuration's to fix (a library that fails to load
    // is the engine's failure)
    let path = library.ok_or_else(|| Error::Unsupported {
        option: "ort_library".into(),
        value: "none".into(),
        requires: "ORT_DYLIB_PATH is not set (nor `ort_library` in [model]): it names ONNX \
                   Runtime's library (libonnxruntime.so, 1.22 or newer); \
                   scripts/setup.sh installs 1.32.0 from PyPI where triage finds it, and \
                   `eval \"$(scripts/setup_onnxruntime.sh)\"` sets it"
            .into(),
    })?;
    if !path.is_file() {
        return Err(Error::Unsupported {
            option: "ort_library".into(),
            value: path.display().to_string(),
            requires: "an ONNX Runtime library: no such file (ORT_DYLIB_PATH, `ort_library`)"
                .into(),
        });
    }
    let env = ort::init_from(path)
        .map_err(|e| fail(format!("loading {}: {e}", path.display())))?
        .with_name("triage")
        .with_telemetry(false)
        .build()
        .map_err(|e| fail(format!("ONNX Runtime environment: {e}")))?;
    let env: &'static Environment = Box::leak(Box::new(env));
    *loaded = Some((path.to_owned(), env));
    Ok(env)
}

/// The encoder on ONNX Runtime: candle computes the embeddings, ONNX Runtime the layers, one
/// window per run (no padding, and a window's states never depend on its batch).
pub(crate) struct OrtEncoder {
    embeddings: BertModel,
    main: Pool,
    /// The f32 graph beside an int8 one (for the label prototypes, and for refinement).
    exact: Option<Pool>,
    hidden: usize,
    /// The int8 kernels the main graph's sessions run (`None`: f32).
    kernels: Option<(Int8Kernels, &'static str)>,
    /// [`Encoder::int8_identity`].
    identity: Option<String>,
}

/// A graph's sessions, one per thread of rayon's pool, made at load time; they share their
/// prepacked weights, and the graph's bytes are not kept.
struct Pool {
    idle: Mutex<Vec<Session>>,
    returned: Condvar,
    /// A session on several threads, for a window that runs alone.
    wide: Option<Mutex<Session>>,
    _weights: PrepackedWeights,
}

impl Pool {
    /// With `wide` threads (2 or more), also a session on that many threads for lone windows.
    fn new(
        env: &'static Environment,
        model: &[u8],
        kernels: Int8Kernels,
        wide: usize,
    ) -> Result<Self> {
        let weights = PrepackedWeights::new();
        let sessions = (0..rayon::current_num_threads().max(1))
            .map(|_| session(env, model, &weights, kernels, 1))
            .collect::<Result<Vec<_>>>()?;
        let wide = if wide > 1 {
            Some(Mutex::new(session(env, model, &weights, kernels, wide)?))
        } else {
            None
        };
        Ok(Pool {
            idle: Mutex::new(sessions),
            returned: Condvar::new(),
            wide,
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
    /// padding stay 0. `alone`: nothing else runs beside it (the wide session, if any).
    fn run(
        &self,
        emb: &[f32],
        lens: &[usize],
        t: usize,
        h: usize,
        alone: bool,
    ) -> Result<Vec<f32>> {
        let rows = |session: &mut Session| {
            let mut out = vec![0f32; lens.len() * t * h];
            for (r, &len) in lens.iter().enumerate() {
                let span = r * t * h..r * t * h + len * h;
                let into = &mut out[span.clone()];
                run_window(session, &emb[span], len, 0, |states| {
                    into.copy_from_slice(states)
                })?;
            }
            Ok(out)
        };
        match (&self.wide, alone) {
            (Some(wide), true) => rows(&mut wide.lock().expect("wide session")),
            _ => self.with_session(rows),
        }
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
    let input = TensorRef::from_array_view(([1usize, len, h], emb)).map_err(|e| err("input", e))?;
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
fn calibrate(embeddings: &BertModel, probe: &Pool, windows: &[EncoderInputs]) -> Result<Vec<f32>> {
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

/// What names the code that writes the int8 graph from the weights and ranges: its source
/// (hashed into the graph cache's key, so that a triage whose graphs differ never reads the
/// graph an older one cached) and triage's version.
fn graph_code_id() -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for source in [
        include_str!("graph.rs"),
        include_str!("quant.rs"),
        include_str!("proto.rs"),
        include_str!("ops/mod.rs"),
        env!("CARGO_PKG_VERSION"),
    ] {
        h.update((source.len() as u64).to_le_bytes());
        h.update(source.as_bytes());
    }
    h.finalize().to_vec()
}

/// The cache of an int8 encoder's calibration: keyed by the weights, the graph's settings, what
/// decides the calibration windows (their texts, the tokenizer, the window options; not the
/// windows themselves, so that a cached start never waits for the tokenizer), ONNX Runtime's
/// library and the CPU's instructions.
fn range_cache(
    dir: &Path,
    weights_sha256: &str,
    spec: &graph::GraphSpec,
    calibration_id: &[u8],
    options: &ModelOptions,
) -> crate::cache::RangeCache {
    let spec_text = format!(
        "hidden {} heads {} eps {} act {:?} int8 {} bf16_attention {} fused_ffn {}{}",
        spec.hidden,
        spec.heads,
        spec.eps.to_bits(),
        spec.act,
        spec.int8,
        spec.bf16_attention,
        spec.fused_ffn,
        // (8-bit weights keep the key they always had)
        if spec.weight_max == 127.0 {
            String::new()
        } else {
            format!(" weight_max {}", spec.weight_max)
        }
    );
    let library = options
        .ort_library
        .as_deref()
        .map(|p| {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            format!("{} {size}", p.display())
        })
        .unwrap_or_default();
    // the CPU's instructions choose ONNX Runtime's kernels, whose f32 sums differ in their
    // last bits: a model folder shared by machines of two kinds keeps one file for each
    let cpu = crate::options::cpu_features().join(" ");
    crate::cache::RangeCache::new(
        dir,
        &[
            weights_sha256.as_bytes(),
            spec_text.as_bytes(),
            calibration_id,
            library.as_bytes(),
            cpu.as_bytes(),
        ],
    )
}

/// A session of `model`; its int8 products run on `kernels` (resolved: `u8s8` or `u8u8`).
fn session(
    env: &Environment,
    model: &[u8],
    weights: &PrepackedWeights,
    kernels: Int8Kernels,
    threads: usize,
) -> Result<Session> {
    let build = || -> ort::Result<Session> {
        let builder = Session::builder(env)?;
        // ONNX Runtime turns the s8 weights of its int8 products into u8 (zero point 128)
        // where its u8 x s8 kernels would saturate, and leaves them where they would not
        let builder = match kernels {
            Int8Kernels::U8u8 => builder.with_config_entry("session.x64quantprecision", "1")?,
            _ => builder,
        };
        builder
            .with_operators(ops::operators()?)?
            .with_prepacked_weights(weights)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            // triage runs windows in parallel on rayon's threads, each with a session of
            // its own: ONNX Runtime's own threads would oversubscribe the cores (more than one
            // only for the session of lone windows, `ModelOptions::lone_window_threads`)
            .with_intra_threads(threads.max(1))?
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
    /// A product with a random `[n, k]` weight, on `threads` threads, on ONNX Runtime's
    /// `library`.
    pub fn new(
        k: usize,
        n: usize,
        int8: bool,
        threads: usize,
        library: &Path,
        kernels: Int8Kernels,
    ) -> Result<Self> {
        let env = runtime(Some(library))?;
        let (kernels, _) = kernels.resolve();
        let w = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)?;
        let b = Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu)?;
        let model = graph::linear_model(&w, &b, int8, None, 0, kernels.weight_max())?;
        let build = || -> ort::Result<Session> {
            let builder = Session::builder(env)?;
            let builder = match kernels {
                Int8Kernels::U8u8 => builder.with_config_entry("session.x64quantprecision", "1")?,
                _ => builder,
            };
            builder
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
    ///
    /// `model_dir` and `weights_sha256` name the model, for the calibration's cache
    /// ([`cache`]): a second start reads the ranges instead of measuring them.
    pub fn load(
        mut encoder: BertModel,
        config: &ModelConfig,
        int8: bool,
        options: &ModelOptions,
        calibration: impl FnOnce() -> Result<Vec<EncoderInputs>>,
        model: Option<(&Path, &str, &[u8])>,
    ) -> Result<Self> {
        let env = runtime(options.ort_library.as_deref())?;
        let kernels = options.int8_kernels.resolve();
        if int8 {
            tracing::info!(
                kernels = %kernels.0,
                why = kernels.1,
                cpu = %crate::options::cpu_features().join(" "),
                "int8 kernels"
            );
        }
        let layers = encoder.take_layers();
        let mut spec = graph::GraphSpec {
            hidden: encoder.hidden_size(),
            heads: encoder.heads(),
            eps: config.bert().layer_norm_eps as f32,
            act: encoder.activation(),
            int8,
            bf16_attention: false,
            fused_ffn: false,
            weight_max: kernels.0.weight_max(),
        };
        // triage's own operators in the int8 graph where the CPU has them (`ort_operators =
        // "onnx"` keeps ONNX Runtime's nodes, for comparisons)
        let own = int8 && options.ort_operators == OrtOperators::Triage;
        spec.bf16_attention = own && ops::attention::available();
        spec.fused_ffn = own && ops::ffn::available();
        if !int8 {
            let main = Pool::new(
                env,
                &graph::encoder_model(&layers, &spec, None)?,
                kernels.0,
                options.lone_window_threads,
            )?;
            drop(layers);
            return Ok(OrtEncoder {
                embeddings: encoder,
                main,
                exact: None,
                hidden: spec.hidden,
                kernels: None,
                identity: None,
            });
        }
        // the f32 graph beside the int8 one also measures its products' inputs. Its second
        // output costs 5-10% of each f32 run (prototypes, refinement; ONNX Runtime computes it
        // even when only the states are fetched), but a probe graph of its own, freed before
        // this one is made, raised the peak by about 60 MiB and the load by 0.4 s
        let probe = || -> Result<Pool> {
            Pool::new(env, &graph::probe_model(&layers, &spec)?, kernels.0, 0)
        };
        let cache = match model {
            Some((dir, sha, calibration_id)) => {
                Some(range_cache(dir, sha, &spec, calibration_id, options))
            }
            _ => None,
        };
        let identity = cache
            .as_ref()
            .map(|c| format!("{} kernels {}", c.key(), kernels.0));
        // the int8 graph made with the cached ranges, itself cached under their key and the
        // code that writes graphs
        let graph_cache = cache
            .as_ref()
            .map(|c| c.derived(crate::cache::Kind::Graph, &[&graph_code_id()]));
        let cached_graph = match graph_cache.as_ref().map(|g| (g, g.load_bytes())) {
            Some((_, Ok(bytes))) => bytes,
            Some((g, Err(why))) => {
                tracing::warn!("{}: {why}: writing the graph again", g.path().display());
                None
            }
            None => None,
        };
        let int8_pool = |ranges: Option<&[f32]>| -> Result<Pool> {
            let ranges = match ranges {
                Some(r) => Some(quant::InputRanges::from_probe(r, &layers)?),
                None => None,
            };
            let graph = graph::encoder_model(&layers, &spec, ranges.as_deref())?;
            if let (Some(g), Some(_)) = (&graph_cache, &ranges) {
                if let Err(e) = g.store_bytes(&graph) {
                    tracing::warn!("cannot cache the int8 graph at {}: {e}", g.path().display());
                }
            }
            Pool::new(env, &graph, kernels.0, options.lone_window_threads)
        };
        // with the graph cached, the ranges are not even read
        let ranges = match cached_graph {
            Some(_) => None,
            None => cache.as_ref().map(|c| (c, c.load())),
        };
        let (exact, main) = match (cached_graph, ranges) {
            (Some(graph), _) => {
                tracing::debug!("int8 graph read from its cache");
                let (exact, main) = rayon::join(probe, || {
                    Pool::new(env, &graph, kernels.0, options.lone_window_threads)
                });
                (exact?, main?)
            }
            (None, Some((_, crate::cache::Cached::Values(r)))) => {
                tracing::debug!("int8 calibration read from its cache");
                // nothing waits on the probe: both graphs' sessions are made at once
                let (exact, main) = rayon::join(probe, || int8_pool(Some(&r)));
                (exact?, main?)
            }
            (None, other) => {
                if let Some((c, crate::cache::Cached::Damaged(why))) = &other {
                    tracing::warn!(
                        "{}: {why}: calibrating again and rewriting it",
                        c.path().display()
                    );
                }
                let calibration = calibration()?;
                let exact = probe()?;
                let ranges = if calibration.is_empty() {
                    None
                } else {
                    let r = calibrate(&encoder, &exact, &calibration)?;
                    if let Some((c, _)) = &other {
                        if let Err(e) = c.store(&r) {
                            tracing::warn!(
                                "cannot cache the int8 calibration at {}: {e}",
                                c.path().display()
                            );
                        }
                    }
                    Some(r)
                };
                (exact, int8_pool(ranges.as_deref())?)
            }
        };
        drop(layers);
        let exact = Some(exact);
        Ok(OrtEncoder {
            embeddings: encoder,
            main,
            exact,
            hidden: spec.hidden,
            kernels: Some(kernels),
            identity,
        })
    }

    fn forward_on(&self, pool: &Pool, x: &EncoderInputs, alone: bool) -> Result<Tensor> {
        let (b, t) = x.ids.dims2()?;
        let h = self.hidden;
        let emb = self.embeddings.embed(x)?.flatten_all()?.to_vec1::<f32>()?;
        let out = pool.run(&emb, &x.lens, t, h, alone)?;
        Ok(Tensor::from_vec(out, (b, t, h), &Device::Cpu)?)
    }
}

impl Encoder for OrtEncoder {
    fn forward(&self, x: &EncoderInputs) -> Result<Tensor> {
        self.forward_on(&self.main, x, false)
    }

    fn forward_alone(&self, x: &EncoderInputs) -> Result<Tensor> {
        self.forward_on(&self.main, x, true)
    }

    fn forward_exact(&self, x: &EncoderInputs) -> Result<Tensor> {
        self.forward_on(self.exact.as_ref().unwrap_or(&self.main), x, false)
    }

    fn drop_exact(&mut self) {
        self.exact = None;
    }

    fn int8_kernels(&self) -> Option<(Int8Kernels, &'static str)> {
        self.kernels
    }

    fn int8_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }
}

/// For the tests: ONNX Runtime's library from `ORT_DYLIB_PATH`, loaded; `None` (the test
/// skips, and says so) when it is not set, unless `TRIAGE_TEST_STRICT` is set (as
/// `scripts/test.sh` does), where no test may skip.
#[cfg(test)]
pub(crate) fn test_runtime() -> Option<&'static Environment> {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(path) => Some(runtime(Some(Path::new(&path))).expect("ORT_DYLIB_PATH")),
        None if std::env::var_os("TRIAGE_TEST_STRICT").is_some() => panic!(
            "ORT_DYLIB_PATH is not set and TRIAGE_TEST_STRICT forbids skipping: run \
             `eval \"$(scripts/setup_onnxruntime.sh)\"` first"
        ),
        None => {
            eprintln!(
                "skipped: ORT_DYLIB_PATH is not set (`eval \"$(scripts/setup_onnxruntime.sh)\"` \
                 installs ONNX Runtime)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HiddenAct;
    use crate::model::LayerWeights;
    use graph::GraphSpec;
    use quant::InputRanges;

    use crate::test_values::values_of as values;

    fn tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
        let n = shape.iter().product();
        let v: Vec<f32> = values(n, seed).iter().map(|x| x * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The int8 kernels the backend chooses for this CPU.
    fn kernels() -> Int8Kernels {
        Int8Kernels::Auto.resolve().0
    }

    /// Runs a graph with input `[1, len, width]` and returns its output `i`.
    fn run_output(model: &[u8], x: &[f32], len: usize, i: usize) -> Vec<f32> {
        run_with(model, x, len, i, kernels())
    }

    /// [`run_output`] on the int8 kernels `kernels`.
    fn run_with(model: &[u8], x: &[f32], len: usize, i: usize, kernels: Int8Kernels) -> Vec<f32> {
        let env = test_runtime().expect("the test checked for ONNX Runtime");
        let mut session = session(env, model, &PrepackedWeights::new(), kernels, 1).unwrap();
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
        let Some(_) = test_runtime() else { return };
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
            |int8, range, exact| graph::linear_model(&w, &b, int8, range, exact, 127.0).unwrap();
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

    /// Under `scripts/test_avx2.sh` (an emulated AVX2 CPU), the emulation took: no AVX-512, no
    /// VNNI, and `auto` chooses u8 x u8 there.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_emulated_cpu_has_no_avx512_when_the_avx2_run_expects_none() {
        if std::env::var_os("TRIAGE_EXPECT_NO_AVX512").is_none() {
            return;
        }
        assert!(!std::is_x86_feature_detected!("avx512f"));
        assert!(std::is_x86_feature_detected!("avx2"));
        assert!(!crate::cpu_sums_int8_in_32_bits());
        assert_eq!(Int8Kernels::Auto.resolve().0, Int8Kernels::U8u8);
        assert!(!ops::attention::available() && !ops::ffn::available());
    }

    /// Where the CPU sums u8 x s8 pairs in 16 bits (x86-64 without VNNI), products whose
    /// activations and weights are both large saturate and the u8 x u8 kernels `auto` chooses
    /// there are much nearer f32; where it sums in 32 bits (VNNI), both kernels are exact and
    /// agree. Checked on both: an AVX2 AMD EPYC and an AVX-512 VNNI one (BENCHMARKS.md).
    #[test]
    fn auto_kernels_avoid_the_saturation_of_u8s8_where_the_cpu_has_it() {
        let Some(_) = test_runtime() else { return };
        let (len, k, n) = (32, 256, 64);
        // weights of one sign per column pair, so that pairs of large products add up
        let w = tensor(&[n, k], 11, 0.05).abs().unwrap();
        let b = tensor(&[n], 12, 0.1);
        // activations spread over the whole u8 range, most of them large
        let x: Vec<f32> = values(len * k, 13).iter().map(|v| v.abs() * 2.0).collect();
        let model =
            |int8, weight_max| graph::linear_model(&w, &b, int8, None, 0, weight_max).unwrap();
        let exact = run_with(&model(false, 127.0), &x, len, 0, Int8Kernels::U8s8);
        let int8 = model(true, 127.0);
        let u8s8 = rms(&run_with(&int8, &x, len, 0, Int8Kernels::U8s8), &exact);
        let u8u8 = rms(&run_with(&int8, &x, len, 0, Int8Kernels::U8u8), &exact);
        let auto = rms(&run_with(&int8, &x, len, 0, kernels()), &exact);
        // 7-bit weights on the u8 x s8 kernels: no pair of products saturates on any CPU, so
        // they give what the u8 x u8 kernels give on the same 7-bit graph
        let seven = model(true, 63.0);
        let u8s7_run = run_with(&seven, &x, len, 0, Int8Kernels::U8s7);
        let u8s7 = rms(&u8s7_run, &exact);
        let seven_wide = rms(&u8s7_run, &run_with(&seven, &x, len, 0, Int8Kernels::U8u8));
        let scale = rms(&exact, &vec![0.0; exact.len()]);
        eprintln!(
            "RMS error u8s8 {u8s8}, u8u8 {u8u8}, u8s7 {u8s7}, auto ({}) {auto}; outputs' RMS \
             {scale}; VNNI: {}",
            kernels(),
            crate::cpu_sums_int8_in_32_bits()
        );
        assert!(u8u8 > 0.0 && u8u8 < scale * 0.01, "{u8u8} against {scale}");
        assert!(u8s7 > u8u8 && u8s7 < scale * 0.02, "{u8s7} against {scale}");
        assert!(
            seven_wide <= u8s7 * 0.01,
            "u8s7 {u8s7}, it against u8u8 {seven_wide}"
        );
        if crate::cpu_sums_int8_in_32_bits() {
            assert_eq!(kernels(), Int8Kernels::U8s8);
            assert!((u8s8 - u8u8).abs() <= u8u8 * 0.01, "{u8s8} vs {u8u8}");
        } else {
            assert_eq!(kernels(), Int8Kernels::U8u8);
            assert!(u8s8 > 3.0 * u8u8, "saturated u8s8 {u8s8}, u8u8 {u8u8}");
            assert!(u8s8 > 3.0 * u8s7, "saturated u8s8 {u8s8}, u8s7 {u8s7}");
        }
        assert!(auto <= u8u8 * 1.01, "{auto} vs {u8u8}");
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
        let Some(_) = test_runtime() else { return };
        if !ops::attention::available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let (h, inter, len) = (64, 128, 37);
        let layers = vec![layer(h, inter, 10), layer(h, inter, 30)];
        let x = values(len * h, 4);
        let probe = test_spec(h, (false, false, false));
        let probe = graph::probe_model(&layers, &probe).unwrap();
        let ranges = InputRanges::from_probe(&run_output(&probe, &x, len, 1), &layers).unwrap();
        let graph = |variant: (bool, bool, bool)| {
            let model = graph::encoder_model(
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

    /// A window's states are the same bits on a session of several threads (the session of
    /// lone windows, `ModelOptions::lone_window_threads`) as on one: the int8 graph as the
    /// backend builds it for this CPU, at a width where ONNX Runtime splits its work.
    #[test]
    fn a_session_of_several_threads_gives_the_same_bits() {
        let Some(env) = test_runtime() else { return };
        let (h, inter, len) = (256, 1024, 96);
        let layers = vec![layer(h, inter, 50), layer(h, inter, 70)];
        let x = values(len * h, 8);
        let probe = graph::probe_model(&layers, &test_spec(h, (false, false, false))).unwrap();
        let ranges = InputRanges::from_probe(&run_output(&probe, &x, len, 1), &layers).unwrap();
        let spec = test_spec(
            h,
            (true, ops::attention::available(), ops::ffn::available()),
        );
        let model = graph::encoder_model(&layers, &spec, Some(&ranges[..])).unwrap();
        let on = |threads: usize| {
            let weights = PrepackedWeights::new();
            let mut session = session(env, &model, &weights, kernels(), threads).unwrap();
            run_window(&mut session, &x, len, 0, <[f32]>::to_vec).unwrap()
        };
        let one = on(1);
        assert!(one.iter().any(|v| *v != 0.0));
        for threads in [2, 4] {
            assert!(on(threads) == one, "{threads} threads");
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
            weight_max: 127.0,
        }
    }

    /// The f32 graph of `layers` on the test input of `seed`.
    fn run_f32_on(layers: &[LayerWeights], h: usize, len: usize, seed: u64) -> Vec<f32> {
        let spec = test_spec(h, (false, false, false));
        let model = graph::encoder_model(layers, &spec, None).unwrap();
        run(&model, &values(len * h, seed), len)
    }

    #[test]
    fn the_probe_measures_each_products_input() {
        let Some(_) = test_runtime() else { return };
        let (h, inter, len) = (8, 16, 5);
        let layers = vec![layer(h, inter, 10), layer(h, inter, 30)];
        let spec = test_spec(h, (false, false, false));
        let x = values(len * h, 4);
        let probe = graph::probe_model(&layers, &spec).unwrap();
        let out = run_output(&probe, &x, len, 1);
        assert_eq!(out.len(), 2 * (3 * h + inter));
        assert_eq!(graph::probe_width(&layers).unwrap(), out.len());
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
        let first = graph::encoder_model(&layers[..1], &spec, None).unwrap();
        let states = run(&first, &x, len);
        for (a, b) in ranges[1].qkv.iter().zip(column_max(&states, h)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // its first output is the f32 graph's
        let all = graph::encoder_model(&layers, &spec, None).unwrap();
        assert_eq!(run(&probe, &x, len), run(&all, &x, len));
        for r in &ranges {
            assert_eq!(r.ffn_out.len(), inter);
            // GELU's outputs, at least -0.17, reach above 0 somewhere
            assert!(r.ffn_out.iter().all(|v| v.is_finite() && *v >= 0.0));
            assert!(r.attn_out.iter().chain(&r.ffn_in).all(|v| *v > 0.0));
        }
    }
}
