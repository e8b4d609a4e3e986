//! `triage merge`: joins the outputs of a sharded run (`--shard i/n` on several machines) into
//! what one run would have written: records and error records in input order (by their
//! `position`), and the summaries added up.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use triage_batch::Summary;

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
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
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
                let line = line.with_context(|| format!("reading {}", self.path.display()))?;
                self.n += 1;
                let v: serde_json::Value = serde_json::from_str(&line).with_context(|| {
                    format!("{}:{}: not a JSON record", self.path.display(), self.n)
                })?;
                let pos = v["position"].as_u64().with_context(|| {
                    format!(
                        "{}:{}: no \"position\" (made by an older triage?)",
                        self.path.display(),
                        self.n
                    )
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
    let mut w = BufWriter::new(
        File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
    );
    let mut last = 0;
    let mut written = 0;
    while let Some(i) = (0..parts.len())
        .filter(|&i| parts[i].head.is_some())
        .min_by_key(|&i| parts[i].head.as_ref().map(|h| h.0))
    {
        let (pos, line) = parts[i].head.take().expect("chosen part has a line");
        ensure!(
            pos > last || written == 0,
            "{}: position {pos} is out of order or repeated (is a part given twice?)",
            parts[i].path.display()
        );
        last = pos;
        writeln!(w, "{line}")?;
        written += 1;
        parts[i].advance()?;
    }
    w.flush()?;
    Ok(written)
}

fn add(into: &mut Summary, s: &Summary) -> Result<()> {
    if into.labels.is_empty() {
        into.labels = s
            .labels
            .iter()
            .map(|(l, _)| (l.clone(), Default::default()))
            .collect();
    }
    ensure!(
        into.labels
            .iter()
            .map(|l| &l.0)
            .eq(s.labels.iter().map(|l| &l.0)),
        "the parts were labelled with different labels"
    );
    for ((_, a), (_, b)) in into.labels.iter_mut().zip(&s.labels) {
        a.flagged += b.flagged;
        a.top += b.top;
    }
    into.records += s.records;
    into.labelled += s.labelled;
    into.errors += s.errors;
    into.chars += s.chars;
    into.tokens += s.tokens;
    into.windows += s.windows;
    into.stopped_early |= s.stopped_early;
    into.interrupted |= s.interrupted;
    for (k, v) in &s.unlisted_languages {
        *into.unlisted_languages.entry(k.clone()).or_default() += v;
    }
    into.unflagged += s.unflagged;
    for (k, v) in &s.languages {
        *into.languages.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &s.error_kinds {
        *into.error_kinds.entry(k.clone()).or_default() += v;
    }
    Ok(())
}

/// Merges `parts` (outputs of `triage label --shard`) into `out`, `out.errors.jsonl` and
/// `out.summary.json`.
pub fn merge(parts: &[PathBuf], out: &Path) -> Result<Summary> {
    if parts
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "csv"))
    {
        bail!("merge joins JSON Lines outputs; label the shards with JSON Lines output");
    }
    let with = |p: &Path, suffix: &str| PathBuf::from(format!("{}{suffix}", p.display()));
    let records = merge_files(parts, out)?;
    let errors: Vec<PathBuf> = parts.iter().map(|p| with(p, ".errors.jsonl")).collect();
    merge_files(&errors, &with(out, ".errors.jsonl"))?;
    let mut total = Summary::default();
    for p in parts {
        let path = with(p, ".summary.json");
        let s: Summary =
            serde_json::from_slice(&std::fs::read(&path).with_context(|| {
                format!("cannot read {} (did that shard finish?)", path.display())
            })?)
            .with_context(|| format!("{} is not a triage summary", path.display()))?;
        add(&mut total, &s)?;
    }
    ensure!(
        total.labelled == records,
        "the summaries count {} labelled records, the parts hold {records}",
        total.labelled
    );
    let mut json = serde_json::to_vec_pretty(&total)?;
    json.push(b'\n');
    triage_batch::write_atomic(&with(out, ".summary.json"), &json)?;
    Ok(total)
}
