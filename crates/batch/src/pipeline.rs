//! The parallel pipeline: reader -> language detection and tokenization (rayon) ->
//! inference on batches of similar length -> writer in input order, joined by bounded channels
//! so that memory stays flat whatever the size of the dump.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::bounded;
use rayon::prelude::*;
use triage_bank::{Bank, Match, Query, Thresholds};
use triage_classify::{Classifier, Prepared};
use triage_langid::{Detection, Detector};

use crate::config::{InputConfig, WorkspaceConfig};
use crate::error::{Error, Result};
use crate::reader::{Payload, RawRecord};
use crate::record::{
    parse_json_line, record_from_fields, ErrorDetail, OutputRecord, Record, RecordError,
};
use crate::sink::Sink;
use crate::summary::{LabelCount, Summary};

/// What labels records: the classifier, the language detector, the input's field names and
/// the banks of known content.
#[derive(Debug, Clone)]
pub struct Labeller {
    classifier: Classifier,
    detector: std::sync::Arc<Detector>,
    input: InputConfig,
    banks: Arc<Vec<Bank>>,
    thresholds: Thresholds,
    max_matches: usize,
    config_id: Option<Arc<str>>,
}

impl Labeller {
    /// Assembles an labeller from its parts.
    pub fn new(classifier: Classifier, detector: Detector, input: InputConfig) -> Self {
        Labeller {
            classifier,
            detector: std::sync::Arc::new(detector),
            input,
            banks: Arc::new(Vec::new()),
            thresholds: Thresholds::default(),
            max_matches: 10,
            config_id: None,
        }
    }

    /// The labeller matching every record against `banks` at `thresholds`. Refuses a bank
    /// whose embeddings another model made, and two banks of one name.
    pub fn with_banks(
        mut self,
        mut banks: Vec<(std::path::PathBuf, Bank)>,
        thresholds: Thresholds,
    ) -> Result<Self> {
        let mut names = std::collections::HashSet::new();
        for (dir, b) in &banks {
            b.check_model(
                dir,
                self.classifier.model_id(),
                self.classifier.weights_sha256(),
            )?;
            if !names.insert(b.name().to_owned()) {
                return Err(Error::Config {
                    path: dir.join("bank.json"),
                    message: format!("a second bank named {:?}", b.name()),
                });
            }
        }
        for dir in upgrade_banks(&mut banks, &self.classifier)? {
            tracing::warn!(
                bank = %dir.display(),
                "the bank was built before language spaces (format 1 or 2) or before items' \
                 levels: its embeddings are projected, or their levels measured, at every load \
                 until it is saved so (`triage bank add {} /dev/null`)",
                dir.display()
            );
        }
        self.banks = Arc::new(banks.into_iter().map(|(_, b)| b).collect());
        self.thresholds = thresholds;
        Ok(self)
    }

    /// Every output record names the configuration that produced it (`config`: a hash of
    /// the configuration in force, the model and the banks).
    pub fn with_config_id(mut self, id: &str) -> Self {
        self.config_id = Some(Arc::from(id));
        self
    }

    /// At most `n` matches written per record (best first).
    pub fn max_matches(mut self, n: usize) -> Self {
        self.max_matches = n;
        self
    }

    /// The banks every record is matched against.
    pub fn banks(&self) -> &[Bank] {
        &self.banks
    }

    /// Whether a bank holds embeddings, so that the run keeps each window's embedding for
    /// semantic look-up.
    fn semantic(&self) -> bool {
        self.banks.iter().any(Bank::has_embeddings)
    }

