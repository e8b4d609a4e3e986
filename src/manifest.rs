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

/// One command that made or changed the files of a manifest: the chain of a resumed run (each
/// part of it), of `families` rewriting an output, of a merge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Step {
    /// `label`, `label --resume`, `families`, `merge`, `queue`, `report`.
    pub(crate) command: String,
    pub(crate) command_line: Vec<String>,
    pub(crate) started: String,
    pub(crate) finished: String,
    pub(crate) host: String,
    pub(crate) triage_version: String,
    pub(crate) triage_commit: String,
    /// Records in the output when the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) records: Option<u64>,
    /// Whether the step stopped before the end of its input (interrupted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) interrupted: bool,
}

impl Step {
    /// A step of this process, started at `started` and ending now.
    pub(crate) fn now(command: &str, started: &str, records: Option<u64>) -> Step {
        Step {
            command: command.to_owned(),
            command_line: std::env::args().collect(),
            started: started.to_owned(),
            finished: now(),
            host: host(),
            triage_version: env!("CARGO_PKG_VERSION").into(),
            triage_commit: env!("TRIAGE_COMMIT").into(),
            records,
            interrupted: false,
        }
    }
}

fn label_kind() -> String {
    "label".into()
}

fn yes() -> bool {
    true
}

/// `<output>.manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    /// What wrote it: `label`, `merge` (its parts' manifests are files of role `manifest`),
    /// `queue` or `report` (the labelled output's manifest is one).
    #[serde(default = "label_kind")]
    pub(crate) kind: String,
    /// False while a run is interrupted (`--resume` finishes it and its manifest).
    #[serde(default = "yes")]
    pub(crate) complete: bool,
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
    /// Every command that made or changed these files, first to last.
    #[serde(default)]
    pub(crate) steps: Vec<Step>,
}

impl Manifest {
    /// The manifest at `path`, when there is a readable one.
    pub(crate) fn read(path: &Path) -> Option<Manifest> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes it to `path` (atomically).
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        triage_batch::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))
    }
}

impl Manifest {
    /// The manifest of one step that made `files` from what `parent` (a run's manifest, when
    /// there is one) says: its model, configuration, thresholds and banks.
    fn of(
        kind: &str,
        step: Step,
        parent: Option<&Manifest>,
        records: u64,
        errors: u64,
        files: Vec<FileEntry>,
    ) -> Manifest {
        Manifest {
            format: FORMAT,
            kind: kind.to_owned(),
            complete: true,
            triage_version: step.triage_version.clone(),
            triage_commit: step.triage_commit.clone(),
            command_line: step.command_line.clone(),
            started: step.started.clone(),
            finished: step.finished.clone(),
            resumed: false,
            host: step.host.clone(),
            model: parent.map_or(serde_json::Value::Null, |p| p.model.clone()),
            config_id: parent.map_or(String::new(), |p| p.config_id.clone()),
            thresholds: parent.map_or(serde_json::Value::Null, |p| p.thresholds.clone()),
            banks: parent.map_or(Vec::new(), |p| p.banks.clone()),
            records,
            errors,
            files,
            steps: vec![step],
        }
    }
}

/// `<file>.manifest.json`.
pub(crate) fn path_for(file: &Path) -> PathBuf {
    PathBuf::from(format!("{}.manifest.json", file.display()))
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

/// The entries of an input (`-` has none; a folder: each of its files).
pub(crate) fn input_entries(input: &str, manifest: &Path) -> std::io::Result<Vec<FileEntry>> {
    if input == "-" {
        return Ok(Vec::new());
    }
    let p = Path::new(input);
    let files = if p.is_dir() {
        files_under(p)?
    } else {
        vec![p.to_owned()]
    };
    files.iter().map(|f| entry("input", f, manifest)).collect()
}

/// A manifest made from a labelled output and its run's manifest (when there is one): `queue`
/// and `report` write one for what they made, naming the labelled output, its manifest (so
/// that `verify` follows the chain), the input and the configuration.
pub(crate) struct Derived<'a> {
    pub(crate) kind: &'a str,
    pub(crate) started: &'a str,
    pub(crate) output: &'a Path,
    pub(crate) labelled: &'a Path,
    pub(crate) input: &'a str,
    pub(crate) config: &'a Path,
    pub(crate) records: u64,
}

