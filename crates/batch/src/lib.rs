//! Dump readers and writers and the parallel labelling pipeline of triage.
//!
//! A run reads records, detects each one's language and tokenizes it in parallel, labels
//! batches of similar length, and writes one output record per input record in input order.
//! A record that cannot be labelled becomes an error record (file, line, field, reason) and the
//! run goes on.
//!
//! - [`reader`]: the input formats as records; [`input`]: opening a file, standard input or a
//!   folder for a run, with its size and bytes read.
//! - `pipeline.rs`: the [`Labeller`] (classifier, language detector, field names) and [`run`]:
//!   bounded channels, rayon for detection and tokenization, an ordered writer.
//! - `checkpoint.rs`: [`CheckpointFile`], what `--resume` reads and refuses.
//! - [`families`]: re-upload families of a labelled output and its input.
//! - [`queue`]: a review queue (CSV) of a labelled output, by severity x score.
//! - [`report`]: a self-contained HTML report of a labelled output.
//! - [`merge`]: the outputs of a sharded run joined, summaries added ([`Summary::add`]).
//! - `record.rs`, `sink.rs`, `summary.rs`, `config.rs` (`workspace.toml`), `error.rs`.
#![deny(missing_docs)]

mod checkpoint;
mod config;
mod error;
pub mod families;
pub mod input;
pub mod merge;
mod pipeline;
pub mod queue;
pub mod reader;
mod record;
pub mod report;
mod sink;
mod summary;

pub use checkpoint::{config_sha256, CheckpointFile};
pub use config::{BanksConfig, InputConfig, WorkspaceConfig};
pub use error::{Error, Result};
pub use pipeline::{
    language_space, run, semantic_frame, shard_of, upgrade_banks, BatchResult, Checkpoint,
    Labeller, ProgressInfo, RunOptions,
};
pub use reader::{Columns, InputFormat};
pub use record::{
    csv_header, parse_json_line, record_from_fields, type_name, ErrorDetail, OutputRecord, Record,
    RecordError,
};
pub use sink::{write_atomic, Sink};
pub use summary::{BankCount, LabelCount, Summary};
