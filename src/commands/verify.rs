//! `triage verify`: hash every file of a run's manifest again and report each difference.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Failure;
use crate::manifest::{check, Finding, Manifest, FORMAT};

/// `triage verify`: check a run's chain of custody.
#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The run's manifest (`<output>.manifest.json`).
    pub(crate) manifest: PathBuf,
    /// Only this manifest's files, not those of the manifests it names (a merge's parts, the
    /// labelled output of a queue or report).
    #[arg(long)]
    pub(crate) shallow: bool,
}

pub(crate) fn verify(a: VerifyArgs) -> Result<ExitCode, Failure> {
    let mut seen = std::collections::HashSet::new();
    let changed = check_manifest(&a.manifest, a.shallow, 0, &mut seen)?;
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Checks one manifest, then (unless `shallow`) the manifests it names; returns the files
/// changed or missing.
fn check_manifest(
    manifest: &Path,
    shallow: bool,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
) -> Result<usize, Failure> {
    let raw = std::fs::read(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))
        .map_err(Failure::Usage)?;
    let value: serde_json::Value = serde_json::from_slice(&raw)
        .with_context(|| format!("{}: not a manifest", manifest.display()))
        .map_err(Failure::Usage)?;
    let format = value["format"].as_u64().unwrap_or(0);
    if format > FORMAT as u64 {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{}: manifest format {format}, newer than the {FORMAT} this triage reads",
            manifest.display()
        )));
    }
    let m: Manifest = serde_json::from_value(value)
        .with_context(|| format!("{}: not a manifest", manifest.display()))
        .map_err(Failure::Usage)?;
    let indent = "  ".repeat(depth);
    if depth > 0 {
        println!("{indent}{} ({}):", manifest.display(), m.kind);
    }
    let mut changed = 0;
    let mut parents = Vec::new();
    for e in &m.files {
        let (path, finding) = check(e, manifest);
        match finding {
            Finding::Same if e.role == "bank" && path.ends_with("bank.json") => {
                // the bank's other files, by the hashes its bank.json holds
                let dir = path.parent().unwrap_or(Path::new("."));
                match triage_bank::Bank::load(dir) {
                    Ok(b) => println!(
                        "{indent}ok       {:<9} {} (and its {} files)",
                        e.role,
                        path.display(),
                        b.info().files.len()
                    ),
                    Err(why) => {
                        changed += 1;
                        println!("{indent}CHANGED  {:<9} {}: {why}", e.role, dir.display());
                    }
                }
            }
            Finding::Same => {
                println!("{indent}ok       {:<9} {}", e.role, path.display());
                if e.role == "manifest" {
                    parents.push(path);
                }
            }
            Finding::Changed { found, bytes } => {
                changed += 1;
                println!(
                    "{indent}CHANGED  {:<9} {}: sha256 {found} ({bytes} bytes), was {} ({} bytes)",
                    e.role,
                    path.display(),
                    e.sha256,
                    e.bytes
                );
            }
            Finding::Missing(why) => {
                changed += 1;
                println!("{indent}MISSING  {:<9} {}: {why}", e.role, path.display());
            }
        }
    }
    if !m.complete {
        println!(
            "{indent}INCOMPLETE: the run was interrupted (`triage label ... --resume` finishes it)"
        );
        changed += 1;
    }
    let steps: Vec<String> = m
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} ({} to {} on {})",
                s.command, s.started, s.finished, s.host
            )
        })
        .collect();
    eprintln!(
        "{indent}verify {}: {} files, {changed} changed or missing; {} of {} on {} ({} to {}), triage {} ({}){}",
        manifest.display(),
        m.files.len(),
        m.kind,
        m.model["id"].as_str().unwrap_or("?"),
        m.host,
        m.started,
        m.finished,
        m.triage_version,
        m.triage_commit,
        if steps.len() > 1 {
            format!("; steps: {}", steps.join(", "))
        } else {
            String::new()
        }
    );
    if !shallow {
        for p in parents {
            let key = std::fs::canonicalize(&p).unwrap_or(p.clone());
            if seen.insert(key) {
                changed += check_manifest(&p, shallow, depth + 1, seen)?;
            }
        }
    }
    Ok(changed)
}