    /// Loads the model of `config` from `model_dir` and builds the detector.
    #[tracing::instrument(skip_all)]
    pub fn from_config(
        config: &WorkspaceConfig,
        model_dir: &std::path::Path,
        config_path: &std::path::Path,
    ) -> Result<Self> {
        // the n-gram model's parse (a fifth of a second) and the banks (a million items take
        // seconds) load while the model does; a missing or damaged bank is the error reported,
        // whatever the model's load did
        let new_detector = || {
            Detector::new(&config.languages).map_err(|source| Error::Languages {
                path: config_path.to_owned(),
                source,
            })
        };
        let root = config_path.parent().unwrap_or(std::path::Path::new(""));
        let load_banks = || {
            config
                .banks
                .paths
                .iter()
                .map(|p| {
                    let dir = root.join(p);
                    let bank = Bank::load(&dir)?;
                    tracing::debug!(bank = %dir.display(), items = bank.len(), "bank loaded");
                    Ok::<_, triage_bank::BankError>((dir, bank))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
        };
        let build = || {
            triage_classify::ClassifierBuilder::new(model_dir)
                .options(config.model.clone())
                .labels(config.labels.clone())
                .build()
        };
        let (detector, banks, classifier) = std::thread::scope(|s| {
            let detector = s.spawn(new_detector);
            let banks = (!config.banks.paths.is_empty()).then(|| s.spawn(load_banks));
            let classifier = build();
            (
                detector
                    .join()
                    .expect("building the detector does not panic"),
                banks.map(|b| b.join().expect("loading the banks does not panic")),
                classifier,
            )
        });
        let detector = detector?;
        let banks = banks.unwrap_or_else(|| Ok(Vec::new()))?;
        let classifier = classifier?;
        Labeller::new(classifier, detector, config.input.clone())
            .max_matches(config.banks.max_matches)
            .with_banks(banks, config.banks.thresholds())
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The language detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }
}

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The input's name in error records (`-` for standard input).
    pub input_name: String,
    /// The output's name in error messages.
    pub output_name: String,
    /// Stop once this many records have failed.
    pub max_errors: Option<u64>,
    /// Records per chunk handed from stage to stage.
    pub chunk_records: usize,
    /// Input lines already done (a resumed run skips them).
    pub skip_lines: u64,
    /// Set from outside (a signal) to stop reading; what was read is still written.
    pub stop: Option<Arc<AtomicBool>>,
    /// Longer texts become error records (`too_long`) instead of hours of windows.
    pub max_chars: usize,
    /// Write output records as CSV rows instead of JSON lines.
    pub csv_output: bool,
    /// Texts whose tokens were seen before in this run reuse their scores (at most this many
    /// texts remembered; 0 turns it off).
    pub dedupe_capacity: usize,
    /// `(i, n)`: label only the records whose id hashes to shard `i` of `n` (records without a
    /// readable id by their position).
    pub shard: Option<(u64, u64)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            input_name: "-".into(),
            output_name: "-".into(),
            max_errors: None,
            chunk_records: 256,
            skip_lines: 0,
            stop: None,
            max_chars: 1_000_000,
            csv_output: false,
            dedupe_capacity: 200_000,
            shard: None,
        }
    }
}

/// What a checkpoint records after a chunk is durably written.
#[derive(Debug)]
pub struct Checkpoint<'a> {
    /// Input lines done (the next run resumes after this line).
    pub lines_done: u64,
    /// Bytes of the output that hold those lines' records.
    pub output_bytes: u64,
    /// Bytes of the errors file.
    pub errors_bytes: u64,
    /// The summary so far.
    pub summary: &'a Summary,
}

/// Where a run stands, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct ProgressInfo {
    /// Records written so far (labelled and errors).
    pub records: u64,
    /// Errors so far.
    pub errors: u64,
}

const CHUNK_BYTES: usize = 8 << 20;

struct RawChunk {
    seq: u64,
    last_line: u64,
    records: Vec<RawRecord>,
}

enum Item {
    /// Position, record, language, windows, exact and near bank matches.
    Ready(u64, Record, Detection, Prepared, Vec<Match>),
    Failed(u64, RecordError),
    /// Another shard's record.
    Skipped,
}

/// FNV-1a: a fixed, documented hash, so every machine of a sharded run agrees on the split.
pub fn shard_of(key: &str, shards: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % shards.max(1)
}

struct PrepChunk {
    seq: u64,
    last_line: u64,
    items: Vec<Item>,
}

