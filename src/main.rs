//! `triage`: label multilingual text dumps for moderation teams.

mod cli;
mod embed_cache;
mod learn;
mod merge;
mod models;
mod plots;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
