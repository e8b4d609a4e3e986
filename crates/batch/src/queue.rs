//! A review queue: the records of a labelled output that a reviewer should read, highest
//! priority first, as CSV that opens in a spreadsheet as is.
//!
//! A record's priority is the largest `severity x score` over its flagged labels
//! (`[labels.<name>] severity`, 1 to 5), or `5 x similarity` of its best exact or near bank
//! match (a known item is as grave as the gravest label), whichever is larger; a semantic match
//! counts at half that. It is multiplied by `1 + log2(family size)`, so that a family that was
//! re-uploaded many times comes before a single post of the same score. Records with nothing
//! flagged and no match have priority 0 and are left out.

use std::collections::{BTreeMap, HashMap};
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

#[derive(Debug, Clone)]
struct Row {
    priority: f64,
    position: u64,
    id: String,
    lang: String,
    flagged: Vec<(String, f64)>,
    matches: Vec<String>,
    family: Option<String>,
    evidence: (usize, usize),
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
    let read_err = |source| Error::Read {
        input: labelled.display().to_string(),
        source,
    };
    let bad = |line: usize, message: String| {
        Error::Merge(format!("{}:{line}: {message}", labelled.display()))
    };
    let reader = BufReader::new(std::fs::File::open(labelled).map_err(read_err)?);
    let mut rows: Vec<Row> = Vec::new();
    let mut family_size: HashMap<String, u64> = HashMap::new();
    let mut summary = QueueSummary::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(read_err)?;
        let r: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| bad(n + 1, format!("not a labelled record: {e}")))?;
        summary.records += 1;
        let family = r["family"].as_str().map(str::to_owned);
        if let Some(f) = &family {
            *family_size.entry(f.clone()).or_default() += 1;
        }
        let lang = r["lang"].as_str().unwrap_or("und").to_owned();
        if options.lang.as_ref().is_some_and(|l| *l != lang) {
            continue;
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
                continue;
            }
        }
        let (mut priority, mut score) = (0.0f64, 0.0f64);
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
            continue;
        }
        rows.push(Row {
            priority,
            position: r["position"]
                .as_u64()
                .ok_or_else(|| bad(n + 1, "no \"position\"".into()))?,
            id: r["id"].as_str().unwrap_or("").to_owned(),
            lang,
            flagged,
            matches,
            family,
            evidence: (
                r["evidence"]["start"].as_u64().unwrap_or(0) as usize,
                r["evidence"]["end"].as_u64().unwrap_or(0) as usize,
            ),
        });
    }
    for row in &mut rows {
        let size = row.family.as_ref().map_or(1, |f| family_size[f]);
        row.priority *= 1.0 + (size as f64).log2();
    }
    // highest priority first; ties in input order
    rows.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then(a.position.cmp(&b.position))
    });
    if options.per_family {
        let mut seen = std::collections::HashSet::new();
        rows.retain(|r| seen.insert(r.family.clone().unwrap_or_else(|| r.id.clone())));
    }
    if let Some(l) = options.limit {
        rows.truncate(l);
    }
    // the evidence of the rows kept, from the input
    let mut wanted: BTreeMap<u64, (usize, usize)> =
        rows.iter().map(|r| (r.position, r.evidence)).collect();
    let mut excerpts: HashMap<u64, String> = HashMap::new();
    for raw in input {
        if wanted.is_empty() {
            break;
        }
        let pos = raw.pos;
        let Some((start, end)) = wanted.remove(&pos) else {
            continue;
        };
        if let Ok(rec) = parse_raw(raw, input_name, fields) {
            let span: String = rec
                .text
                .chars()
                .skip(start)
                .take(end.saturating_sub(start))
                .collect();
            let mut cut: String = span.chars().take(EXCERPT_CHARS).collect();
            if span.chars().count() > EXCERPT_CHARS {
                cut.push('…');
            }
            excerpts.insert(pos, cut.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
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
    for (rank, r) in rows.iter().enumerate() {
        let size = r.family.as_ref().map_or(1, |f| family_size[f]);
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
            cell(excerpts.get(&r.position).map_or("", String::as_str)),
        ])
        .map_err(csv_err)?;
        summary.rows += 1;
    }
    w.flush().map_err(werr)?;
    Ok(summary)
}
