//! `triage report`: a labelled output as one self-contained HTML file
//! ([`triage_batch::report`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Failure;

/// `triage report`: what is in a dump and what to look at first, for a browser.
#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) review: super::ReviewArgs,
    /// The report (HTML).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// Records of the queue shown, highest priority first.
    #[arg(long, default_value_t = 50)]
    pub(crate) top: usize,
    /// The run's error records (default: `<labelled>.errors.jsonl`).
    #[arg(long)]
    pub(crate) errors: Option<PathBuf>,
    /// The report's title (default: the input's file name).
    #[arg(long)]
    pub(crate) title: Option<String>,
}

pub(crate) fn report(a: ReportArgs) -> Result<ExitCode, Failure> {
    let started = crate::manifest::now();
    let r = &a.review;
    let (workspace, input) = r.open()?;
    let errors = a
        .errors
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.errors.jsonl", r.labelled.display())));
    let manifest = crate::manifest::path_for(&r.labelled);
    let options = triage_batch::report::ReportOptions {
        title: a.title.clone().unwrap_or_else(|| {
            Path::new(&r.input)
                .file_name()
                .map_or(r.input.clone(), |n| n.to_string_lossy().into_owned())
        }),
        queue: r.options(None, Some(a.top)),
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
        &r.labelled,
        input.records,
        &r.input,
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
        labelled: &r.labelled,
        input: &r.input,
        config: &r.config,
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
