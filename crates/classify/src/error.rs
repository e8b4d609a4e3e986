use std::path::PathBuf;

/// Everything that can go wrong while loading a model or classifying text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the model directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file of the model directory is malformed or lacks a field.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said, with line and column.
        message: String,
    },
    /// The model directory lacks a file the classifier needs.
    #[error("model directory {dir} has no {file}")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// The missing file name.
        file: String,
    },
    /// `config.json` names an architecture this crate does not implement.
    #[error(
        "{path}: unsupported model_type {model_type:?} (supported: bert, xlm-roberta, roberta)"
    )]
    UnsupportedModel {
        /// The config file.
        path: PathBuf,
        /// The `model_type` it names.
        model_type: String,
    },
    /// A weight tensor is missing or has the wrong shape.
    #[error("weights of {dir}: {message}")]
    Weights {
        /// The model directory.
        dir: PathBuf,
        /// What is wrong, naming the tensor.
        message: String,
    },
    /// `tokenizer.json` could not be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer library's message.
        message: String,
    },
    /// The label configuration is inconsistent (names the key).
    #[error("labels.{key}: {message}")]
    Labels {
        /// The key of the `[labels]` table at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A trained head does not fit the encoder.
    #[error("head {path}: {message}")]
    Head {
        /// The head directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The text to classify cannot be tokenized (the tokenizer refused this text).
    #[error("text: {0}")]
    Input(String),
    /// An option's value that this build, this machine or the other options cannot run: names
    /// the option (as `workspace.toml`'s `[model]` section does), its value and what it needs.
    #[error("{option} = {value}: {requires}")]
    Unsupported {
        /// The option (`backend`, `dtype`, `device`, `refine_margin`, ...).
        option: String,
        /// Its value.
        value: String,
        /// What it needs that is not there.
        requires: String,
    },
    /// The engine failed to load or run (its library, a session, a forward pass).
    #[error("backend: {message}")]
    Backend {
        /// What is wrong.
        message: String,
    },
    /// The tensor library failed during inference.
    #[error("inference: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// Whether the error is in the configuration (the labels, the options, a head or model
    /// that does not fit them): fixed by changing the configuration. Unreadable or broken
    /// files, engine and inference failures are not.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::Labels { .. }
                | Error::Unsupported { .. }
                | Error::UnsupportedModel { .. }
                | Error::MissingFile { .. }
                | Error::Head { .. }
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })
}
