//! A bank: confirmed items with their exact digest and MinHash signature, saved as a folder
//! (`bank.json`: format, name, item count, content hash, thresholds; `items.jsonl`: one item
//! per line) and queried through in-memory indexes built at load time.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::minhash::{self, Signature, ANCHORS, BANDS, ROWS};
use crate::normalize::normalize;

/// The bank format this crate writes and reads; a newer one is refused.
pub const FORMAT: u32 = 1;

/// What can go wrong with a bank.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not what a bank holds.
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// Written by a newer triage.
    #[error("{path}: bank format {found}, newer than the {FORMAT} this triage reads")]
    Newer { path: PathBuf, found: u32 },
    /// The items do not hash to what the bank says (truncated or edited).
    #[error(
        "{path}: content hash {found} differs from {expected} in bank.json (damaged or edited)"
    )]
    Damaged {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// One confirmed item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// The item's id, unique in its bank.
    pub id: String,
    /// SHA-256 (hex) of the normalised text.
    pub digest: String,
    /// The MinHash signature (absent for an item imported as a digest only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Vec<u32>>,
    /// Source, entity, ideology, date, notes: whatever the team keeps.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

impl Item {
    /// An item from its text.
    pub fn from_text(
        id: &str,
        text: &str,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Item {
        let n = normalize(text);
        let sig = minhash::signature(minhash::shingles(&n.text).into_iter().map(|s| s.0));
        Item {
            id: id.to_owned(),
            digest: digest(text),
            signature: sig.map(|s| s.to_vec()),
            meta,
        }
    }
}

/// SHA-256 (hex) of a text's normalised form: what partners share without sharing the text.
pub fn digest(text: &str) -> String {
    hex(&Sha256::digest(normalize(text).text.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How an item was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The same normalised text.
    Exact,
    /// A near duplicate of the whole text, or the item contained in it.
    Near,
}

/// One match of a text against a bank item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The bank's name.
    pub bank: String,
    /// The item's id.
    pub item: String,
    /// How it matched.
    pub method: Method,
    /// 1 for exact; the estimated Jaccard similarity, or the share of the item found in the
    /// text, for near.
    pub similarity: f32,
    /// The text's characters that hold the item `[start, end)`.
    pub start: usize,
    /// See `start`.
    pub end: usize,
}

/// `bank.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BankInfo {
    /// Bank format.
    pub format: u32,
    /// The bank's name.
    pub name: String,
    /// Items held.
    pub items: u64,
    /// SHA-256 of `items.jsonl`.
    pub content_sha256: String,
    /// Incremented by every change.
    pub version: u64,
    /// Least estimated Jaccard similarity of a near match of the whole text.
    pub near_threshold: f32,
    /// Least share of an item's signature found in a longer text for a contained match.
    pub contained_threshold: f32,
}

/// A bank, loaded and indexed.
#[derive(Debug)]
pub struct Bank {
    info: BankInfo,
    items: Vec<Item>,
    signatures: Vec<Option<Signature>>,
    exact: HashMap<String, u32>,
    bands: Vec<(u64, u32)>,
    anchors: Vec<(u64, u32)>,
}

impl Bank {
    /// An empty bank.
    pub fn new(name: &str) -> Bank {
        Bank::from_parts(
            BankInfo {
                format: FORMAT,
                name: name.to_owned(),
                items: 0,
                content_sha256: String::new(),
                version: 0,
                near_threshold: 0.5,
                contained_threshold: 0.6,
            },
            Vec::new(),
        )
    }

    fn from_parts(info: BankInfo, items: Vec<Item>) -> Bank {
        let mut b = Bank {
            info,
            items: Vec::new(),
            signatures: Vec::new(),
            exact: HashMap::new(),
            bands: Vec::new(),
            anchors: Vec::new(),
        };
        for item in items {
            b.push(item);
        }
        b.bands.sort_unstable();
        b.anchors.sort_unstable();
        b
    }

    fn push(&mut self, item: Item) {
        let i = self.items.len() as u32;
        let sig: Option<Signature> = item.signature.as_deref().and_then(|s| s.try_into().ok());
        if let Some(s) = &sig {
            for band in 0..BANDS {
                self.bands.push((minhash::band_key(s, band), i));
            }
            for (row, v) in s.iter().enumerate().take(ANCHORS) {
                self.anchors.push((minhash::anchor_key(row, *v), i));
            }
        }
        self.exact.entry(item.digest.clone()).or_insert(i);
        self.signatures.push(sig);
        self.items.push(item);
    }

    /// Adds items (an id already held is replaced by nothing: the first stays). Returns how
    /// many were new.
    pub fn add(&mut self, items: impl IntoIterator<Item = Item>) -> usize {
        let known: std::collections::HashSet<String> =
            self.items.iter().map(|i| i.id.clone()).collect();
        let before = self.items.len();
        for item in items {
            if !known.contains(&item.id) && !self.items[before..].iter().any(|x| x.id == item.id) {
                self.push(item);
            }
        }
        self.bands.sort_unstable();
        self.anchors.sort_unstable();
        self.info.version += 1;
        self.items.len() - before
    }

    /// The bank's description.
    pub fn info(&self) -> &BankInfo {
        &self.info
    }

    /// The items, in the order they were added.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// Sets the near and contained thresholds.
    pub fn set_thresholds(&mut self, near: f32, contained: f32) {
        self.info.near_threshold = near;
        self.info.contained_threshold = contained;
    }

    /// Writes the bank to folder `dir` (created if missing).
    pub fn save(&mut self, dir: &Path) -> Result<(), BankError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| BankError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let items_path = dir.join("items.jsonl");
        let mut body = Vec::new();
        for item in &self.items {
            serde_json::to_writer(&mut body, item).expect("items serialise");
            body.push(b'\n');
        }
        std::fs::write(&items_path, &body).map_err(io(&items_path))?;
        self.info.items = self.items.len() as u64;
        self.info.content_sha256 = hex(&Sha256::digest(&body));
        let info_path = dir.join("bank.json");
        let mut f = std::fs::File::create(&info_path).map_err(io(&info_path))?;
        serde_json::to_writer_pretty(&mut f, &self.info).expect("info serialises");
        f.write_all(b"\n").map_err(io(&info_path))?;
        Ok(())
    }

    /// Reads the bank in folder `dir`, checking its format and content hash.
    pub fn load(dir: &Path) -> Result<Bank, BankError> {
        let info_path = dir.join("bank.json");
        let raw = std::fs::read(&info_path).map_err(|source| BankError::Io {
            path: info_path.clone(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| BankError::Invalid {
                path: info_path.clone(),
                line: e.line() as u64,
                message: e.to_string(),
            })?;
        let found = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
        if found > FORMAT {
            return Err(BankError::Newer {
                path: info_path,
                found,
            });
        }
        let info: BankInfo = serde_json::from_value(value).map_err(|e| BankError::Invalid {
            path: info_path.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        let items_path = dir.join("items.jsonl");
        let body = std::fs::read(&items_path).map_err(|source| BankError::Io {
            path: items_path.clone(),
            source,
        })?;
        let hash = hex(&Sha256::digest(&body));
        if hash != info.content_sha256 {
            return Err(BankError::Damaged {
                path: items_path,
                expected: info.content_sha256,
                found: hash,
            });
        }
        let mut items = Vec::with_capacity(info.items as usize);
        for (n, line) in body.lines().enumerate() {
            let line = line.map_err(|source| BankError::Io {
                path: items_path.clone(),
                source,
            })?;
            let item: Item = serde_json::from_str(&line).map_err(|e| BankError::Invalid {
                path: items_path.clone(),
                line: n as u64 + 1,
                message: e.to_string(),
            })?;
            if item.signature.as_ref().is_some_and(|s| s.len() != ROWS) {
                return Err(BankError::Invalid {
                    path: items_path.clone(),
                    line: n as u64 + 1,
                    message: format!("a signature of {ROWS} rows expected"),
                });
            }
            items.push(item);
        }
        Ok(Bank::from_parts(info, items))
    }

    fn lookup(index: &[(u64, u32)], key: u64) -> impl Iterator<Item = u32> + '_ {
        let from = index.partition_point(|e| e.0 < key);
        index[from..]
            .iter()
            .take_while(move |e| e.0 == key)
            .map(|e| e.1)
    }

    /// The items `text` matches, best first (exact, then by similarity), at most one per item.
    pub fn find(&self, text: &str) -> Vec<Match> {
        let n = normalize(text);
        let chars = text.chars().count();
        let mut best: HashMap<u32, Match> = HashMap::new();
        let mut offer = |i: u32, m: Match| {
            let e = best.entry(i).or_insert_with(|| m.clone());
            if (m.method == Method::Exact && e.method != Method::Exact)
                || (m.method == e.method && m.similarity > e.similarity)
            {
                *e = m;
            }
        };
        let mk = |i: u32, method, similarity, (start, end)| Match {
            bank: self.info.name.clone(),
            item: self.items[i as usize].id.clone(),
            method,
            similarity,
            start,
            end,
        };
        let d = hex(&Sha256::digest(n.text.as_bytes()));
        if let Some(&i) = self.exact.get(&d) {
            offer(i, mk(i, Method::Exact, 1.0, (0, chars)));
        }
        let shingles = minhash::shingles(&n.text);
        let Some(sig) = minhash::signature(shingles.iter().map(|s| s.0)) else {
            return finish(best);
        };
        // whole-text near duplicates: candidates share a band
        let mut candidates: Vec<u32> = (0..BANDS)
            .flat_map(|b| Bank::lookup(&self.bands, minhash::band_key(&sig, b)))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        for i in candidates {
            if let Some(s) = &self.signatures[i as usize] {
                let j = minhash::jaccard(&sig, s);
                if j >= self.info.near_threshold {
                    offer(i, mk(i, Method::Near, j, (0, chars)));
                }
            }
        }
        // items contained in the text: their anchor rows' minima are among the text's values
        let mut hits: HashMap<u32, usize> = HashMap::new();
        for row in 0..ANCHORS {
            let mut seen = std::collections::HashSet::new();
            for (h, _, _) in &shingles {
                let v = minhash::permute(row, *h);
                for i in Bank::lookup(&self.anchors, minhash::anchor_key(row, v)) {
                    if seen.insert(i) {
                        *hits.entry(i).or_default() += 1;
                    }
                }
            }
        }
        for (i, count) in hits {
            if (count as f32) < ANCHORS as f32 * self.info.contained_threshold * 0.75 {
                continue;
            }
            let Some(s) = &self.signatures[i as usize] else {
                continue;
            };
            // every row: is the item's minimum realised by one of the text's shingles, and
            // where (a shingle the item shares with the rest of the text, such as " the ",
            // occurs more than once: the occurrence nearest the others counts)
            let occurrences: Vec<Vec<(usize, usize)>> = s
                .iter()
                .enumerate()
                .map(|(row, want)| {
                    shingles
                        .iter()
                        .filter(|(h, _, _)| minhash::permute(row, *h) == *want)
                        .map(|&(_, a, b)| (a, b))
                        .collect()
                })
                .collect();
            let found = occurrences.iter().filter(|o| !o.is_empty()).count();
            let mut unique: Vec<usize> = occurrences
                .iter()
                .filter(|o| o.len() == 1)
                .map(|o| o[0].0)
                .collect();
            if unique.is_empty() {
                unique = occurrences
                    .iter()
                    .filter_map(|o| o.first())
                    .map(|o| o.0)
                    .collect();
            }
            unique.sort_unstable();
            let centre = unique.get(unique.len() / 2).copied().unwrap_or(0);
            let (mut lo, mut hi) = (usize::MAX, 0);
            for o in &occurrences {
                if let Some(&(a, b)) = o.iter().min_by_key(|(a, _)| a.abs_diff(centre)) {
                    lo = lo.min(a);
                    hi = hi.max(b);
                }
            }
            let share = found as f32 / ROWS as f32;
            if share >= self.info.contained_threshold {
                offer(i, mk(i, Method::Near, share, n.input_span(lo, hi)));
            }
        }
        finish(best)
    }
}

fn finish(best: HashMap<u32, Match>) -> Vec<Match> {
    let mut v: Vec<Match> = best.into_values().collect();
    v.sort_by(|a, b| {
        (b.method == Method::Exact)
            .cmp(&(a.method == Method::Exact))
            .then(b.similarity.total_cmp(&a.similarity))
            .then(a.item.cmp(&b.item))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEMS: [(&str, &str); 3] = [
        ("claim-1", "The soldiers of the caliphate attacked the apostate checkpoint near the river and killed twelve of them, praise be to God."),
        ("call-2", "Brothers, the time has come: leave your homes, pick up your weapons and join the ranks of the mujahideen on the front."),
        ("ar-3", "انضموا إلى صفوف المجاهدين واقتلوا أعداء الله أينما وجدتموهم ولا تخافوا في الله لومة لائم."),
    ];

    fn bank() -> Bank {
        let mut b = Bank::new("test");
        b.add(
            ITEMS
                .iter()
                .map(|(id, t)| Item::from_text(id, t, Default::default())),
        );
        b
    }

    fn top(b: &Bank, text: &str) -> Option<(String, Method)> {
        b.find(text).first().map(|m| (m.item.clone(), m.method))
    }

    #[test]
    fn edited_reuploads_match_their_item() {
        let b = bank();
        let t = ITEMS[1].1;
        assert_eq!(top(&b, t), Some(("call-2".into(), Method::Exact)));
        assert_eq!(
            top(&b, &t.to_uppercase()),
            Some(("call-2".into(), Method::Exact))
        );
        let obfuscated = t
            .replace('o', "0")
            .replace('a', "\u{0430}")
            .replace(' ', " \u{200b}");
        assert_eq!(top(&b, &obfuscated).map(|x| x.0), Some("call-2".into()));
        let cut: String = t.chars().take(t.chars().count() * 8 / 10).collect();
        let m = &b.find(&cut)[0];
        assert_eq!((m.item.as_str(), m.method), ("call-2", Method::Near));
        let linked = format!("{t}\nhttps://t.me/channel #jihad #news");
        assert_eq!(top(&b, &linked), Some(("call-2".into(), Method::Exact)));
        let ar = format!("{} https://x.y", ITEMS[2].1.replace(' ', "  "));
        assert_eq!(top(&b, &ar).map(|x| x.0), Some("ar-3".into()));
    }

    #[test]
    fn an_item_inside_a_longer_post_is_found_with_its_span() {
        let b = bank();
        let before = "Look what they posted again on the channel yesterday evening, everyone is sharing it: ";
        let after =
            " Report this account to the platform please, it keeps coming back under new names.";
        let post = format!("{before}{}{after}", ITEMS[0].1);
        let m = b
            .find(&post)
            .into_iter()
            .find(|m| m.item == "claim-1")
            .expect("found");
        assert_eq!(m.method, Method::Near);
        let s = before.chars().count();
        let e = s + ITEMS[0].1.chars().count();
        assert!(m.start >= s && m.start < s + 15, "{m:?} vs {s}..{e}");
        assert!(m.end <= e && m.end > e - 15, "{m:?} vs {s}..{e}");
    }

    #[test]
    fn unrelated_text_matches_nothing() {
        let b = bank();
        for t in [
            "Police arrested two suspects after the attack on the checkpoint near the river, officials said.",
            "The weather will be sunny tomorrow with a light breeze from the west.",
            "اعتقلت الشرطة مشتبهين اثنين بعد التفجير في السوق",
            "",
        ] {
            assert!(b.find(t).is_empty(), "{t}: {:?}", b.find(t));
        }
    }

    #[test]
    fn a_saved_bank_loads_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = bank();
        b.save(dir.path()).unwrap();
        let again = Bank::load(dir.path()).unwrap();
        assert_eq!(again.items(), b.items());
        assert_eq!(again.info().items, 3);
        assert_eq!(top(&again, ITEMS[0].1).map(|x| x.0), Some("claim-1".into()));
        // truncated items
        let items = dir.path().join("items.jsonl");
        let body = std::fs::read(&items).unwrap();
        std::fs::write(&items, &body[..body.len() / 2]).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("items.jsonl") && e.contains("content hash"),
            "{e}"
        );
        std::fs::write(&items, &body).unwrap();
        // a newer format
        let info = dir.path().join("bank.json");
        let text = std::fs::read_to_string(&info).unwrap();
        std::fs::write(&info, text.replace("\"format\": 1", "\"format\": 9")).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format 9"), "{e}");
        // missing
        let e = Bank::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bank.json"), "{e}");
    }

    #[test]
    fn digests_alone_match_exactly() {
        let mut b = Bank::new("partner");
        b.add([Item {
            id: "p1".into(),
            digest: digest(ITEMS[1].1),
            signature: None,
            meta: Default::default(),
        }]);
        assert_eq!(
            top(&b, &ITEMS[1].1.to_lowercase()),
            Some(("p1".into(), Method::Exact))
        );
        assert!(b.find(ITEMS[0].1).is_empty());
    }
}
