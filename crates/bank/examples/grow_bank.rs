//! Grows a bank with embeddings to a size no encoder run here could reach, for measuring what
//! semantic look-up costs a run at that size (`scripts/matching/semantic_scale.sh --grow N`).
//!
//! The source bank's items keep their real embeddings (made by `triage bank build` with the
//! default model). Each further item, taken from an items file (`scripts/matching/make_items.py`),
//! gets the embedding of source item `k mod M` moved by random noise (a fixed generator; cosine
//! with it about 0.9): the vectors spread like the model's around real texts, but they are not
//! the model's embeddings of those texts, so the grown bank measures speed and memory, not
//! matching quality. The grown bank carries the source's model, so `triage label` accepts it.
//!
//! ```sh
//! cargo run --release -p triage-bank --example grow_bank -- SOURCE_BANK ITEMS.jsonl N OUT_BANK
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use triage_bank::{Bank, Item};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, items, n, out] = args.as_slice() else {
        return Err("usage: grow_bank SOURCE_BANK ITEMS.jsonl N OUT_BANK".into());
    };
    let n: usize = n.parse()?;
    let src = Bank::load(&PathBuf::from(source))?;
    let src_items = src.items();
    let base: Vec<Vec<f32>> = (0..src_items.len())
        .filter_map(|i| src.embedding(i))
        .collect();
    if base.is_empty() {
        return Err(format!("{source} holds no embeddings").into());
    }
    let held: std::collections::HashSet<&str> = src_items.iter().map(|i| i.id.as_str()).collect();
    let started = Instant::now();
    // the items file's lines, but the source bank's (already held) and past the size wanted
    let want = n.saturating_sub(held.len());
    let mut lines = Vec::with_capacity(want);
    for line in std::io::BufReader::new(std::fs::File::open(items)?).lines() {
        if lines.len() >= want {
            break;
        }
        let line = line?;
        let id = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        if id.is_some_and(|id| !held.contains(id.as_str())) {
            lines.push(line);
        }
    }
    let grown: Vec<Item> = lines
        .par_iter()
        .enumerate()
        .filter_map(|(k, line)| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let id = v["id"].as_str()?;
            let e = moved(&base[k % base.len()], k as u64);
            Some(Item::from_text(id, v["text"].as_str()?, Default::default()).with_embedding(e))
        })
        .collect();
    let prepared = started.elapsed().as_secs_f64();
    let mut bank = Bank::new(src.name(), src.info().embeddings.clone());
    // the source's embeddings are in its language space: the grown ones are compared in it too
    if let Some(space) = src.language_space() {
        bank.set_language_space(space.clone())?;
    }
    if let Some(reference) = src.reference() {
        bank.set_reference(&reference)?;
    }
    let items: Vec<Item> = src_items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut item = item.clone();
            item.embedding = src.embedding(i);
            item
        })
        .chain(grown)
        .collect();
    let t = Instant::now();
    bank.add(items)?;
    let indexed = t.elapsed().as_secs_f64();
    let t = Instant::now();
    bank.save(&PathBuf::from(out))?;
    let lists = match bank.index_list_sizes() {
        Some(mut sizes) => {
            sizes.sort_unstable();
            let k = sizes.len();
            let total: usize = sizes.iter().sum();
            let top: usize = sizes.iter().rev().take(10).sum();
            format!(
                "IVF of {k} lists: median {}, 99th percentile {}, largest {} items; the ten largest hold {:.0}%",
                sizes[k / 2],
                sizes[k * 99 / 100],
                sizes[k - 1],
                100.0 * top as f64 / total.max(1) as f64
            )
        }
        None => "no index".into(),
    };
    eprintln!(
        "{} items ({} with real embeddings): prepared in {prepared:.1} s, inserted and indexed in {indexed:.1} s ({lists}), saved in {:.1} s",
        bank.len(),
        base.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `base` plus noise from a fixed generator seeded by `seed`, at about cosine 0.9 with it.
fn moved(base: &[f32], seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    let noise: Vec<f32> = base
        .iter()
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let norm = noise.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    base.iter()
        .zip(&noise)
        .map(|(b, x)| b + 0.5 * x / norm)
        .collect()
}
