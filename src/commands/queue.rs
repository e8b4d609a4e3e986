//! `triage queue`: the records to review first, as CSV ([`triage_batch::queue`]).

use std::process::ExitCode;

use crate::cli::Failure;
use anyhow::Context;

/// `triage queue`: a labelled output's records in review order.
#[derive(clap::Args)]
pub(crate) struct QueueArgs {
    #[command(flatten)]
    pub(crate) review: super::ReviewArgs,
    /// The queue (CSV; `-` for standard output).
    #[arg(long, short = 'o', default_value = "-")]
    pub(crate) output: String,
    /// Only records whose deciding score (label score or match similarity) is at least this.
    #[arg(long)]
    pub(crate) min_score: Option<f32>,
    /// At most this many rows.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

pub(crate) fn queue(a: QueueArgs) -> Result<ExitCode, Failure> {
    let started = crate::manifest::now();
    let r = &a.review;
    let (workspace, input) = r.open()?;
    let options = r.options(a.min_score, a.limit);
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
        &r.labelled,
        input.records,
        &r.input,
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
            labelled: &r.labelled,
            input: &r.input,
            config: &r.config,
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
