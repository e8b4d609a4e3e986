//! `triage queue`: the records to review first, as CSV ([`triage_batch::queue`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Failure;
use anyhow::Context;

/// `triage queue`: a labelled output's records in review order.
#[derive(clap::Args)]
pub(crate) struct QueueArgs {
    /// The labelled output (JSON Lines from `triage label`).
    pub(crate) labelled: PathBuf,
    /// The input it was labelled from (for the evidence's text).
    #[arg(long)]
    pub(crate) input: String,
    /// Input format (default: from the extension).
    #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
    pub(crate) format: Option<String>,
    /// The queue (CSV; `-` for standard output).
    #[arg(long, short = 'o', default_value = "-")]
    pub(crate) output: String,
    /// The labelling configuration (severities, `[input]` fields).
    #[arg(long, short = 'c', default_value = "workspace.toml")]
    pub(crate) config: PathBuf,
    /// Only records where this label is flagged.
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Only records of this language (ISO 639-1).
    #[arg(long)]
    pub(crate) lang: Option<String>,
    /// Only records whose deciding score (label score or match similarity) is at least this.
    #[arg(long)]
    pub(crate) min_score: Option<f32>,
    /// At most this many rows.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// One row per re-upload family (its highest-priority member; needs `label --families`).
    #[arg(long)]
    pub(crate) per_family: bool,
}

pub(crate) fn queue(a: QueueArgs) -> Result<ExitCode, Failure> {
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
    let options = triage_batch::queue::QueueOptions {
        label: a.label.clone(),
        lang: a.lang.clone(),
        min_score: a.min_score,
        limit: a.limit,
        per_family: a.per_family,
    };
    let mut out: Box<dyn std::io::Write> = if a.output == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&a.output)
                .with_context(|| format!("cannot write {}", a.output))
                .map_err(Failure::Usage)?,
        ))
    };
    let s = triage_batch::queue::queue(
        &a.labelled,
        input.records,
        &a.input,
        &workspace.input,
        &workspace.labels,
        &options,
        &mut out,
    )
    .map_err(|e| Failure::Run(e.into()))?;
    drop(out);
    if a.output != "-" {
        crate::manifest::Derived {
            kind: "queue",
            started: &started,
            output: std::path::Path::new(&a.output),
            labelled: &a.labelled,
            input: &a.input,
            config: &a.config,
            records: s.records,
        }
        .write()
        .map_err(Failure::Run)?;
    }
    eprintln!(
        "queue: {} of {} records to review{}",
        s.rows,
        s.records,
        if a.output == "-" {
            String::new()
        } else {
            format!(": {}", a.output)
        }
    );
    Ok(ExitCode::SUCCESS)
}
