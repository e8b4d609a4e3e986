//! `triage eval`: the configured pipeline on a gold set, per label and language
//! ([`triage_learn::eval`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{ConfigArgs, Failure};

/// `triage eval`: evaluate on a labelled gold set.
#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// Gold records (JSON Lines with "text", "label" or "labels", optionally "lang").
    pub(crate) gold: PathBuf,
    /// Evaluate this head instead of the configured labels.
    #[arg(long)]
    pub(crate) head: Option<PathBuf>,
    /// Write eval.txt, eval.json and the SVG pictures here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Target precision for the threshold search.
    #[arg(long, default_value_t = 0.95)]
    pub(crate) precision: f64,
    /// Report each language's macro-F1 as a share of this language's.
    #[arg(long)]
    pub(crate) reference_language: Option<String>,
    /// Write per-language best-F1 thresholds into the configuration file.
    #[arg(long)]
    pub(crate) write_thresholds: bool,
    /// Fewest positives of a label in a language to write its threshold.
    #[arg(long, default_value_t = 5)]
    pub(crate) min_support: u64,
    /// Where embeddings are cached by text hash.
    #[arg(long, default_value = ".cache/embeddings")]
    pub(crate) cache_dir: PathBuf,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

pub(crate) fn eval(a: EvalArgs) -> Result<ExitCode, Failure> {
    let (workspace, model_dir) = a.config.load()?;
    let ok = triage_learn::eval::eval(triage_learn::eval::EvalArgs {
        gold: a.gold,
        config_path: a.config.config.clone(),
        config: workspace,
        model_dir,
        cache_dir: a.cache_dir,
        head: a.head,
        out: a.out,
        precision: a.precision,
        reference_language: a.reference_language,
        write_thresholds: a.write_thresholds,
        min_support: a.min_support,
    })?;
    Ok(super::ok_or_1(ok))
}
