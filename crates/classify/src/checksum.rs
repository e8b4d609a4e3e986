//! Checksums of model weights, cached beside them so a 500 MB file is hashed once.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const CACHE: &str = ".triage-sha256.json";

#[derive(Serialize, Deserialize, PartialEq)]
struct Entry {
    name: String,
    size: u64,
    modified_ns: u128,
    sha256: String,
}

/// The weight files of a model directory (`*.safetensors`), sorted by name.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::MissingFile {
            dir: dir.to_owned(),
            file: "*.safetensors".into(),
        });
    }
    Ok(files)
}

/// SHA-256 of one file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checksum of a model's weights: the SHA-256 of its one `*.safetensors` file, or of the
/// list of `name sha256` lines when the weights are sharded. Cached in `.triage-sha256.json`,
/// keyed by size and modification time.
pub fn weights_sha256(dir: &Path) -> Result<String> {
    let files = weight_files(dir)?;
    let cache_path = dir.join(CACHE);
    let cached: Vec<Entry> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut entries = Vec::with_capacity(files.len());
    for f in &files {
        let meta = std::fs::metadata(f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let sha256 = match cached
            .iter()
            .find(|e| e.name == name && e.size == meta.len() && e.modified_ns == modified_ns)
        {
            Some(e) => e.sha256.clone(),
            None => sha256_file(f)?,
        };
        entries.push(Entry {
            name,
            size: meta.len(),
            modified_ns,
            sha256,
        });
    }
    if entries != cached {
        // A read-only model directory is fine: the cache is an optimisation.
        if let Ok(json) = serde_json::to_vec_pretty(&entries) {
            let _ = std::fs::write(&cache_path, json);
        }
    }
    if entries.len() == 1 {
        return Ok(entries[0].sha256.clone());
    }
    let mut h = Sha256::new();
    for e in &entries {
        h.update(format!("{} {}\n", e.name, e.sha256));
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of bytes in memory, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
