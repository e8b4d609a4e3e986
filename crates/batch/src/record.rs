//! Input records (JSON Lines), labelled output records and error records.

use serde::Serialize;
use serde_json::Value;
use triage_classify::Classification;
use triage_langid::Detection;

use crate::config::InputConfig;

/// One record to label.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 1-based line of the input it came from.
    pub line: u64,
    /// Its id: the id field, or the line number when the record has none.
    pub id: String,
    /// The text to label.
    pub text: String,
}

/// Why a record could not be labelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    /// The record's id, when it could be read.
    pub id: Option<String>,
    /// The input file (`-` for standard input).
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an error record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDetail {
    /// A stable machine-readable kind (`invalid_utf8`, `invalid_json`, `missing_field`, ...).
    pub kind: &'static str,
    /// The field at fault, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A sentence for people.
    pub reason: String,
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What kind of JSON value `v` is, for messages ("a number", "an array", ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one JSON Lines line (without its line end) into a record.
pub fn parse_json_line(
    bytes: &[u8],
    line: u64,
    file: &str,
    input: &InputConfig,
) -> Result<Record, RecordError> {
    let fail = |id: Option<String>, kind, field: Option<&str>, reason: String| RecordError {
        id,
        file: file.to_owned(),
        line,
        error: ErrorDetail {
            kind,
            field: field.map(str::to_owned),
            reason,
        },
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        fail(
            None,
            "invalid_utf8",
            None,
            format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(None, "invalid_json", None, format!("invalid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(fail(
            None,
            "not_an_object",
            None,
            format!("a record must be a JSON object, not {}", type_name(&value)),
        ));
    };
    let id = match obj.get(&input.id_field) {
        None => line.to_string(),
        Some(v) => id_of(v).ok_or_else(|| {
            fail(
                None,
                "invalid_field",
                Some(&input.id_field),
                format!(
                    "field {:?} is {}, expected a string or a number",
                    input.id_field,
                    type_name(v)
                ),
            )
        })?,
    };
    let field = &input.text_field;
    match obj.remove(field) {
        None => Err(fail(
            Some(id),
            "missing_field",
            Some(field),
            format!("missing field {field:?}"),
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Err(fail(
            Some(id),
            "empty_text",
            Some(field),
            format!("field {field:?} is empty"),
        )),
        Some(Value::String(s)) => Ok(Record { line, id, text: s }),
        Some(v) => Err(fail(
            Some(id),
            "invalid_field",
            Some(field),
            format!("field {field:?} is {}, expected a string", type_name(&v)),
        )),
    }
}

/// Makes a record of a CSV/TSV row, a text line or a file: the text must be UTF-8 and not blank.
pub fn record_from_fields(
    id: Option<&[u8]>,
    text: &[u8],
    line: u64,
    pos: u64,
    file: &str,
    field: &str,
) -> Result<Record, RecordError> {
    let id = id
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| pos.to_string());
    let fail = |kind, reason: String| RecordError {
        id: Some(id.clone()),
        file: file.to_owned(),
        line,
        error: ErrorDetail {
            kind,
            field: Some(field.to_owned()),
            reason,
        },
    };
    let text = std::str::from_utf8(text).map_err(|e| {
        fail(
            "invalid_utf8",
            format!("invalid UTF-8 at byte {} of {field:?}", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(fail("empty_text", format!("{field:?} is empty")));
    }
    Ok(Record {
        line,
        id: id.clone(),
        text: text.to_owned(),
    })
}

/// A label with its score, as written.
#[derive(Debug, Serialize)]
pub struct OutLabel<'a> {
    label: &'a str,
    score: f64,
    flagged: bool,
}

/// A character span, as written.
#[derive(Debug, Serialize)]
pub struct OutSpan {
    start: usize,
    end: usize,
}

/// One labelled record (DESIGN.md's schema).
#[derive(Debug, Serialize)]
pub struct OutputRecord<'a> {
    id: &'a str,
    position: u64,
    lang: &'a str,
    lang_confidence: f64,
    lang_reliable: bool,
    lang_listed: bool,
    script: &'a str,
    labels: Vec<OutLabel<'a>>,
    top: Option<&'a str>,
    evidence: OutSpan,
    model: &'a str,
    chars: usize,
    windows: usize,
    /// Bank matches, best first (absent when no bank is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<Vec<triage_bank::Match>>,
    /// The configuration that produced the record (a hash; the run's manifest has the rest).
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a str>,
}

/// Scores are written with 6 decimals: more is noise, and fewer digits diff better.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The CSV header of output records with these labels (then a `matches` column when banks
/// are configured, and a `config` column when records name their configuration).
pub fn csv_header(labels: &[&str], with_matches: bool, with_config: bool) -> String {
    let mut cols: Vec<String> = [
        "id",
        "position",
        "lang",
        "lang_confidence",
        "lang_reliable",
        "lang_listed",
        "script",
        "top",
        "evidence_start",
        "evidence_end",
        "model",
        "chars",
        "windows",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for l in labels {
        cols.push(format!("{l}_score"));
        cols.push(format!("{l}_flagged"));
    }
    if with_matches {
        cols.push("matches".into());
    }
    if with_config {
        cols.push("config".into());
    }
    csv_row(&cols)
}

fn csv_row(fields: &[String]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(fields).expect("writing to memory");
    let mut s =
        String::from_utf8(w.into_inner().expect("writing to memory")).expect("fields are UTF-8");
    s.pop();
    s
}

impl<'a> OutputRecord<'a> {
    /// The record as one CSV row (fields as in [`csv_header`]).
    pub fn csv(&self) -> String {
        let mut f = vec![
            self.id.to_owned(),
            self.position.to_string(),
            self.lang.to_owned(),
            self.lang_confidence.to_string(),
            self.lang_reliable.to_string(),
            self.lang_listed.to_string(),
            self.script.to_owned(),
            self.top.unwrap_or("").to_owned(),
            self.evidence.start.to_string(),
            self.evidence.end.to_string(),
            self.model.to_owned(),
            self.chars.to_string(),
            self.windows.to_string(),
        ];
        for l in &self.labels {
            f.push(l.score.to_string());
            f.push(l.flagged.to_string());
        }
        if let Some(m) = &self.matches {
            // bank/item:method:similarity, best first, `;` between matches
            f.push(
                m.iter()
                    .map(|m| {
                        format!(
                            "{}/{}:{}:{}",
                            m.bank,
                            m.item,
                            m.method.name(),
                            round6(m.similarity as f64)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(";"),
            );
        }
        if let Some(c) = self.config {
            f.push(c.to_owned());
        }
        csv_row(&f)
    }

    /// Assembles the output record of a labelled text.
    /// `position`: the record's place in the input (line for line formats, record number for
    /// CSV, file number for folders); `triage merge` orders shards by it.
    pub fn new(
        id: &'a str,
        position: u64,
        lang: &'a Detection,
        c: &'a Classification,
        model: &'a str,
    ) -> Self {
        OutputRecord {
            id,
            position,
            lang: lang.lang(),
            lang_confidence: round6(lang.confidence()),
            lang_reliable: lang.is_reliable(),
            lang_listed: lang.is_listed(),
            script: lang.script(),
            labels: c
                .labels()
                .iter()
                .map(|l| OutLabel {
                    label: l.label(),
                    score: round6(l.score() as f64),
                    flagged: l.flagged(),
                })
                .collect(),
            top: c.top().map(|t| t.label()),
            evidence: OutSpan {
                start: c.evidence().start,
                end: c.evidence().end,
            },
            model,
            chars: c.chars(),
            windows: c.windows(),
            matches: None,
            config: None,
        }
    }

    /// The record naming the configuration that produced it.
    pub fn with_config(mut self, config: Option<&'a str>) -> Self {
        self.config = config;
        self
    }

    /// The record with its bank matches (`None`: no bank configured, no `matches` field).
    pub fn with_matches(mut self, matches: Option<Vec<triage_bank::Match>>) -> Self {
        self.matches = matches;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Record, RecordError> {
        parse_json_line(s, 7, "dump.jsonl", &InputConfig::default())
    }

    fn kind(s: &[u8]) -> &'static str {
        parse(s).unwrap_err().error.kind
    }

    #[test]
    fn good_records() {
        let r = parse(br#"{"id": "a1", "text": "bonjour"}"#).unwrap();
        assert_eq!(
            (r.id.as_str(), r.text.as_str(), r.line),
            ("a1", "bonjour", 7)
        );
        assert_eq!(parse(br#"{"id": 42, "text": "x"}"#).unwrap().id, "42");
        assert_eq!(parse(br#"{"text": "no id"}"#).unwrap().id, "7");
    }

    #[test]
    fn bad_records_say_what_and_where() {
        assert_eq!(kind(b"{\"text\": \"caf\xe9\"}"), "invalid_utf8");
        assert_eq!(kind(b"{\"text\": "), "invalid_json");
        assert_eq!(kind(b"[1, 2]"), "not_an_object");
        assert_eq!(kind(br#"{"id": "x"}"#), "missing_field");
        assert_eq!(kind(br#"{"id": "x", "text": null}"#), "invalid_field");
        assert_eq!(kind(br#"{"id": "x", "text": 5}"#), "invalid_field");
        assert_eq!(kind(br#"{"id": "x", "text": "  \n "}"#), "empty_text");
        assert_eq!(kind(br#"{"id": [1], "text": "t"}"#), "invalid_field");
        let e = parse(br#"{"id": "x", "text": 5}"#).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.id.as_deref()),
            ("dump.jsonl", 7, Some("x"))
        );
        assert_eq!(e.error.field.as_deref(), Some("text"));
        assert!(e.error.reason.contains("a number"), "{}", e.error.reason);
    }
}
