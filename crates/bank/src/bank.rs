//! A bank: confirmed items with their exact digest, MinHash signature and (optionally) the
//! encoder's embedding, saved as a folder and queried through in-memory look-up tables (read
//! from `index.bin`, or built when a format 1 bank is loaded); a loaded format 2 bank reads an
//! item's line and signature from their files when a look-up needs them.
//!
//! The folder holds `bank.json` (format, name, version, item count, the hash of every other
//! file (BLAKE3 from format 2, SHA-256 before) and the SHA-256 of them all, the model of the
//! embeddings), `items.jsonl` (id, digest, metadata: one
//! item per line, in the order they were added), `signatures.bin` (per item `ROWS` u32,
//! little-endian), when the bank was built with a model, `embeddings.bin` (per item a f32
//! scale and `dim` signed bytes: the embedding divided by the scale, rounded) and, from format
//! 2, `index.bin`: the look-up tables, sorted (module `index`), and from format 3, for a bank
//! with embeddings, `language_space.bin`: the directions of language removed from every
//! embedding it holds and is asked about (module `space`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ann::{self, quantize, unit, Ivf, Vectors};
use crate::index::{band32, lookup, Index};
use crate::minhash::{self, Signature, ANCHORS, BANDS, ROWS};
use crate::normalize::{normalize, Normalized};
use crate::records::{LineStarts, Records, Signatures};
use crate::space::LanguageSpace;

/// The bank format this crate writes and reads; a newer one is refused.
pub const FORMAT: u32 = 3;

const ITEMS: &str = "items.jsonl";
const SIGNATURES: &str = "signatures.bin";
const EMBEDDINGS: &str = "embeddings.bin";
const INDEX: &str = "semantic.ivf";
const TABLES: &str = "index.bin";
const LANGUAGE_SPACE: &str = "language_space.bin";
const REFERENCE: &str = "reference.bin";
const LEVELS: &str = "levels.bin";

/// Nearest reference texts whose mean cosine is an item's level ([`Bank::set_reference`]).
pub const REFERENCE_NEIGHBOURS: usize = 5;

/// `:line` after a file's path, or nothing where the error is about the whole file (line 0).
fn at_line(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// What can go wrong with a bank.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (not a `source`: the message already says it).
        error: std::io::Error,
    },
    /// A file is not what a bank holds.
    #[error("{path}{}: {message}", at_line(*line))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line (0: the whole file).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Written by a newer triage.
    #[error("{path}: bank format {found}, newer than the {FORMAT} this triage reads")]
    Newer {
        /// `bank.json`.
        path: PathBuf,
        /// The format it names.
        found: u32,
    },
    /// A file does not hash to what `bank.json` says (truncated or edited).
    #[error(
        "{path}: content hash {found} differs from {expected} in bank.json (damaged or edited)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What `bank.json` says.
        expected: String,
        /// What the file hashes to.
        found: String,
    },
    /// The bank's embeddings were made by another model than the one asked for.
    #[error("{path}: embeddings made by model {found}, not by {expected} (rebuild the bank with this model, or label with that one)")]
    ForeignModel {
        /// `bank.json`.
        path: PathBuf,
        /// The model in use (id and weights checksum).
        expected: String,
        /// The bank's model.
        found: String,
    },
    /// An embedding of the wrong size was added.
    #[error("item {id}: embedding of {found} values, the bank's model makes {expected}")]
    Dimension {
        /// The item.
        id: String,
        /// The bank's dimension.
        expected: usize,
        /// The item's.
        found: usize,
    },
    /// A language space of the wrong size was given to a bank.
    #[error("bank {name}: a language space of {found} values, the bank's model makes {expected}")]
    SpaceDimension {
        /// The bank.
        name: String,
        /// The bank's dimension.
        expected: usize,
        /// The space's.
        found: usize,
    },
}

/// One confirmed item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// The item's id, unique in its bank.
    pub id: String,
    /// SHA-256 (hex) of the normalised text.
    pub digest: String,
    /// Imported as a digest only (no signature, no embedding: exact matches only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub digest_only: bool,
    /// Distinct shingles of the normalised text (0 for a digest): an item of fewer than
    /// [`MIN_CONTAINED_SHINGLES`] is matched as a whole text only, not inside longer ones.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shingles: u32,
    /// The hashes of the normalised text's first and last shingle, folded to 32 bits
    /// ([`minhash::fold`]), and its length in characters: where they occur around an item
    /// found inside a longer text, its span is put on them, the item's own edges (the rows
    /// found alone can fall a word or two inside). Absent in items of banks built before it
    /// (their spans are the rows').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<[u32; 3]>,
    /// Source, entity, ideology, date, notes: whatever the team keeps.
    /// Kept as its JSON text (an object): a million items' metadata as maps would take
    /// hundreds of bytes each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<serde_json::value::RawValue>>,
    /// The MinHash signature (kept in `signatures.bin`).
    #[serde(skip)]
    pub signature: Option<Signature>,
    /// The encoder's embedding of the text (kept in `embeddings.bin`).
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
}

impl PartialEq for Item {
    fn eq(&self, o: &Item) -> bool {
        self.id == o.id
            && self.digest == o.digest
            && self.digest_only == o.digest_only
            && self.shingles == o.shingles
            && self.edges == o.edges
            && self.meta.as_ref().map(|m| m.get()) == o.meta.as_ref().map(|m| m.get())
            && self.signature == o.signature
            && self.embedding == o.embedding
    }
}

impl Item {
    /// An item from its text (no embedding: see [`Item::with_embedding`]).
    pub fn from_text(
        id: &str,
        text: &str,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Item {
        let n = normalize(text);
        let shingles = minhash::shingles(&n.text);
        let distinct: HashSet<u64> = shingles.iter().map(|s| s.0).collect();
        Item {
            id: id.to_owned(),
            digest: hex(&Sha256::digest(n.text.as_bytes())),
            digest_only: false,
            shingles: distinct.len() as u32,
            edges: shingles.first().zip(shingles.last()).map(|(a, b)| {
                let chars = u32::try_from(b.2).unwrap_or(u32::MAX);
                [minhash::fold(a.0), minhash::fold(b.0), chars]
            }),
            meta: raw(meta),
            signature: minhash::signature(shingles.into_iter().map(|s| s.0)),
            embedding: None,
        }
    }

    /// An item known by its digest alone (a partner's list): it matches exactly or not at all.
    /// `digest` must be 64 hexadecimal digits (case is folded).
    pub fn from_digest(
        id: &str,
        digest: &str,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Item, String> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{digest:?} is not a SHA-256 digest (64 hexadecimal digits)"
            ));
        }
        Ok(Item {
            id: id.to_owned(),
            digest: digest.to_ascii_lowercase(),
            digest_only: true,
            shingles: 0,
            edges: None,
            meta: raw(meta),
            signature: None,
            embedding: None,
        })
    }

    /// The item with its text's embedding.
    pub fn with_embedding(mut self, embedding: Vec<f32>) -> Item {
        self.embedding = Some(embedding);
        self
    }
}

/// Least distinct shingles of an item found inside a longer text: a shorter one (about 60
/// characters) is mostly a stock phrase ("everyone has the right to ...") that longer texts
/// hold by chance (reports/matching/).
pub const MIN_CONTAINED_SHINGLES: u32 = 60;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn raw(
    meta: serde_json::Map<String, serde_json::Value>,
) -> Option<Box<serde_json::value::RawValue>> {
    (!meta.is_empty()).then(|| serde_json::value::to_raw_value(&meta).expect("a map serialises"))
}

/// SHA-256 (hex) of a text's normalised form: what partners share without sharing the text.
pub fn digest(text: &str) -> String {
    hex(&Sha256::digest(normalize(text).text.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// How an item was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The same normalised text.
    Exact,
    /// A near duplicate of the whole text, or the item contained in it.
    Near,
    /// Close in the encoder's embedding space (a translation, a paraphrase).
    Semantic,
}

impl Method {
    /// The method's name as written (`exact`, `near`, `semantic`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::Near => "near",
            Method::Semantic => "semantic",
        }
    }
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
    /// 1 for exact; for near, the estimated Jaccard similarity of the whole text or the share
    /// of the item's signature found in the text; for semantic, the cosine similarity.
    pub similarity: f32,
    /// The text's characters that hold the item `[start, end)`.
    pub start: usize,
    /// See `start`.
    pub end: usize,
}

/// The least similarities of a match (`[banks]` in `workspace.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Estimated Jaccard similarity of the whole text's shingles with the item's.
    #[serde(default = "default_near")]
    pub near: f32,
    /// Share of the item's signature rows found in a longer text.
    #[serde(default = "default_contained")]
    pub contained: f32,
    /// Cosine similarity of the text's (or a window's) embedding with the item's.
    #[serde(default = "default_semantic")]
    pub semantic: f32,
    /// Least margin of a semantic match: its cosine less the mean cosine of the text's next
    /// [`MARGIN_NEIGHBOURS`] nearest items (missing neighbours count as `semantic`). A
    /// translation stands out from the bank's other items; a text on the same topic does not.
    #[serde(default = "default_margin")]
    pub semantic_margin: f32,
    /// Least lift of a semantic match over its item's level, where the bank has a reference
    /// ([`Bank::set_reference`]): the margin plus the cosine less the item's level, the mean
    /// cosine of the item with its [`REFERENCE_NEIGHBOURS`] nearest texts of ordinary
    /// language. An item that resembles much ordinary text is near many texts it is not a copy
    /// of, and needs a closer match (as CSLS discounts hubs in cross-lingual retrieval:
    /// Conneau et al., "Word Translation Without Parallel Data", ICLR 2018).
    #[serde(default = "default_lift")]
    pub semantic_lift: f32,
}

/// Candidates of a semantic scan between a vector's prefetch and its use.
const PREFETCH_AHEAD: usize = 16;

/// Neighbours whose mean cosine a semantic match must exceed by `semantic_margin`.
pub const MARGIN_NEIGHBOURS: usize = 4;

