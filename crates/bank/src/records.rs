//! A bank's items: parsed in memory (a bank being built, or one of format 1), or, for a loaded
//! bank of format 2, left in `items.jsonl`, a line read and parsed only when its item is asked
//! for (labelling asks for the few items it matches: a million lines are not parsed, nor kept,
//! at every start); and the signatures, flat as `signatures.bin` holds them, in memory or read
//! from that file one item at a time (only a look-up's candidates need theirs).

use std::borrow::Cow;
use std::fs::File;

use rayon::prelude::*;

use crate::bank::Item;
use crate::minhash::{Signature, ROWS};

/// The items of a bank, in the order they were added.
#[derive(Debug)]
pub(crate) enum Records {
    /// Parsed items (their signatures are kept in [`Signatures`], not in them).
    Parsed(Vec<Item>),
    /// `items.jsonl` (open) and where each line starts (and, last, where the file ends).
    Lines { file: File, starts: Vec<u64> },
}

/// Reads `buf.len()` bytes of `file` at `offset` (without moving a shared position).
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], offset + done as u64)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// Where the lines of a text start, fed a block at a time (`items.jsonl` as it is hashed).
#[derive(Debug, Default)]
pub(crate) struct LineStarts {
    starts: Vec<u64>,
    at: u64,
}

impl LineStarts {
    /// The next block of the text.
    pub fn feed(&mut self, block: &[u8]) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        let at = self.at;
        self.starts
            .extend(memchr::memchr_iter(b'\n', block).map(|i| at + i as u64 + 1));
        self.at += block.len() as u64;
    }
}

impl Default for Records {
    fn default() -> Self {
        Records::Parsed(Vec::new())
    }
}

impl Records {
    /// The lines of `items.jsonl` (`file`, whose lines `lines` found), which must hold `n`
    /// items; an error names the line count.
    pub fn lines(file: File, lines: LineStarts, n: usize) -> Result<Records, String> {
        let LineStarts { mut starts, at } = lines;
        if starts.is_empty() {
            starts.push(0);
        }
        if starts.last() != Some(&at) {
            // a last line without its newline
            starts.push(at);
        }
        let found = starts.len() - 1;
        if found != n {
            return Err(format!("{found} items, bank.json says {n}"));
        }
        Ok(Records::Lines { file, starts })
    }

    /// How many items.
    pub fn len(&self) -> usize {
        match self {
            Records::Parsed(items) => items.len(),
            Records::Lines { starts, .. } => starts.len() - 1,
        }
    }

    /// Item `i` (without its signature). A line that does not parse, which a bank whose
    /// hashes matched cannot hold, gives an item that names it.
    pub fn get(&self, i: usize) -> Cow<'_, Item> {
        match self {
            Records::Parsed(items) => Cow::Borrowed(&items[i]),
            Records::Lines { file, starts } => {
                let mut line = vec![0u8; (starts[i + 1] - starts[i]) as usize];
                Cow::Owned(match read_at(file, starts[i], &mut line) {
                    Ok(()) => parse_line(&line, i),
                    Err(e) => unreadable(i, &e.to_string()),
                })
            }
        }
    }

    /// What looking for item `i` inside a longer text needs of it: its count of distinct
    /// shingles and its edges (see [`Item::edges`]). Read from its line without the rest of it
    /// (id, digest, metadata are skipped, not allocated): a look-up asks this of every
    /// candidate, thousands a record in a large bank. A line that cannot be read gives `(0,
    /// None)`: not a candidate.
    pub fn shape(&self, i: usize) -> (u32, Option<[u32; 3]>) {
        #[derive(serde::Deserialize)]
        struct Shape {
            #[serde(default)]
            shingles: u32,
            #[serde(default)]
            edges: Option<[u32; 3]>,
        }
        match self {
            Records::Parsed(items) => (items[i].shingles, items[i].edges),
            Records::Lines { file, starts } => LINE.with_borrow_mut(|line| {
                line.resize((starts[i + 1] - starts[i]) as usize, 0);
                read_at(file, starts[i], line)
                    .ok()
                    .and_then(|()| serde_json::from_slice::<Shape>(line.trim_ascii_end()).ok())
                    .map_or((0, None), |s| (s.shingles, s.edges))
            }),
        }
    }

    /// Every line as it is in the file, newlines included (items kept as lines).
    pub fn write_lines(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        if let Records::Lines { file, starts } = self {
            let mut block = vec![0u8; 1 << 20];
            let (mut at, end) = (0u64, *starts.last().expect("a start"));
            while at < end {
                let take = (end - at).min(block.len() as u64) as usize;
                read_at(file, at, &mut block[..take])?;
                w.write_all(&block[..take])?;
                at += take as u64;
            }
        }
        Ok(())
    }

    /// The parsed items, parsing every line first if they were kept as lines.
    pub fn parsed(&mut self) -> &mut Vec<Item> {
        if let Records::Lines { starts, .. } = self {
            // the whole file read at once, then its lines parsed in parallel
            let mut text = Vec::with_capacity(*starts.last().expect("a start") as usize);
            let whole = self.write_lines(&mut text).is_ok();
            let Records::Lines { starts, .. } = &*self else {
                unreachable!("matched above")
            };
            let items: Vec<Item> = (0..starts.len() - 1)
                .into_par_iter()
                .map(|i| match whole {
                    true => parse_line(&text[starts[i] as usize..starts[i + 1] as usize], i),
                    false => self.get(i).into_owned(),
                })
                .collect();
            *self = Records::Parsed(items);
        }
        match self {
            Records::Parsed(items) => items,
            Records::Lines { .. } => unreachable!("parsed above"),
        }
    }
}

