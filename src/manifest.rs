//! The chain of custody of a run: `<output>.manifest.json` says what was run (triage's version
//! and commit, the command line, when, on which host), on what (each input's path, size and
//! SHA-256), with what (the model's files, `workspace.toml` and the thresholds in force, the
//! banks) and what came out (counts and the SHA-256 of the output, errors and summary files).
//! `triage verify` hashes everything again.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest format this triage writes.
pub(crate) const FORMAT: u32 = 1;

/// One file, as it was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct FileEntry {
    /// What the file is (`input`, `model`, `workspace`, `bank`, `output`, `errors`, `summary`).
    pub(crate) role: String,
    /// The path relative to the manifest's folder (how `verify` finds it on another machine).
    pub(crate) path: String,
    /// The absolute path when the manifest was written.
    pub(crate) absolute: String,
    /// Size in bytes.
    pub(crate) bytes: u64,
    /// SHA-256 (hex).
    pub(crate) sha256: String,
}

/// `<output>.manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) triage_version: String,
    pub(crate) triage_commit: String,
    pub(crate) command_line: Vec<String>,
    /// UTC, RFC 3339: when the run began (the first run of a resumed one: see `resumed`).
    pub(crate) started: String,
    pub(crate) finished: String,
    /// Whether the output was finished by `--resume` after an earlier run stopped.
    pub(crate) resumed: bool,
    pub(crate) host: String,
    pub(crate) model: serde_json::Value,
    /// What every output record's `config` says: a hash of the configuration in force, the
    /// model and the banks.
    pub(crate) config_id: String,
    /// The thresholds in force: per label, its own and per language; the banks'.
    pub(crate) thresholds: serde_json::Value,
    pub(crate) banks: Vec<serde_json::Value>,
    pub(crate) records: u64,
    pub(crate) errors: u64,
    pub(crate) files: Vec<FileEntry>,
}

/// The UTC time now, RFC 3339 to the second.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// This machine's name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// SHA-256 (hex) and size of a file, streamed.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().iter().map(|b| format!("{b:02x}")).collect(), n))
}

/// `path` relative to folder `base` (both made absolute), with `..` where needed.
fn relative(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    out
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_owned())
}

/// An entry for `path`, relative to the folder of `manifest`.
pub(crate) fn entry(role: &str, path: &Path, manifest: &Path) -> std::io::Result<FileEntry> {
    let (sha256, bytes) = hash_file(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let abs = absolute(path);
    let base = absolute(manifest.parent().unwrap_or(Path::new(".")));
    Ok(FileEntry {
        role: role.to_owned(),
        path: relative(&abs, &base).to_string_lossy().into_owned(),
        absolute: abs.to_string_lossy().into_owned(),
        bytes,
        sha256,
    })
}

/// Every file of a folder, recursively, in name order, but hidden ones (caches such as
/// `.triage-sha256.json`).
pub(crate) fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// What `verify` found for one file.
pub(crate) enum Finding {
    Same,
    Changed { found: String, bytes: u64 },
    Missing(String),
}

/// Hashes a file of a manifest again: at its relative path from the manifest's folder, or else
/// at its absolute path.
pub(crate) fn check(e: &FileEntry, manifest: &Path) -> (PathBuf, Finding) {
    let base = manifest.parent().unwrap_or(Path::new("."));
    let rel = base.join(&e.path);
    let path = if rel.exists() {
        rel
    } else {
        PathBuf::from(&e.absolute)
    };
    match hash_file(&path) {
        Ok((sha, bytes)) if sha == e.sha256 && bytes == e.bytes => (path, Finding::Same),
        Ok((found, bytes)) => (path, Finding::Changed { found, bytes }),
        Err(err) => (path, Finding::Missing(err.to_string())),
    }
}
