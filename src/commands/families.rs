//! `triage families`: re-upload families of a labelled output and its input
//! ([`triage_batch::families`]).

use std::path::PathBuf;
use std::process::ExitCode;

use triage_batch::InputFormat;

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
    let workspace = triage_batch::WorkspaceConfig::load(&a.config).map_err(Failure::usage)?;
    let columns = triage_batch::Columns {
        text: workspace.input.text_field.clone(),
        id: workspace.input.id_field.clone(),
    };
    let format = a
        .format
        .as_deref()
        .map(|f| InputFormat::from_name(f).expect("clap checked the value"));
    let input = triage_batch::input::open(&a.input, format, &columns).map_err(Failure::usage)?;
    let f = triage_batch::families::families(
        &a.labelled,
        input.records,
        &a.input,
        &workspace.input,
        workspace.banks.near,
    )
    .map_err(|e| Failure::Run(e.into()))?;
    print(&f);
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