/// A text's window scores (`[window][label]`) and its semantic bank matches, shared by the
/// texts with its tokens.
type Scores = Arc<Scored>;

struct Scored {
    scores: Vec<Vec<f32>>,
    /// Semantic matches: the window that made each (`None`: the whole text), its span set
    /// per record from that record's windows.
    semantic: Vec<(Option<usize>, Match)>,
}

impl Scored {
    fn plain(scores: Vec<Vec<f32>>) -> Scores {
        Arc::new(Scored {
            scores,
            semantic: Vec::new(),
        })
    }
}

/// Gives every bank that holds embeddings without a language space (one of format 1 or 2)
/// the classifier's ([`language_space`]), and every such bank without a reference (made
/// before references) the built-in background as one ([`triage_bank::Bank::set_reference`]),
/// so that its semantic look-up compares as a bank built now does, at the same thresholds.
/// Returns the folders of the banks changed.
pub fn upgrade_banks(
    banks: &mut [(std::path::PathBuf, Bank)],
    classifier: &Classifier,
) -> Result<Vec<std::path::PathBuf>> {
    let mut changed = Vec::new();
    let mut made = None;
    for (dir, b) in banks.iter_mut() {
        if !b.has_embeddings() || (b.language_space().is_some() && b.has_reference()) {
            continue;
        }
        if made.is_none() {
            made = Some(semantic_frame(classifier)?);
        }
        let (space, reference) = made.as_ref().expect("made above");
        b.set_language_space(space.clone())?;
        b.set_reference(reference)?;
        changed.push(dir.clone());
    }
    Ok(changed)
}

/// The directions of language of `classifier`'s embeddings ([`triage_bank::LanguageSpace`]),
/// estimated from the built-in background: the same ordinary sentences written for this
/// project in each of the 15 languages (`crates/classify/data/background.txt`).
pub fn language_space(classifier: &Classifier) -> Result<triage_bank::LanguageSpace> {
    Ok(semantic_frame(classifier)?.0)
}

/// What a bank's semantic look-up is measured against: the language space
/// ([`language_space`]) and, as the reference of items' levels
/// ([`triage_bank::Bank::set_reference`]), the embeddings of the same built-in background.
pub fn semantic_frame(
    classifier: &Classifier,
) -> Result<(triage_bank::LanguageSpace, Vec<Vec<f32>>)> {
    let lines = triage_classify::builtin_background_by_language();
    let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
    let embeddings = classifier.embed(&texts)?;
    let mut groups: std::collections::BTreeMap<&str, Vec<Vec<f32>>> = Default::default();
    for ((lang, _), e) in lines.iter().zip(&embeddings) {
        groups.entry(lang).or_default().push(e.clone());
    }
    let groups: Vec<Vec<Vec<f32>>> = groups.into_values().collect();
    let space =
        triage_bank::LanguageSpace::from_languages(&groups).ok_or_else(|| Error::Config {
            path: std::path::PathBuf::from("crates/classify/data/background.txt"),
            message: "the built-in background gives no language space".into(),
        })?;
    Ok((space, embeddings))
}

/// Semantic matches of a text from its windows' embeddings: the text's embedding (the
/// token-weighted mean) and, for a text of several windows, each window's.
fn semantic_matches(
    labeller: &Labeller,
    p: &Prepared,
    windows: &[Vec<f32>],
) -> Vec<(Option<usize>, Match)> {
    let mut embeddings = vec![labeller.classifier.text_embedding(p, windows)];
    if windows.len() > 1 {
        embeddings.extend(windows.iter().cloned());
    }
    labeller
        .banks
        .iter()
        .flat_map(|b| b.find_semantic(&embeddings, &labeller.thresholds))
        .map(|(k, m)| ((k > 0).then(|| k - 1), m))
        .collect()
}

/// Window scores of texts seen before, keyed by a hash of their windows' token ids (the
/// tokenizer has already normalised the text), forgotten oldest first.
struct Seen {
    scores: std::collections::HashMap<[u8; 32], Scores>,
    order: std::collections::VecDeque<[u8; 32]>,
    capacity: usize,
}

