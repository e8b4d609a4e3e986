//! `triage families`: re-upload families of a labelled output and its input
//! ([`triage_batch::families`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Failure;

/// `triage families`: give each record of a labelled output its re-upload family.
#[derive(clap::Args)]
pub(crate) struct FamiliesArgs {
    /// The labelled output (JSON Lines); rewritten with a `family` field per record.
    pub(crate) labelled: PathBuf,
    /// The input it was labelled from.
    #[arg(long)]
    pub(crate) input: String,
    /// Input format (default: from the extension).
    #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
    pub(crate) format: Option<String>,
    /// The labelling configuration (for `[input]` fields and `[banks] near`).
    #[arg(long, short = 'c', default_value = "workspace.toml")]
    pub(crate) config: PathBuf,
}

pub(crate) fn families(a: FamiliesArgs) -> Result<ExitCode, Failure> {
    let started = crate::manifest::now();
    let (workspace, input) = super::config_and_input(&a.config, &a.input, a.format.as_deref())?;
    // the output as it was, so that its manifest is amended only if it vouched for it
    let before = crate::manifest::hash_file(&a.labelled).ok();
    let f = triage_batch::families::families(
        &a.labelled,
        input.records,
        &a.input,
        &workspace.input,
        workspace.banks.near,
    )
    .map_err(|e| Failure::Run(e.into()))?;
    print(&f);
    match crate::manifest::amend_after_families(&a.labelled, before, &f.path, &started) {
        Ok(Some(m)) => eprintln!("families: {} updated", m.display()),
        Ok(None) => {}
        Err(e) => eprintln!("triage: warning: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print(f: &triage_batch::families::FamiliesSummary) {
    eprintln!(
        "families: {} records; {} families of two or more hold {} of them (largest {}): {}",
        f.records,
        f.families,
        f.in_families,
        f.largest,
        f.path.display()
    );
}
