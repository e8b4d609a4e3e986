//! Input formats: JSON Lines, CSV/TSV with a header, plain text (one record per line), a folder
//! of text files; gzip (`.gz`) and zstd (`.zst`) by extension; `-` for standard input.
//!
//! Every record gets a position that only grows (the line for line formats, the record number
//! for CSV, the file number for a folder): checkpoints record the last position done.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::record::{ErrorDetail, RecordError};

/// How the input is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputFormat {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One record per line; the id is the line number.
    Text,
    /// A folder of text files; the id is the relative path.
    Folder,
}

impl InputFormat {
    /// Parses a `--format` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "jsonl" | "ndjson" | "json" => InputFormat::JsonLines,
            "csv" => InputFormat::Csv,
            "tsv" => InputFormat::Tsv,
            "txt" | "text" => InputFormat::Text,
            "dir" | "folder" => InputFormat::Folder,
            _ => return None,
        })
    }

    /// The format of `path` from its extension (after any `.gz` / `.zst`); JSON Lines otherwise.
    pub fn detect(path: &str) -> Self {
        if path != "-" && Path::new(path).is_dir() {
            return InputFormat::Folder;
        }
        let base = path
            .trim_end_matches(".gz")
            .trim_end_matches(".zst")
            .trim_end_matches(".zstd");
        let ext = Path::new(base)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        InputFormat::from_name(&ext).unwrap_or(InputFormat::JsonLines)
    }
}

/// One record as read, not yet parsed.
#[derive(Debug)]
pub struct RawRecord {
    /// Position for checkpoints (grows monotonically).
    pub pos: u64,
    /// 1-based line where the record starts (file number for folders).
    pub line: u64,
    /// The file it came from, when not the input itself (folders).
    pub file: Option<String>,
    /// The content.
    pub payload: Payload,
}

/// The content of a raw record.
#[derive(Debug)]
pub enum Payload {
    /// A JSON Lines line, parsed later in parallel.
    Json(Vec<u8>),
    /// The id (if any) and the text as bytes (validated later).
    Fields {
        /// The id column's value.
        id: Option<Vec<u8>>,
        /// The text, as bytes.
        text: Vec<u8>,
    },
    /// A record that could not be read.
    Error(RecordError),
}

/// Opens a file (or `-`), decompressing by extension.
pub fn open(path: &str) -> std::io::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path)?)
    };
    decompress(path, raw)
}

/// Wraps `raw` in a gzip or zstd decoder when `path` ends in `.gz` or `.zst`.
pub fn decompress(path: &str, raw: Box<dyn Read + Send>) -> std::io::Result<Box<dyn Read + Send>> {
    Ok(if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(raw)))
    } else if path.ends_with(".zst") || path.ends_with(".zstd") {
        Box::new(zstd::stream::read::Decoder::new(raw)?)
    } else {
        raw
    })
}

/// Where text and id live in a CSV/TSV input.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The text column's header.
    pub text: String,
    /// The id column's header (the record number when the header lacks it).
    pub id: String,
}

fn read_error(file: &str, line: u64, e: &dyn std::fmt::Display) -> RecordError {
    RecordError {
        id: None,
        file: file.to_owned(),
        line,
        error: ErrorDetail {
            kind: "read_error",
            field: None,
            reason: format!("the input cannot be read past this point: {e}"),
        },
    }
}

/// Line-based records (JSON Lines, text) from a reader: a byte-order mark and CR line ends are
/// dropped, blank lines skipped; a read error ends the input with an error record.
pub fn lines(
    input: impl Read + Send + 'static,
    name: String,
    json: bool,
) -> Box<dyn Iterator<Item = RawRecord> + Send> {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut line = 0u64;
    let mut done = false;
    Box::new(std::iter::from_fn(move || loop {
        if done {
            return None;
        }
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) => {
                line += 1;
                let mut l = buf.as_slice();
                if line == 1 {
                    l = l.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(l);
                }
                while let [rest @ .., b'\n' | b'\r'] = l {
                    l = rest;
                }
                if l.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let payload = if json {
                    Payload::Json(l.to_vec())
                } else {
                    Payload::Fields {
                        id: None,
                        text: l.to_vec(),
                    }
                };
                return Some(RawRecord {
                    pos: line,
                    line,
                    file: None,
                    payload,
                });
            }
            Err(e) => {
                done = true;
                return Some(RawRecord {
                    pos: line + 1,
                    line: line + 1,
                    file: None,
                    payload: Payload::Error(read_error(&name, line + 1, &e)),
                });
            }
        }
    }))
}

