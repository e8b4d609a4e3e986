//! A bank's look-up tables, derived from its items' digests and signatures: built once when
//! items are added, saved as `index.bin` (bank format 2), so that loading a bank reads them
//! instead of sorting a million entries per table.
//!
//! `index.bin` (little-endian): the magic `TRIAGEIX`, the table version (u32) and the item count
//! (u64); then each table as an entry count (u64) and its entries, sorted: the exact table
//! (32-byte digest, u32 item), the band table (u32 key, u32 item), and the anchor table of each
//! of the `ROWS` signature rows (u32 minimum, u32 item).

use std::io::{Read, Write};

use rayon::prelude::*;

use crate::bank::{unhex, Item, MIN_CONTAINED_SHINGLES};
use crate::minhash::{self, Signature, ANCHORS, BANDS, ROWS};
use crate::records::Signatures;

const MAGIC: &[u8; 8] = b"TRIAGEIX";
const VERSION: u32 = 1;

/// The look-up tables of a bank's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// (SHA-256 of the normalised text, item), sorted; a digest held by several items names
    /// the first.
    pub exact: Vec<([u8; 32], u32)>,
    /// (band key's high 32 bits, item), sorted: 8 bytes an entry (a shorter key only adds
    /// candidates, each checked by its similarity).
    pub bands: Vec<(u32, u32)>,
    /// Per signature row: (an item's minimum in that row, item), sorted. Every item of at least
    /// [`MIN_CONTAINED_SHINGLES`] shingles is in [`ANCHORS`] rows: those where its minimum is the
    /// least common among the bank's items. (A common shingle such as " the " is the minimum of
    /// a large share of a bank's items in some rows; anchoring items there made every look-up
    /// visit those items.)
    pub anchors: Vec<Row>,
}

/// Bits of the value that pick an anchor row's bucket.
const BUCKET_BITS: u32 = 12;

/// One signature row's anchors, sorted, with the start of each bucket of values: a look-up
/// reads one bucket, not a binary search over the whole row (most of a look-up's time, as
/// every one of the text's shingles is asked of every row).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Row {
    /// (an item's minimum in the row, item), sorted.
    pub entries: Vec<(u32, u32)>,
    /// A value's bucket is `value >> shift`: at most `2^BUCKET_BITS` buckets up to the largest.
    shift: u32,
    /// Where each bucket starts in `entries`, and (last) their end.
    starts: Vec<u32>,
}

impl Row {
    fn new(entries: Vec<(u32, u32)>) -> Row {
        let max = entries.last().map_or(0, |e| e.0);
        let shift = (32 - max.leading_zeros()).saturating_sub(BUCKET_BITS);
        let buckets = (max >> shift) as usize + 1;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut at = 0;
        for b in 0..buckets {
            while at < entries.len() && ((entries[at].0 >> shift) as usize) < b {
                at += 1;
            }
            starts.push(at as u32);
        }
        starts.push(entries.len() as u32);
        Row {
            entries,
            shift,
            starts,
        }
    }

    /// The items whose minimum in this row is `key`.
    pub fn lookup(&self, key: u32) -> impl Iterator<Item = u32> + '_ {
        let b = (key >> self.shift) as usize;
        let bucket = match self.starts.get(b..b + 2) {
            Some(&[from, to]) => &self.entries[from as usize..to as usize],
            _ => &[],
        };
        lookup(bucket, key)
    }
}

impl Default for Index {
    fn default() -> Self {
        Index {
            exact: Vec::new(),
            bands: Vec::new(),
            anchors: vec![Row::default(); ROWS],
        }
    }
}

/// The high 32 bits of band `band`'s key.
pub(crate) fn band32(sig: &Signature, band: usize) -> u32 {
    (minhash::band_key(sig, band) >> 32) as u32
}