fn default_near() -> f32 {
    Thresholds::default().near
}
fn default_contained() -> f32 {
    Thresholds::default().contained
}
fn default_semantic() -> f32 {
    Thresholds::default().semantic
}
fn default_margin() -> f32 {
    Thresholds::default().semantic_margin
}
fn default_lift() -> f32 {
    Thresholds::default().semantic_lift
}

impl Default for Thresholds {
    /// Chosen on the dev split of `cargo run --release -p triage-learn --example matching`
    /// (reports/matching/README.md: data, sweeps, and the test figures), for a bank with a
    /// language space and items' levels (as `triage bank build` makes, and `triage label`
    /// gives an older bank at load). For a bank without levels the dev split chose
    /// `semantic` 0.92 and `semantic_margin` 0.04: a floor of 0.8 alone matches too much.
    fn default() -> Self {
        Thresholds {
            near: 0.35,
            contained: 0.6,
            semantic: 0.8,
            semantic_margin: 0.04,
            semantic_lift: 0.115,
        }
    }
}

/// The model that made a bank's embeddings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingModel {
    /// The model's id.
    pub model: String,
    /// SHA-256 of its weights.
    pub weights_sha256: String,
    /// Values per embedding.
    pub dim: usize,
}

impl EmbeddingModel {
    fn describe(&self) -> String {
        format!("{} (weights {})", self.model, short(&self.weights_sha256))
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// `bank.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankInfo {
    /// Bank format.
    pub format: u32,
    /// The bank's name.
    pub name: String,
    /// Incremented by every change.
    pub version: u64,
    /// Items held.
    pub items: u64,
    /// Items held as a digest only.
    #[serde(default)]
    pub digest_only: u64,
    /// SHA-256 of the other files' hashes, in the order of `files`.
    pub content_sha256: String,
    /// The hash of each file of the bank, by `file_hash`.
    pub files: BTreeMap<String, String>,
    /// The function of `files`' hashes: BLAKE3 from format 2 (a bank is hashed whenever it
    /// is loaded, and a million items' files took SHA-256 most of a load), SHA-256 before.
    #[serde(default)]
    pub file_hash: FileHash,
    /// The model of the embeddings (none: the bank matches exactly and near only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<EmbeddingModel>,
    /// Directions of language removed from the embeddings (`language_space.bin`, format 3);
    /// none: the encoder's embeddings as they are (a bank of format 1 or 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_space: Option<usize>,
}

/// The hash function of a bank's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileHash {
    /// SHA-256 (format 1).
    #[default]
    Sha256,
    /// BLAKE3 (format 2).
    Blake3,
}

impl FileHash {
    fn hasher(self) -> FileHasher {
        match self {
            FileHash::Sha256 => FileHasher::Sha256(Sha256::new()),
            FileHash::Blake3 => FileHasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }
}

/// A file's hash being computed.
enum FileHasher {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl FileHasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            FileHasher::Sha256(h) => h.update(bytes),
            FileHasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    fn hex(self) -> String {
        match self {
            FileHasher::Sha256(h) => hex(&h.finalize()),
            FileHasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

/// A text prepared for look-up in any number of banks (normalised, shingled, signed once).
#[derive(Debug, Clone)]
pub struct Query {
    normalized: Normalized,
    chars: usize,
    digest: [u8; 32],
    shingles: Vec<(u64, usize, usize)>,
    signature: Option<Signature>,
    /// Embeddings of the text or its windows, with the span each covers, unit length.
    embeddings: Vec<(Vec<f32>, usize, usize)>,
}

impl Query {
    /// Prepares `text`.
    pub fn new(text: &str) -> Query {
        let normalized = normalize(text);
        let shingles = minhash::shingles(&normalized.text);
        Query {
            chars: text.chars().count(),
            digest: Sha256::digest(normalized.text.as_bytes()).into(),
            signature: minhash::signature(shingles.iter().map(|s| s.0)),
            shingles,
            normalized,
            embeddings: Vec::new(),
        }
    }

    /// Adds the embedding of the text's characters `[start, end)` (the whole text or one of
    /// its windows) for semantic look-up.
    pub fn add_embedding(&mut self, embedding: &[f32], start: usize, end: usize) {
        self.embeddings.push((unit(embedding), start, end));
    }

    /// The normalised text.
    pub fn normalized(&self) -> &Normalized {
        &self.normalized
    }

    /// The MinHash signature (none for a text without characters left by normalisation).
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    /// SHA-256 (hex) of the normalised text.
    pub fn digest(&self) -> String {
        hex(&self.digest)
    }

    /// SHA-256 of the normalised text.
    pub fn digest_bytes(&self) -> [u8; 32] {
        self.digest
    }
}

/// A bank, loaded and indexed.
#[derive(Debug)]
pub struct Bank {
    info: BankInfo,
    /// The items (without their signatures).
    records: Records,
    signatures: Signatures,
    /// The items' ids, made when first asked for (adding items; labelling never asks).
    ids: OnceLock<HashSet<String>>,
    /// The exact, band and anchor tables; `None` after items were added, until
    /// [`Bank::finish`].
    index: Option<Index>,
    /// Per item: scale (0 without an embedding) and `dim` bytes.
    scales: Vec<f32>,
    vectors: Vec<i8>,
    /// The semantic index of a bank of [`ann::EXHAUSTIVE_BELOW`] embedded items or more, and
    /// the item count it was built for.
    ivf: Option<(Ivf, usize)>,
    /// The directions removed from every embedding, held and asked about.
    space: Option<LanguageSpace>,
    /// Texts of ordinary language in the bank's space (scales and `dim` bytes each), against
    /// which each item's level is measured ([`Bank::set_reference`]).
    reference: Option<(Vec<f32>, Vec<i8>)>,
    /// Per item: its level (empty without a reference; 0 for an item without an embedding).
    levels: Vec<f32>,
}

impl Bank {
    /// An empty bank; `embeddings`: the model whose embeddings its items carry, if any.
    pub fn new(name: &str, embeddings: Option<EmbeddingModel>) -> Bank {
        Bank {
            info: BankInfo {
                format: FORMAT,
                name: name.to_owned(),
                version: 0,
                items: 0,
                digest_only: 0,
                content_sha256: String::new(),
                files: BTreeMap::new(),
                file_hash: FileHash::Blake3,
                embeddings,
                language_space: None,
            },
            records: Records::default(),
            signatures: Signatures::default(),
            ids: OnceLock::new(),
            index: Some(Index::default()),
            scales: Vec::new(),
            vectors: Vec::new(),
            ivf: None,
            space: None,
            reference: None,
            levels: Vec::new(),
        }
    }

    /// Compares embeddings in `space`: without its directions of language. A bank that holds
    /// embeddings already (one of format 1 or 2, made before language spaces) has them
    /// projected here, in memory, and its semantic index made again; saving it keeps them so.
    /// A bank with a space of its own keeps it (`Ok(false)`): its embeddings were made in it.
    pub fn set_language_space(&mut self, space: LanguageSpace) -> Result<bool, BankError> {
        let dim = self.dim();
        if dim == 0 || self.space.is_some() {
            return Ok(false);
        }
        if space.dim() != dim {
            return Err(BankError::SpaceDimension {
                name: self.info.name.clone(),
                expected: dim,
                found: space.dim(),
            });
        }
        // (on every core: a million embeddings)
        use rayon::prelude::*;
        self.scales
            .par_iter_mut()
            .zip(self.vectors.par_chunks_mut(dim))
            .filter(|(scale, _)| **scale != 0.0)
            .for_each(|(scale, bytes)| {
                let e: Vec<f32> = bytes.iter().map(|b| *b as f32 * *scale).collect();
                let (s, q) = quantize(&space.project(&e));
                *scale = s;
                bytes.copy_from_slice(&q);
            });
        self.info.language_space = Some(space.rank());
        self.space = Some(space);
        // a reference given before the space is compared in it too
        if let Some(reference) = self.reference() {
            self.reference = None;
            self.set_reference(&reference)?;
        }
        if self.ivf.take().is_some() {
            self.finish();
        }
        Ok(true)
    }

    /// The directions of language removed from the embeddings, if any.
    pub fn language_space(&self) -> Option<&LanguageSpace> {
        self.space.as_ref()
    }

    /// Gives the bank texts of ordinary language to measure each item's level against: the
    /// mean cosine of the item with its [`REFERENCE_NEIGHBOURS`] nearest of them (in the bank's
    /// language space, if it has one: set that first). A semantic match must then lift its
    /// margin and cosine over the item's level by [`Thresholds::semantic_lift`]. A bank with a
    /// reference of its own keeps it (`Ok(false)`), as does one without embeddings.
    pub fn set_reference(&mut self, embeddings: &[Vec<f32>]) -> Result<bool, BankError> {
        let dim = self.dim();
        if dim == 0 || self.reference.is_some() || embeddings.is_empty() {
            return Ok(false);
        }
        if let Some(e) = embeddings.iter().find(|e| e.len() != dim) {
            return Err(BankError::Dimension {
                id: "(reference)".into(),
                expected: dim,
                found: e.len(),
            });
        }
        let (mut scales, mut bytes) = (Vec::new(), Vec::new());
        for e in embeddings {
            let (s, q) = quantize(&self.in_space(&unit(e)));
            scales.push(s);
            bytes.extend(q);
        }
        self.reference = Some((scales, bytes));
        self.levels = self.measure_levels();
        Ok(true)
    }

    /// The reference's embeddings as the bank keeps them (8 bits, in its language space), to
    /// give another bank of the same model ([`Bank::set_reference`]).
    pub fn reference(&self) -> Option<Vec<Vec<f32>>> {
        let (scales, bytes) = self.reference.as_ref()?;
        Some(
            scales
                .iter()
                .zip(bytes.chunks(self.dim()))
                .map(|(s, r)| r.iter().map(|b| *b as f32 * s).collect())
                .collect(),
        )
    }

    /// Whether the bank has a reference ([`Bank::set_reference`]).
    pub fn has_reference(&self) -> bool {
        self.reference.is_some()
    }

    /// Item `i`'s level (`None` without a reference).
    pub fn level(&self, i: usize) -> Option<f32> {
        self.levels.get(i).copied()
    }

    /// Every item's level, on every core (a million items).
    fn measure_levels(&self) -> Vec<f32> {
        use rayon::prelude::*;
        let dim = self.dim();
        self.scales
            .par_iter()
            .zip(self.vectors.par_chunks(dim.max(1)))
            .map(|(&scale, bytes)| self.level_of(scale, bytes))
            .collect()
    }

    /// The level of an embedding held as `scale` and `bytes` (0 without a reference, or for
    /// an item without an embedding).
    fn level_of(&self, scale: f32, bytes: &[i8]) -> f32 {
        let Some((scales, reference)) = &self.reference else {
            return 0.0;
        };
        if scale == 0.0 {
            return 0.0;
        }
        let dim = self.dim();
        let mut cosines: Vec<f32> = scales
            .iter()
            .zip(reference.chunks(dim))
            .map(|(s, r)| ann::dot_i8(bytes, r) as f32 * s * scale)
            .collect();
        cosines.sort_unstable_by(|a, b| b.total_cmp(a));
        let k = REFERENCE_NEIGHBOURS.min(cosines.len());
        cosines[..k].iter().sum::<f32>() / k.max(1) as f32
    }

    /// An embedding as this bank compares it: without its language, if the bank has a space.
    fn in_space<'a>(&self, e: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match &self.space {
            Some(s) => std::borrow::Cow::Owned(s.project(e)),
            None => std::borrow::Cow::Borrowed(e),
        }
    }

    fn dim(&self) -> usize {
        self.info.embeddings.as_ref().map_or(0, |e| e.dim)
    }

    /// Whether the bank holds an item with this id.
    pub fn contains(&self, id: &str) -> bool {
        self.ids().contains(id)
    }

    fn ids(&self) -> &HashSet<String> {
        self.ids
            .get_or_init(|| (0..self.len()).map(|i| self.id(i)).collect())
    }

    /// How many items the bank holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the bank holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i`'s id.
    fn id(&self, i: usize) -> String {
        self.records.get(i).id.clone()
    }

    /// Adds one item. An id the bank already holds is refused (`Ok(false)`); an embedding of
    /// the wrong size is an error. The look-up tables are built again by [`Bank::finish`]
    /// (called by `save`; `find` needs it: call it after adding).
    pub fn insert(&mut self, mut item: Item) -> Result<bool, BankError> {
        // a loaded bank's items are read in whole first (not line by line for their ids)
        self.records.parsed();
        if self.ids().contains(&item.id) {
            return Ok(false);
        }
        let dim = self.dim();
        let (scale, bytes) = match item.embedding.take() {
            Some(e) if dim == 0 => {
                // a bank without a model keeps no embeddings
                drop(e);
                (0.0, Vec::new())
            }
            Some(e) if e.len() != dim => {
                return Err(BankError::Dimension {
                    id: item.id,
                    expected: dim,
                    found: e.len(),
                })
            }
            Some(e) => quantize(&self.in_space(&e)),
            None => (0.0, vec![0; dim]),
        };
        self.ids
            .get_mut()
            .expect("made above")
            .insert(item.id.clone());
        self.push(item, scale, &bytes)?;
        Ok(true)
    }

    /// Appends an item whose id is new, with its embedding's scale and bytes.
    fn push(&mut self, mut item: Item, scale: f32, bytes: &[i8]) -> Result<(), BankError> {
        // a loaded bank's signatures, left in their file, are read in first
        self.signatures
            .push(item.signature.take().as_ref())
            .map_err(|error| BankError::Io {
                path: PathBuf::from(SIGNATURES),
                error,
            })?;
        self.index = None;
        self.info.digest_only += item.digest_only as u64;
        if self.reference.is_some() {
            self.levels.push(self.level_of(scale, bytes));
        }
        self.scales.push(scale);
        self.vectors.extend_from_slice(bytes);
        let items = self.records.parsed();
        items.push(item);
        self.info.items = items.len() as u64;
        Ok(())
    }

    /// Builds the look-up tables after items were inserted.
    pub fn finish(&mut self) {
        if self.index.is_none() {
            self.index = Some(Index::build(self.records.parsed(), &self.signatures));
        }
        let n = self.len();
        let stale = self.ivf.as_ref().is_none_or(|(_, built)| *built != n);
        if stale {
            let embedded = self.scales.iter().filter(|s| **s != 0.0).count();
            self.ivf = (embedded >= ann::EXHAUSTIVE_BELOW).then(|| (Ivf::build(self.vectors()), n));
        }
    }

    fn vectors(&self) -> Vectors<'_> {
        Vectors {
            dim: self.dim(),
            scales: &self.scales,
            data: &self.vectors,
        }
    }