/// CSV or TSV records with a header row; quoted fields may hold separators and newlines.
pub fn delimited(
    input: impl Read + Send + 'static,
    name: String,
    delimiter: u8,
    columns: &Columns,
) -> Result<Box<dyn Iterator<Item = RawRecord> + Send>, RecordError> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = rdr
        .byte_headers()
        .map_err(|e| read_error(&name, 1, &e))?
        .clone();
    let find = |col: &str| {
        header
            .iter()
            .position(|h| h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h) == col.as_bytes())
    };
    let text_col = find(&columns.text).ok_or_else(|| RecordError {
        id: None,
        file: name.clone(),
        line: 1,
        error: ErrorDetail {
            kind: "missing_column",
            field: Some(columns.text.clone()),
            reason: format!(
                "the header has no column {:?} (it has: {})",
                columns.text,
                header
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    })?;
    let id_col = find(&columns.id);
    let width = header.len();
    let mut n = 0u64;
    let mut done = false;
    let mut record = csv::ByteRecord::new();
    Ok(Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        n += 1;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => None,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let payload = if record.len() != width {
                    Payload::Error(RecordError {
                        id: id_col
                            .and_then(|i| record.get(i))
                            .map(|b| String::from_utf8_lossy(b).into_owned()),
                        file: name.clone(),
                        line,
                        error: ErrorDetail {
                            kind: "wrong_field_count",
                            field: None,
                            reason: format!("{} fields, the header has {width}", record.len()),
                        },
                    })
                } else {
                    Payload::Fields {
                        id: id_col.and_then(|i| record.get(i)).map(<[u8]>::to_vec),
                        text: record.get(text_col).unwrap_or_default().to_vec(),
                    }
                };
                Some(RawRecord {
                    pos: n,
                    line,
                    file: None,
                    payload,
                })
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    done = true;
                }
                Some(RawRecord {
                    pos: n,
                    line,
                    file: None,
                    payload: Payload::Error(read_error(&name, line, &e)),
                })
            }
        }
    })))
}

