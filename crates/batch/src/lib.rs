//! Dump readers and writers and the parallel labelling pipeline of triage.
//!
//! A run reads records, detects each one's language and tokenizes it in parallel, labels
//! batches of similar length, and writes one output record per input record in input order.
//! A record that cannot be labelled becomes an error record (file, line, field, reason) and the
//! run goes on.
#![deny(missing_docs)]

mod checkpoint;
mod config;
mod error;
pub mod input;
pub mod merge;
mod pipeline;
pub mod reader;
mod record;
mod sink;
mod summary;

pub use checkpoint::{config_sha256, CheckpointFile};
pub use config::{InputConfig, WorkspaceConfig};
pub use error::{Error, Result};
pub use pipeline::{run, shard_of, Checkpoint, Labeller, ProgressInfo, RunOptions};
pub use reader::{Columns, InputFormat};
pub use record::{
    csv_header, parse_json_line, record_from_fields, ErrorDetail, OutputRecord, Record, RecordError,
};
pub use sink::{write_atomic, Sink};
pub use summary::{LabelCount, Summary};