impl Seen {
    fn key(p: &Prepared) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for w in &p.windows {
            for id in &w.ids {
                h.update(id.to_le_bytes());
            }
            h.update(u32::MAX.to_le_bytes());
        }
        h.finalize().into()
    }

    fn insert(&mut self, key: [u8; 32], scores: Scores) {
        if self.capacity == 0 || self.scores.contains_key(&key) {
            return;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.scores.remove(&old);
            }
        }
        self.order.push_back(key);
        self.scores.insert(key, scores);
    }
}

enum Line {
    Labelled {
        json: String,
        lang: &'static str,
        listed: bool,
        flagged: Vec<usize>,
        top: Option<usize>,
        chars: usize,
        tokens: usize,
        encoder_tokens: usize,
        windows: usize,
        reused: bool,
        /// Per bank matched: its name and the record's best method.
        bank_hits: Vec<(String, triage_bank::Method)>,
    },
    Failed {
        json: String,
        kind: &'static str,
    },
}

struct DoneChunk {
    seq: u64,
    last_line: u64,
    lines: Vec<Line>,
}

fn read_chunks(
    input: Box<dyn Iterator<Item = RawRecord> + Send>,
    options: &RunOptions,
    stop: &AtomicBool,
    external: Option<&AtomicBool>,
    tx: crossbeam_channel::Sender<RawChunk>,
) {
    let mut seq = 0;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    let mut last = options.skip_lines;
    let mut input = input.peekable();
    loop {
        let halted =
            stop.load(Ordering::Relaxed) || external.is_some_and(|e| e.load(Ordering::Relaxed));
        let next = if halted { None } else { input.next() };
        let eof = next.is_none();
        if let Some(r) = next {
            if r.pos <= options.skip_lines {
                continue;
            }
            last = r.pos;
            chunk_bytes += match &r.payload {
                Payload::Json(b) => b.len(),
                Payload::Fields { text, .. } => text.len(),
                Payload::Error(_) => 0,
            };
            chunk.push(r);
        }
        if (eof || chunk.len() >= options.chunk_records || chunk_bytes >= CHUNK_BYTES)
            && !chunk.is_empty()
        {
            let c = RawChunk {
                seq,
                last_line: last,
                records: std::mem::take(&mut chunk),
            };
            seq += 1;
            chunk_bytes = 0;
            if tx.send(c).is_err() {
                return;
            }
        }
        if eof {
            return;
        }
    }
}

/// A raw record parsed into a record, or the error record that says why it cannot be one.
pub(crate) fn parse_raw(
    raw: RawRecord,
    input_name: &str,
    input: &InputConfig,
) -> std::result::Result<Record, RecordError> {
    let file = raw.file.as_deref().unwrap_or(input_name);
    match raw.payload {
        Payload::Json(bytes) => parse_json_line(&bytes, raw.line, file, input),
        Payload::Fields { id, text } => record_from_fields(
            id.as_deref(),
            &text,
            raw.line,
            raw.pos,
            file,
            &input.text_field,
        ),
        Payload::Error(e) => Err(e),
    }
}

