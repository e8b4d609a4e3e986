//! `triage report`: a labelled output as one self-contained HTML file
//! ([`triage_batch::report`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Failure;

/// `triage report`: what is in a dump and what to look at first, for a browser.
#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// The labelled output (JSON Lines from `triage label`).
    pub(crate) labelled: PathBuf,
    /// The input it was labelled from (for the texts of the top of the queue).
    #[arg(long)]
    pub(crate) input: String,
    /// Input format (default: from the extension).
    #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
    pub(crate) format: Option<String>,
    /// The report (HTML).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// The labelling configuration (labels, thresholds, severities, `[input]` fields).
    #[arg(long, short = 'c', default_value = "workspace.toml")]
    pub(crate) config: PathBuf,
    /// Records of the queue shown, highest priority first.
    #[arg(long, default_value_t = 50)]
    pub(crate) top: usize,
    /// The run's error records (default: `<labelled>.errors.jsonl`).
    #[arg(long)]
    pub(crate) errors: Option<PathBuf>,
    /// The report's title (default: the input's file name).
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// Only records where this label is flagged, in the queue.
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Only records of this language, in the queue.
    #[arg(long)]
    pub(crate) lang: Option<String>,
    /// One queue entry per re-upload family.
    #[arg(long)]
    pub(crate) per_family: bool,
}

pub(crate) fn report(a: ReportArgs) -> Result<ExitCode, Failure> {
    let started = crate::manifest::now();
    let (workspace, input) = super::config_and_input(&a.config, &a.input, a.format.as_deref())?;
    if let Some(l) = &a.label {
        if !workspace.labels.labels.iter().any(|(n, _)| n == l) {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--label {l}: not a label of {}",
                a.config.display()
            )));
        }
    }
    let errors = a
        .errors
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.errors.jsonl", a.labelled.display())));
    let manifest = crate::manifest::path_for(&a.labelled);
    let options = triage_batch::report::ReportOptions {
        title: a.title.clone().unwrap_or_else(|| {
            Path::new(&a.input)
                .file_name()
                .map_or(a.input.clone(), |n| n.to_string_lossy().into_owned())
        }),
        queue: triage_batch::queue::QueueOptions {
            label: a.label.clone(),
            lang: a.lang.clone(),
            min_score: None,
            limit: Some(a.top),
            per_family: a.per_family,
        },
        errors: Some(errors),
        manifest: std::fs::read(&manifest)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        generated: started.clone(),
    };
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&a.output)
            .with_context(|| format!("cannot write {}", a.output.display()))
            .map_err(Failure::Usage)?,
    );
    let s = triage_batch::report::report(
        &a.labelled,
        input.records,
        &a.input,
        &workspace.input,
        &workspace.labels,
        &options,
        &mut out,
    )
    .map_err(|e| Failure::Run(e.into()))?;
    std::io::Write::flush(&mut out)
        .with_context(|| format!("cannot write {}", a.output.display()))
        .map_err(Failure::Run)?;
    drop(out);
    crate::manifest::Derived {
        kind: "report",
        started: &started,
        output: &a.output,
        labelled: &a.labelled,
        input: &a.input,
        config: &a.config,
        records: s.records,
    }
    .write()
    .map_err(Failure::Run)?;
    eprintln!(
        "report: {} records, the top {} of the queue, {} error records: {}",
        s.records,
        s.queue_rows,
        s.errors,
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
