//! End-to-end tests of the `triage` command.

mod banks;
mod hub;
mod inputs;
mod label;
mod learn;
mod queue;
mod report;
mod resume;
mod serve;
mod util;
mod verify;