/// The items of a sorted table whose key is `key`.
pub(crate) fn lookup(table: &[(u32, u32)], key: u32) -> impl Iterator<Item = u32> + '_ {
    // most keys asked of an anchor row are above its largest (minima are small)
    let from = match table.last() {
        Some(last) if last.0 >= key => table.partition_point(|e| e.0 < key),
        _ => table.len(),
    };
    table[from..]
        .iter()
        .take_while(move |e| e.0 == key)
        .map(|e| e.1)
}

impl Index {
    /// The tables of `items`, whose signatures are `signatures`.
    pub fn build(items: &[Item], signatures: &Signatures) -> Index {
        let ((exact, bands), anchors) = rayon::join(
            || rayon::join(|| exact_table(items), || band_table(signatures)),
            || anchor_tables(items, signatures),
        );
        Index {
            exact,
            bands,
            anchors,
        }
    }

    /// The item a digest names, if any.
    pub fn exact(&self, digest: &[u8; 32]) -> Option<u32> {
        let at = self.exact.partition_point(|e| e.0 < *digest);
        self.exact.get(at).filter(|e| e.0 == *digest).map(|e| e.1)
    }

    /// Writes the tables as `index.bin` holds them.
    pub fn write(&self, items: usize, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(items as u64).to_le_bytes())?;
        w.write_all(&(self.exact.len() as u64).to_le_bytes())?;
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in self.exact.chunks(1024) {
            buf.clear();
            for (d, i) in chunk {
                buf.extend_from_slice(d);
                buf.extend_from_slice(&i.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        for table in std::iter::once(&self.bands).chain(self.anchors.iter().map(|r| &r.entries)) {
            w.write_all(&(table.len() as u64).to_le_bytes())?;
            for chunk in table.chunks(4096) {
                buf.clear();
                for (k, i) in chunk {
                    buf.extend_from_slice(&k.to_le_bytes());
                    buf.extend_from_slice(&i.to_le_bytes());
                }
                w.write_all(&buf)?;
            }
        }
        Ok(())
    }

    /// Reads `index.bin` of a bank of `items` items; an error says what is wrong.
    pub fn read(r: &mut dyn Read, items: usize) -> Result<Index, String> {
        let io = |e: std::io::Error| format!("cut short or unreadable ({e})");
        let mut head = [0u8; 20];
        r.read_exact(&mut head).map_err(io)?;
        if &head[..8] != MAGIC {
            return Err("not a bank index (no TRIAGEIX header)".into());
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!("index version {version}, not {VERSION}"));
        }
        let n = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
        if n != items as u64 {
            return Err(format!("made for {n} items, the bank holds {items}"));
        }
        let count = |r: &mut dyn Read, most: usize| -> Result<usize, String> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).map_err(io)?;
            let c = u64::from_le_bytes(b);
            if c > most as u64 {
                return Err(format!("a table of {c} entries, more than {most}"));
            }
            Ok(c as usize)
        };
        // entries decoded a block at a time; every item index checked, every table's order too
        let mut block = vec![0u8; 36 << 12];
        let mut left = count(r, items)?;
        let mut exact = Vec::with_capacity(left);
        while left > 0 {
            let take = left.min(1 << 12);
            let bytes = &mut block[..take * 36];
            r.read_exact(bytes).map_err(io)?;
            for e in bytes.chunks_exact(36) {
                let d: [u8; 32] = e[..32].try_into().expect("32 bytes");
                exact.push((d, u32::from_le_bytes(e[32..].try_into().expect("4 bytes"))));
            }
            left -= take;
        }
        let mut pairs = |r: &mut dyn Read, most: usize| -> Result<Vec<(u32, u32)>, String> {
            let c = count(r, most)?;
            let mut v = Vec::with_capacity(c);
            let mut left = c;
            while left > 0 {
                let take = left.min(block.len() / 8);
                let bytes = &mut block[..take * 8];
                r.read_exact(bytes).map_err(io)?;
                v.extend(bytes.chunks_exact(8).map(|e| {
                    (
                        u32::from_le_bytes(e[..4].try_into().expect("4 bytes")),
                        u32::from_le_bytes(e[4..].try_into().expect("4 bytes")),
                    )
                }));
                left -= take;
            }
            Ok(v)
        };
        let bands = pairs(r, items * BANDS)?;
        let anchors = (0..ROWS)
            .map(|_| pairs(r, items).map(Row::new))
            .collect::<Result<Vec<_>, _>>()?;
        if r.read(&mut [0u8; 1]).map_err(io)? != 0 {
            return Err("bytes after the last table".into());
        }
        let index = Index {
            exact,
            bands,
            anchors,
        };
        index.check(items)?;
        Ok(index)
    }

    /// Every entry names an item of the bank, and every table is sorted.
    fn check(&self, items: usize) -> Result<(), String> {
        let n = items as u32;
        let sorted_pairs = |name: &str, t: &[(u32, u32)]| -> Result<(), String> {
            if t.iter().any(|e| e.1 >= n) {
                return Err(format!("the {name} table names an item past the {items}"));
            }
            if t.windows(2).any(|w| w[0] > w[1]) {
                return Err(format!("the {name} table is not sorted"));
            }
            Ok(())
        };
        if self.exact.iter().any(|e| e.1 >= n) || self.exact.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("the exact table is not sorted or names an item past the last".into());
        }
        sorted_pairs("band", &self.bands)?;
        for (row, t) in self.anchors.iter().enumerate() {
            sorted_pairs(&format!("anchor row {row}"), &t.entries)?;
        }
        Ok(())
    }
}

