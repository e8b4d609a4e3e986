//! A review queue: the records of a labelled output that a reviewer should read, highest
//! priority first, as CSV that opens in a spreadsheet as is.
//!
//! A record's priority is the largest `severity x score` over its flagged labels
//! (`[labels.<name>] severity`, 1 to 5), or `5 x similarity` of its best exact or near bank
//! match (a known item is as grave as the gravest label), whichever is larger; a semantic match
//! counts at half that. It is multiplied by `1 + log2(family size)`, so that a family that was
//! re-uploaded many times comes before a single post of the same score. Records with nothing
//! flagged and no match have priority 0 and are left out.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use triage_classify::LabelsConfig;

use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::input::Records;
use crate::pipeline::parse_raw;

/// Characters of the evidence written per row (the rest is cut, with an ellipsis).
pub const EXCERPT_CHARS: usize = 300;

/// Which records a queue holds.
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// Only records where this label is flagged.
    pub label: Option<String>,
    /// Only records of this language.
    pub lang: Option<String>,
    /// Only records whose priority's score (flagged label score or match similarity) is at
    /// least this.
    pub min_score: Option<f32>,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// One row per family: its highest-priority member.
    pub per_family: bool,
}

/// One record of the queue, as shown.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) priority: f64,
    pub(crate) position: u64,
    pub(crate) id: String,
    pub(crate) lang: String,
    /// Flagged labels and scores, highest first.
    pub(crate) flagged: Vec<(String, f64)>,
    /// `bank/item:method:similarity`, best first.
    pub(crate) matches: Vec<String>,
    pub(crate) family: Option<String>,
    /// The evidence span, in characters: of what decides the priority (the best bank match's
    /// span where a match does, else the labels' window).
    pub(crate) evidence: (usize, usize),
}

/// What ranking keeps of a record: its priority and where its line is, so that a million
/// flagged records take 48 bytes each (the rows are read again, one at a time, to be written).
#[derive(Debug, Clone, Copy)]
struct Slim {
    priority: f64,
    position: u64,
    /// The family id's hash (0: none).
    family: u64,
    offset: u64,
    len: u32,
    span: (u32, u32),
}

/// The rows of a queue in review order, and what was read to rank them.
pub(crate) struct Ranked {
    slim: Vec<Slim>,
    /// Members per family, by the family id's hash.
    family_size: HashMap<u64, u32>,
    labelled: std::fs::File,
    path: std::path::PathBuf,
    /// Records read.
    pub(crate) records: u64,
    /// Rows before `--limit` cut them.
    pub(crate) eligible: usize,
}

fn family_hash(f: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    f.hash(&mut h);
    h.finish().max(1)
}

/// A record's row before its family is counted (its priority without the family's factor, and
/// the score that decided it), or `None` when it is not one to review under `options`.
fn row_of(
    r: &serde_json::Value,
    labels: &LabelsConfig,
    options: &QueueOptions,
) -> Option<(Row, f64)> {
    let lang = r["lang"].as_str().unwrap_or("und");
    if options.lang.as_ref().is_some_and(|l| l != lang) {
        return None;
    }
    let mut flagged: Vec<(String, f64)> = r["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["flagged"].as_bool() == Some(true))
        .filter_map(|l| Some((l["label"].as_str()?.to_owned(), l["score"].as_f64()?)))
        .collect();
    flagged.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(want) = &options.label {
        if !flagged.iter().any(|(l, _)| l == want) {
            return None;
        }
    }
    let (mut priority, mut score) = (0.0f64, 0.0f64);
    // the evidence of what decides the priority: the labels' window, or a match's span
    let mut evidence = (
        r["evidence"]["start"].as_u64().unwrap_or(0) as usize,
        r["evidence"]["end"].as_u64().unwrap_or(0) as usize,
    );
    for (l, s) in &flagged {
        let p = labels.severity(l) as f64 * s;
        if p > priority {
            (priority, score) = (p, *s);
        }
    }
    let mut matches = Vec::new();
    for m in r["matches"].as_array().into_iter().flatten() {
        let sim = m["similarity"].as_f64().unwrap_or(0.0);
        let weight = if m["method"] == "semantic" { 2.5 } else { 5.0 };
        if weight * sim > priority {
            (priority, score) = (weight * sim, sim);
            if let (Some(a), Some(b)) = (m["start"].as_u64(), m["end"].as_u64()) {
                if a < b {
                    evidence = (a as usize, b as usize);
                }
            }
        }
        matches.push(format!(
            "{}/{}:{}:{:.3}",
            m["bank"].as_str().unwrap_or(""),
            m["item"].as_str().unwrap_or(""),
            m["method"].as_str().unwrap_or(""),
            sim
        ));
    }
    if priority <= 0.0 || options.min_score.is_some_and(|m| score < m as f64) {
        return None;
    }
    Some((
        Row {
            priority,
            position: r["position"].as_u64()?,
            id: r["id"].as_str().unwrap_or("").to_owned(),
            lang: lang.to_owned(),
            flagged,
            matches,
            family: r["family"].as_str().map(str::to_owned),
            evidence,
        },
        score,
    ))
}

impl Ranked {
    /// Rows kept.
    pub(crate) fn len(&self) -> usize {
        self.slim.len()
    }

    /// Families of two or more records.
    pub(crate) fn repeated_families(&self) -> usize {
        self.family_size.values().filter(|&&n| n > 1).count()
    }

    /// The size of a row's family (1 for a record without one).
    pub(crate) fn size(&self, r: &Row) -> u64 {
        r.family
            .as_deref()
            .map_or(1, |f| self.family_size[&family_hash(f)] as u64)
    }

    /// The rows in review order, each read again from the labelled output.
    pub(crate) fn rows(
        &self,
        labels: &LabelsConfig,
        options: &QueueOptions,
    ) -> impl Iterator<Item = Result<Row>> + '_ {
        use std::io::{Read, Seek, SeekFrom};
        let labels = labels.clone();
        let options = options.clone();
        let mut buf = Vec::new();
        self.slim.iter().map(move |s| {
            let read_err = |source| Error::Read {
                input: self.path.display().to_string(),
                source,
            };
            let mut f = &self.labelled;
            f.seek(SeekFrom::Start(s.offset)).map_err(read_err)?;
            buf.resize(s.len as usize, 0);
            f.read_exact(&mut buf).map_err(read_err)?;
            let changed = || {
                Error::Merge(format!(
                    "{}: changed while the queue was made",
                    self.path.display()
                ))
            };
            let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|_| changed())?;
            let (mut row, _) = row_of(&v, &labels, &options).ok_or_else(changed)?;
            row.priority = s.priority;
            Ok(row)
        })
    }
}

