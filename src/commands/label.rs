//! `triage label`: a dump in, labelled records out, resumable, with a progress bar and a
//! summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use triage_batch::{CheckpointFile, InputFormat, RunOptions, Sink};

use super::{chunk_records, exit_for};
use crate::cli::{parse_shard, ConfigArgs, Failure, When};

/// `triage label`: label every record of a dump.
#[derive(clap::Args)]
pub(crate) struct LabelArgs {
    /// Input file or folder (`-` for standard input); `.gz` and `.zst` are decompressed.
    pub(crate) input: String,
    /// Output file (`-` for standard output); CSV when it ends in `.csv`, JSON Lines otherwise.
    #[arg(long, short = 'o', default_value = "-")]
    pub(crate) output: String,
    /// Input format (default: from the extension; JSON Lines for `-`).
    #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
    pub(crate) format: Option<String>,
    /// CSV/TSV column that holds the text (default: `[input] text_field`).
    #[arg(long)]
    pub(crate) text_column: Option<String>,
    /// Output format (default: from the output's extension).
    #[arg(long, value_parser = ["jsonl", "csv"])]
    pub(crate) output_format: Option<String>,
    /// Texts longer than this many characters become error records.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) max_chars: usize,
    /// Label every record, even one whose text was seen before in this run.
    #[arg(long)]
    pub(crate) no_dedupe: bool,
    /// How many distinct texts to remember for reuse (memory: about 100 bytes each).
    #[arg(long, default_value_t = 200_000)]
    pub(crate) dedupe_capacity: usize,
    /// Label only shard I of N (`I/N`, I from 0): records whose id hashes there. Join the
    /// shards' outputs with `triage merge`.
    #[arg(long, value_parser = parse_shard)]
    pub(crate) shard: Option<(u64, u64)>,
    /// Error records (default: `<output>.errors.jsonl`; standard error when the output is `-`).
    #[arg(long)]
    pub(crate) errors: Option<PathBuf>,
    /// Stop after this many bad records.
    #[arg(long)]
    pub(crate) max_errors: Option<u64>,
    /// Progress bar on standard error.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) progress: When,
    /// Where to write the summary as JSON (default: `<output>.summary.json`).
    #[arg(long)]
    pub(crate) summary_json: Option<PathBuf>,
    /// Continue a killed or interrupted run from its checkpoint (`<output>.checkpoint.json`).
    #[arg(long)]
    pub(crate) resume: bool,
    /// Match every record against this bank of known content (`triage bank build`);
    /// repeatable, added to `[banks] paths` of the configuration.
    #[arg(long = "bank", value_name = "DIR")]
    pub(crate) banks: Vec<PathBuf>,
    /// After labelling, give each record its re-upload `family` and write
    /// `<output>.families.jsonl` (`triage families` does it for a merged sharded output).
    #[arg(long)]
    pub(crate) families: bool,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
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

pub(crate) fn label(a: LabelArgs) -> Result<ExitCode, Failure> {
    if a.resume && a.output == "-" {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--resume needs an output file (-o FILE), not standard output"
        )));
    }
    if a.families && (a.output == "-" || a.shard.is_some()) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--families needs the whole output in a file (-o FILE, no --shard: run `triage families` on the merged output)"
        )));
    }
    let run_started = crate::manifest::now();
    let (labeller, workspace) = a.config.labeller_with(&a.banks)?;
    // scripts/perf/start.sh times the start up to this line
    tracing::debug!("ready to label");
    let config_id = super::config_id(&labeller, &workspace)?;
    // never dropped: the process ends with the command, and freeing the tokenizer's
    // vocabulary trie (hundreds of thousands of small allocations) took a fifth of a second
    // of every run
    let labeller = std::mem::ManuallyDrop::new(labeller.with_config_id(&config_id));
    let columns = triage_batch::Columns {
        text: a
            .text_column
            .clone()
            .unwrap_or_else(|| workspace.input.text_field.clone()),
        id: workspace.input.id_field.clone(),
    };
    let format = a
        .format
        .as_deref()
        .map(|f| InputFormat::from_name(f).expect("clap checked the value"));
    let triage_batch::input::Input {
        records: input,
        len: input_len,
        bytes_read,
    } = triage_batch::input::open(&a.input, format, &columns).map_err(Failure::usage)?;
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
    let banks: String = labeller
        .banks()
        .iter()
        .map(|b| format!(" bank {} {}", b.name(), b.info().content_sha256))
        .collect();
    let config_sha = triage_batch::config_sha256(
        &a.config.config,
        &format!("{}{shard}{banks}", labeller.classifier().model_id()),
    );
    let previous = if a.resume {
        let cp = CheckpointFile::read(&checkpoint_path).map_err(Failure::usage)?;
        match &cp {
            Some(cp) => cp
                .check_matches(&checkpoint_path, &a.input, input_len, &config_sha)
                .map_err(Failure::usage)?,
            None => eprintln!(
                "triage: no checkpoint at {}: starting from the beginning",
                checkpoint_path.display()
            ),
        }
        cp
    } else {
        None
    };
    let resumed_run = previous.is_some();
    if let Some(cp) = &previous {
        if cp.complete {
            eprint!("{}", cp.summary.table());
            eprintln!("triage: {} is already complete", a.output);
            if a.families {
                families(&a, format, &columns, &workspace, labeller.classifier())?;
                // the output changed: its manifest follows
                let run = Run {
                    config_id: &config_id,
                    started: &run_started,
                    step: "families",
                    complete: true,
                    resumed: true,
                    summary: &cp.summary,
                    errors: errors_path.as_deref(),
                    summary_path: summary_path.as_deref(),
                };
                write_manifest(&a, &labeller, &workspace, &run)?;
            }
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
    let make_checkpoint = |c: &triage_batch::Checkpoint, complete: bool| {
        CheckpointFile::at(c, &a.input, input_len, &config_sha, complete)
    };
    let mut last_lines_done = previous.as_ref().map_or(0, |c| c.lines_done);
    let mut on_chunk = |c: &triage_batch::Checkpoint| -> std::io::Result<()> {
        last_lines_done = c.lines_done;
        if to_file {
            make_checkpoint(c, false).write(&checkpoint_path)?;
        }
        Ok(())
    };
    let result = triage_batch::run(
        &labeller,
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
    let step = if resumed_run {
        "label --resume"
    } else {
        "label"
    };
    if summary.interrupted {
        if to_file {
            // what ran so far, so that the resumed run's manifest names every part of it
            let run = Run {
                config_id: &config_id,
                started: &run_started,
                step,
                complete: false,
                resumed: resumed_run,
                summary: &summary,
                errors: errors_path.as_deref(),
                summary_path: None,
            };
            write_manifest(&a, &labeller, &workspace, &run)?;
        }
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
        make_checkpoint(&done, true)
            .write(&checkpoint_path)
            .with_context(|| format!("writing {}", checkpoint_path.display()))?;
    }
    if let Some(p) = &summary_path {
        let mut json = serde_json::to_vec_pretty(&summary).map_err(anyhow::Error::from)?;
        json.push(b'\n');
        triage_batch::write_atomic(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    if a.families && !summary.stopped_early {
        if csv_output {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--families needs a JSON Lines output, not CSV"
            )));
        }
        families(&a, format, &columns, &workspace, labeller.classifier())?;
    }
    if to_file {
        let run = Run {
            config_id: &config_id,
            started: &run_started,
            step,
            complete: true,
            resumed: resumed_run,
            summary: &summary,
            errors: errors_path.as_deref(),
            summary_path: summary_path.as_deref(),
        };
        write_manifest(&a, &labeller, &workspace, &run)?;
    }
    Ok(exit_for(&summary))
}

/// What `write_manifest` needs to know of a finished run.
struct Run<'a> {
    config_id: &'a str,
    started: &'a str,
    /// What this process did (`label`, `label --resume`, `families`).
    step: &'a str,
    complete: bool,
    resumed: bool,
    summary: &'a triage_batch::Summary,
    errors: Option<&'a Path>,
    summary_path: Option<&'a Path>,
}