    /// The semantic index's list sizes (none without an index).
    pub fn index_list_sizes(&self) -> Option<Vec<usize>> {
        self.ivf.as_ref().map(|(ivf, _)| ivf.list_sizes())
    }

    /// Whether semantic look-up uses an index (a bank of [`ann::EXHAUSTIVE_BELOW`] embedded
    /// items or more) rather than comparing every item.
    pub fn indexed(&self) -> bool {
        self.ivf.is_some()
    }

    /// Adds items (an id already held is skipped) and sorts the indexes. Returns how many were
    /// new.
    pub fn add(&mut self, items: impl IntoIterator<Item = Item>) -> Result<usize, BankError> {
        let mut n = 0;
        for item in items {
            n += self.insert(item)? as usize;
        }
        self.finish();
        Ok(n)
    }

    /// The bank's description.
    pub fn info(&self) -> &BankInfo {
        &self.info
    }

    /// The bank's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The items, in the order they were added, with their signatures (not their
    /// embeddings: see [`Bank::embedding`]). A loaded bank parses its items here.
    pub fn items(&self) -> Vec<Item> {
        use rayon::prelude::*;
        (0..self.len())
            .into_par_iter()
            .map(|i| {
                let mut item = self.records.get(i).into_owned();
                item.signature = self.signatures.get(i);
                item
            })
            .collect()
    }

    /// Refuses a bank whose embeddings another model made: `model` and `weights_sha256` are
    /// the model in use. A bank without embeddings suits every model.
    pub fn check_model(
        &self,
        dir: &Path,
        model: &str,
        weights_sha256: &str,
    ) -> Result<(), BankError> {
        match &self.info.embeddings {
            Some(e) if e.weights_sha256 != weights_sha256 => Err(BankError::ForeignModel {
                path: dir.join("bank.json"),
                expected: format!("{model} (weights {})", short(weights_sha256)),
                found: e.describe(),
            }),
            _ => Ok(()),
        }
    }

    /// Writes the bank to folder `dir` (created if missing); its version goes up by one.
    pub fn save(&mut self, dir: &Path) -> Result<(), BankError> {
        self.finish();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |error| BankError::Io { path, error }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        self.info.files.clear();
        // each file streamed through its hash, written beside its place and renamed into it
        let write = |name: &str,
                     body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>|
         -> Result<String, BankError> {
            let path = dir.join(name);
            let tmp = path.with_extension("tmp");
            let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            let mut w = Hashing {
                inner: std::io::BufWriter::with_capacity(1 << 20, file),
                hash: FileHash::Blake3.hasher(),
            };
            body(&mut w).map_err(io(&tmp))?;
            let file = w.inner.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
            file.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            Ok(w.hash.hex())
        };
        let records = &self.records;
        let h = write(ITEMS, &mut |w| match records {
            Records::Parsed(items) => {
                for item in items {
                    serde_json::to_writer(&mut *w, item)?;
                    w.write_all(b"\n")?;
                }
                Ok(())
            }
            Records::Lines { .. } => records.write_lines(w),
        })?;
        self.info.files.insert(ITEMS.into(), h);
        let signatures = self.signatures.owned().map_err(io(&dir.join(SIGNATURES)))?;
        let h = write(SIGNATURES, &mut |w| w.write_all(signatures))?;
        self.info.files.insert(SIGNATURES.into(), h);
        let index = self.index.as_ref().expect("finished above");
        let n = self.records.len();
        let h = write(TABLES, &mut |w| index.write(n, w))?;
        self.info.files.insert(TABLES.into(), h);
        if self.info.embeddings.is_some() {
            let dim = self.dim();
            let (scales, vectors) = (&self.scales, &self.vectors);
            let h = write(EMBEDDINGS, &mut |w| {
                for (i, scale) in scales.iter().enumerate() {
                    w.write_all(&scale.to_le_bytes())?;
                    let bytes: Vec<u8> = vectors[i * dim..(i + 1) * dim]
                        .iter()
                        .map(|b| *b as u8)
                        .collect();
                    w.write_all(&bytes)?;
                }
                Ok(())
            })?;
            self.info.files.insert(EMBEDDINGS.into(), h);
            if let Some(space) = &self.space {
                let body = space.to_bytes();
                let h = write(LANGUAGE_SPACE, &mut |w| w.write_all(&body))?;
                self.info.files.insert(LANGUAGE_SPACE.into(), h);
            }
            if let Some((scales, bytes)) = &self.reference {
                let h = write(REFERENCE, &mut |w| {
                    for (s, r) in scales.iter().zip(bytes.chunks(dim)) {
                        w.write_all(&s.to_le_bytes())?;
                        w.write_all(&r.iter().map(|b| *b as u8).collect::<Vec<u8>>())?;
                    }
                    Ok(())
                })?;
                self.info.files.insert(REFERENCE.into(), h);
                let levels = &self.levels;
                let h = write(LEVELS, &mut |w| {
                    for l in levels {
                        w.write_all(&l.to_le_bytes())?;
                    }
                    Ok(())
                })?;
                self.info.files.insert(LEVELS.into(), h);
            }
        }
        if let Some((ivf, _)) = &self.ivf {
            let body = ivf.to_bytes(n);
            let h = write(INDEX, &mut |w| w.write_all(&body))?;
            self.info.files.insert(INDEX.into(), h);
        }
        self.info.file_hash = FileHash::Blake3;
        self.info.content_sha256 = content_hash(&self.info.files);
        self.info.format = FORMAT;
        self.info.version += 1;
        let info_path = dir.join("bank.json");
        let mut json = serde_json::to_vec_pretty(&self.info).expect("info serialises");
        json.push(b'\n');
        write_atomic(&info_path, &json).map_err(io(&info_path))?;
        Ok(())
    }

