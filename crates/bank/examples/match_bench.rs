//! A saved bank's load and its exact and near look-up on a dump's records, timed without the
//! model: what `triage label --bank` adds to a run, taken apart. Prints one JSON line.
//!
//! ```sh
//! cargo run --release -p triage-bank --example match_bench -- banks/seized dump.jsonl [--reps 3]
//! ```

use std::io::BufRead;
use std::time::Instant;

use triage_bank::{Bank, Query, Thresholds};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map_or(3, |v| v.parse().expect("a number"));
    let started = Instant::now();
    let bank = Bank::load(std::path::Path::new(&args[0])).expect("a bank");
    let load_s = started.elapsed().as_secs_f64();
    let texts: Vec<String> =
        std::io::BufReader::new(std::fs::File::open(&args[1]).expect("a dump"))
            .lines()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l.ok()?).ok()?;
                Some(v.get("text")?.as_str()?.to_owned())
            })
            .collect();
    let t = Thresholds::default();
    let best = |f: &dyn Fn() -> usize| -> (f64, usize) {
        (0..reps)
            .map(|_| {
                let started = Instant::now();
                let n = f();
                (started.elapsed().as_secs_f64(), n)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("a rep")
    };
    let (prepare_s, _) = best(&|| {
        texts
            .iter()
            .map(|x| std::hint::black_box(Query::new(x)).normalized().text.len())
            .sum()
    });
    let (find_s, matched) = best(&|| {
        texts
            .iter()
            .filter(|x| !bank.find(&Query::new(x), &t).is_empty())
            .count()
    });
    let near_only = Thresholds {
        contained: 2.0,
        ..t
    };
    let (whole_s, _) = best(&|| {
        texts
            .iter()
            .filter(|x| !bank.find(&Query::new(x), &near_only).is_empty())
            .count()
    });
    let ms = |s: f64| (s * 1e6 / texts.len().max(1) as f64).round() / 1e3;
    println!(
        "{}",
        serde_json::json!({
            "bank_items": bank.len(), "records": texts.len(),
            "load_s": (load_s * 1000.0).round() / 1000.0,
            "ms_per_record": {"prepare": ms(prepare_s), "find_whole_text": ms(whole_s),
                "find_default": ms(find_s)},
            "records_matched": matched,
        })
    );
}
