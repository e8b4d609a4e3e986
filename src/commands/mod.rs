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
mod train;
mod verify;

use std::process::ExitCode;

use triage_batch::{RunOptions, WorkspaceConfig};

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
