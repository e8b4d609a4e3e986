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
    /// Whether this is a configuration error (exit status 2) rather than a runtime one.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::ConfigIo { .. }
                | Error::Config { .. }
                | Error::Languages { .. }
                | Error::Classify(_)
        )
    }

    /// Whether this is a broken pipe on an output (the reader went away: exit quietly).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