impl Derived<'_> {
    /// Writes `<output>.manifest.json`.
    pub(crate) fn write(&self) -> anyhow::Result<PathBuf> {
        let path = path_for(self.output);
        let parent_path = path_for(self.labelled);
        let parent = Manifest::read(&parent_path);
        let mut files = vec![entry("labelled", self.labelled, &path)?];
        if parent.is_some() {
            files.push(entry("manifest", &parent_path, &path)?);
        }
        files.extend(input_entries(self.input, &path)?);
        if self.config.exists() {
            files.push(entry("workspace", self.config, &path)?);
        }
        files.push(entry("output", self.output, &path)?);
        let step = Step::now(self.kind, self.started, Some(self.records));
        let m = Manifest::of(self.kind, step, parent.as_ref(), self.records, 0, files);
        m.write(&path)?;
        Ok(path)
    }
}

/// The manifest of a merge: its parts' manifests (or, for a part without one, the part's
/// files), and the merged output, errors and summary. The parts must have been labelled with
/// one configuration.
pub(crate) fn write_merged(
    started: &str,
    parts: &[PathBuf],
    out: &Path,
    summary: &triage_batch::Summary,
) -> anyhow::Result<PathBuf> {
    let path = path_for(out);
    let with = |p: &Path, suffix: &str| PathBuf::from(format!("{}{suffix}", p.display()));
    let mut files = Vec::new();
    let mut first: Option<(PathBuf, Manifest)> = None;
    for p in parts {
        let mp = path_for(p);
        match Manifest::read(&mp) {
            Some(m) => {
                if let Some((fp, f)) = &first {
                    anyhow::ensure!(
                        f.config_id == m.config_id,
                        "{} and {} were labelled with different configurations ({} and {})",
                        fp.display(),
                        mp.display(),
                        f.config_id,
                        m.config_id
                    );
                } else {
                    first = Some((mp.clone(), m));
                }
                files.push(entry("manifest", &mp, &path)?);
            }
            None => {
                files.push(entry("part", p, &path)?);
                for s in [".errors.jsonl", ".summary.json"] {
                    let f = with(p, s);
                    if f.exists() {
                        files.push(entry("part", &f, &path)?);
                    }
                }
            }
        }
    }
    files.push(entry("output", out, &path)?);
    for (role, s) in [("errors", ".errors.jsonl"), ("summary", ".summary.json")] {
        let f = with(out, s);
        if f.exists() {
            files.push(entry(role, &f, &path)?);
        }
    }
    let step = Step::now("merge", started, Some(summary.records));
    let first = first.map(|(_, m)| m);
    let m = Manifest::of(
        "merge",
        step,
        first.as_ref(),
        summary.records,
        summary.errors,
        files,
    );
    m.write(&path)?;
    Ok(path)
}

/// After `triage families` rewrote `output` (and wrote its families file): the output's
/// manifest re-hashes both and records the step, but only when the output was, until then,
/// what the manifest says (a manifest is never made to vouch for a changed file).
pub(crate) fn amend_after_families(
    output: &Path,
    before: Option<(String, u64)>,
    families: &Path,
    started: &str,
) -> anyhow::Result<Option<PathBuf>> {
    let path = path_for(output);
    let Some(mut m) = Manifest::read(&path) else {
        return Ok(None);
    };
    let Some((sha, bytes)) = before else {
        return Ok(None);
    };
    let Some(i) = m.files.iter().position(|f| f.role == "output") else {
        return Ok(None);
    };
    if m.files[i].sha256 != sha || m.files[i].bytes != bytes {
        anyhow::bail!(
            "{} did not match {} before families rewrote it: the manifest is left as it was",
            output.display(),
            path.display()
        );
    }
    m.files[i] = entry("output", output, &path)?;
    m.files.retain(|f| f.role != "families");
    m.files.push(entry("families", families, &path)?);
    m.steps
        .push(Step::now("families", started, Some(m.records)));
    m.finished = m
        .steps
        .last()
        .map(|s| s.finished.clone())
        .unwrap_or_default();
    m.write(&path)?;
    Ok(Some(path))
}