    /// Reads the bank in folder `dir`, checking its format and every file's hash.
    pub fn load(dir: &Path) -> Result<Bank, BankError> {
        let info_path = dir.join("bank.json");
        let raw = std::fs::read(&info_path).map_err(|source| BankError::Io {
            path: info_path.clone(),
            error: source,
        })?;
        let invalid = |path: &Path, line: u64, message: String| BankError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        let value: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| invalid(&info_path, e.line() as u64, e.to_string()))?;
        let found = value.get("format").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
        if found > FORMAT {
            return Err(BankError::Newer {
                path: info_path,
                found,
            });
        }
        let info: BankInfo =
            serde_json::from_value(value).map_err(|e| invalid(&info_path, 0, e.to_string()))?;
        if content_hash(&info.files) != info.content_sha256 {
            return Err(BankError::Damaged {
                path: info_path,
                expected: info.content_sha256.clone(),
                found: content_hash(&info.files),
            });
        }
        let n = info.items as usize;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |error| BankError::Io { path, error }
        };
        let len_of = |name: &str| -> Result<u64, BankError> {
            let path = dir.join(name);
            std::fs::metadata(&path)
                .map(|m| m.len())
                .map_err(io_err(&path))
        };
        // a file of the wrong size is named as such before anything is read
        let sig_len = len_of(SIGNATURES)?;
        if sig_len != (n * ROWS * 4) as u64 {
            return Err(invalid(
                &dir.join(SIGNATURES),
                0,
                format!("{sig_len} bytes, {n} items need {}", n * ROWS * 4),
            ));
        }
        if let Some(e) = &info.embeddings {
            let len = len_of(EMBEDDINGS)?;
            if len != (n * (4 + e.dim)) as u64 {
                return Err(invalid(
                    &dir.join(EMBEDDINGS),
                    0,
                    format!(
                        "{len} bytes, {n} items of {} values need {}",
                        e.dim,
                        n * (4 + e.dim)
                    ),
                ));
            }
        }
        // every file is read once, hashed as it is read; what reading it found is reported only
        // if its hash matched (a damaged file is named as damaged)
        let read = |name: &str,
                    use_it: &mut dyn FnMut(&mut dyn Read) -> Result<(), String>|
         -> Result<std::fs::File, BankError> {
            let path = dir.join(name);
            let Some(expected) = info.files.get(name).cloned() else {
                return Err(invalid(&info_path, 0, format!("no hash for {name}")));
            };
            let file = std::fs::File::open(&path).map_err(io_err(&path))?;
            let mut r = Hashing {
                inner: std::io::BufReader::with_capacity(1 << 20, file),
                hash: info.file_hash.hasher(),
            };
            let used = use_it(&mut r);
            // the rest of the file, if reading stopped early, for its hash
            std::io::copy(&mut r, &mut std::io::sink()).map_err(io_err(&path))?;
            let found = r.hash.hex();
            if found != expected {
                return Err(BankError::Damaged {
                    path,
                    expected,
                    found,
                });
            }
            used.map_err(|message| invalid(&path, 0, message))?;
            Ok(r.inner.into_inner())
        };
        let whole = |name: &str, len: usize| -> Result<Vec<u8>, BankError> {
            let mut body = Vec::with_capacity(len);
            read(name, &mut |r| {
                r.read_to_end(&mut body)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })?;
            Ok(body)
        };
        let tables = info.format >= 2;
        let dim = info.embeddings.as_ref().map_or(0, |e| e.dim);
        let items_path = dir.join(ITEMS);
        let (records, (signatures, (index, embedded))) = rayon::join(
            || -> Result<Records, BankError> {
                if tables {
                    // format 2: the items stay in their file, each line parsed when its item
                    // is asked for
                    let mut lines = LineStarts::default();
                    let file = read(ITEMS, &mut |r| {
                        let mut block = vec![0u8; 1 << 20];
                        loop {
                            match r.read(&mut block).map_err(|e| e.to_string())? {
                                0 => return Ok(()),
                                k => lines.feed(&block[..k]),
                            }
                        }
                    })?;
                    return Records::lines(file, lines, n).map_err(|m| invalid(&items_path, 0, m));
                }
                let text = whole(ITEMS, len_of(ITEMS)? as usize)?;
                parse_items(&text, n, &items_path).map(Records::Parsed)
            },
            || {
                rayon::join(
                    || -> Result<Signatures, BankError> {
                        if tables {
                            // read from the file by the candidates that need theirs
                            let file = read(SIGNATURES, &mut |_| Ok(()))?;
                            return Ok(Signatures::File { file, n });
                        }
                        whole(SIGNATURES, n * ROWS * 4).map(Signatures::Owned)
                    },
                    || {
                        rayon::join(
                            || -> Result<Option<Index>, BankError> {
                                if !tables {
                                    return Ok(None);
                                }
                                let mut index = None;
                                read(TABLES, &mut |r| {
                                    index = Some(Index::read(r, n)?);
                                    Ok(())
                                })?;
                                Ok(index)
                            },
                            || -> Result<(Vec<f32>, Vec<i8>), BankError> {
                                if info.embeddings.is_none() {
                                    return Ok((vec![0.0; n], Vec::new()));
                                }
                                let (mut scales, mut vectors) =
                                    (Vec::with_capacity(n), Vec::with_capacity(n * dim));
                                read(EMBEDDINGS, &mut |r| {
                                    let mut row = vec![0u8; 4 + dim];
                                    for _ in 0..n {
                                        r.read_exact(&mut row).map_err(|e| e.to_string())?;
                                        scales.push(f32::from_le_bytes(
                                            row[..4].try_into().expect("4 bytes"),
                                        ));
                                        vectors.extend(row[4..].iter().map(|b| *b as i8));
                                    }
                                    Ok(())
                                })?;
                                Ok((scales, vectors))
                            },
                        )
                    },
                )
            },
        );
        let mut bank = Bank::new(&info.name, info.embeddings.clone());
        bank.records = records?;
        bank.signatures = signatures?;
        (bank.scales, bank.vectors) = embedded?;
        bank.index = index?;
        if let (Some(rank), true) = (info.language_space, dim > 0) {
            let body = whole(LANGUAGE_SPACE, rank * dim * 4)?;
            let path = dir.join(LANGUAGE_SPACE);
            bank.space = Some(
                LanguageSpace::from_bytes(&body, dim, rank)
                    .map_err(|message| invalid(&path, 0, message))?,
            );
        }
        // a reference and the items' levels (banks of format 3 made before references have
        // neither: their semantic matches need no lift)
        if info.files.contains_key(REFERENCE) && dim > 0 {
            let body = whole(REFERENCE, 0)?;
            let path = dir.join(REFERENCE);
            if body.is_empty() || body.len() % (4 + dim) != 0 {
                return Err(invalid(
                    &path,
                    0,
                    format!("{} bytes: not rows of {} bytes", body.len(), 4 + dim),
                ));
            }
            let (mut scales, mut bytes) = (Vec::new(), Vec::new());
            for row in body.chunks(4 + dim) {
                scales.push(f32::from_le_bytes(row[..4].try_into().expect("4 bytes")));
                bytes.extend(row[4..].iter().map(|b| *b as i8));
            }
            bank.reference = Some((scales, bytes));
            let path = dir.join(LEVELS);
            if !info.files.contains_key(LEVELS) {
                return Err(invalid(&info_path, 0, format!("no hash for {LEVELS}")));
            }
            let body = whole(LEVELS, n * 4)?;
            if body.len() != n * 4 {
                return Err(invalid(
                    &path,
                    0,
                    format!("{} bytes, {n} items need {}", body.len(), n * 4),
                ));
            }
            bank.levels = body
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
        }
        if info.files.contains_key(INDEX) && dim > 0 {
            let mut body = Vec::new();
            read(INDEX, &mut |r| {
                r.read_to_end(&mut body)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })?;
            // its hash matched: an index that does not read is an older version's, made
            // again below (it is derived from the embeddings)
            bank.ivf = Ivf::from_bytes(&body, n, dim).ok().map(|ivf| (ivf, n));
        }
        bank.finish();
        bank.info = info;
        Ok(bank)
    }

    /// [`Bank::find`] for a text, at the default thresholds.
    pub fn find_text(&self, text: &str) -> Vec<Match> {
        self.find(&Query::new(text), &Thresholds::default())
    }

    /// The items the query matches, best first (exact, near, semantic; then by similarity),
    /// at most one per item.
    pub fn find(&self, q: &Query, t: &Thresholds) -> Vec<Match> {
        let index = self.index.as_ref().expect("Bank::finish after inserting");
        let mut best: HashMap<u32, Match> = HashMap::new();
        let mut offer = |i: u32, method, similarity, (start, end)| {
            let m = Match {
                bank: self.info.name.clone(),
                item: self.id(i as usize),
                method,
                similarity,
                start,
                end,
            };
            match best.get(&i) {
                Some(e) if (e.method, -e.similarity) <= (m.method, -m.similarity) => {}
                _ => {
                    best.insert(i, m);
                }
            }
        };
        if let Some(i) = index.exact(&q.digest) {
            offer(i, Method::Exact, 1.0, (0, q.chars));
        }
        if let Some(sig) = &q.signature {
            self.near(index, q, sig, t, &mut offer);
        }
        self.semantic(q, t, &mut offer);
        finish(best)
    }

    fn near(
        &self,
        index: &Index,
        q: &Query,
        sig: &Signature,
        t: &Thresholds,
        offer: &mut impl FnMut(u32, Method, f32, (usize, usize)),
    ) {
        // whole-text near duplicates: candidates share a band
        let mut candidates: Vec<u32> = (0..BANDS)
            .flat_map(|b| lookup(&index.bands, band32(sig, b)))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        for i in candidates {
            if let Some(s) = self.signatures.get(i as usize) {
                let j = minhash::jaccard(sig, &s);
                if j >= t.near {
                    offer(i, Method::Near, j, (0, q.chars));
                }
            }
        }
        // items contained in the text: their anchor rows' minima are among the text's values
        if t.contained > 1.0 {
            return;
        }
        // an item has one minimum per row, so over the text's distinct shingles it is counted
        // at most once a row
        let mut distinct: Vec<u64> = q.shingles.iter().map(|s| s.0).collect();
        distinct.sort_unstable();
        distinct.dedup();
        // hits counted per item in a dense, per-thread table (a common shingle is the minimum
        // of thousands of a large bank's items: a hash map of them was most of a look-up)
        let need = (ANCHORS as f32 * t.contained * 0.75).ceil().max(1.0) as u8;
        let candidates = HIT_COUNTS.with_borrow_mut(|counts| {
            if counts.len() < self.len() {
                counts.resize(self.len(), 0);
            }
            let mut touched: Vec<u32> = Vec::new();
            let mut candidates: Vec<u32> = Vec::new();
            for (row, table) in index.anchors.iter().enumerate() {
                for h in &distinct {
                    let v = minhash::permute(row, *h);
                    for i in table.lookup(v) {
                        let c = &mut counts[i as usize];
                        if *c == 0 {
                            touched.push(i);
                        }
                        *c = c.saturating_add(1);
                        if *c == need {
                            candidates.push(i);
                        }
                    }
                }
            }
            for i in touched {
                counts[i as usize] = 0;
            }
            candidates
        });
        let candidates: Vec<(u32, Signature, usize, Option<[u32; 3]>)> = candidates
            .into_iter()
            .filter_map(|i| {
                let s = self.signatures.get(i as usize)?;
                let (shingles, edges) = self.records.shape(i as usize);
                (shingles >= MIN_CONTAINED_SHINGLES).then_some((
                    i,
                    s,
                    shingles as usize + minhash::SHINGLE - 1,
                    edges,
                ))
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        // the text's values in every row, sorted, made once for all the candidates; only the
        // values up to the candidates' largest minimum in that row can be one of theirs (minima
        // are small: this keeps a few of the text's values)
        let mut bound = [0u32; ROWS];
        for (_, s, _, _) in &candidates {
            for (b, v) in bound.iter_mut().zip(s.iter()) {
                *b = (*b).max(*v);
            }
        }
        let table: Vec<Vec<(u32, u32)>> = (0..ROWS)
            .map(|row| {
                let mut v: Vec<(u32, u32)> = q
                    .shingles
                    .iter()
                    .enumerate()
                    .filter_map(|(k, (h, _, _))| {
                        let v = minhash::permute(row, *h);
                        (v <= bound[row]).then_some((v, k as u32))
                    })
                    .collect();
                v.sort_unstable();
                v
            })
            .collect();
        for (i, s, len, edges) in candidates {
            if let Some((share, (lo, hi))) = contained(q, &table, &s, len) {
                if share >= t.contained {
                    let (lo, hi) = on_edges(q, edges, lo, hi);
                    offer(i, Method::Near, share, q.normalized.input_span(lo, hi));
                }
            }
        }
    }

    fn semantic(
        &self,
        q: &Query,
        t: &Thresholds,
        offer: &mut impl FnMut(u32, Method, f32, (usize, usize)),
    ) {
        for (k, i, sim) in self.semantic_hits(q.embeddings.iter().map(|e| e.0.as_slice()), t) {
            let (_, start, end) = q.embeddings[k];
            offer(i, Method::Semantic, sim, (start, end));
        }
    }

    /// Semantic matches of unit-length embeddings (of a text, or its windows): `(which
    /// embedding, item index, cosine)` for every pair at or over the threshold. A bank without
    /// embeddings finds nothing.
    fn semantic_hits<'a>(
        &self,
        embeddings: impl Iterator<Item = &'a [f32]>,
        t: &Thresholds,
    ) -> Vec<(usize, u32, f32)> {
        let dim = self.dim();
        let mut hits = Vec::new();
        if dim == 0 {
            return hits;
        }
        for (k, e) in embeddings.enumerate() {
            if e.len() != dim {
                continue;
            }
            // the text's embedding in 8 bits too: integer dot products, which vectorise (the
            // cosine moves by about 0.002: tested)
            let e = &*self.in_space(e);
            let q = quantize(e);
            // every candidate's cosine (every item's, or the index's nearest lists'); the best
            // MARGIN_NEIGHBOURS + 1 kept for the margin
            let mut top: Vec<f32> = Vec::with_capacity(MARGIN_NEIGHBOURS + 2);
            let mut candidates = Vec::new();
            // with a positive margin only the best MARGIN_NEIGHBOURS + 1 can match: any other
            // item has MARGIN_NEIGHBOURS items at least as near, so a margin of 0 at most (a low
            // floor would otherwise keep much of a large bank as candidates)
            let only_top = t.semantic_margin > 0.0;
            let vectors = self.vectors();
            let (qs, qv) = (q.0, &q.1[..]);
            // (a buffer kept per thread: a fresh one of this size each time came from the
            // kernel and went back to it, page faults and all)
            let ids = SCAN_IDS.with_borrow_mut(|ids| {
                ids.clear();
                ids.extend(ann::candidates(
                    vectors,
                    self.ivf.as_ref().map(|(x, _)| x),
                    e,
                ));
                std::mem::take(ids)
            });
            for (k, &i) in ids.iter().enumerate() {
                // the vector and scale a few candidates on, fetched while this one is compared
                if let Some(&next) = ids.get(k + PREFETCH_AHEAD) {
                    let next = next as usize;
                    ann::prefetch(&self.vectors[next * dim..(next + 1) * dim]);
                    ann::prefetch(&self.scales[next..next + 1]);
                }
                let i = i as usize;
                let dot = ann::dot_i8(&self.vectors[i * dim..(i + 1) * dim], qv) as f32
                    * self.scales[i]
                    * qs;
                let i = i as u32;
                if top.len() <= MARGIN_NEIGHBOURS || dot > top[top.len() - 1] {
                    let at = top.partition_point(|x| *x >= dot);
                    top.insert(at, dot);
                    top.truncate(MARGIN_NEIGHBOURS + 1);
                    if only_top && dot >= t.semantic {
                        let at = candidates.partition_point(|c: &(u32, f32)| c.1 >= dot);
                        candidates.insert(at, (i, dot));
                        candidates.truncate(MARGIN_NEIGHBOURS + 1);
                    }
                }
                if !only_top && dot >= t.semantic {
                    candidates.push((i, dot));
                }
            }
            SCAN_IDS.with_borrow_mut(|buffer| *buffer = ids);
            // in item order, whichever way they were found
            candidates.sort_unstable_by_key(|c| c.0);
            for (i, dot) in candidates {
                // the mean of the best others (this item left out once), padded with the floor
                let mut others = 0f32;
                let mut skipped = false;
                let mut n = 0;
                for &x in &top {
                    if !skipped && x == dot {
                        skipped = true;
                        continue;
                    }
                    if n < MARGIN_NEIGHBOURS {
                        others += x;
                        n += 1;
                    }
                }
                others += (MARGIN_NEIGHBOURS - n) as f32 * t.semantic;
                let margin = dot - others / MARGIN_NEIGHBOURS as f32;
                let lifted = self
                    .levels
                    .get(i as usize)
                    .is_none_or(|level| margin + dot - level >= t.semantic_lift);
                if margin >= t.semantic_margin && lifted {
                    hits.push((k, i, dot));
                }
            }
        }
        hits
    }

    /// Semantic matches of embeddings (each normalised here): for each match, the index of the
    /// embedding that made it (its span is the caller's to set: `start` and `end` are 0).
    pub fn find_semantic(&self, embeddings: &[Vec<f32>], t: &Thresholds) -> Vec<(usize, Match)> {
        let units: Vec<Vec<f32>> = embeddings.iter().map(|e| unit(e)).collect();
        self.semantic_hits(units.iter().map(|e| e.as_slice()), t)
            .into_iter()
            .map(|(k, i, sim)| {
                (
                    k,
                    Match {
                        bank: self.info.name.clone(),
                        item: self.id(i as usize),
                        method: Method::Semantic,
                        similarity: sim,
                        start: 0,
                        end: 0,
                    },
                )
            })
            .collect()
    }

    /// Item `i`'s embedding as the bank keeps it (8 bits, unit length), if it has one.
    pub fn embedding(&self, i: usize) -> Option<Vec<f32>> {
        let dim = self.dim();
        let scale = *self.scales.get(i)?;
        (dim > 0 && scale != 0.0).then(|| {
            self.vectors[i * dim..(i + 1) * dim]
                .iter()
                .map(|x| *x as f32 * scale)
                .collect()
        })
    }

    /// Whether the bank holds embeddings (semantic look-up).
    pub fn has_embeddings(&self) -> bool {
        self.info.embeddings.is_some()
    }
}

