//! Examples and gold records (JSON Lines): what `triage train`, `eval` and `calibrate` read.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;
use triage_batch::{InputConfig, WorkspaceConfig};

/// One labelled example (training) or gold record (evaluation).
pub struct Example {
    /// Its line in the file (1-based; 0 for one not read from a file).
    pub line: u64,
    /// The text.
    pub text: String,
    /// Empty for a text of none of the labels.
    pub labels: Vec<String>,
    /// Its gold language, if given.
    pub lang: Option<String>,
    /// The label this text is a hard negative of (`"counter_to"`), if it is one.
    pub counter_to: Option<String>,
    /// What kind of text it is (`"kind"`: news, counter_speech, quote, ...), for reports.
    pub kind: Option<String>,
}

/// Reads `{"text": ..., "label": "x"}` or `{"text": ..., "labels": ["x", "y"]}` lines; a text
/// of none of the labels says `"labels": []` or `"label": "none"`. An optional `"lang"` gives
/// the gold language, `"counter_to"` the label it is a hard negative of, `"kind"` what kind of
/// text it is. Bad lines are reported, not fatal.
pub fn read_examples(path: &Path, input: &InputConfig) -> Result<(Vec<Example>, Vec<String>)> {
    read_lines(path, input, true)
}

/// Reads texts of JSON Lines (`"text"`, optional `"lang"`) whatever labels they say, for a
/// background sample.
pub fn read_texts(path: &Path, input: &InputConfig) -> Result<(Vec<Example>, Vec<String>)> {
    read_lines(path, input, false)
}

fn read_lines(
    path: &Path,
    input: &InputConfig,
    labelled: bool,
) -> Result<(Vec<Example>, Vec<String>)> {
    // the batch crate's line reader: `.gz` / `.zst` by extension, a byte-order mark and CR
    // line ends dropped, blank lines skipped, a read error reported where it happened
    let name = path.display().to_string();
    let raw = triage_batch::reader::open(&name).with_context(|| format!("cannot read {name}"))?;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for record in triage_batch::reader::lines(raw, name.clone(), true) {
        let line_no = record.line;
        let line = match record.payload {
            triage_batch::reader::Payload::Json(line) => line,
            triage_batch::reader::Payload::Error(e) => {
                bad.push(format!("{}:{line_no}: {}", path.display(), e.error.reason));
                continue;
            }
            triage_batch::reader::Payload::Fields { text, .. } => text,
        };
        let line = line.as_slice();
        let at = |why: String| format!("{}:{line_no}: {why}", path.display());
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                bad.push(at(format!("invalid JSON: {e}")));
                continue;
            }
        };
        let Some(text) = v
            .get(&input.text_field)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        else {
            bad.push(at(format!(
                "field {:?} is missing, empty or not a string",
                input.text_field
            )));
            continue;
        };
        let labels: Vec<String> = match (v.get("labels"), v.get("label")) {
            (Some(Value::Array(a)), _) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            (None, Some(Value::String(s))) if s == NONE => Vec::new(),
            (None, Some(Value::String(s))) => vec![s.clone()],
            _ if !labelled => Vec::new(),
            _ => {
                bad.push(at(format!(
                    "no \"label\" string or \"labels\" array of strings (\"labels\": [] or \"label\": \"{NONE}\" for a text of no label)"
                )));
                continue;
            }
        };
        let string = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        out.push(Example {
            line: line_no,
            text: text.to_owned(),
            labels,
            lang: string("lang"),
            counter_to: string("counter_to"),
            kind: string("kind"),
        });
    }
    Ok((out, bad))
}

/// The label name that means "none of the labels" in examples and gold sets.
pub const NONE: &str = "none";

/// The workspace's `counter_examples`, as examples of none of the labels.
pub fn counter_examples(config: &WorkspaceConfig) -> Vec<Example> {
    config
        .labels
        .labels
        .iter()
        .flat_map(|(name, spec)| {
            spec.counter_examples.iter().map(move |t| Example {
                line: 0,
                text: t.clone(),
                labels: Vec::new(),
                lang: None,
                counter_to: Some(name.clone()),
                kind: None,
            })
        })
        .collect()
}
