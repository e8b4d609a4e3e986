//! Joins the outputs of a sharded run (`--shard i/n` on several machines) into
//! what one run would have written: records and error records in input order (by their
//! `position`), and the summaries added up.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::summary::Summary;

fn read_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Read {
        input: path.display().to_string(),
        source,
    }
}

fn merge_err(message: String) -> Error {
    Error::Merge(message)
}

struct Part {
    lines: std::io::Lines<BufReader<File>>,
    head: Option<(u64, String)>,
    path: PathBuf,
    n: u64,
}

impl Part {
    fn open(path: &Path) -> Result<Option<Part>> {
        if !path.exists() {
            return Ok(None);
        }
        let f = File::open(path).map_err(read_err(path))?;
        let mut p = Part {
            lines: BufReader::new(f).lines(),
            head: None,
            path: path.to_owned(),
            n: 0,
        };
        p.advance()?;
        Ok(Some(p))
    }

    fn advance(&mut self) -> Result<()> {
        self.head = match self.lines.next() {
            None => None,
            Some(line) => {
                let line = line.map_err(read_err(&self.path))?;
                self.n += 1;
                let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
                    merge_err(format!(
                        "{}:{}: not a JSON record: {e}",
                        self.path.display(),
                        self.n
                    ))
                })?;
                let pos = v["position"].as_u64().ok_or_else(|| {
                    merge_err(format!(
                        "{}:{}: no \"position\" (made by an older triage?)",
                        self.path.display(),
                        self.n
                    ))
                })?;
                Some((pos, line))
            }
        };
        Ok(())
    }
}

/// Merges line files ordered by `position`; returns the lines written.
fn merge_files(inputs: &[PathBuf], out: &Path) -> Result<u64> {
    let mut parts: Vec<Part> = inputs
        .iter()
        .filter_map(|p| Part::open(p).transpose())
        .collect::<Result<_>>()?;
    let write_err = |source| Error::Write {
        output: out.display().to_string(),
        source,
    };
    let mut w = BufWriter::new(File::create(out).map_err(write_err)?);
    let mut last = 0;
    let mut written = 0;
    while let Some(i) = (0..parts.len())
        .filter(|&i| parts[i].head.is_some())
        .min_by_key(|&i| parts[i].head.as_ref().map(|h| h.0))
    {
        let (pos, line) = parts[i].head.take().expect("chosen part has a line");
        if !(pos > last || written == 0) {
            return Err(merge_err(format!(
                "{}: position {pos} is out of order or repeated (is a part given twice?)",
                parts[i].path.display()
            )));
        }
        last = pos;
        writeln!(w, "{line}").map_err(write_err)?;
        written += 1;
        parts[i].advance()?;
    }
    w.flush().map_err(write_err)?;
    Ok(written)
}

/// Merges `parts` (outputs of `triage label --shard`) into `out`, `out.errors.jsonl` and
/// `out.summary.json`.
pub fn merge(parts: &[PathBuf], out: &Path) -> Result<Summary> {
    if parts
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "csv"))
    {
        return Err(merge_err(
            "merge joins JSON Lines outputs; label the shards with JSON Lines output".into(),
        ));
    }
    let with = |p: &Path, suffix: &str| PathBuf::from(format!("{}{suffix}", p.display()));
    let records = merge_files(parts, out)?;
    let errors: Vec<PathBuf> = parts.iter().map(|p| with(p, ".errors.jsonl")).collect();
    merge_files(&errors, &with(out, ".errors.jsonl"))?;
    let mut total = Summary::default();
    for p in parts {
        let path = with(p, ".summary.json");
        let bytes = std::fs::read(&path).map_err(|e| {
            merge_err(format!(
                "cannot read {} (did that shard finish?): {e}",
                path.display()
            ))
        })?;
        let s: Summary = serde_json::from_slice(&bytes)
            .map_err(|e| merge_err(format!("{} is not a triage summary: {e}", path.display())))?;
        total.add(&s).map_err(merge_err)?;
    }
    if total.labelled != records {
        return Err(merge_err(format!(
            "the summaries count {} labelled records, the parts hold {records}",
            total.labelled
        )));
    }
    let mut json = serde_json::to_vec_pretty(&total).map_err(|e| merge_err(e.to_string()))?;
    json.push(b'\n');
    let summary_path = with(out, ".summary.json");
    crate::write_atomic(&summary_path, &json).map_err(|source| Error::Write {
        output: summary_path.display().to_string(),
        source,
    })?;
    Ok(total)
}