/// Ranks the records of `labelled` (JSON Lines from `triage label`) for review, highest
/// priority first; `visit` sees every record read, before the filters.
pub(crate) fn rank(
    labelled: &Path,
    labels: &LabelsConfig,
    options: &QueueOptions,
    visit: &mut dyn FnMut(&serde_json::Value),
) -> Result<Ranked> {
    let read_err = |source| Error::Read {
        input: labelled.display().to_string(),
        source,
    };
    let bad = |line: usize, message: String| {
        Error::Merge(format!("{}:{line}: {message}", labelled.display()))
    };
    let file = std::fs::File::open(labelled).map_err(read_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file.try_clone().map_err(read_err)?);
    let mut slim: Vec<Slim> = Vec::new();
    let mut family_size: HashMap<u64, u32> = HashMap::new();
    let (mut records, mut offset, mut line) = (0u64, 0u64, String::new());
    for n in 1.. {
        line.clear();
        let len = reader.read_line(&mut line).map_err(read_err)?;
        if len == 0 {
            break;
        }
        let at = offset;
        offset += len as u64;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let r: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| bad(n, format!("not a labelled record: {e}")))?;
        records += 1;
        visit(&r);
        let family = r["family"].as_str().map_or(0, family_hash);
        if family != 0 {
            *family_size.entry(family).or_default() += 1;
        }
        if r["position"].as_u64().is_none() {
            return Err(bad(n, "no \"position\"".into()));
        }
        let Some((row, _)) = row_of(&r, labels, options) else {
            continue;
        };
        slim.push(Slim {
            priority: row.priority,
            position: row.position,
            family,
            offset: at,
            len: text.len() as u32,
            span: (row.evidence.0 as u32, row.evidence.1 as u32),
        });
    }
    for s in &mut slim {
        if s.family != 0 {
            s.priority *= 1.0 + (family_size[&s.family] as f64).log2();
        }
    }
    // highest priority first; ties in input order
    slim.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then(a.position.cmp(&b.position))
    });
    if options.per_family {
        let mut seen = std::collections::HashSet::new();
        // a record without a family is its own (positions and hashes kept apart by a bit)
        slim.retain(|s| {
            seen.insert(if s.family != 0 {
                s.family | 1 << 63
            } else {
                s.position & !(1 << 63)
            })
        });
    }
    let eligible = slim.len();
    if let Some(l) = options.limit {
        slim.truncate(l);
    }
    slim.shrink_to_fit();
    Ok(Ranked {
        slim,
        family_size,
        labelled: file,
        path: labelled.to_owned(),
        records,
        eligible,
    })
}

/// What `keep` made of the texts of the ranked rows (kept in a temporary file, not in memory).
pub(crate) struct Texts {
    /// Positions, ascending, and where each one's text lies in `file` (`u32::MAX`: none).
    at: Vec<(u64, u64, u32)>,
    file: std::fs::File,
}