fn exact_table(items: &[Item]) -> Vec<([u8; 32], u32)> {
    let mut v: Vec<([u8; 32], u32)> = items
        .par_iter()
        .enumerate()
        .filter_map(|(i, item)| unhex(&item.digest).map(|d| (d, i as u32)))
        .collect();
    v.par_sort_unstable();
    // sorted by (digest, item): the first of each digest is its earliest item
    v.dedup_by_key(|e| e.0);
    v
}

fn band_table(signatures: &Signatures) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = (0..signatures.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            signatures
                .get(i)
                .into_iter()
                .flat_map(move |s| (0..BANDS).map(move |b| (band32(&s, b), i as u32)))
        })
        .collect();
    v.par_sort_unstable();
    v
}

/// Each eligible item in the [`ANCHORS`] rows where the fewest other items share its minimum
/// (ties: the lower row).
fn anchor_tables(items: &[Item], signatures: &Signatures) -> Vec<Row> {
    let eligible: Vec<u32> = items
        .par_iter()
        .enumerate()
        .filter(|(i, item)| item.shingles >= MIN_CONTAINED_SHINGLES && signatures.get(*i).is_some())
        .map(|(i, _)| i as u32)
        .collect();
    // per eligible item: its rarest rows so far, as (items sharing the minimum, row), least first
    let mut rarest: Vec<[(u32, u8); ANCHORS]> =
        vec![[(u32::MAX, u8::MAX); ANCHORS]; eligible.len()];
    let rows: Vec<usize> = (0..ROWS).collect();
    for rows in rows.chunks(8) {
        let shared: Vec<Vec<u32>> = rows
            .par_iter()
            .map(|&r| {
                let mut v: Vec<(u32, u32)> = eligible
                    .iter()
                    .enumerate()
                    .map(|(k, i)| (signatures.row(*i as usize, r), k as u32))
                    .collect();
                v.sort_unstable();
                let mut shared = vec![0u32; eligible.len()];
                for run in v.chunk_by(|a, b| a.0 == b.0) {
                    for e in run {
                        shared[e.1 as usize] = run.len() as u32;
                    }
                }
                shared
            })
            .collect();
        rarest.par_iter_mut().enumerate().for_each(|(k, best)| {
            for (&r, shared) in rows.iter().zip(&shared) {
                let candidate = (shared[k], r as u8);
                if candidate < best[ANCHORS - 1] {
                    let at = best.partition_point(|x| *x < candidate);
                    best.copy_within(at..ANCHORS - 1, at + 1);
                    best[at] = candidate;
                }
            }
        });
    }
    let mut anchors = vec![Vec::new(); ROWS];
    for (i, best) in eligible.iter().zip(&rarest) {
        for &(_, r) in best {
            anchors[r as usize].push((signatures.row(*i as usize, r as usize), *i));
        }
    }
    anchors
        .into_par_iter()
        .map(|mut a| {
            a.sort_unstable();
            Row::new(a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Item> {
        // a shared stock phrase, so that some rows' minima are common
        (0..300)
            .map(|i| {
                let text = format!(
                    "everyone has the right to life, liberty and security of person; item {i} \
                     says {} and {}",
                    i * 7919 % 1000,
                    ["red", "green", "blue", "amber"][i % 4]
                );
                Item::from_text(&format!("i{i}"), &text, Default::default())
            })
            .collect()
    }

    fn signatures(items: &[Item]) -> Signatures {
        let mut s = Signatures::default();
        items
            .iter()
            .for_each(|i| s.push(i.signature.as_ref()).unwrap());
        s
    }

    #[test]
    fn every_eligible_item_is_anchored_in_its_rarest_rows() {
        let items = items();
        let index = Index::build(&items, &signatures(&items));
        for (i, item) in items.iter().enumerate() {
            let s = item.signature.unwrap();
            let rows: Vec<usize> = (0..ROWS)
                .filter(|&r| index.anchors[r].entries.contains(&(s[r], i as u32)))
                .collect();
            assert_eq!(rows.len(), ANCHORS, "item {i}");
            // no row left out is shared by fewer items than a row chosen
            let shared = |r: usize| {
                items
                    .iter()
                    .filter(|o| o.signature.unwrap()[r] == s[r])
                    .count()
            };
            let worst = rows.iter().map(|&r| shared(r)).max().unwrap();
            for r in (0..ROWS).filter(|r| !rows.contains(r)) {
                assert!(
                    shared(r) >= worst,
                    "item {i}: row {r} is rarer than a chosen one"
                );
            }
        }
    }

    #[test]
    fn a_row_finds_every_entry_by_its_bucket() {
        // values spread over the whole range and crowded near 0, as minima are
        let mut entries: Vec<(u32, u32)> = (0..5000u32)
            .map(|i| (minhash::permute(3, i as u64) >> (i % 20), i))
            .collect();
        entries.extend([(0, 9000), (0, 9001), (u32::MAX, 9002)]);
        entries.sort_unstable();
        for table in [entries.clone(), entries[..3].to_vec(), Vec::new()] {
            let row = Row::new(table.clone());
            for key in table
                .iter()
                .map(|e| e.0)
                .chain([1, 2, 1 << 20, u32::MAX - 1])
            {
                let want: Vec<u32> = table.iter().filter(|e| e.0 == key).map(|e| e.1).collect();
                assert_eq!(row.lookup(key).collect::<Vec<_>>(), want, "key {key}");
            }
        }
    }

    #[test]
    fn the_tables_survive_writing_and_a_damaged_file_is_refused() {
        let items = items();
        let index = Index::build(&items, &signatures(&items));
        let mut bytes = Vec::new();
        index.write(items.len(), &mut bytes).unwrap();
        assert_eq!(Index::read(&mut &bytes[..], items.len()).unwrap(), index);
        let e = Index::read(&mut &bytes[..bytes.len() - 3], items.len()).unwrap_err();
        assert!(e.contains("cut short"), "{e}");
        let e = Index::read(&mut &bytes[..], items.len() + 1).unwrap_err();
        assert!(e.contains("made for 300 items"), "{e}");
        // an item index past the last
        let mut bad = bytes.clone();
        let at = 20 + 8 + 36 * index.exact.len() + 8 + 4;
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = Index::read(&mut &bad[..], items.len()).unwrap_err();
        assert!(e.contains("band table names an item"), "{e}");
        let mut longer = bytes;
        longer.push(0);
        let e = Index::read(&mut &longer[..], items.len()).unwrap_err();
        assert!(e.contains("bytes after"), "{e}");
    }
}