/// Matches from several look-ups (banks, methods) as one list: one per bank item, the best
/// method kept (exact, near, semantic; then the higher similarity), best first.
pub fn merge_matches(matches: impl IntoIterator<Item = Match>) -> Vec<Match> {
    let mut best: HashMap<(String, String), Match> = HashMap::new();
    for m in matches {
        let key = (m.bank.clone(), m.item.clone());
        match best.get(&key) {
            Some(e) if (e.method, -e.similarity) <= (m.method, -m.similarity) => {}
            _ => {
                best.insert(key, m);
            }
        }
    }
    let mut v: Vec<Match> = best.into_values().collect();
    sort_matches(&mut v);
    v
}

fn sort_matches(v: &mut [Match]) {
    v.sort_by(|a, b| {
        a.method
            .cmp(&b.method)
            .then(b.similarity.total_cmp(&a.similarity))
            .then(a.bank.cmp(&b.bank))
            .then(a.item.cmp(&b.item))
    });
}

/// How much of an item's signature a longer text holds, and where: every row whose minimum one
/// of the text's shingles realises counts (a shingle the item shares with the rest of the
/// text, such as " the ", occurs more than once: the occurrence nearest the others counts).
/// `table`: per row, the text's shingles' values with their index, sorted.
/// The share of an item's signature rows found in the text, counting only the rows whose
/// occurrence lies within the item's own length of the middle of the occurrences (a pasted item
/// is one compact stretch of the text; the stock phrases a short item shares with an unrelated
/// longer text are spread over it), and the span of the rows counted. `len`: the item's length
/// in normalised characters. The span is in the text's normalised characters.
fn contained(
    q: &Query,
    table: &[Vec<(u32, u32)>],
    s: &Signature,
    len: usize,
) -> Option<(f32, (usize, usize))> {
    // per row, the text's shingles whose value is the item's minimum (no allocation: this
    // runs for every candidate)
    let occurrences: [&[(u32, u32)]; ROWS] = std::array::from_fn(|r| {
        let (want, row) = (s[r], &table[r]);
        let from = row.partition_point(|e| e.0 < want);
        let to = from + row[from..].partition_point(|e| e.0 == want);
        &row[from..to]
    });
    let start = |e: &(u32, u32)| q.shingles[e.1 as usize].1;
    if occurrences.iter().all(|o| o.is_empty()) {
        return None;
    }
    let mut unique = [0usize; ROWS];
    let mut n = 0;
    for o in occurrences.iter().filter(|o| o.len() == 1) {
        unique[n] = start(&o[0]);
        n += 1;
    }
    if n == 0 {
        for o in occurrences.iter().filter_map(|o| o.first()) {
            unique[n] = start(o);
            n += 1;
        }
    }
    let unique = &mut unique[..n];
    unique.sort_unstable();
    let centre = unique.get(unique.len() / 2).copied().unwrap_or(0);
    let (from, to) = (centre.saturating_sub(len), centre + len);
    let (mut lo, mut hi, mut found) = (usize::MAX, 0, 0);
    for o in &occurrences {
        let nearest = o
            .iter()
            .map(|e| {
                let (_, a, b) = q.shingles[e.1 as usize];
                (a, b)
            })
            .min_by_key(|(a, _)| a.abs_diff(centre));
        if let Some((a, b)) = nearest {
            if a >= from && b <= to {
                lo = lo.min(a);
                hi = hi.max(b);
                found += 1;
            }
        }
    }
    if found == 0 {
        return None;
    }
    Some((found as f32 / ROWS as f32, (lo, hi)))
}

