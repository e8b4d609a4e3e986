//! `triage calibrate`: per-language thresholds from a background sample of ordinary text
//! ([`triage_learn::calibrate`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{ConfigArgs, Failure};

/// `triage calibrate`: thresholds that flag at most `--rate` of ordinary text per language.
#[derive(clap::Args)]
pub(crate) struct CalibrateArgs {
    /// Background records: JSON Lines with "text" and optionally "lang" (the detected
    /// language otherwise); ordinary text of none of the labels.
    pub(crate) background: PathBuf,
    /// Most share of a language's background a label may flag.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) rate: f64,
    /// Fewest background records of a language to set its thresholds (fewer: the label's
    /// threshold stays, and the table says so). With few records, at most `--rate` of them
    /// may mean none: the threshold then sits just above the highest background score.
    #[arg(long, default_value_t = 15)]
    pub(crate) min_records: usize,
    /// Write the thresholds into the configuration file (`[labels.<name>.language_thresholds]`).
    #[arg(long)]
    pub(crate) write_thresholds: bool,
    /// Write calibration.txt and calibration.json here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Where embeddings are cached by text hash.
    #[arg(long, default_value = ".cache/embeddings")]
    pub(crate) cache_dir: PathBuf,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

pub(crate) fn calibrate(a: CalibrateArgs) -> Result<ExitCode, Failure> {
    let (workspace, model_dir) = a.config.load()?;
    let ok = triage_learn::calibrate::calibrate(triage_learn::calibrate::CalibrateArgs {
        background: a.background,
        config_path: a.config.config.clone(),
        config: workspace,
        model_dir,
        cache_dir: a.cache_dir,
        rate: a.rate,
        min_records: a.min_records,
        write_thresholds: a.write_thresholds,
        out: a.out,
    })?;
    Ok(super::ok_or_1(ok))
}
