//! `triage verify`: hash every file of a run's manifest again and report each difference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Failure;
use crate::manifest::{check, Finding, Manifest, FORMAT};

/// `triage verify`: check a run's chain of custody.
#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The run's manifest (`<output>.manifest.json`).
    pub(crate) manifest: PathBuf,
}

pub(crate) fn verify(a: VerifyArgs) -> Result<ExitCode, Failure> {
    let raw = std::fs::read(&a.manifest)
        .with_context(|| format!("cannot read {}", a.manifest.display()))
        .map_err(Failure::Usage)?;
    let value: serde_json::Value = serde_json::from_slice(&raw)
        .with_context(|| format!("{}: not a manifest", a.manifest.display()))
        .map_err(Failure::Usage)?;
    let format = value["format"].as_u64().unwrap_or(0);
    if format > FORMAT as u64 {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{}: manifest format {format}, newer than the {FORMAT} this triage reads",
            a.manifest.display()
        )));
    }
    let m: Manifest = serde_json::from_value(value)
        .with_context(|| format!("{}: not a manifest", a.manifest.display()))
        .map_err(Failure::Usage)?;
    let mut changed = 0;
    for e in &m.files {
        let (path, finding) = check(e, &a.manifest);
        match finding {
            Finding::Same => println!("ok       {:<9} {}", e.role, path.display()),
            Finding::Changed { found, bytes } => {
                changed += 1;
                println!(
                    "CHANGED  {:<9} {}: sha256 {found} ({bytes} bytes), was {} ({} bytes)",
                    e.role,
                    path.display(),
                    e.sha256,
                    e.bytes
                );
            }
            Finding::Missing(why) => {
                changed += 1;
                println!("MISSING  {:<9} {}: {why}", e.role, path.display());
            }
        }
    }
    eprintln!(
        "verify: {} files, {changed} changed or missing; run of {} on {} ({} to {}), triage {} ({})",
        m.files.len(),
        m.model["id"].as_str().unwrap_or("?"),
        m.host,
        m.started,
        m.finished,
        m.triage_version,
        m.triage_commit
    );
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
