//! `triage merge`: the outputs of a sharded run joined into what one run would have written
//! ([`triage_batch::merge`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Failure;

/// `triage merge`: join the outputs of `label --shard i/n`.
#[derive(clap::Args)]
pub(crate) struct MergeArgs {
    /// The merged output (also writes `<output>.errors.jsonl`, `<output>.summary.json` and
    /// `<output>.manifest.json`, which names the parts' manifests).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// The shards' outputs (their `.errors.jsonl` and `.summary.json` are read too).
    #[arg(required = true)]
    pub(crate) parts: Vec<PathBuf>,
}

pub(crate) fn merge(a: MergeArgs) -> Result<ExitCode, Failure> {
    let started = crate::manifest::now();
    let s = triage_batch::merge::merge(&a.parts, &a.output).map_err(|e| Failure::Run(e.into()))?;
    eprint!("{}", s.table());
    let m =
        crate::manifest::write_merged(&started, &a.parts, &a.output, &s).map_err(Failure::Run)?;
    eprintln!("chain of custody: {}", m.display());
    Ok(super::exit_for(&s))
}
