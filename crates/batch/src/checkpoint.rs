//! `<output>.checkpoint.json`: where a run stopped, so that `--resume` goes on from there and
//! refuses a checkpoint of another run (another input, configuration, model or shard).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::summary::Summary;

/// What `<output>.checkpoint.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// The format's version (1).
    pub version: u32,
    /// The input's name as given.
    pub input: String,
    /// The input file's size (none for standard input).
    pub input_bytes: Option<u64>,
    /// [`config_sha256`] of the run.
    pub config_sha256: String,
    /// Input lines read and written out.
    pub lines_done: u64,
    /// Bytes of the output written for them.
    pub output_bytes: u64,
    /// Bytes of the error records written for them.
    pub errors_bytes: u64,
    /// Whether the run finished.
    pub complete: bool,
    /// The summary so far.
    pub summary: Summary,
}

/// SHA-256 of the configuration file's bytes and `run` (the model's id and the shard): what a
/// checkpoint must match to be resumed.
pub fn config_sha256(config_path: &Path, run: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(config_path).unwrap_or_default());
    h.update(run.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl CheckpointFile {
    /// The checkpoint of a run at `at` ([`crate::Checkpoint`], from the pipeline).
    pub fn at(
        at: &crate::Checkpoint,
        input: &str,
        input_bytes: Option<u64>,
        config_sha256: &str,
        complete: bool,
    ) -> Self {
        CheckpointFile {
            version: 1,
            input: input.to_owned(),
            input_bytes,
            config_sha256: config_sha256.to_owned(),
            lines_done: at.lines_done,
            output_bytes: at.output_bytes,
            errors_bytes: at.errors_bytes,
            complete,
            summary: at.summary.clone(),
        }
    }

    /// Reads the checkpoint at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Checkpoint {
                    path: path.to_owned(),
                    message: format!("cannot be read: {e}"),
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Checkpoint {
                path: path.to_owned(),
                message: format!("is not a triage checkpoint: {e}"),
            })
    }

    /// Refuses the checkpoint (read from `path`) unless it is of this run: the same input, of
    /// the same size, and the same configuration, model and shard.
    pub fn check_matches(
        &self,
        path: &Path,
        input: &str,
        input_bytes: Option<u64>,
        config_sha256: &str,
    ) -> Result<()> {
        if self.input != input
            || self.input_bytes != input_bytes
            || self.config_sha256 != config_sha256
        {
            return Err(Error::Checkpoint {
                path: path.to_owned(),
                message: format!(
                    "belongs to another run (input {}, {:?} bytes, or another configuration/model); remove it or run without --resume",
                    self.input, self.input_bytes
                ),
            });
        }
        Ok(())
    }

    /// Writes it to `path` (atomically).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::write_atomic(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_refused_by_another_run_and_read_back_by_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("workspace.toml");
        std::fs::write(&config, "[model]\nname = \"m\"\n").unwrap();
        let sha = config_sha256(&config, "m@sha256:1");
        assert_ne!(sha, config_sha256(&config, "m@sha256:1 shard 0/2"));
        let summary = Summary::default();
        let at = crate::Checkpoint {
            lines_done: 7,
            output_bytes: 100,
            errors_bytes: 5,
            summary: &summary,
        };
        let path = dir.path().join("out.jsonl.checkpoint.json");
        assert!(CheckpointFile::read(&path).unwrap().is_none());
        CheckpointFile::at(&at, "in.jsonl", Some(42), &sha, false)
            .write(&path)
            .unwrap();
        let cp = CheckpointFile::read(&path).unwrap().unwrap();
        assert_eq!(
            (cp.lines_done, cp.output_bytes, cp.errors_bytes),
            (7, 100, 5)
        );
        cp.check_matches(&path, "in.jsonl", Some(42), &sha).unwrap();
        for (input, bytes, s) in [
            ("other.jsonl", Some(42), sha.as_str()),
            ("in.jsonl", Some(43), sha.as_str()),
            ("in.jsonl", Some(42), "0000"),
        ] {
            let e = cp.check_matches(&path, input, bytes, s).unwrap_err();
            assert!(e.to_string().contains("belongs to another run"), "{e}");
            assert!(e.is_config());
        }
        std::fs::write(&path, "{").unwrap();
        let e = CheckpointFile::read(&path).unwrap_err();
        assert!(e.to_string().contains("is not a triage checkpoint"), "{e}");
    }
}
