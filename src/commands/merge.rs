//! `triage merge`: the outputs of a sharded run joined into what one run would have written
//! ([`triage_batch::merge`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Failure;

/// `triage merge`: join the outputs of `label --shard i/n`.
#[derive(clap::Args)]
pub(crate) struct MergeArgs {
    /// The merged output (also writes `<output>.errors.jsonl` and `<output>.summary.json`).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// The shards' outputs (their `.errors.jsonl` and `.summary.json` are read too).
    #[arg(required = true)]
    pub(crate) parts: Vec<PathBuf>,
}

pub(crate) fn merge(a: MergeArgs) -> Result<ExitCode, Failure> {
    let s = triage_batch::merge::merge(&a.parts, &a.output).map_err(|e| Failure::Run(e.into()))?;
    eprint!("{}", s.table());
    Ok(super::exit_for(&s))
}
