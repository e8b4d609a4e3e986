//! `triage`: label multilingual text dumps for moderation teams.

mod cli;
mod models;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