impl Texts {
    /// The text kept for the record at `position`.
    pub(crate) fn get(&self, position: u64) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let i = self.at.binary_search_by_key(&position, |a| a.0).ok()?;
        let (_, offset, len) = self.at[i];
        if len == u32::MAX {
            return None;
        }
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = vec![0; len as usize];
        f.read_exact(&mut buf).ok()?;
        String::from_utf8(buf).ok()
    }
}

/// What `keep` makes of the texts of the input records of the ranked rows (those that parse),
/// with each row's evidence span.
pub(crate) fn texts(
    input: Records,
    input_name: &str,
    fields: &InputConfig,
    ranked: &Ranked,
    keep: impl Fn(&str, (usize, usize)) -> String,
) -> Result<Texts> {
    let werr = |source| Error::Write {
        output: "a temporary file".into(),
        source,
    };
    let mut wanted: Vec<(u64, (u32, u32))> =
        ranked.slim.iter().map(|s| (s.position, s.span)).collect();
    wanted.sort_unstable_by_key(|w| w.0);
    let mut at: Vec<(u64, u64, u32)> = wanted.iter().map(|w| (w.0, 0, u32::MAX)).collect();
    let file = tempfile::tempfile().map_err(werr)?;
    let mut w = std::io::BufWriter::new(file.try_clone().map_err(werr)?);
    let (mut next, mut offset) = (0usize, 0u64);
    for raw in input {
        if next == wanted.len() {
            break;
        }
        while next < wanted.len() && wanted[next].0 < raw.pos {
            next += 1;
        }
        if next == wanted.len() || wanted[next].0 != raw.pos {
            continue;
        }
        let (start, end) = wanted[next].1;
        if let Ok(rec) = parse_raw(raw, input_name, fields) {
            let t = keep(&rec.text, (start as usize, end as usize));
            w.write_all(t.as_bytes()).map_err(werr)?;
            at[next] = (at[next].0, offset, t.len() as u32);
            offset += t.len() as u64;
        }
        next += 1;
    }
    w.flush().map_err(werr)?;
    drop(w);
    Ok(Texts { at, file })
}

/// What the queue holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSummary {
    /// Labelled records read.
    pub records: u64,
    /// Rows written.
    pub rows: u64,
}

fn cell(s: &str) -> String {
    // a cell that a spreadsheet would read as a formula is written as text
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Builds the queue of `labelled` (JSON Lines from `triage label`), reading the evidence from
/// `input` (the dump it was labelled from), and writes it as CSV to `out`.
pub fn queue(
    labelled: &Path,
    input: Records,
    input_name: &str,
    fields: &InputConfig,
    labels: &LabelsConfig,
    options: &QueueOptions,
    out: &mut dyn Write,
) -> Result<QueueSummary> {
    let ranked = rank(labelled, labels, options, &mut |_| {})?;
    let mut summary = QueueSummary {
        records: ranked.records,
        rows: 0,
    };
    let excerpts = texts(input, input_name, fields, &ranked, |text, (start, end)| {
        let span: String = text
            .chars()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect();
        let mut cut: String = span.chars().take(EXCERPT_CHARS).collect();
        if span.chars().count() > EXCERPT_CHARS {
            cut.push('…');
        }
        cut.split_whitespace().collect::<Vec<_>>().join(" ")
    })?;
    let werr = |source| Error::Write {
        output: "the queue".into(),
        source,
    };
    // a byte-order mark, so that spreadsheets read the file as UTF-8
    out.write_all("\u{feff}".as_bytes()).map_err(werr)?;
    let mut w = csv::Writer::from_writer(out);
    let header = [
        "rank",
        "priority",
        "id",
        "position",
        "lang",
        "flagged",
        "top_label",
        "top_score",
        "matches",
        "family",
        "family_size",
        "evidence",
    ];
    let csv_err = |e: csv::Error| Error::Write {
        output: "the queue".into(),
        source: std::io::Error::other(e),
    };
    w.write_record(header).map_err(csv_err)?;
    for (rank, r) in ranked.rows(labels, options).enumerate() {
        let r = &r?;
        let size = ranked.size(r);
        let (top, top_score) = r
            .flagged
            .first()
            .map_or((String::new(), String::new()), |(l, s)| {
                (l.clone(), format!("{s:.4}"))
            });
        w.write_record([
            (rank + 1).to_string(),
            format!("{:.4}", r.priority),
            cell(&r.id),
            r.position.to_string(),
            r.lang.clone(),
            r.flagged
                .iter()
                .map(|(l, s)| format!("{l}:{s:.3}"))
                .collect::<Vec<_>>()
                .join(";"),
            top,
            top_score,
            cell(&r.matches.join(";")),
            cell(r.family.as_deref().unwrap_or("")),
            size.to_string(),
            cell(&excerpts.get(r.position).unwrap_or_default()),
        ])
        .map_err(csv_err)?;
        summary.rows += 1;
    }
    w.flush().map_err(werr)?;
    Ok(summary)
}