/// Every regular file under `dir` (recursively, sorted by relative path) is one record.
pub fn folder(dir: &Path) -> std::io::Result<Box<dyn Iterator<Item = RawRecord> + Send>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.is_file() {
                out.push(p.strip_prefix(root).unwrap_or(&p).to_owned());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let root = dir.to_owned();
    Ok(Box::new(files.into_iter().enumerate().map(
        move |(i, rel)| {
            let name = rel.to_string_lossy().replace('\\', "/");
            let payload = match std::fs::read(root.join(&rel)) {
                Ok(bytes) => {
                    let bytes = bytes
                        .strip_prefix(b"\xEF\xBB\xBF")
                        .map(<[u8]>::to_vec)
                        .unwrap_or(bytes);
                    Payload::Fields {
                        id: Some(name.clone().into_bytes()),
                        text: bytes,
                    }
                }
                Err(e) => Payload::Error(RecordError {
                    id: Some(name.clone()),
                    file: root.join(&rel).display().to_string(),
                    line: 1,
                    error: ErrorDetail {
                        kind: "read_error",
                        field: None,
                        reason: e.to_string(),
                    },
                }),
            };
            RawRecord {
                pos: i as u64 + 1,
                line: 1,
                file: Some(root.join(&rel).display().to_string()),
                payload,
            }
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Columns {
        Columns {
            text: "text".into(),
            id: "id".into(),
        }
    }

    #[test]
    fn csv_with_quotes_newlines_and_a_bad_row() {
        let data = "id,text,extra\n1,\"hello, \"\"world\"\"\nsecond line\",x\n2,plain,y\n3,short\n4,\"café\",z\n";
        let recs: Vec<RawRecord> = delimited(
            std::io::Cursor::new(data.as_bytes().to_vec()),
            "d.csv".into(),
            b',',
            &cols(),
        )
        .unwrap()
        .collect();
        assert_eq!(recs.len(), 4);
        match &recs[0].payload {
            Payload::Fields { id, text } => {
                assert_eq!(id.as_deref(), Some(&b"1"[..]));
                assert_eq!(text, b"hello, \"world\"\nsecond line");
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(recs[1].line, 4);
        match &recs[2].payload {
            Payload::Error(e) => assert_eq!((e.error.kind, e.line), ("wrong_field_count", 5)),
            p => panic!("{p:?}"),
        }
        assert_eq!(recs.iter().map(|r| r.pos).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_missing_text_column_is_named() {
        let e = delimited(
            std::io::Cursor::new(b"a\tb\n1\t2\n".to_vec()),
            "d.tsv".into(),
            b'\t',
            &cols(),
        )
        .err()
        .unwrap();
        assert_eq!(e.error.kind, "missing_column");
        assert!(e.error.reason.contains("a, b"), "{}", e.error.reason);
    }

    #[test]
    fn lines_drop_bom_and_crlf_and_skip_blank_lines() {
        let data = b"\xEF\xBB\xBFone\r\n\r\n  \ntwo\n".to_vec();
        let recs: Vec<RawRecord> =
            lines(std::io::Cursor::new(data), "t.txt".into(), false).collect();
        let got: Vec<(u64, Vec<u8>)> = recs
            .into_iter()
            .map(|r| match r.payload {
                Payload::Fields { text, .. } => (r.line, text),
                p => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(got, vec![(1, b"one".to_vec()), (4, b"two".to_vec())]);
    }

    #[test]
    fn a_truncated_gzip_stream_ends_with_an_error_record() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..2000 {
            writeln!(enc, "{{\"text\": \"record {i}\"}}").unwrap();
        }
        let gz = enc.finish().unwrap();
        let cut = gz[..gz.len() / 2].to_vec();
        let recs: Vec<RawRecord> = lines(
            flate2::read::MultiGzDecoder::new(std::io::Cursor::new(cut)),
            "d.jsonl.gz".into(),
            true,
        )
        .collect();
        assert!(recs.len() > 10);
        match &recs.last().unwrap().payload {
            Payload::Error(e) => assert_eq!(e.error.kind, "read_error"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(InputFormat::detect("a/b.jsonl.gz"), InputFormat::JsonLines);
        assert_eq!(InputFormat::detect("x.csv.zst"), InputFormat::Csv);
        assert_eq!(InputFormat::detect("x.TSV"), InputFormat::Tsv);
        assert_eq!(InputFormat::detect("x.txt"), InputFormat::Text);
        assert_eq!(InputFormat::detect("-"), InputFormat::JsonLines);
    }
}

/// Property tests: arbitrary bytes through every reader and parser never panic, and every
/// record comes out as a record or an error record. Bounded (a fixed number of cases from a
/// fixed seed), so CI runs them in seconds.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::config::InputConfig;
    use crate::record::{parse_json_line, record_from_fields};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Random bytes biased towards the characters the formats care about, or a mutated valid input.
    fn input(rng: &mut Rng) -> Vec<u8> {
        const SEEDS: &[&[u8]] = &[
            b"{\"id\": \"a\", \"text\": \"hello\"}\n{\"text\": \"caf\\u00e9\"}\n",
            b"id,text\n1,\"a, \"\"b\"\"\nc\"\n2,plain\n",
            b"\xEF\xBB\xBFline one\r\nline two\n",
        ];
        const SPECIAL: &[u8] = b"{}[]\",:\\\n\r\t ,\xEF\xBB\xBF\x00\xff\xc3\xa9u0";
        let mut v = if rng.below(2) == 0 {
            SEEDS[rng.below(SEEDS.len())].to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..rng.below(200) {
            let b = if rng.below(3) == 0 {
                rng.next() as u8
            } else {
                SPECIAL[rng.below(SPECIAL.len())]
            };
            match rng.below(3) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = b;
                }
                1 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v.remove(i);
                }
                _ => {
                    let i = rng.below(v.len() + 1);
                    v.insert(i, b);
                }
            }
        }
        v
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let cfg = InputConfig::default();
        let cols = Columns {
            text: "text".into(),
            id: "id".into(),
        };
        for _ in 0..3000 {
            let data = input(&mut rng);
            let physical_lines = data.split(|&b| b == b'\n').count() as u64;
            for json in [true, false] {
                let mut last = 0;
                for r in lines(std::io::Cursor::new(data.clone()), "f".into(), json) {
                    assert!(
                        r.pos > last && r.line <= physical_lines,
                        "positions grow, lines exist"
                    );
                    last = r.pos;
                    match r.payload {
                        Payload::Json(b) => {
                            let _ = parse_json_line(&b, r.line, "f", &cfg);
                        }
                        Payload::Fields { id, text } => {
                            let _ = record_from_fields(
                                id.as_deref(),
                                &text,
                                r.line,
                                r.pos,
                                "f",
                                "text",
                            );
                        }
                        Payload::Error(_) => {}
                    }
                }
            }
            for sep in [b',', b'\t'] {
                if let Ok(records) =
                    delimited(std::io::Cursor::new(data.clone()), "f".into(), sep, &cols)
                {
                    let mut last = 0;
                    for r in records.take(10_000) {
                        assert!(r.pos > last);
                        last = r.pos;
                        if let Payload::Fields { id, text } = r.payload {
                            let _ = record_from_fields(
                                id.as_deref(),
                                &text,
                                r.line,
                                r.pos,
                                "f",
                                "text",
                            );
                        }
                    }
                }
            }
        }
    }
}
