//! Re-upload families of a labelled dump ([`triage_bank::families`]): every output record gets
//! a `family` (the id of the family's first record in input order), and
//! `<output>.families.jsonl` lists each family of two or more records with its size,
//! representative, languages and the labels flagged among its members.
//!
//! It runs over a finished output and its input, so a dump's families do not depend on the
//! thread count, sharding (run it on the merged output) or resume of the run that labelled it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use triage_bank::families::FamilyBuilder;
use triage_bank::Query;

use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::input::Records;
use crate::pipeline::parse_raw;

/// Members listed per family in `families.jsonl` (the size counts them all).
pub const LISTED_MEMBERS: usize = 1000;

/// One family, as `families.jsonl` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Family {
    /// The family's id: the id of its first record in input order.
    pub family: String,
    /// Records in the family (labelled ones).
    pub size: u64,
    /// The record a reviewer reads for the family (its first).
    pub representative: String,
    /// Members per language.
    pub languages: BTreeMap<String, u64>,
    /// Members per flagged label.
    pub labels: BTreeMap<String, u64>,
    /// Member ids in input order (the first [`LISTED_MEMBERS`]).
    pub members: Vec<String>,
}

/// What finding families did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamiliesSummary {
    /// Labelled records given a family.
    pub records: u64,
    /// Families of two or more records.
    pub families: u64,
    /// Records in those families.
    pub in_families: u64,
    /// The largest family's size.
    pub largest: u64,
    /// Whether semantic edges were looked for.
    pub semantic: bool,
    /// Semantic edges found (each direction in which a record found another family counts).
    pub semantic_edges: u64,
    /// Records whose text could not be embedded (near-duplicate edges only).
    pub embedding_failures: u64,
    /// Where the list was written.
    pub path: PathBuf,
}

/// `<output>.families.jsonl`.
pub fn families_path(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.families.jsonl", output.display()))
}

const CHUNK: usize = 4096;

/// Embeds texts: one embedding per text, or why not.
pub type Embed<'a> = dyn Fn(&[&str]) -> std::result::Result<Vec<Vec<f32>>, String> + Sync + 'a;

/// Semantic edges between records: the encoder's embeddings of their texts, and the least
/// cosine and margin of an edge ([`FamilyBuilder::join_semantic`]).
pub struct SemanticEdges<'a> {
    /// Least cosine of an edge.
    pub threshold: f32,
    /// Least margin over the next nearest families.
    pub margin: f32,
    /// Embeds texts: one embedding per text, or why not (the records then have near-duplicate
    /// edges only).
    pub embed: &'a Embed<'a>,
}

