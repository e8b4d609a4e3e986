//! Opening an input for a run: a file (decompressed by extension), standard input (`-`) or a
//! folder, as records of its format, with its size and a counter of the bytes read so far
//! (for progress).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::reader::{self, Columns, InputFormat, RawRecord};

/// The records of an opened input.
pub type Records = Box<dyn Iterator<Item = RawRecord> + Send>;

/// An opened input.
pub struct Input {
    /// Its records, in order.
    pub records: Records,
    /// The file's size in bytes (none for standard input and folders).
    pub len: Option<u64>,
    /// Bytes read from the file so far (before decompression).
    pub bytes_read: Arc<AtomicU64>,
}

/// Counts the bytes read from the (compressed) file.
struct Counting {
    inner: Box<dyn Read + Send>,
    n: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn file_len(input: &str) -> Option<u64> {
    (input != "-")
        .then(|| std::fs::metadata(input).ok().map(|m| m.len()))
        .flatten()
}

fn cannot(input: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Open {
        input: input.to_owned(),
        message: e.to_string(),
    }
}

/// Opens `input` (`-` for standard input) as records of `format` (from its name when `None`:
/// [`InputFormat::detect`]); `columns` say where a CSV/TSV input's text and id are.
pub fn open(input: &str, format: Option<InputFormat>, columns: &Columns) -> Result<Input> {
    let format = format.unwrap_or_else(|| InputFormat::detect(input));
    let bytes_read = Arc::new(AtomicU64::new(0));
    if format == InputFormat::Folder {
        return Ok(Input {
            records: reader::folder(Path::new(input)).map_err(cannot(input))?,
            len: None,
            bytes_read,
        });
    }
    let raw: Box<dyn Read + Send> = if input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(input).map_err(cannot(input))?)
    };
    let counted = Box::new(Counting {
        inner: raw,
        n: bytes_read.clone(),
    });
    let decoded = reader::decompress(input, counted).map_err(cannot(input))?;
    let records: Records = match format {
        InputFormat::Csv | InputFormat::Tsv => {
            let sep = if format == InputFormat::Csv {
                b','
            } else {
                b'\t'
            };
            reader::delimited(decoded, input.to_owned(), sep, columns).map_err(|e| {
                Error::Header {
                    file: e.file,
                    line: e.line,
                    reason: e.error.reason,
                }
            })?
        }
        InputFormat::Text => reader::lines(decoded, input.to_owned(), false),
        _ => reader::lines(decoded, input.to_owned(), true),
    };
    Ok(Input {
        records,
        len: file_len(input),
        bytes_read,
    })
}

/// Opens `input` (`-` for standard input, decompressed by extension) as buffered lines, with
/// the file's size.
pub fn open_lines(input: &str) -> Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    let raw = reader::open(input).map_err(cannot(input))?;
    Ok((
        Box::new(BufReader::with_capacity(1 << 20, raw)),
        file_len(input),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Columns {
        Columns {
            text: "text".into(),
            id: "id".into(),
        }
    }

    #[test]
    fn inputs_open_by_format_and_say_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(
            &jsonl,
            "{\"id\":1,\"text\":\"x\"}\n{\"id\":2,\"text\":\"y\"}\n",
        )
        .unwrap();
        let name = jsonl.to_str().unwrap();
        let input = open(name, None, &columns()).unwrap();
        assert_eq!(input.len, Some(40));
        assert_eq!(input.records.count(), 2);
        // the counter follows the file's bytes
        assert_eq!(input.bytes_read.load(Ordering::Relaxed), 40);
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "id,body\n1,x\n").unwrap();
        let e = open(csv.to_str().unwrap(), None, &columns()).err().unwrap();
        assert!(matches!(e, Error::Header { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("a.csv:1:"), "{e}");
        let missing = dir.path().join("none.jsonl");
        let e = open(missing.to_str().unwrap(), None, &columns())
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("cannot open input "), "{e}");
        assert!(e.is_config());
        let (mut lines, len) = open_lines(name).unwrap();
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        assert_eq!(
            (first.trim_end(), len),
            ("{\"id\":1,\"text\":\"x\"}", Some(40))
        );
    }
}