/// The span `[lo, hi)` (normalised characters) of an item found inside a longer text, moved out
/// to the item's edges (`[first shingle, last shingle, length]`, see [`Item::edges`]): to an
/// occurrence of its first shingle at or before `lo` and of its last at or after `hi` that lie
/// exactly the item's length apart (an intact copy; the one nearest the rows), or else to the
/// nearest of each within the item's length and a quarter (an edited copy). An edge the text
/// does not hold there (a cut copy, an item of an older bank) stays where the rows put it.
fn on_edges(q: &Query, edges: Option<[u32; 3]>, lo: usize, hi: usize) -> (usize, usize) {
    let Some([first, last, chars]) = edges else {
        return (lo, hi);
    };
    let chars = chars as usize;
    let most = chars + chars / 4;
    let starts = || {
        q.shingles
            .iter()
            .filter(move |(h, a, _)| minhash::fold(*h) == first && *a <= lo && a + most >= hi)
            .map(|s| s.1)
    };
    let ends = || {
        q.shingles
            .iter()
            .filter(move |(h, _, b)| minhash::fold(*h) == last && *b >= hi && *b <= lo + most)
            .map(|s| s.2)
    };
    if let Some(a) = starts().filter(|a| ends().any(|b| b == a + chars)).max() {
        return (a, a + chars);
    }
    let lo = starts().max().unwrap_or(lo);
    let hi = ends().filter(|b| *b <= lo + most).min().unwrap_or(hi);
    (lo, hi)
}

