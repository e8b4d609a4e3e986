use std::path::PathBuf;

/// Errors that stop a run (a bad record never does: it becomes an error record).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `workspace.toml` could not be read.
    #[error("cannot read {path}: {source}")]
    ConfigIo {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `workspace.toml` is malformed or has an unknown key.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key (and line) at fault.
        message: String,
    },
    /// The language detector's configuration is wrong.
    #[error("{path}: {source}")]
    Languages {
        /// The configuration file.
        path: PathBuf,
        /// The detector's error.
        source: triage_langid::Error,
    },
    /// The classifier could not be built.
    #[error(transparent)]
    Classify(#[from] triage_classify::Error),
    /// Reading the input failed (not a bad record: the stream itself).
    #[error("reading {input}: {source}")]
    Read {
        /// The input's name.
        input: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The input cannot be opened (or its header read).
    #[error("cannot open input {input}: {message}")]
    Open {
        /// The input's name.
        input: String,
        /// What went wrong.
        message: String,
    },
    /// A CSV or TSV input's header cannot be read or lacks the text column.
    #[error("{file}:{line}: {reason}")]
    Header {
        /// The input's name.
        file: String,
        /// The line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint cannot be read, or is not of this run.
    #[error("{path} {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A bank cannot be used (missing, damaged, newer, another model's).
    #[error(transparent)]
    Bank(#[from] triage_bank::BankError),
    /// Sharded outputs cannot be merged.
    #[error("{0}")]
    Merge(String),
    /// Writing an output failed.
    #[error("writing {output}: {source}")]
    Write {
        /// The output's name.
        output: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether this is an error of the configuration or the command line (exit status 2:
    /// fixed by changing them) rather than of the run (exit status 1: an unreadable weights
    /// file, an engine failure, a failing disk).
    pub fn is_config(&self) -> bool {
        match self {
            Error::ConfigIo { .. }
            | Error::Config { .. }
            | Error::Languages { .. }
            | Error::Open { .. }
            | Error::Header { .. }
            | Error::Checkpoint { .. }
            | Error::Bank(_) => true,
            Error::Classify(e) => e.is_config(),
            Error::Read { .. } | Error::Write { .. } | Error::Merge(_) => false,
        }
    }

    /// Whether this is a broken pipe on an output (the reader went away: exit quietly).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
