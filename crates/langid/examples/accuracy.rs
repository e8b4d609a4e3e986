//! The accuracy report program: runs triage-langid and raw whatlang over an evaluation set and
//! writes each detector's answers and its speed, for `scripts/langid/report.py` to tabulate
//! beside the Python detectors (see `scripts/langid/report.sh`).
//!
//! Usage: `accuracy <items.jsonl> <out.json> [--limit N] [--allow a,b,c] [--listed-prior P]`
//!
//! Items are `{"lang", "kind", "text"}` lines. Every detector runs on one thread, over all
//! items, twice; the faster pass gives the strings per second.
use std::time::Instant;

use serde_json::{json, Value};
use triage_langid::{Detector, LanguagesConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut files, mut limit, mut allow) = (Vec::new(), usize::MAX, Vec::<String>::new());
    let mut listed_prior = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--limit" => limit = it.next().ok_or("--limit N")?.parse()?,
            "--listed-prior" => listed_prior = Some(it.next().ok_or("--listed-prior P")?.parse()?),
            "--allow" => {
                allow = it
                    .next()
                    .ok_or("--allow a,b")?
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            _ => files.push(a),
        }
    }
    let [input, out] = files.as_slice() else {
        return Err(
            "usage: accuracy <items.jsonl> <out.json> [--limit N] [--allow a,b] [--listed-prior P]"
                .into(),
        );
    };
    let texts: Vec<String> = std::fs::read_to_string(input)?
        .lines()
        .take(limit)
        .map(|l| {
            Ok(serde_json::from_str::<Value>(l)?["text"]
                .as_str()
                .unwrap_or("")
                .to_owned())
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let mut results = Vec::new();
    // the n-gram tables are parsed when the first detector is made
    let t = Instant::now();
    let all = Detector::new(&LanguagesConfig::default())?;
    let load_seconds = t.elapsed().as_secs_f64();
    eprintln!("model parsed in {load_seconds:.3} s");
    let restricted = Detector::new(&LanguagesConfig {
        allow: allow.clone(),
        listed_prior,
    })?;
    let wl_all = whatlang::Detector::new();
    let wl_langs: Vec<whatlang::Lang> = whatlang::Lang::all()
        .iter()
        .copied()
        .filter(|l| allow.iter().any(|a| a == triage_langid::iso639_1(*l)))
        .collect();
    let wl_restricted = whatlang::Detector::with_allowlist(wl_langs);
    let wl = |d: &whatlang::Detector, t: &str| {
        d.detect(t)
            .map_or("und", |i| triage_langid::iso639_1(i.lang()))
            .to_owned()
    };
    type Run<'a> = (&'a str, Box<dyn Fn(&str) -> (String, f64, bool) + 'a>);
    let runs: Vec<Run> = vec![
        (
            "triage-langid",
            Box::new(|t| {
                let d = all.detect(t);
                (d.lang().to_owned(), d.confidence(), d.is_reliable())
            }),
        ),
        (
            "triage-langid (ours)",
            Box::new(|t| {
                let d = restricted.detect(t);
                (d.lang().to_owned(), d.confidence(), d.is_reliable())
            }),
        ),
        ("whatlang", Box::new(|t| (wl(&wl_all, t), 0.0, false))),
        (
            "whatlang (ours)",
            Box::new(|t| (wl(&wl_restricted, t), 0.0, false)),
        ),
    ];
    for (name, run) in runs {
        let mut best = f64::INFINITY;
        let mut answers = Vec::new();
        for _ in 0..2 {
            let t = Instant::now();
            answers = texts.iter().map(|t| run(t)).collect();
            best = best.min(t.elapsed().as_secs_f64());
        }
        results.push(json!({
            "detector": name,
            "answers": answers.iter().map(|a| &a.0).collect::<Vec<_>>(),
            "confidence": answers.iter().map(|a| a.1).collect::<Vec<_>>(),
            "reliable": answers.iter().map(|a| a.2).collect::<Vec<_>>(),
            "seconds": best,
            "strings_per_second": texts.len() as f64 / best,
        }));
        eprintln!("{name}: {:.0} strings/s", texts.len() as f64 / best);
    }
    let model_bytes = all.model_bytes();
    std::fs::write(
        out,
        serde_json::to_string(
            &json!({"items": texts.len(), "model_bytes": model_bytes, "load_seconds": load_seconds, "runs": results}),
        )?,
    )?;
    Ok(())
}
