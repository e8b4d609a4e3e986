//! Which definition of a text's embedding should a head be trained on, when texts are longer
//! than one window? Two candidates, compared in one run on the same data: the windows' plain
//! mean (what `triage train` did), and the mean weighted by each window's tokens, renormalised
//! when the model's pooling normalises ([`triage_classify::Classifier::text_embedding`], what
//! the label prototypes always used).
//!
//! The data: the starter taxonomy's train and test splits (`scripts/starter/build.py`, from
//! pinned packages and the project's own examples), whose texts are one window each, plus long
//! texts made by joining `--join` consecutive examples of one label (or of none) from the same
//! split, so that every long text has several windows. Heads are trained as the starter's is
//! (multi-label, learning rate 0.05, up to 3000 epochs, patience 100) on the short and long
//! training texts, and scored as `triage label` scores: each window alone, a label's score its
//! largest over the windows, flagged at the head's validation threshold.
//!
//! ```sh
//! cargo run --release -p triage-learn --example embedding_definition -- \
//!     .cache/starter/train.jsonl .cache/starter/test.jsonl
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;

use triage_batch::WorkspaceConfig;
use triage_classify::ClassifierBuilder;
use triage_learn::embed_cache::EmbeddingCache;
use triage_learn::examples::{read_examples, Example};
use triage_learn::metrics::{macro_avg, prf};
use triage_learn::train::{train, Dataset, TrainOptions};

/// `k` consecutive examples of one label set joined into one text, in each label set's order.
fn joined(examples: &[Example], k: usize) -> Vec<(String, Vec<String>)> {
    let mut sets: Vec<Vec<String>> = examples.iter().map(|e| e.labels.clone()).collect();
    sets.sort();
    sets.dedup();
    let mut out = Vec::new();
    for set in sets {
        let texts: Vec<&str> = examples
            .iter()
            .filter(|e| e.labels == set)
            .map(|e| e.text.as_str())
            .collect();
        for group in texts.chunks_exact(k) {
            out.push((group.join("\n"), set.clone()));
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (train_path, test_path) = match args.as_slice() {
        [a, b, ..] => (PathBuf::from(a), PathBuf::from(b)),
        _ => anyhow::bail!("usage: embedding_definition TRAIN.jsonl TEST.jsonl [--join K]"),
    };
    let k: usize = args
        .iter()
        .position(|a| a == "--join")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(6), |v| v.parse())?;
    let config = WorkspaceConfig::load(std::path::Path::new("workspace.toml"))?;
    let dir = config.model_dir(std::path::Path::new("models"));
    let classifier = ClassifierBuilder::new(&dir)
        .options(config.model.clone())
        .build_embedder()?;
    let (train_ex, _) = read_examples(&train_path, &config.input)?;
    let (test_ex, _) = read_examples(&test_path, &config.input)?;
    let labels: Vec<String> = train_ex
        .iter()
        .flat_map(|e| e.labels.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let as_texts = |ex: &[Example]| -> Vec<(String, Vec<String>)> {
        ex.iter()
            .map(|e| (e.text.clone(), e.labels.clone()))
            .collect()
    };
    let mut train_set = as_texts(&train_ex);
    train_set.extend(joined(&train_ex, k));
    let test_short = as_texts(&test_ex);
    let test_long = joined(&test_ex, k);
    let mut cache = EmbeddingCache::open(
        std::path::Path::new(".cache/embeddings"),
        &classifier,
        &config.model,
    )?;
    let mut embed = |set: &[(String, Vec<String>)]| -> anyhow::Result<_> {
        let texts: Vec<&str> = set.iter().map(|(t, _)| t.as_str()).collect();
        let windows = cache.window_embeddings(&classifier, &texts)?;
        let prepared = texts
            .iter()
            .map(|t| classifier.prepare(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((prepared, windows))
    };
    let (train_prep, train_windows) = embed(&train_set)?;
    let (short_prep, short_windows) = embed(&test_short)?;
    let (long_prep, long_windows) = embed(&test_long)?;
    cache.save()?;
    let y: Vec<Vec<usize>> = train_set
        .iter()
        .map(|(_, ls)| {
            ls.iter()
                .map(|l| labels.binary_search(l).unwrap())
                .collect()
        })
        .collect();
    let windows_of =
        |w: &[Vec<Vec<f32>>]| w.iter().map(Vec::len).sum::<usize>() as f64 / w.len() as f64;
    println!(
        "model {}; {} labels; train: {} texts ({} joined, {:.2} windows a text); test: {} short \
         ({:.2} windows), {} joined of {k} ({:.2} windows)",
        classifier.model_id(),
        labels.len(),
        train_set.len(),
        train_set.len() - train_ex.len(),
        windows_of(&train_windows),
        test_short.len(),
        windows_of(&short_windows),
        test_long.len(),
        windows_of(&long_windows),
    );
    let mean = |w: &[Vec<f32>]| -> Vec<f32> {
        let mut v = vec![0f32; w[0].len()];
        for row in w {
            v.iter_mut()
                .zip(row)
                .for_each(|(a, b)| *a += b / w.len() as f32);
        }
        v
    };
    let opts = TrainOptions {
        multi_label: true,
        learning_rate: 0.05,
        max_epochs: 3000,
        patience: 100,
        ..Default::default()
    };
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "text embedding for training", "val F1", "short F1", "joined F1"
    );
    for (name, x) in [
        (
            "windows' plain mean",
            train_windows.iter().map(|w| mean(w)).collect::<Vec<_>>(),
        ),
        (
            "token-weighted (text_embedding)",
            train_prep
                .iter()
                .zip(&train_windows)
                .map(|(p, w)| classifier.text_embedding(p, w))
                .collect(),
        ),
    ] {
        let head = train(
            &Dataset {
                x: &x,
                y: &y,
                labels: labels.len(),
            },
            &opts,
            &mut |_| {},
        )?;
        let h = x[0].len();
        // as `triage label` scores: every window alone, the largest over windows
        let f1 = |set: &[(String, Vec<String>)], windows: &[Vec<Vec<f32>>]| -> f64 {
            let mut per = Vec::new();
            for (l, name) in labels.iter().enumerate() {
                let (mut tp, mut fp, mut fn_) = (0, 0, 0);
                for ((_, gold), w) in set.iter().zip(windows) {
                    let best = w
                        .iter()
                        .map(|e| {
                            let wl = &head.weight[l * h..(l + 1) * h];
                            let z: f32 =
                                wl.iter().zip(e).map(|(a, b)| a * b).sum::<f32>() + head.bias[l];
                            1.0 / (1.0 + (-z).exp())
                        })
                        .fold(f32::NEG_INFINITY, f32::max);
                    let flagged = best >= head.thresholds[l];
                    let is = gold.contains(name);
                    match (flagged, is) {
                        (true, true) => tp += 1,
                        (true, false) => fp += 1,
                        (false, true) => fn_ += 1,
                        _ => {}
                    }
                }
                per.push(prf(tp, fp, fn_));
            }
            macro_avg(&per).f1
        };
        let _ = (&short_prep, &long_prep);
        println!(
            "{name:<34} {:>10.4} {:>10.4} {:>10.4}",
            macro_avg(&head.validation_scores).f1,
            f1(&test_short, &short_windows),
            f1(&test_long, &long_windows)
        );
    }
    Ok(())
}