thread_local! {
    /// A line read for [`Records::shape`], its buffer kept from one call to the next.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Line `i` of `items.jsonl` (its newline included or not) as an item.
fn parse_line(line: &[u8], i: usize) -> Item {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    serde_json::from_slice(line).unwrap_or_else(|e| unreadable(i, &e.to_string()))
}

/// An item that names line `i`, which could not be read (a bank whose hashes matched cannot
/// hold one).
fn unreadable(i: usize, why: &str) -> Item {
    Item {
        id: format!("(items.jsonl line {}: {why})", i + 1),
        digest: String::new(),
        digest_only: true,
        shingles: 0,
        edges: None,
        meta: None,
        signature: None,
        embedding: None,
    }
}

/// Every item's signature, `ROWS` u32 (little-endian) an item as in `signatures.bin`; a
/// digest-only item's rows are all `u32::MAX`.
#[derive(Debug)]
pub(crate) enum Signatures {
    /// In memory.
    Owned(Vec<u8>),
    /// `signatures.bin` (open), of `n` items.
    File { file: File, n: usize },
}

impl Default for Signatures {
    fn default() -> Self {
        Signatures::Owned(Vec::new())
    }
}

const WIDTH: usize = ROWS * 4;

impl Signatures {
    /// Item `i`'s signature (none for a digest-only item, or if the file cannot be read).
    pub fn get(&self, i: usize) -> Option<Signature> {
        let mut read = [0u8; WIDTH];
        let bytes = match self {
            Signatures::Owned(b) => &b[i * WIDTH..(i + 1) * WIDTH],
            Signatures::File { file, .. } => {
                read_at(file, (i * WIDTH) as u64, &mut read).ok()?;
                &read[..]
            }
        };
        let s: Signature = std::array::from_fn(|r| {
            u32::from_le_bytes(bytes[r * 4..r * 4 + 4].try_into().expect("4 bytes"))
        });
        (s != [u32::MAX; ROWS]).then_some(s)
    }

    /// Row `r` of item `i`'s signature (`u32::MAX` where [`Signatures::get`] has none).
    pub fn row(&self, i: usize, r: usize) -> u32 {
        let Signatures::Owned(b) = self else {
            return self.get(i).map_or(u32::MAX, |s| s[r]);
        };
        let at = i * WIDTH + r * 4;
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    /// The signatures in memory, read from the file first if they were left there.
    pub fn owned(&mut self) -> std::io::Result<&mut Vec<u8>> {
        if let Signatures::File { file, n } = self {
            let mut b = vec![0u8; *n * WIDTH];
            read_at(file, 0, &mut b)?;
            *self = Signatures::Owned(b);
        }
        match self {
            Signatures::Owned(b) => Ok(b),
            Signatures::File { .. } => unreachable!("read above"),
        }
    }

    /// Appends an item's signature (the signatures are read into memory first: a bank that
    /// items are added to was made owned by [`Signatures::owned`] already).
    pub fn push(&mut self, s: Option<&Signature>) -> std::io::Result<()> {
        let b = self.owned()?;
        for v in s.unwrap_or(&[u32::MAX; ROWS]) {
            b.extend_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// How many items' signatures.
    pub fn len(&self) -> usize {
        match self {
            Signatures::Owned(b) => b.len() / WIDTH,
            Signatures::File { n, .. } => *n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_when_asked_for_and_counted_at_once() {
        let a = Item::from_text("a", "one text", Default::default());
        let b = Item::from_text("b", "another text", Default::default());
        let text: Vec<u8> = [&a, &b]
            .iter()
            .map(|i| serde_json::to_string(i).unwrap() + "\n")
            .collect::<String>()
            .into_bytes();
        let strip = |mut i: Item| {
            i.signature = None;
            i
        };
        let dir = tempfile::tempdir().unwrap();
        // the lines fed in blocks that split them anywhere
        let open = |text: &[u8], n: usize| {
            let path = dir.path().join("items.jsonl");
            std::fs::write(&path, text).unwrap();
            let mut starts = LineStarts::default();
            text.chunks(7).for_each(|c| starts.feed(c));
            Records::lines(File::open(&path).unwrap(), starts, n)
        };
        let mut r = open(&text, 2).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.get(1).into_owned(), strip(b.clone()));
        let mut copy = Vec::new();
        r.write_lines(&mut copy).unwrap();
        assert_eq!(copy, text);
        assert_eq!(open(&text, 3).unwrap_err(), "2 items, bank.json says 3");
        assert_eq!(r.parsed().clone(), vec![strip(a), strip(b)]);
        // the last newline missing
        let r2 = open(&text[..text.len() - 1], 2).unwrap();
        assert_eq!(r2.get(1).id, "b");
        // an unreadable line names itself
        let r3 = open(b"{\"id\": 1}\n", 1).unwrap();
        assert!(
            r3.get(0).id.starts_with("(items.jsonl line 1:"),
            "{:?}",
            r3.get(0)
        );
    }

    #[test]
    fn signatures_round_trip_and_a_digest_has_none() {
        let s: Signature = std::array::from_fn(|r| r as u32 * 7);
        let mut all = Signatures::default();
        all.push(Some(&s)).unwrap();
        all.push(None).unwrap();
        assert_eq!((all.len(), all.get(0), all.get(1)), (2, Some(s), None));
        // and read from their file
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signatures.bin");
        std::fs::write(&path, all.owned().unwrap()).unwrap();
        let mut from_file = Signatures::File {
            file: File::open(&path).unwrap(),
            n: 2,
        };
        assert_eq!(from_file.get(0), Some(s));
        assert_eq!(
            (from_file.len(), from_file.get(1), from_file.row(0, 3)),
            (2, None, 21)
        );
        from_file.push(Some(&s)).unwrap();
        assert_eq!((from_file.len(), from_file.get(2)), (3, Some(s)));
    }
}