/// Finds the families of the records of `input` (opened as the run opened it) labelled in
/// `output` (JSON Lines), adds `family` to each output record (rewriting the file in place,
/// atomically) and writes `<output>.families.jsonl`. `near`: the least estimated Jaccard
/// similarity of an edge; `semantic`: semantic edges too.
pub fn families(
    output: &Path,
    input: Records,
    input_name: &str,
    fields: &InputConfig,
    near: f32,
    semantic: Option<&SemanticEdges>,
) -> Result<FamiliesSummary> {
    let read_err = |source| Error::Read {
        input: output.display().to_string(),
        source,
    };
    let bad = |line: u64, message: String| {
        Error::Merge(format!("{}:{line}: {message}", output.display()))
    };
    // 0. with semantic edges: each labelled record's language (edges join languages)
    let mut languages: HashMap<u64, String> = HashMap::new();
    if semantic.is_some() {
        #[derive(serde::Deserialize)]
        struct Labelled {
            position: u64,
            lang: Option<String>,
        }
        let reader = BufReader::new(std::fs::File::open(output).map_err(read_err)?);
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(read_err)?;
            let r: Labelled = serde_json::from_str(&line)
                .map_err(|e| bad(n as u64 + 1, format!("not a labelled record: {e}")))?;
            // an undetermined language ("und") is no language: such records meet every other
            if let Some(lang) = r.lang.filter(|l| l != "und") {
                languages.insert(r.position, lang);
            }
        }
    }
    // 1. the input's records, in order: position and id kept, the text only as its signature
    // (and its embedding)
    let mut builder = FamilyBuilder::new(near);
    let mut embedding_failures = 0u64;
    let mut positions: HashMap<u64, u32> = HashMap::new();
    let mut ids: Vec<String> = Vec::new();
    let mut input = input.peekable();
    while input.peek().is_some() {
        let chunk: Vec<_> = input.by_ref().take(CHUNK).collect();
        let prepared: Vec<(u64, String, Query, String)> = chunk
            .into_par_iter()
            .map(|raw| {
                let pos = raw.pos;
                parse_raw(raw, input_name, fields)
                    .ok()
                    .map(|r| (pos, r.id, Query::new(&r.text), r.text))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect();
        let embeddings = semantic.map(|s| {
            let texts: Vec<&str> = prepared.iter().map(|p| p.3.as_str()).collect();
            match (s.embed)(&texts) {
                Ok(e) if e.len() == texts.len() => e.into_iter().map(Some).collect(),
                // one text the encoder refuses must not cost the others their embeddings
                _ => texts
                    .iter()
                    .map(|t| {
                        (s.embed)(std::slice::from_ref(t))
                            .ok()
                            .and_then(|mut e| e.pop())
                    })
                    .collect::<Vec<_>>(),
            }
        });
        for (k, (pos, id, q, _)) in prepared.into_iter().enumerate() {
            let i = builder.push(&q);
            if let Some(lang) = languages.get(&pos) {
                builder.set_language(i, lang);
            }
            match embeddings.as_ref().map(|e| &e[k]) {
                Some(Some(e)) => builder.set_embedding(i, e),
                Some(None) => embedding_failures += 1,
                None => {}
            }
            positions.insert(pos, i);
            ids.push(id);
        }
    }
    let semantic_edges = match semantic {
        Some(s) => builder.join_semantic(s.threshold, s.margin) as u64,
        None => 0,
    };
    let roots = builder.families();
    // 2. the output, rewritten with each record's family; the families counted
    let tmp = PathBuf::from(format!("{}.families-tmp", output.display()));
    let write_err = |source| Error::Write {
        output: tmp.display().to_string(),
        source,
    };
    let reader = BufReader::new(std::fs::File::open(output).map_err(read_err)?);
    let mut out = BufWriter::new(std::fs::File::create(&tmp).map_err(write_err)?);
    let mut found: BTreeMap<u32, Family> = BTreeMap::new();
    let mut summary = FamiliesSummary {
        semantic: semantic.is_some(),
        semantic_edges,
        embedding_failures,
        ..Default::default()
    };
    for (n, line) in reader.lines().enumerate() {
        let n = n as u64 + 1;
        let line = line.map_err(read_err)?;
        let mut line = line.as_str();
        // a file given families before: its `family` is the last field, replaced
        if let Some(at) = line.rfind(",\"family\":") {
            line = &line[..at];
        } else {
            line = line
                .strip_suffix('}')
                .ok_or_else(|| bad(n, "not a JSON object".into()))?;
        }
        let record: serde_json::Value = serde_json::from_str(&format!("{line}}}"))
            .map_err(|e| bad(n, format!("not a labelled record: {e}")))?;
        let pos = record["position"]
            .as_u64()
            .ok_or_else(|| bad(n, "no \"position\"".into()))?;
        let i = *positions.get(&pos).ok_or_else(|| {
            bad(
                n,
                format!("position {pos} is not a record of {input_name} (another input?)"),
            )
        })?;
        let root = roots[i as usize];
        let family = &ids[root as usize];
        let f = found.entry(root).or_insert_with(|| Family {
            family: family.clone(),
            size: 0,
            representative: family.clone(),
            languages: BTreeMap::new(),
            labels: BTreeMap::new(),
            members: Vec::new(),
        });
        f.size += 1;
        if let Some(lang) = record["lang"].as_str() {
            *f.languages.entry(lang.to_owned()).or_default() += 1;
        }
        for l in record["labels"].as_array().into_iter().flatten() {
            if l["flagged"].as_bool() == Some(true) {
                if let Some(name) = l["label"].as_str() {
                    *f.labels.entry(name.to_owned()).or_default() += 1;
                }
            }
        }
        if f.members.len() < LISTED_MEMBERS {
            f.members.push(ids[i as usize].clone());
        }
        summary.records += 1;
        writeln!(
            out,
            "{line},\"family\":{}}}",
            serde_json::to_string(family).expect("strings serialise")
        )
        .map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    out.get_ref().sync_all().map_err(write_err)?;
    drop(out);
    // 3. the list: families of two or more, largest first, then in input order
    let mut list: Vec<(u32, Family)> = found.into_iter().filter(|(_, f)| f.size > 1).collect();
    list.sort_by(|a, b| b.1.size.cmp(&a.1.size).then(a.0.cmp(&b.0)));
    let path = families_path(output);
    let mut body = Vec::new();
    for (_, f) in &list {
        serde_json::to_writer(&mut body, f).expect("families serialise");
        body.push(b'\n');
        summary.families += 1;
        summary.in_families += f.size;
        summary.largest = summary.largest.max(f.size);
    }
    crate::sink::write_atomic(&path, &body).map_err(|source| Error::Write {
        output: path.display().to_string(),
        source,
    })?;
    std::fs::rename(&tmp, output).map_err(|source| Error::Write {
        output: output.display().to_string(),
        source,
    })?;
    summary.path = path;
    Ok(summary)
}