/// `<output>.manifest.json`: the chain of custody of the run (`triage verify` checks it).
fn write_manifest(
    a: &LabelArgs,
    labeller: &triage_batch::Labeller,
    workspace: &triage_batch::WorkspaceConfig,
    run: &Run,
) -> Result<(), Failure> {
    use crate::manifest::{entry, files_under};
    let out = Path::new(&a.output);
    let path = PathBuf::from(format!("{}.manifest.json", a.output));
    let mut files = Vec::new();
    let mut add = |role: &str, p: &Path| -> Result<(), Failure> {
        files.push(entry(role, p, &path).map_err(|e| Failure::Run(e.into()))?);
        Ok(())
    };
    if a.input != "-" {
        let input = Path::new(&a.input);
        if input.is_dir() {
            for f in files_under(input).map_err(|e| Failure::Run(e.into()))? {
                add("input", &f)?;
            }
        } else {
            add("input", input)?;
        }
    }
    let c = labeller.classifier();
    for f in files_under(c.model_dir()).map_err(|e| Failure::Run(e.into()))? {
        add("model", &f)?;
    }
    add("workspace", &a.config.config)?;
    let root = a.config.config.parent().unwrap_or(Path::new(""));
    let mut banks = Vec::new();
    for (p, b) in workspace.banks.paths.iter().zip(labeller.banks()) {
        // bank.json alone: it holds the hash of each of the bank's files, every one of which
        // the load checked (`triage verify` loads the bank again); hashing a million items'
        // files once more here took longer than the bank's load
        add("bank", &root.join(p).join("bank.json"))?;
        let i = b.info();
        banks.push(serde_json::json!({"name": i.name, "version": i.version, "items": i.items, "content_sha256": i.content_sha256}));
    }
    add("output", out)?;
    for (role, p) in [("errors", run.errors), ("summary", run.summary_path)] {
        if let Some(p) = p.filter(|p| p.exists()) {
            add(role, p)?;
        }
    }
    let fam = triage_batch::families::families_path(out);
    if a.families && fam.exists() {
        add("families", &fam)?;
    }
    let labels = &workspace.labels;
    let thresholds = serde_json::json!({
        "default_threshold": labels.default_threshold,
        "labels": labels.labels.iter().map(|(n, s)| (n.clone(), serde_json::json!({
            "threshold": labels.threshold(n),
            "language_thresholds": s.language_thresholds,
            "severity": labels.severity(n),
        }))).collect::<serde_json::Map<_, _>>(),
        "refine_margin": workspace.model.refine_margin,
        "banks": workspace.banks.thresholds(),
    });
    // thresholds are f32: written to 6 decimals, not as their f64 expansions
    fn round(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x = (n.as_f64().unwrap_or(0.0) * 1e6).round() / 1e6;
                *v = serde_json::json!(x);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(round),
            serde_json::Value::Object(o) => o.values_mut().for_each(round),
            _ => {}
        }
    }
    let mut thresholds = thresholds;
    round(&mut thresholds);
    // the chain: the steps of the earlier runs of a resumed output (with this configuration)
    let mut steps = match crate::manifest::Manifest::read(&path) {
        Some(old) if run.resumed && old.config_id == run.config_id => old.steps,
        _ => Vec::new(),
    };
    let mut step = crate::manifest::Step::now(run.step, run.started, Some(run.summary.records));
    step.interrupted = !run.complete;
    steps.push(step);
    let m = crate::manifest::Manifest {
        format: crate::manifest::FORMAT,
        kind: "label".into(),
        complete: run.complete,
        triage_version: env!("CARGO_PKG_VERSION").into(),
        triage_commit: env!("TRIAGE_COMMIT").into(),
        command_line: std::env::args().collect(),
        started: steps[0].started.clone(),
        finished: crate::manifest::now(),
        resumed: run.resumed,
        host: crate::manifest::host(),
        model: super::model_json(c, workspace),
        config_id: run.config_id.to_owned(),
        thresholds,
        banks,
        records: run.summary.records,
        errors: run.summary.errors,
        files,
        steps,
    };
    m.write(&path)?;
    Ok(())
}

/// `--families` over the finished output and its input.
fn families(
    a: &LabelArgs,
    format: Option<InputFormat>,
    columns: &triage_batch::Columns,
    workspace: &triage_batch::WorkspaceConfig,
    classifier: &triage_classify::Classifier,
) -> Result<(), Failure> {
    let reopened = triage_batch::input::open(&a.input, format, columns).map_err(Failure::usage)?;
    let f = super::families::find(
        Path::new(&a.output),
        reopened.records,
        &a.input,
        workspace,
        classifier,
    )?;
    super::families::print(&f);
    Ok(())
}
