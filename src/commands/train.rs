//! `triage train`: a linear head on the team's examples ([`triage_learn::fit`]).

use std::path::PathBuf;
use std::process::ExitCode;

use triage_learn::train::TrainOptions;

use crate::cli::{ConfigArgs, Failure};

/// `triage train`: train a linear head on labelled examples.
#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    /// The examples.
    pub(crate) examples: PathBuf,
    /// The head directory to write (e.g. models/multilingual-e5-small/heads/topics).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// One-vs-rest sigmoids (default: when some example has several labels).
    #[arg(long, conflicts_with = "single_label")]
    pub(crate) multi_label: bool,
    /// One softmax over the labels.
    #[arg(long)]
    pub(crate) single_label: bool,
    /// Seed of the validation split.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub(crate) seed: u64,
    /// L2 penalty on the weights.
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    pub(crate) l2: f32,
    /// Adam step size.
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub(crate) learning_rate: f32,
    /// Most epochs.
    #[arg(long, default_value_t = TrainOptions::default().max_epochs)]
    pub(crate) epochs: usize,
    /// Epochs without a better validation loss before stopping.
    #[arg(long, default_value_t = TrainOptions::default().patience)]
    pub(crate) patience: usize,
    /// Share of examples held out for validation.
    #[arg(long, default_value_t = TrainOptions::default().validation_fraction)]
    pub(crate) validation: f32,
    /// Do not weigh classes by inverse frequency.
    #[arg(long)]
    pub(crate) no_class_weights: bool,
    /// A JSON file that says how the examples were made (sources, versions, hashes),
    /// kept in head.json.
    #[arg(long)]
    pub(crate) recipe: Option<PathBuf>,
    /// Where embeddings are cached by text hash.
    #[arg(long, default_value = ".cache/embeddings")]
    pub(crate) cache_dir: PathBuf,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

pub(crate) fn train(a: TrainArgs) -> Result<ExitCode, Failure> {
    let (workspace, model_dir) = a.config.load()?;
    let ok = triage_learn::fit::train_head(triage_learn::fit::TrainArgs {
        examples: a.examples,
        config_path: a.config.config.clone(),
        out: a.out,
        recipe: a.recipe,
        config: workspace,
        model_dir,
        cache_dir: a.cache_dir,
        multi_label: (a.multi_label || a.single_label).then_some(a.multi_label),
        options: TrainOptions {
            multi_label: a.multi_label,
            l2: a.l2,
            learning_rate: a.learning_rate,
            max_epochs: a.epochs,
            patience: a.patience,
            validation_fraction: a.validation,
            seed: a.seed,
            class_weights: !a.no_class_weights,
        },
    })?;
    Ok(super::ok_or_1(ok))
}