fn prepare_chunk(labeller: &Labeller, options: &RunOptions, chunk: RawChunk) -> PrepChunk {
    let items: Vec<Item> = chunk
        .records
        .into_par_iter()
        .map(|raw| {
            let file = raw
                .file
                .clone()
                .unwrap_or_else(|| options.input_name.clone());
            let file = file.as_str();
            let pos = raw.pos;
            let parsed = parse_raw(raw, &options.input_name, &labeller.input);
            if let Some((i, n)) = options.shard {
                let key = match &parsed {
                    Ok(r) => r.id.clone(),
                    Err(e) => e.id.clone().unwrap_or_else(|| pos.to_string()),
                };
                if shard_of(&key, n) != i {
                    return Item::Skipped;
                }
            }
            let rec = match parsed {
                Ok(r) => r,
                Err(e) => return Item::Failed(pos, e),
            };
            let fail = |kind, reason: String| {
                Item::Failed(
                    pos,
                    RecordError {
                        id: Some(rec.id.clone()),
                        file: file.to_owned(),
                        line: rec.line,
                        error: ErrorDetail {
                            kind,
                            field: Some(labeller.input.text_field.clone()),
                            reason,
                        },
                    },
                )
            };
            let chars = rec.text.chars().count();
            if chars > options.max_chars {
                return fail(
                    "too_long",
                    format!(
                        "{chars} characters, more than the limit of {} (--max-chars)",
                        options.max_chars
                    ),
                );
            }
            let lang = labeller.detector.detect(&rec.text);
            let matches = if labeller.banks.is_empty() {
                Vec::new()
            } else {
                let q = Query::new(&rec.text);
                labeller
                    .banks
                    .iter()
                    .flat_map(|b| b.find(&q, &labeller.thresholds))
                    .collect()
            };
            match labeller.classifier.prepare(&rec.text) {
                Ok(p) => Item::Ready(pos, rec, lang, p, matches),
                Err(e) => fail("tokenize", e.to_string()),
            }
        })
        .collect();
    PrepChunk {
        seq: chunk.seq,
        last_line: chunk.last_line,
        items,
    }
}

/// Each bank a record matched, with its best method (`matches` are best first).
fn bank_hits(matches: &[Match]) -> Vec<(String, triage_bank::Method)> {
    let mut hits: Vec<(String, triage_bank::Method)> = Vec::new();
    for m in matches {
        match hits.iter_mut().find(|h| h.0 == m.bank) {
            Some(h) => h.1 = h.1.min(m.method),
            None => hits.push((m.bank.clone(), m.method)),
        }
    }
    hits
}

fn error_line(e: &RecordError, position: u64) -> Line {
    #[derive(serde::Serialize)]
    struct WithPosition<'a> {
        #[serde(flatten)]
        e: &'a RecordError,
        position: u64,
    }
    Line::Failed {
        json: serde_json::to_string(&WithPosition { e, position })
            .expect("error records serialise"),
        kind: e.error.kind,
    }
}

