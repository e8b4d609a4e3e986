//! One file per command: each turns its arguments into the crates' calls and prints.

mod bank;
mod bench;
mod calibrate;
mod detect;
mod eval;
mod families;
mod label;
mod merge;
mod models;
mod queue;
mod report;
mod serve;
mod train;
mod verify;

use std::process::ExitCode;

use std::path::Path;

use triage_batch::{InputFormat, RunOptions, WorkspaceConfig};

use crate::cli::Failure;

/// What `queue` and `report` read, and which records they show.
#[derive(clap::Args)]
pub(crate) struct ReviewArgs {
    /// The labelled output (JSON Lines from `triage label`).
    pub(crate) labelled: std::path::PathBuf,
    /// The input it was labelled from (for the evidence's text).
    #[arg(long)]
    pub(crate) input: String,
    /// Input format (default: from the extension).
    #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
    pub(crate) format: Option<String>,
    /// The labelling configuration (labels, severities, thresholds, `[input]` fields).
    #[arg(long, short = 'c', default_value = "workspace.toml")]
    pub(crate) config: std::path::PathBuf,
    /// Only records where this label is flagged.
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// Only records of this language (ISO 639-1).
    #[arg(long)]
    pub(crate) lang: Option<String>,
    /// One row per re-upload family (its highest-priority member; needs `label --families`).
    #[arg(long)]
    pub(crate) per_family: bool,
}

impl ReviewArgs {
    /// The configuration and the input; `--label` must be one of the configuration's.
    pub(crate) fn open(&self) -> Result<(WorkspaceConfig, triage_batch::input::Input), Failure> {
        let (workspace, input) =
            config_and_input(&self.config, &self.input, self.format.as_deref())?;
        if let Some(l) = &self.label {
            if !workspace.labels.labels.iter().any(|(n, _)| n == l) {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "--label {l}: not a label of {}",
                    self.config.display()
                )));
            }
        }
        Ok((workspace, input))
    }

    /// The queue's filters.
    pub(crate) fn options(
        &self,
        min_score: Option<f32>,
        limit: Option<usize>,
    ) -> triage_batch::queue::QueueOptions {
        triage_batch::queue::QueueOptions {
            label: self.label.clone(),
            lang: self.lang.clone(),
            min_score,
            limit,
            per_family: self.per_family,
        }
    }
}

/// The configuration and the input of a command over a labelled output (`families`, `queue`,
/// `report`): the input is read with the configuration's `[input]` fields.
pub(crate) fn config_and_input(
    config: &Path,
    input: &str,
    format: Option<&str>,
) -> Result<(WorkspaceConfig, triage_batch::input::Input), Failure> {
    let workspace = WorkspaceConfig::load(config).map_err(Failure::usage)?;
    let columns = triage_batch::Columns {
        text: workspace.input.text_field.clone(),
        id: workspace.input.id_field.clone(),
    };
    let format = format.map(|f| InputFormat::from_name(f).expect("clap checked the value"));
    let input = triage_batch::input::open(input, format, &columns).map_err(Failure::usage)?;
    Ok((workspace, input))
}

pub(crate) use bank::{bank, BankCommand};
pub(crate) use bench::{bench, BenchArgs};
pub(crate) use calibrate::{calibrate, CalibrateArgs};
pub(crate) use detect::{detect, DetectArgs};
pub(crate) use eval::{eval, EvalArgs};
pub(crate) use families::{families, FamiliesArgs};
pub(crate) use label::{label, LabelArgs};
pub(crate) use merge::{merge, MergeArgs};
pub(crate) use models::{models, ModelsCommand};
pub(crate) use queue::{queue, QueueArgs};
pub(crate) use report::{report, ReportArgs};
pub(crate) use serve::{serve, ServeArgs};
pub(crate) use train::{train, TrainArgs};
pub(crate) use verify::{verify, VerifyArgs};

/// Records per chunk of the pipeline: a GPU takes a chunk's windows in a few large passes, so
/// it gets larger chunks than the CPU's default.
pub(crate) fn chunk_records(workspace: &WorkspaceConfig) -> usize {
    if workspace.model.device.is_cuda() {
        2048
    } else {
        RunOptions::default().chunk_records
    }
}

/// The exit status of a finished run: 1 when a record failed or the run stopped early.
pub(crate) fn exit_for(summary: &triage_batch::Summary) -> ExitCode {
    if summary.errors == 0 && !summary.stopped_early {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Exit status 0 when every input record was usable, 1 otherwise.
pub(crate) fn ok_or_1(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What produced each record: a hash of the configuration in force (file and command-line
/// overrides), the model and the banks (`sha256:...`), as records and manifests say.
pub(crate) fn config_id(
    labeller: &triage_batch::Labeller,
    workspace: &WorkspaceConfig,
) -> Result<String, Failure> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // bank folders are named by their content, not by where they lie on this machine
    let mut w = workspace.clone();
    w.banks.paths.clear();
    h.update(serde_json::to_vec(&w).map_err(anyhow::Error::from)?);
    h.update(labeller.classifier().model_id().as_bytes());
    for b in labeller.banks() {
        h.update(b.info().content_sha256.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// The model and engine a run used, as its manifest and `triage serve`'s `/info` state them:
/// the weights, the engine (backend, dtype, the int8 kernels chosen for this CPU and why, the
/// CPU's instructions) and the refinement of int8 scores with its bounds.
pub(crate) fn model_json(
    c: &triage_classify::Classifier,
    workspace: &triage_batch::WorkspaceConfig,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": c.model_id(),
        "weights_sha256": c.weights_sha256(),
        "backend": workspace.model.backend.to_string(),
        "dtype": workspace.model.precision.to_string(),
        "engine": c.engine(),
    });
    if let Some(r) = workspace.model.refine_margin {
        v["refine_margin"] = serde_json::json!(r);
        if !c.refine_bounds().is_empty() {
            v["refine_bounds_logit"] = c
                .label_names()
                .iter()
                .zip(c.refine_bounds())
                .map(|(n, b)| (n.to_string(), serde_json::json!(b)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
    }
    v
}