thread_local! {
    /// The candidates of a semantic scan (kept for the next scan on this thread).
    static SCAN_IDS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Anchor hits per item of the bank being searched, all zero between look-ups.
    static HIT_COUNTS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn content_hash(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (name, sha) in files {
        h.update(name.as_bytes());
        h.update(b" ");
        h.update(sha.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// Format 1's `items.jsonl`, parsed (in parallel) and checked: `n` items, no id twice.
fn parse_items(text: &[u8], n: usize, path: &Path) -> Result<Vec<Item>, BankError> {
    use rayon::prelude::*;
    let invalid = |line: usize, message: String| BankError::Invalid {
        path: path.to_owned(),
        line: line as u64,
        message,
    };
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != n {
        return Err(invalid(
            0,
            format!("{} items, bank.json says {n}", lines.len()),
        ));
    }
    let items: Vec<Item> = lines
        .par_iter()
        .enumerate()
        .map(|(k, l)| serde_json::from_slice(l).map_err(|e| invalid(k + 1, e.to_string())))
        .collect::<Result<_, _>>()?;
    let mut seen = HashSet::with_capacity(n);
    for (k, item) in items.iter().enumerate() {
        if !seen.insert(item.id.as_str()) {
            return Err(invalid(k + 1, "an id seen on an earlier line".into()));
        }
    }
    Ok(items)
}

/// A reader or writer that hashes what passes through it.
struct Hashing<T> {
    inner: T,
    hash: FileHasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn finish(best: HashMap<u32, Match>) -> Vec<Match> {
    let mut v: Vec<Match> = best.into_values().collect();
    sort_matches(&mut v);
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
        let mut b = Bank::new("test", None);
        b.add(
            ITEMS
                .iter()
                .map(|(id, t)| Item::from_text(id, t, Default::default())),
        )
        .unwrap();
        b
    }

    fn top(b: &Bank, text: &str) -> Option<(String, Method)> {
        b.find_text(text)
            .first()
            .map(|m| (m.item.clone(), m.method))
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
        let m = &b.find_text(&cut)[0];
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
            .find_text(&post)
            .into_iter()
            .find(|m| m.item == "claim-1")
            .expect("found");
        assert_eq!(m.method, Method::Near);
        // on the item's own edges: its first character to its last letter (the full stop is
        // punctuation, which normalisation folds away)
        let s = before.chars().count();
        let e = s + ITEMS[0].1.chars().count();
        assert_eq!((m.start, m.end), (s, e - 1), "{m:?} vs {s}..{e}");
        // an item of a bank built before edges were kept: the rows' span, a little inside
        let mut old = b.items()[0].clone();
        old.id = "claim-old".into();
        old.edges = None;
        let mut ob = Bank::new("old", None);
        ob.add([old]).unwrap();
        let m = ob.find_text(&post).into_iter().next().expect("found");
        assert!(m.start >= s && m.start < s + 15, "{m:?} vs {s}..{e}");
        assert!(m.end <= e && m.end > e - 15, "{m:?} vs {s}..{e}");
        // a copy cut at both ends: the span stays on what is there
        let item: Vec<char> = ITEMS[0].1.chars().collect();
        let cut: String = item[4..item.len() - 12].iter().collect();
        let post = format!("{before}{cut}{after}");
        let m = b
            .find_text(&post)
            .into_iter()
            .find(|m| m.item == "claim-1")
            .expect("found");
        let e = s + cut.chars().count();
        assert!(m.start >= s && m.end <= e, "{m:?} vs {s}..{e}");
    }

    #[test]
    fn a_span_goes_to_the_edges_that_lie_the_item_s_length_apart() {
        // written for this test: an item whose last shingle ("tions") also ends a word inside it
        let text = "Peace among the nations, and friendship among all nations";
        let item = Item::from_text("peace", text, Default::default());
        let q = Query::new(&format!("Read this: {text}! Share it widely."));
        let normal = &q.normalized.text;
        let chars = |b: usize| normal[..b].chars().count();
        let at = chars(normal.find("peace").unwrap());
        let len = normalize(text).text.chars().count();
        assert_eq!(item.edges.unwrap()[2] as usize, len);
        // rows found from a little after the start to before the first "nations" ends
        let first_end = at + chars(normalize(text).text.find("nations").unwrap()) + 7;
        let (lo, hi) = (at + 3, first_end - 2);
        assert_eq!(on_edges(&q, item.edges, lo, hi), (at, at + len));
        // no edges (an older bank's item): the rows' span as it is
        assert_eq!(on_edges(&q, None, lo, hi), (lo, hi));
        // the copy's end cut off: the start still goes to the edge, the end to the nearest
        // occurrence of the last shingle
        let cut = Query::new(&format!("Read this: {}! Share it widely.", &text[..40]));
        assert_eq!(on_edges(&cut, item.edges, lo, hi), (at, first_end));
    }

    #[test]
    fn a_short_item_whose_stock_phrases_are_spread_over_a_text_is_not_inside_it() {
        // written for this test: a short notice, and a longer one that shares its opening and
        // its closing words, far apart
        let item = "All members of the club may borrow books for two weeks at no cost to them.";
        let mut b = Bank::new("t", None);
        b.add([Item::from_text("notice", item, Default::default())])
            .unwrap();
        let t = Thresholds::default();
        let spread = "All members of the club are invited to the summer party on Saturday evening in the garden behind the old town library, where music, games and food will be offered for two weeks at no cost to them.";
        assert!(
            b.find(&Query::new(spread), &t).is_empty(),
            "{:?}",
            b.find(&Query::new(spread), &t)
        );
        let pasted = format!(
            "Look at this, sent to everyone today: {item} Share it with your friends please."
        );
        let m = b.find(&Query::new(&pasted), &t);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].similarity >= 0.9, "{m:?}");
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
            assert!(b.find_text(t).is_empty(), "{t}: {:?}", b.find_text(t));
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
        assert_eq!(again.info().version, 1);
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
        let format = format!("\"format\": {FORMAT}");
        assert!(text.contains(&format), "{text}");
        std::fs::write(&info, text.replace(&format, "\"format\": 9")).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("format 9"), "{e}");
        // missing
        let e = Bank::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bank.json"), "{e}");
    }

    #[test]
    fn a_loaded_bank_reads_each_item_s_shape_from_its_line_as_parsed_items_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = bank();
        b.add([Item::from_digest("d", &"ab".repeat(32), Default::default()).unwrap()])
            .unwrap();
        b.save(dir.path()).unwrap();
        let again = Bank::load(dir.path()).unwrap();
        assert!(matches!(again.records, Records::Lines { .. }));
        let items = b.items();
        for (i, item) in items.iter().enumerate() {
            assert_eq!(
                again.records.shape(i),
                (item.shingles, item.edges),
                "{}",
                item.id
            );
            assert_eq!(
                b.records.shape(i),
                (item.shingles, item.edges),
                "{}",
                item.id
            );
        }
        assert!(items[0].edges.is_some() && items[0].shingles > 0);
        assert_eq!(again.records.shape(3), (0, None), "a digest has neither");
    }

    #[test]
    fn a_format_1_bank_is_read_and_saved_in_the_current_format() {
        // format 1: no index.bin (its tables built at load), SHA-256 file hashes and no
        // `file_hash` in bank.json
        let dir = tempfile::tempdir().unwrap();
        let mut b = bank();
        b.save(dir.path()).unwrap();
        let info_path = dir.path().join("bank.json");
        let mut info: BankInfo =
            serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
        assert_eq!(info.file_hash, FileHash::Blake3);
        assert!(info.files.remove(TABLES).is_some());
        std::fs::remove_file(dir.path().join(TABLES)).unwrap();
        for (name, hash) in info.files.iter_mut() {
            *hash = hex(&Sha256::digest(
                std::fs::read(dir.path().join(name)).unwrap(),
            ));
        }
        info.format = 1;
        info.file_hash = FileHash::Sha256;
        info.content_sha256 = content_hash(&info.files);
        let mut json = serde_json::to_value(&info).unwrap();
        json.as_object_mut().unwrap().remove("file_hash");
        std::fs::write(&info_path, json.to_string()).unwrap();
        let mut old = Bank::load(dir.path()).unwrap();
        assert_eq!(
            (old.info().format, old.info().file_hash),
            (1, FileHash::Sha256)
        );
        assert_eq!(old.index, b.index, "the same tables as the saved ones");
        for (_, text) in ITEMS {
            assert_eq!(old.find_text(text), b.find_text(text));
        }
        // a repeated id in a format 1 bank is named with its line
        let items = dir.path().join(super::ITEMS);
        let body = std::fs::read_to_string(&items).unwrap();
        let first = body.lines().next().unwrap();
        let second_id = old.items()[1].id.clone();
        let repeated = body.replacen(
            &format!("\"id\":\"{second_id}\""),
            &format!("\"id\":\"{}\"", old.items()[0].id),
            1,
        );
        assert_ne!(repeated, body, "{first}");
        std::fs::write(&items, &repeated).unwrap();
        let mut damaged = info.clone();
        damaged.files.insert(
            super::ITEMS.into(),
            hex(&Sha256::digest(repeated.as_bytes())),
        );
        damaged.content_sha256 = content_hash(&damaged.files);
        std::fs::write(&info_path, serde_json::to_vec(&damaged).unwrap()).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("items.jsonl:2") && e.contains("earlier line"),
            "{e}"
        );
        std::fs::write(&items, &body).unwrap();
        // saved again: the current format, with its tables
        old.save(dir.path()).unwrap();
        let again = Bank::load(dir.path()).unwrap();
        assert_eq!((again.info().format, again.info().version), (FORMAT, 2));
        assert_eq!(again.info().file_hash, FileHash::Blake3);
        assert!(dir.path().join(TABLES).exists());
        assert_eq!(again.index, b.index);
        // loaded, its items and signatures are read from their files when asked for
        let mut again = again;
        assert!(matches!(again.records, Records::Lines { .. }));
        assert!(matches!(again.signatures, Signatures::File { .. }));
        for (_, text) in ITEMS {
            assert_eq!(again.find_text(text), b.find_text(text));
        }
        assert_eq!(again.items(), b.items());
        // and items can still be added
        let new = "a new statement that no other item of this bank has ever held";
        again
            .add([Item::from_text("new-1", new, Default::default())])
            .unwrap();
        assert_eq!(again.find_text(new)[0].item, "new-1");
        assert_eq!(again.find_text(ITEMS[0].1), b.find_text(ITEMS[0].1));
        again.save(dir.path()).unwrap();
        assert_eq!(Bank::load(dir.path()).unwrap().len(), ITEMS.len() + 1);
    }

    #[test]
    fn a_damaged_index_is_refused_with_its_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = bank();
        b.save(dir.path()).unwrap();
        let tables = dir.path().join(TABLES);
        let body = std::fs::read(&tables).unwrap();
        std::fs::write(&tables, &body[..body.len() - 8]).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("index.bin") && e.contains("content hash"), "{e}");
    }

    #[test]
    fn digests_alone_match_exactly() {
        let mut b = Bank::new("partner", None);
        b.add([
            Item::from_digest("p1", &digest(ITEMS[1].1).to_uppercase(), Default::default())
                .unwrap(),
        ])
        .unwrap();
        assert!(Item::from_digest("p2", "abc", Default::default()).is_err());
        assert_eq!(
            top(&b, &ITEMS[1].1.to_lowercase()),
            Some(("p1".into(), Method::Exact))
        );
        assert!(b.find_text(ITEMS[0].1).is_empty());
    }

    fn model() -> EmbeddingModel {
        EmbeddingModel {
            model: "m".into(),
            weights_sha256: "ab".repeat(32),
            dim: 4,
        }
    }

    /// A bank of items `i0`, `i1`, ... with these embeddings.
    fn embedded_bank(items: &[Vec<f32>]) -> Bank {
        let model = EmbeddingModel {
            dim: items[0].len(),
            ..model()
        };
        let mut b = Bank::new("m", Some(model));
        for (i, e) in items.iter().enumerate() {
            b.insert(
                Item::from_text(&format!("i{i}"), "t", Default::default())
                    .with_embedding(e.clone()),
            )
            .unwrap();
        }
        b.finish();
        b
    }

    /// The cosine in f32, computed here (the reference the bank's 8 bits are checked against).
    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        d / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    }

    #[test]
    fn embeddings_match_semantically_survive_saving_and_name_their_model() {
        let mut b = Bank::new("sem", Some(model()));
        b.add([
            Item::from_text("x", "one text", Default::default())
                .with_embedding(vec![1.0, 0.0, 0.0, 0.0]),
            Item::from_text("y", "another", Default::default())
                .with_embedding(vec![0.0, 0.6, 0.8, 0.0]),
        ])
        .unwrap();
        let bad = Item::from_text("z", "t", Default::default()).with_embedding(vec![1.0]);
        assert!(matches!(b.insert(bad), Err(BankError::Dimension { .. })));
        let dir = tempfile::tempdir().unwrap();
        b.save(dir.path()).unwrap();
        let b = Bank::load(dir.path()).unwrap();
        let mut q = Query::new("a translation of nothing in the bank");
        // a window over characters 3..9 close to "y" (cosine 0.98), far from "x"
        q.add_embedding(&[0.1, 0.5, 0.9, 0.0], 3, 9);
        let m = b.find(&q, &Thresholds::default());
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(
            (m[0].item.as_str(), m[0].method, m[0].start, m[0].end),
            ("y", Method::Semantic, 3, 9)
        );
        let truth = (0.6 * 0.5 + 0.8 * 0.9) / (0.1f32 * 0.1 + 0.25 + 0.81).sqrt();
        assert!(
            (m[0].similarity - truth).abs() < 0.01,
            "{} vs {truth}",
            m[0].similarity
        );
        b.check_model(dir.path(), "m", &"ab".repeat(32)).unwrap();
        let e = b
            .check_model(dir.path(), "other", &"cd".repeat(32))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bank.json") && e.contains("abababab"), "{e}");
        // a bank without embeddings suits any model
        Bank::new("plain", None)
            .check_model(dir.path(), "other", "cd")
            .unwrap();
        // a damaged embeddings file is named
        let f = dir.path().join("embeddings.bin");
        let mut body = std::fs::read(&f).unwrap();
        body[5] ^= 1;
        std::fs::write(&f, body).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("embeddings.bin"), "{e}");
    }

    #[test]
    fn a_match_must_lift_over_an_item_s_level_of_ordinary_text() {
        // ordinary text, mostly along the first axis
        let reference: Vec<Vec<f32>> = vec![
            vec![1.0, 0.1, 0.0, 0.0],
            vec![1.0, 0.0, 0.1, 0.0],
            vec![1.0, 0.0, 0.0, 0.1],
            vec![0.9, 0.2, 0.2, 0.0],
            vec![1.0, 0.2, 0.0, 0.1],
            vec![0.0, 0.0, 1.0, 0.0],
        ];
        // "x" resembles ordinary text, "y" does not
        let items = || {
            [
                Item::from_text("x", "a common phrase", Default::default())
                    .with_embedding(vec![1.0, 0.0, 0.0, 0.0]),
                Item::from_text("y", "a rare statement", Default::default())
                    .with_embedding(vec![0.0, 1.0, 0.0, 0.0]),
            ]
        };
        // the level, in f32: the mean of the 5 highest cosines with the reference
        let level = |e: &[f32]| {
            let mut c: Vec<f32> = reference.iter().map(|r| cosine(e, r)).collect();
            c.sort_by(|a, b| b.total_cmp(a));
            c[..REFERENCE_NEIGHBOURS].iter().sum::<f32>() / REFERENCE_NEIGHBOURS as f32
        };
        let mut b = Bank::new("lift", Some(model()));
        assert!(b.level(0).is_none());
        assert!(b.set_reference(&reference).unwrap());
        assert!(
            !b.set_reference(&reference).unwrap(),
            "a bank keeps its reference"
        );
        b.add(items()).unwrap();
        for (i, e) in [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
            .iter()
            .enumerate()
        {
            let (got, want) = (b.level(i).unwrap(), level(e));
            assert!((got - want).abs() < 0.01, "item {i}: {got} vs {want}");
        }
        // both queries are as close to their item (cosine 0.96) and as far from the other
        let query = |e: &[f32]| {
            let mut q = Query::new("");
            q.add_embedding(e, 0, 0);
            q
        };
        let (qx, qy) = (query(&[1.0, 0.3, 0.0, 0.0]), query(&[0.3, 1.0, 0.0, 0.0]));
        let t = Thresholds {
            semantic: 0.5,
            semantic_margin: 0.0,
            semantic_lift: 0.8,
            ..Default::default()
        };
        let items_of = |b: &Bank, q: &Query| -> Vec<String> {
            b.find(q, &t).into_iter().map(|m| m.item).collect()
        };
        // the lift: the margin (the other item's cosine and 3 floors of 0.5 as the next 4) plus
        // the cosine, less the level
        let lift = |q: &[f32], own: &[f32], other: &[f32]| {
            let c = cosine(q, own);
            c - (cosine(q, other) + 3.0 * 0.5) / 4.0 + c - level(own)
        };
        let (x, y) = ([1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]);
        assert!(lift(&[1.0, 0.3, 0.0, 0.0], &x, &y) < 0.8);
        assert!(lift(&[0.3, 1.0, 0.0, 0.0], &y, &x) > 0.8);
        assert!(items_of(&b, &qx).is_empty(), "x is near ordinary text");
        assert_eq!(items_of(&b, &qy), ["y"]);
        // without a reference, both match at these thresholds
        let mut plain = Bank::new("plain", Some(model()));
        plain.add(items()).unwrap();
        assert!(!plain.has_reference() && plain.level(0).is_none());
        assert_eq!(items_of(&plain, &qx), ["x"]);
        // kept: saved, loaded; an item added later has its level measured too
        let dir = tempfile::tempdir().unwrap();
        b.save(dir.path()).unwrap();
        let mut loaded = Bank::load(dir.path()).unwrap();
        assert!(loaded.has_reference());
        assert_eq!((loaded.level(0), loaded.level(1)), (b.level(0), b.level(1)));
        assert_eq!(items_of(&loaded, &qy), ["y"]);
        loaded
            .add([Item::from_text("z", "another", Default::default())
                .with_embedding(vec![0.0, 0.0, 1.0, 0.0])])
            .unwrap();
        let want = level(&[0.0, 0.0, 1.0, 0.0]);
        assert!((loaded.level(2).unwrap() - want).abs() < 0.01);
        // a damaged levels file is named; a bank of format 3 without one needs no lift
        let f = dir.path().join(LEVELS);
        let mut body = std::fs::read(&f).unwrap();
        body[1] ^= 1;
        std::fs::write(&f, &body).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("levels.bin"), "{e}");
        plain.save(dir.path()).unwrap();
        let old = Bank::load(dir.path()).unwrap();
        assert!(!old.has_reference());
        assert_eq!(items_of(&old, &qx), ["x"]);
    }

    #[test]
    fn a_language_space_is_kept_applied_and_given_to_an_older_bank() {
        // two languages that differ along the last axis only
        let space = LanguageSpace::from_languages(&[
            vec![vec![1.0, 0.0, 0.0, 0.5]],
            vec![vec![1.0, 0.0, 0.0, -0.5]],
        ])
        .unwrap();
        assert_eq!(space.rank(), 1);
        let items = || {
            [
                Item::from_text("x", "a statement", Default::default())
                    .with_embedding(vec![0.6, 0.0, 0.0, 0.8]),
                Item::from_text("y", "another one", Default::default())
                    .with_embedding(vec![0.0, 0.8, 0.0, 0.6]),
            ]
        };
        // the statement in the other language: its language's sign flipped
        let mut q = Query::new("la déclaration");
        q.add_embedding(&[0.6, 0.0, 0.0, -0.8], 0, 14);
        let t = Thresholds::default();
        let mut raw = Bank::new("raw", Some(model()));
        raw.add(items()).unwrap();
        assert!(raw.find(&q, &t).is_empty(), "cosine -0.28 as they are");
        let mut b = Bank::new("sem", Some(model()));
        assert!(b.set_language_space(space.clone()).unwrap());
        b.add(items()).unwrap();
        let found = |b: &Bank| -> Vec<(String, f32)> {
            b.find(&q, &t)
                .into_iter()
                .map(|m| (m.item, (m.similarity * 100.0).round() / 100.0))
                .collect()
        };
        assert_eq!(found(&b), [("x".to_owned(), 1.0)]);
        // kept: saved, loaded, named in bank.json
        let dir = tempfile::tempdir().unwrap();
        b.save(dir.path()).unwrap();
        let mut loaded = Bank::load(dir.path()).unwrap();
        assert_eq!(loaded.info().language_space, Some(1));
        assert_eq!(loaded.info().format, FORMAT);
        assert_eq!(loaded.language_space(), Some(&space));
        assert_eq!(found(&loaded), found(&b));
        // a bank keeps the space its embeddings were made in
        let other = LanguageSpace::from_languages(&[
            vec![vec![0.0, 1.0, 0.0, 0.0]],
            vec![vec![0.0, 0.0, 1.0, 0.0]],
        ])
        .unwrap();
        assert!(!loaded.set_language_space(other).unwrap());
        assert_eq!(loaded.language_space(), Some(&space));
        // a bank made without one (format 1 or 2) is projected when given it, and saved so
        let old_dir = tempfile::tempdir().unwrap();
        raw.save(old_dir.path()).unwrap();
        let mut old = Bank::load(old_dir.path()).unwrap();
        assert_eq!(old.info().language_space, None);
        assert!(!old_dir.path().join(LANGUAGE_SPACE).exists());
        assert!(old.set_language_space(space.clone()).unwrap());
        assert_eq!(found(&old), found(&b));
        old.save(old_dir.path()).unwrap();
        let old = Bank::load(old_dir.path()).unwrap();
        assert_eq!(old.info().language_space, Some(1));
        assert_eq!(found(&old), found(&b));
        // a space of another size is refused
        let small = LanguageSpace::from_languages(&[vec![vec![1.0, 0.0]], vec![vec![0.0, 1.0]]]);
        let mut fresh = Bank::new("f", Some(model()));
        let e = fresh.set_language_space(small.unwrap()).unwrap_err();
        assert!(matches!(
            e,
            BankError::SpaceDimension {
                expected: 4,
                found: 2,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "bank f: a language space of 2 values, the bank's model makes 4"
        );
        // a damaged or missing space file is named
        let f = dir.path().join(LANGUAGE_SPACE);
        let body = std::fs::read(&f).unwrap();
        let mut flipped = body.clone();
        flipped[2] ^= 1;
        std::fs::write(&f, &flipped).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("language_space.bin"), "{e}");
        std::fs::remove_file(&f).unwrap();
        let e = Bank::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("language_space.bin"), "{e}");
    }

    #[test]
    fn eight_bit_cosines_follow_the_true_ones() {
        // 384 values like an e5 embedding's, from a fixed generator
        let mut x: u64 = 7;
        let mut vec = || -> Vec<f32> {
            (0..384)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        };
        let items: Vec<Vec<f32>> = (0..20).map(|_| vec()).collect();
        let b = embedded_bank(&items);
        let q: Vec<f32> = items[3]
            .iter()
            .zip(vec())
            .map(|(a, n)| a + 0.3 * n)
            .collect();
        let t = Thresholds {
            semantic: -1.0,
            semantic_margin: -2.0,
            ..Default::default()
        };
        let hits = b.find_semantic(std::slice::from_ref(&q), &t);
        assert_eq!(hits.len(), 20);
        for (_, m) in hits {
            let i: usize = m.item[1..].parse().unwrap();
            let truth = cosine(&items[i], &q);
            assert!(
                (m.similarity - truth).abs() < 0.01,
                "{}: {} vs {truth}",
                m.item,
                m.similarity
            );
        }
    }

    #[test]
    fn a_positive_margin_finds_what_a_scan_of_every_item_finds() {
        // 300 items in 30 tight clusters of 10 (many items over a low floor), and queries
        // near some of them
        let mut x: u64 = 11;
        let mut noise = |n: usize, size: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    size * (((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5)
                })
                .collect()
        };
        let dim = 64;
        let centres: Vec<Vec<f32>> = (0..30).map(|_| noise(dim, 1.0)).collect();
        let items: Vec<Vec<f32>> = (0..300)
            .map(|i| {
                let n = noise(dim, 0.3 + 0.05 * (i % 10) as f32);
                centres[i / 10].iter().zip(n).map(|(c, n)| c + n).collect()
            })
            .collect();
        let b = embedded_bank(&items);
        let mut compared = 0;
        for k in 0..40 {
            let q: Vec<f32> = items[k * 7]
                .iter()
                .zip(noise(dim, 0.6))
                .map(|(a, n)| a + n)
                .collect();
            let c: Vec<f32> = items.iter().map(|e| cosine(e, &q)).collect();
            for (floor, margin) in [(0.0, 0.01), (0.0, 0.05), (0.5, 0.02), (-1.0, 0.1)] {
                let t = Thresholds {
                    semantic: floor,
                    semantic_margin: margin,
                    ..Default::default()
                };
                let found: HashSet<usize> = b
                    .find_semantic(std::slice::from_ref(&q), &t)
                    .into_iter()
                    .map(|(_, m)| m.item[1..].parse().unwrap())
                    .collect();
                // every item's margin over the mean of its 4 best others (padded with the
                // floor), in f32
                for (i, ci) in c.iter().enumerate() {
                    let mut others: Vec<f32> =
                        (0..c.len()).filter(|j| *j != i).map(|j| c[j]).collect();
                    others.sort_by(|a, b| b.total_cmp(a));
                    others.truncate(MARGIN_NEIGHBOURS);
                    let m = ci - others.iter().sum::<f32>() / MARGIN_NEIGHBOURS as f32;
                    // (8-bit cosines move by about 0.002: borderline items are left out)
                    if (m - margin).abs() < 0.01 || (ci - floor).abs() < 0.01 {
                        continue;
                    }
                    assert_eq!(
                        found.contains(&i),
                        *ci >= floor && m >= margin,
                        "query {k}, item {i}"
                    );
                    compared += (*ci >= floor && m >= margin) as usize;
                }
            }
        }
        assert!(compared > 20, "{compared} matches compared");
    }
}