fn infer_chunk(
    labeller: &Labeller,
    options: &RunOptions,
    seen: &mut Seen,
    chunk: PrepChunk,
) -> DoneChunk {
    let ready: Vec<&Prepared> = chunk
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Ready(_, _, _, p, _) => Some(p),
            Item::Failed(..) | Item::Skipped => None,
        })
        .collect();
    // Texts already seen (in earlier chunks or earlier in this one) reuse their window scores,
    // shared, not copied.
    let keys: Vec<[u8; 32]> = ready.iter().map(|p| Seen::key(p)).collect();
    let mut todo: Vec<usize> = Vec::new();
    let mut first_of: std::collections::HashMap<[u8; 32], usize> = std::collections::HashMap::new();
    let mut reused = vec![false; ready.len()];
    // One entry per text: its scores, or why it has none. Scores of earlier chunks are taken
    // now: the inserts below may evict them.
    let mut results: Vec<Option<std::result::Result<Scores, String>>> = vec![None; ready.len()];
    for (i, k) in keys.iter().enumerate() {
        if let Some(s) = seen.scores.get(k).filter(|_| seen.capacity > 0) {
            reused[i] = true;
            results[i] = Some(Ok(s.clone()));
        } else if seen.capacity > 0 && first_of.contains_key(k) {
            reused[i] = true;
        } else {
            first_of.insert(*k, i);
            todo.push(i);
        }
    }
    let todo_prepared: Vec<&Prepared> = todo.iter().map(|&i| ready[i]).collect();
    let score = |prepared: &[&Prepared]| -> triage_classify::Result<Vec<Scores>> {
        if labeller.semantic() {
            let (scores, embeddings) =
                labeller.classifier.window_scores_and_embeddings(prepared)?;
            // the look-ups of the chunk's texts in parallel (a large bank's take milliseconds)
            use rayon::prelude::*;
            Ok(scores
                .into_par_iter()
                .zip(embeddings)
                .zip(prepared.par_iter())
                .map(|((scores, windows), p)| {
                    Arc::new(Scored {
                        scores,
                        semantic: semantic_matches(labeller, p, &windows),
                    })
                })
                .collect())
        } else {
            Ok(labeller
                .classifier
                .window_scores(prepared)?
                .into_iter()
                .map(Scored::plain)
                .collect())
        }
    };
    match score(&todo_prepared) {
        Ok(scores) => {
            for (&i, s) in todo.iter().zip(scores) {
                results[i] = Some(Ok(s));
            }
        }
        // One failing record must not sink the chunk: on error, score the records one by one.
        Err(_) => {
            for (&i, p) in todo.iter().zip(&todo_prepared) {
                results[i] = Some(
                    score(std::slice::from_ref(p))
                        .map(|mut v| v.remove(0))
                        .map_err(|e| e.to_string()),
                );
            }
        }
    }
    for &i in &todo {
        if let Some(Ok(s)) = &results[i] {
            seen.insert(keys[i], s.clone());
        }
    }
    // a repeat of a text first met earlier in this chunk shares its scores
    for (i, k) in keys.iter().enumerate() {
        if results[i].is_none() {
            results[i] = Some(
                results[first_of[k]]
                    .clone()
                    .unwrap_or_else(|| Err("no scores for this text".into())),
            );
        }
    }
    let names = labeller.classifier.label_names();
    let model = labeller.classifier.model_id();
    let mut results = results
        .into_iter()
        .map(|r| r.expect("every text has a result"))
        .zip(reused);
    let lines = chunk
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Skipped => None,
            Item::Failed(pos, e) => Some(error_line(e, *pos)),
            Item::Ready(pos, rec, lang, p, matches) => {
                Some(match results.next().expect("one result per record") {
                    (Ok(scored), reused) => {
                        let c = labeller.classifier.classify_window_scores(
                            p,
                            &scored.scores,
                            Some(lang.lang()),
                        );
                        let matches = (!labeller.banks.is_empty()).then(|| {
                            let semantic = scored.semantic.iter().map(|(w, m)| {
                                let (start, end) = match w.and_then(|w| p.windows.get(w)) {
                                    Some(w) => (w.start, w.end),
                                    None => (0, p.chars),
                                };
                                Match {
                                    start,
                                    end,
                                    ..m.clone()
                                }
                            });
                            triage_bank::merge_matches(matches.iter().cloned().chain(semantic))
                        });
                        let bank_hits = matches.as_deref().map(bank_hits).unwrap_or_default();
                        let matches = matches.map(|mut m| {
                            m.truncate(labeller.max_matches);
                            m
                        });
                        let out = OutputRecord::new(&rec.id, *pos, lang, &c, model)
                            .with_matches(matches)
                            .with_config(labeller.config_id.as_deref());
                        Line::Labelled {
                            json: if options.csv_output {
                                out.csv()
                            } else {
                                serde_json::to_string(&out).expect("output records serialise")
                            },
                            lang: lang.lang(),
                            listed: lang.is_listed(),
                            flagged: c
                                .labels()
                                .iter()
                                .enumerate()
                                .filter(|(_, l)| l.flagged())
                                .map(|(i, _)| i)
                                .collect(),
                            top: c
                                .top()
                                .and_then(|t| names.iter().position(|n| *n == t.label())),
                            chars: c.chars(),
                            tokens: c.tokens(),
                            encoder_tokens: if reused { 0 } else { p.window_tokens() },
                            windows: c.windows(),
                            reused,
                            bank_hits,
                        }
                    }
                    (Err(reason), _) => error_line(
                        &RecordError {
                            id: Some(rec.id.clone()),
                            file: options.input_name.clone(),
                            line: rec.line,
                            error: ErrorDetail {
                                kind: "inference",
                                field: None,
                                reason,
                            },
                        },
                        *pos,
                    ),
                })
            }
        })
        .collect();
    DoneChunk {
        seq: chunk.seq,
        last_line: chunk.last_line,
        lines,
    }
}

