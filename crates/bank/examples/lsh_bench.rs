//! The bank's build and look-up, timed on one thread, on the items and queries that
//! `scripts/matching/datasketch_lsh.py` times Python datasketch's MinHashLSH on (same 64 rows,
//! 16 bands of 4, 5-character shingles, near 0.35; the contained look-up off, as datasketch
//! has none). Prints one JSON line. Run by `scripts/matching/scale.sh`.
//!
//! ```sh
//! cargo run --release -p triage-bank --example lsh_bench -- items.jsonl queries.jsonl --limit 100000
//! ```

use std::io::BufRead;
use std::time::Instant;

use triage_bank::{Bank, Item, Query, Thresholds};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: usize = args
        .iter()
        .position(|a| a == "--limit")
        .and_then(|i| args.get(i + 1))
        .map_or(usize::MAX, |v| v.parse().expect("a number"));
    let read = |p: &str| -> Vec<serde_json::Value> {
        std::io::BufReader::new(std::fs::File::open(p).expect("readable"))
            .lines()
            .map(|l| serde_json::from_str(&l.expect("a line")).expect("JSON"))
            .collect()
    };
    let mut items = read(&args[0]);
    items.truncate(limit);
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let queries: Vec<serde_json::Value> = read(&args[1])
        .into_iter()
        .filter(|q| ids.contains(q["item"].as_str().unwrap()))
        .collect();
    let started = Instant::now();
    let mut bank = Bank::new("bench", None);
    for i in &items {
        let item = Item::from_text(
            i["id"].as_str().unwrap(),
            i["text"].as_str().unwrap(),
            Default::default(),
        );
        bank.insert(item).expect("no embeddings");
    }
    bank.finish();
    let build = started.elapsed().as_secs_f64();
    let t = Thresholds {
        near: 0.35,
        contained: 2.0,
        semantic: 2.0,
        semantic_margin: 0.0,
        semantic_lift: 0.0,
    };
    let started = Instant::now();
    let mut hits = 0;
    for q in &queries {
        let found = bank.find(&Query::new(q["text"].as_str().unwrap()), &t);
        hits += found.iter().any(|m| m.item == q["item"].as_str().unwrap()) as usize;
    }
    let query = started.elapsed().as_secs_f64();
    let prepare_s = {
        let started = Instant::now();
        for q in &queries {
            std::hint::black_box(Query::new(q["text"].as_str().unwrap()));
        }
        started.elapsed().as_secs_f64()
    };
    let with_contained = {
        let started = Instant::now();
        let t = Thresholds::default();
        let mut hits = 0;
        for q in &queries {
            let found = bank.find(&Query::new(q["text"].as_str().unwrap()), &t);
            hits += found.iter().any(|m| m.item == q["item"].as_str().unwrap()) as usize;
        }
        (started.elapsed().as_secs_f64(), hits)
    };
    println!(
        "{}",
        serde_json::json!({
            "tool": "triage-bank", "items": items.len(), "queries": queries.len(),
            "build_s": (build * 1000.0).round() / 1000.0, "query_s": (query * 1000.0).round() / 1000.0,
            "items_per_s": (items.len() as f64 / build).round(),
            "queries_per_s": (queries.len() as f64 / query).round(),
            "recall": hits as f64 / queries.len().max(1) as f64,
            "of_which_normalise_and_sign_s": (prepare_s * 1000.0).round() / 1000.0,
            "default_thresholds": {"query_s": (with_contained.0 * 1000.0).round() / 1000.0,
                "recall": with_contained.1 as f64 / queries.len().max(1) as f64},
        })
    );
}
