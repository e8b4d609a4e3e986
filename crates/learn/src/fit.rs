//! `triage train`: a linear head on the team's examples, from the encoder's embeddings (cached
//! on disk), written where `[labels] head` can name it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use triage_batch::WorkspaceConfig;
use triage_classify::{ClassifierBuilder, HeadMeta, LinearHead};

use crate::embed_cache::EmbeddingCache;
use crate::examples::{counter_examples, read_examples, Example};
use crate::metrics;
use crate::train::{self, Dataset, TrainOptions};

/// Options of `triage train`.
pub struct TrainArgs {
    /// The examples (JSON Lines).
    pub examples: PathBuf,
    /// The workspace configuration file (`workspace.toml`).
    pub config_path: PathBuf,
    /// The head directory to write.
    pub out: PathBuf,
    /// A JSON file that says how the examples were made, kept in `head.json`.
    pub recipe: Option<PathBuf>,
    /// The configuration as read from it.
    pub config: WorkspaceConfig,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Where window embeddings are cached.
    pub cache_dir: PathBuf,
    /// One-vs-rest sigmoids (`Some(true)`) or a softmax; decided by the examples when `None`.
    pub multi_label: Option<bool>,
    /// How to train.
    pub options: TrainOptions,
}

/// Trains a head on the examples (with the workspace's counter-examples when multi-label) and
/// writes it. Returns whether every example was usable.
pub fn train_head(args: TrainArgs) -> Result<bool> {
    let (examples, bad) = read_examples(&args.examples, &args.config.input)?;
    for b in &bad {
        eprintln!("triage: skipped {b}");
    }
    if examples.is_empty() {
        bail!("{}: no usable examples", args.examples.display());
    }
    // texts of no label can only be taught to independent sigmoids: a softmax must pick one
    let multi = args
        .multi_label
        .unwrap_or_else(|| examples.iter().any(|e| e.labels.len() != 1));
    let mut examples = examples;
    let known: BTreeSet<&str> = examples
        .iter()
        .flat_map(|e| e.labels.iter().map(String::as_str))
        .collect();
    let counters: Vec<Example> = counter_examples(&args.config)
        .into_iter()
        .filter(|e| e.counter_to.as_deref().is_some_and(|l| known.contains(l)))
        .collect();
    if !counters.is_empty() {
        if multi {
            eprintln!(
                "{} counter-examples of these labels from {} (counter_examples), as texts of none of the labels",
                counters.len(),
                args.config_path.display()
            );
            examples.extend(counters);
        } else {
            eprintln!(
                "{} counter-examples in {} not used: a single-label softmax has no \"none\" (train with --multi-label to use them)",
                counters.len(),
                args.config_path.display()
            );
        }
    }
    // a head learns from exact embeddings: candle f32 when the workspace labels in int8 (a
    // head fitted to one CPU's int8 errors would carry them, and f32 is what int8's labels
    // are checked against)
    let mut options = args.config.model.clone();
    if options.precision == triage_classify::Precision::Int8 {
        options.backend = triage_classify::Backend::Candle;
        options.precision = triage_classify::Precision::F32;
        options.refine_margin = None;
    }
    let classifier = ClassifierBuilder::new(&args.model_dir)
        .options(options.clone())
        .build_embedder()?;
    let labels: Vec<String> = examples
        .iter()
        .flat_map(|e| e.labels.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if labels.is_empty() {
        bail!(
            "{}: every example is of none of the labels; a head needs positives",
            args.examples.display()
        );
    }
    if !multi {
        if let Some(e) = examples.iter().find(|e| e.labels.len() != 1) {
            bail!(
                "{}:{}: {} labels, but --single-label was asked for (a softmax needs exactly one per example)",
                args.examples.display(),
                e.line,
                e.labels.len()
            );
        }
    }
    eprintln!(
        "{} examples, {} labels ({}), {}",
        examples.len(),
        labels.len(),
        labels.join(", "),
        if multi {
            "multi-label: one-vs-rest sigmoids"
        } else {
            "single-label: softmax"
        }
    );
    let mut cache = EmbeddingCache::open(&args.cache_dir, &classifier, &options)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let windows = cache.window_embeddings(&classifier, &texts)?;
    cache.save()?;
    eprintln!(
        "embeddings: {} cached, {} computed",
        cache.hits, cache.misses
    );
    // one definition of a text's embedding (the classifier's: windows weighted by their
    // tokens), as the prototypes are made; BENCHMARKS.md has the comparison with a plain mean
    let x: Vec<Vec<f32>> = texts
        .iter()
        .zip(&windows)
        .map(|(t, w)| Ok(classifier.text_embedding(&classifier.prepare(t)?, w)))
        .collect::<Result<_, triage_classify::Error>>()?;
    let y: Vec<Vec<usize>> = examples
        .iter()
        .map(|e| {
            e.labels
                .iter()
                .map(|l| labels.binary_search(l).expect("label in set"))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .collect();
    let opts = TrainOptions {
        multi_label: multi,
        ..args.options.clone()
    };
    let head = train::train(
        &Dataset {
            x: &x,
            y: &y,
            labels: labels.len(),
        },
        &opts,
        &mut |s| {
            if s.epoch == 1 || s.epoch % 50 == 0 {
                eprintln!(
                "epoch {:>4}: train loss {:.4}, validation loss {:.4}, validation macro-F1 {:.3}",
                s.epoch, s.train_loss, s.val_loss, s.val_macro_f1
            );
            }
        },
    )?;
    let last = head.history.last().map_or(0, |s| s.epoch);
    eprintln!(
        "stopped after {last} epochs; kept epoch {}",
        head.best_epoch
    );

    let mut data_hash = Sha256::new();
    for (e, ys) in examples.iter().zip(&y) {
        data_hash.update(e.text.as_bytes());
        data_hash.update([0]);
        for &k in ys {
            data_hash.update(labels[k].as_bytes());
            data_hash.update([1]);
        }
        data_hash.update([0xff]);
    }
    let data_sha256: String = data_hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let recipe: Option<Value> = match &args.recipe {
        Some(p) => Some(
            serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{}: not JSON", p.display()))?,
        ),
        None => None,
    };
    let val_macro = metrics::macro_avg(&head.validation_scores);
    let meta = HeadMeta {
        labels: labels.clone(),
        activation: head.activation,
        thresholds: labels
            .iter()
            .cloned()
            .zip(head.thresholds.iter().copied())
            .collect(),
        encoder_sha256: Some(classifier.weights_sha256().to_owned()),
        data_sha256: Some(data_sha256),
        prefix: Some(args.config.model.prefix.clone()),
        training: Some(serde_json::json!({
            "examples": examples.len(),
            "validation": head.validation.len(),
            "best_epoch": head.best_epoch,
            "epochs_run": last,
            "options": opts,
            "validation_macro_f1": val_macro.f1,
            "source": args.examples.display().to_string(),
            "recipe": recipe,
        })),
    };
    LinearHead::write(
        &args.out,
        &head.weight,
        &head.bias,
        classifier.hidden_size(),
        &meta,
    )
    .with_context(|| format!("writing the head {}", args.out.display()))?;

    println!(
        "{:<24} {:>9} {:>7} {:>7} {:>7} {:>8}",
        "label (validation)", "threshold", "prec", "recall", "F1", "support"
    );
    for ((l, t), p) in labels
        .iter()
        .zip(&head.thresholds)
        .zip(&head.validation_scores)
    {
        println!(
            "{l:<24} {t:>9.3} {:>7.3} {:>7.3} {:>7.3} {:>8}",
            p.precision, p.recall, p.f1, p.support
        );
    }
    println!(
        "{:<24} {:>9} {:>7.3} {:>7.3} {:>7.3}",
        "macro", "", val_macro.precision, val_macro.recall, val_macro.f1
    );
    println!("head written to {}", args.out.display());
    Ok(bad.is_empty())
}