/// One text of [`Labeller::label_batch`]: its output record, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchResult {
    /// The output record, as `triage label` writes it (JSON), with its windows and tokens.
    Labelled {
        /// The record (JSON).
        json: String,
        /// Windows the encoder ran.
        windows: usize,
        /// Tokens the encoder ran.
        tokens: usize,
    },
    /// The text could not be labelled.
    Failed {
        /// The error record's kind (`empty_text`, `too_long`, `tokenize`, `inference`).
        kind: String,
        /// Why.
        reason: String,
    },
}

impl Labeller {
    /// Labels `texts` (`(position, id, text)`) as one batch, with the very code that [`run`]
    /// labels a chunk with (a record's scores never depend on what else is in its batch): one
    /// result per text, in order. Texts over `max_chars` characters fail as `too_long`.
    pub fn label_batch(
        &self,
        texts: Vec<(u64, String, String)>,
        max_chars: usize,
    ) -> Vec<BatchResult> {
        let options = RunOptions {
            input_name: "request".into(),
            max_chars,
            dedupe_capacity: 0,
            ..RunOptions::default()
        };
        let records = texts
            .into_iter()
            .map(|(pos, id, text)| RawRecord {
                pos,
                line: pos,
                file: None,
                payload: Payload::Fields {
                    id: Some(id.into_bytes()),
                    text: text.into_bytes(),
                },
            })
            .collect();
        let chunk = RawChunk {
            seq: 0,
            last_line: 0,
            records,
        };
        let prepared = prepare_chunk(self, &options, chunk);
        let mut seen = Seen {
            scores: Default::default(),
            order: Default::default(),
            capacity: 0,
        };
        infer_chunk(self, &options, &mut seen, prepared)
            .lines
            .into_iter()
            .map(|line| match line {
                Line::Labelled {
                    json,
                    windows,
                    encoder_tokens,
                    ..
                } => BatchResult::Labelled {
                    json,
                    windows,
                    tokens: encoder_tokens,
                },
                Line::Failed { json, kind } => {
                    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                    BatchResult::Failed {
                        kind: kind.to_owned(),
                        reason: v["error"]["reason"].as_str().unwrap_or(kind).to_owned(),
                    }
                }
            })
            .collect()
    }
}

/// Labels every record of `input` (JSON Lines), writing one output line per labelled record to
/// `output` (after the header, for a CSV output that is still empty) and one error record per
/// failed record to `errors`, both in input order. After each
/// chunk both outputs are made durable and `checkpoint` is called, so that a killed run can
/// resume exactly where the last checkpoint left it (`start` is that checkpoint's summary).
#[tracing::instrument(skip_all, fields(input = %options.input_name))]
#[allow(clippy::too_many_arguments)]
pub fn run(
    labeller: &Labeller,
    input: Box<dyn Iterator<Item = RawRecord> + Send>,
    output: &mut Sink,
    errors: &mut Sink,
    options: &RunOptions,
    start: Option<Summary>,
    progress: &(dyn Fn(ProgressInfo) + Sync),
    checkpoint: &mut dyn FnMut(&Checkpoint) -> std::io::Result<()>,
) -> Result<Summary> {
    let started = Instant::now();
    let names = labeller.classifier.label_names();
    let mut summary = start.unwrap_or_else(|| Summary {
        labels: names
            .iter()
            .map(|n| (n.to_string(), LabelCount::default()))
            .collect(),
        ..Default::default()
    });
    summary.list_banks(labeller.banks.iter().map(Bank::name));
    summary.threads = rayon::current_num_threads();
    summary.stopped_early = false;
    let stop = AtomicBool::new(false);
    let werr = |name: &str, source| Error::Write {
        output: name.to_owned(),
        source,
    };
    // a CSV output starts with its header (a resumed one already has it)
    if options.csv_output && output.written() == 0 {
        output
            .line(&crate::record::csv_header(
                &names,
                !labeller.banks.is_empty(),
                labeller.config_id.is_some(),
            ))
            .map_err(|e| werr(output.name(), e))?;
    }
    let result = std::thread::scope(|s| -> Result<()> {
        let (raw_tx, raw_rx) = bounded::<RawChunk>(2);
        let (prep_tx, prep_rx) = bounded::<PrepChunk>(2);
        let (done_tx, done_rx) = bounded::<DoneChunk>(2);
        let stop = &stop;
        let external = options.stop.as_deref();
        s.spawn(move || read_chunks(input, options, stop, external, raw_tx));
        s.spawn(move || {
            for chunk in raw_rx {
                if prep_tx
                    .send(prepare_chunk(labeller, options, chunk))
                    .is_err()
                {
                    return;
                }
            }
        });
        s.spawn(move || {
            let mut seen = Seen {
                scores: Default::default(),
                order: Default::default(),
                capacity: options.dedupe_capacity,
            };
            for chunk in prep_rx {
                let _span =
                    tracing::debug_span!("chunk", seq = chunk.seq, records = chunk.items.len())
                        .entered();
                if done_tx
                    .send(infer_chunk(labeller, options, &mut seen, chunk))
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let outcome = (|| -> Result<()> {
            for chunk in &done_rx {
                pending.insert(chunk.seq, chunk);
                while let Some(chunk) = pending.remove(&next) {
                    next += 1;
                    for line in chunk.lines {
                        summary.records += 1;
                        match line {
                            Line::Labelled {
                                json,
                                lang,
                                listed,
                                flagged,
                                top,
                                chars,
                                tokens,
                                encoder_tokens,
                                windows,
                                reused,
                                bank_hits,
                            } => {
                                summary.count_bank_hits(&bank_hits);
                                output.line(&json).map_err(|e| werr(output.name(), e))?;
                                summary.reused += reused as u64;
                                summary.labelled += 1;
                                *summary.languages.entry(lang.to_owned()).or_default() += 1;
                                if !listed && lang != "und" {
                                    *summary
                                        .unlisted_languages
                                        .entry(lang.to_owned())
                                        .or_default() += 1;
                                }
                                summary.unflagged += flagged.is_empty() as u64;
                                for i in flagged {
                                    summary.labels[i].1.flagged += 1;
                                }
                                if let Some(t) = top {
                                    summary.labels[t].1.top += 1;
                                }
                                summary.chars += chars as u64;
                                summary.tokens += tokens as u64;
                                summary.encoder_tokens += encoder_tokens as u64;
                                summary.windows += windows as u64;
                            }
                            Line::Failed { json, kind } => {
                                errors.line(&json).map_err(|e| werr(errors.name(), e))?;
                                summary.errors += 1;
                                *summary.error_kinds.entry(kind.to_owned()).or_default() += 1;
                                if options.max_errors.is_some_and(|m| summary.errors >= m) {
                                    summary.stopped_early = true;
                                    return Ok(());
                                }
                            }
                        }
                    }
                    let output_bytes = output.commit().map_err(|e| werr(output.name(), e))?;
                    let errors_bytes = errors.commit().map_err(|e| werr(errors.name(), e))?;
                    checkpoint(&Checkpoint {
                        lines_done: chunk.last_line,
                        output_bytes,
                        errors_bytes,
                        summary: &summary,
                    })
                    .map_err(|e| werr("the checkpoint", e))?;
                    progress(ProgressInfo {
                        records: summary.records,
                        errors: summary.errors,
                    });
                }
            }
            Ok(())
        })();
        // Stop the stages (they end when their next send finds no receiver).
        stop.store(true, Ordering::Relaxed);
        drop(done_rx);
        outcome
    });
    output.commit().map_err(|e| werr(output.name(), e))?;
    errors.commit().map_err(|e| werr(errors.name(), e))?;
    summary.interrupted = options
        .stop
        .as_ref()
        .is_some_and(|s| s.load(Ordering::Relaxed));
    summary.elapsed = started.elapsed();
    result.map(|()| summary)
}
