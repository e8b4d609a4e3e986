//! `triage train` and `triage eval`: teach the team's taxonomy and measure it per language.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use triage_batch::{Engine, InputConfig, WorkspaceConfig};
use triage_classify::metrics::{self, Prf, ThresholdPoint};
use triage_classify::train::{self, Dataset, TrainOptions};
use triage_classify::{ClassifierBuilder, HeadMeta, Mode};

use crate::embed_cache::EmbeddingCache;

/// One labelled example (training) or gold record (evaluation).
pub struct Example {
    pub line: u64,
    pub text: String,
    pub labels: Vec<String>,
    pub lang: Option<String>,
}

/// Reads `{"text": ..., "label": "x"}` or `{"text": ..., "labels": ["x", "y"]}` lines (an
/// optional `"lang"` gives the gold language). Bad lines are reported, not fatal.
pub fn read_examples(path: &Path, input: &InputConfig) -> Result<(Vec<Example>, Vec<String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |why: String| format!("{}:{line_no}: {why}", path.display());
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                bad.push(at(format!("invalid JSON: {e}")));
                continue;
            }
        };
        let Some(text) = v
            .get(&input.text_field)
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        else {
            bad.push(at(format!(
                "field {:?} is missing, empty or not a string",
                input.text_field
            )));
            continue;
        };
        let labels: Vec<String> = match (v.get("labels"), v.get("label")) {
            (Some(Value::Array(a)), _) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            (_, Some(Value::String(s))) => vec![s.clone()],
            _ => Vec::new(),
        };
        if labels.is_empty() {
            bad.push(at(
                "no \"label\" string or \"labels\" array of strings".into()
            ));
            continue;
        }
        out.push(Example {
            line: line_no,
            text: text.to_owned(),
            labels,
            lang: v.get("lang").and_then(Value::as_str).map(str::to_owned),
        });
    }
    Ok((out, bad))
}

/// Options of `triage train`.
pub struct TrainArgs {
    pub examples: PathBuf,
    pub out: PathBuf,
    pub config: WorkspaceConfig,
    pub model_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub multi_label: Option<bool>,
    pub options: TrainOptions,
}

fn mean_window(windows: &[Vec<f32>]) -> Vec<f32> {
    let mut v = vec![0f32; windows[0].len()];
    for w in windows {
        v.iter_mut()
            .zip(w)
            .for_each(|(a, b)| *a += b / windows.len() as f32);
    }
    v
}

pub fn train_head(args: TrainArgs) -> Result<bool> {
    let (examples, bad) = read_examples(&args.examples, &args.config.input)?;
    for b in &bad {
        eprintln!("triage: skipped {b}");
    }
    if examples.is_empty() {
        bail!("{}: no usable examples", args.examples.display());
    }
    let classifier = ClassifierBuilder::new(&args.model_dir)
        .options(args.config.model.clone())
        .build_embedder()?;
    let labels: Vec<String> = examples
        .iter()
        .flat_map(|e| e.labels.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let multi = args
        .multi_label
        .unwrap_or_else(|| examples.iter().any(|e| e.labels.len() > 1));
    if !multi {
        if let Some(e) = examples.iter().find(|e| e.labels.len() > 1) {
            bail!(
                "{}:{}: several labels, but --single-label was asked for",
                args.examples.display(),
                e.line
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
    let mut cache = EmbeddingCache::open(&args.cache_dir, &classifier, &args.config.model)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let windows = cache.window_embeddings(&classifier, &texts)?;
    cache.save()?;
    eprintln!(
        "embeddings: {} cached, {} computed",
        cache.hits, cache.misses
    );
    let x: Vec<Vec<f32>> = windows.iter().map(|w| mean_window(w)).collect();
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
        })),
    };
    write_head(
        &args.out,
        &head.weight,
        &head.bias,
        labels.len(),
        classifier.hidden_size(),
        &meta,
    )?;

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

fn write_head(
    dir: &Path,
    weight: &[f32],
    bias: &[f32],
    labels: usize,
    hidden: usize,
    meta: &HeadMeta,
) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (w, b) = (bytes(weight), bytes(bias));
    let views = vec![
        (
            "weight".to_string(),
            TensorView::new(Dtype::F32, vec![labels, hidden], &w)?,
        ),
        (
            "bias".to_string(),
            TensorView::new(Dtype::F32, vec![labels], &b)?,
        ),
    ];
    safetensors::serialize_to_file(views, None, &dir.join("head.safetensors"))?;
    std::fs::write(dir.join("head.json"), serde_json::to_vec_pretty(meta)?)?;
    Ok(())
}

/// Options of `triage eval`.
pub struct EvalArgs {
    pub gold: PathBuf,
    pub config_path: PathBuf,
    pub config: WorkspaceConfig,
    pub model_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub head: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub precision: f64,
    pub reference_language: Option<String>,
    pub write_thresholds: bool,
    pub min_support: u64,
}

#[derive(Serialize)]
struct LabelReport {
    label: String,
    overall: Prf,
    best_f1: Option<ThresholdPoint>,
    at_precision: Option<ThresholdPoint>,
    languages: BTreeMap<String, LangLabel>,
}

#[derive(Serialize)]
struct LangLabel {
    prf: Prf,
    best_f1: Option<ThresholdPoint>,
}

#[derive(Serialize)]
struct LangReport {
    lang: String,
    records: usize,
    macro_f1: f64,
    micro_f1: f64,
    accuracy: Option<f64>,
    /// macro-F1 over the labels this language and the reference language both have, divided
    /// by the reference language's macro-F1 over the same labels.
    retained: Option<f64>,
    /// macro-F1 divided by the reference language's macro-F1 over all of its labels.
    retained_raw: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    gold: String,
    model: String,
    mode: Mode,
    multi_label: bool,
    records: usize,
    skipped: Vec<String>,
    target_precision: f64,
    micro: Prf,
    #[serde(rename = "macro")]
    macro_: Prf,
    accuracy: Option<f64>,
    calibration_error: f64,
    labels: Vec<LabelReport>,
    languages: Vec<LangReport>,
    confusion: Option<Vec<Vec<u64>>>,
}

pub fn eval(mut args: EvalArgs) -> Result<bool> {
    if let Some(h) = &args.head {
        let meta: HeadMeta = serde_json::from_slice(
            &std::fs::read(h.join("head.json"))
                .with_context(|| format!("no head.json in {}", h.display()))?,
        )
        .with_context(|| format!("{}/head.json", h.display()))?;
        args.config.labels.multi_label = meta.activation == triage_classify::Activation::Sigmoid;
        args.config.labels.mode = Mode::Head;
        args.config.labels.head =
            Some(std::fs::canonicalize(h).with_context(|| format!("no head at {}", h.display()))?);
        args.config.labels.labels.clear();
    }
    let engine = Engine::from_config(&args.config, &args.model_dir, &args.config_path)?;
    let c = engine.classifier();
    let names: Vec<String> = c.label_names().iter().map(|s| s.to_string()).collect();
    let (gold, skipped) = read_examples(&args.gold, &args.config.input)?;
    for s in &skipped {
        eprintln!("triage: skipped {s}");
    }
    if gold.is_empty() {
        bail!("{}: no usable gold records", args.gold.display());
    }
    let unknown: BTreeSet<&str> = gold
        .iter()
        .flat_map(|g| g.labels.iter())
        .filter(|l| !names.contains(l))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{}: gold labels the model does not have: {} (its labels: {})",
            args.gold.display(),
            unknown.into_iter().collect::<Vec<_>>().join(", "),
            names.join(", ")
        );
    }
    let texts: Vec<&str> = gold.iter().map(|g| g.text.as_str()).collect();
    let prepared = texts
        .iter()
        .map(|t| c.prepare(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = if c.uses_embeddings() {
        let mut cache = EmbeddingCache::open(&args.cache_dir, c, &args.config.model)?;
        let windows = cache.window_embeddings(c, &texts)?;
        cache.save()?;
        eprintln!(
            "embeddings: {} cached, {} computed",
            cache.hits, cache.misses
        );
        c.classify_embedded(&prepared, &windows)?
    } else {
        c.classify_prepared(&prepared)?
    };
    let detected: Vec<&'static str> = texts
        .iter()
        .map(|t| engine.detector().detect(t).lang())
        .collect();
    for (r, lang) in results.iter_mut().zip(&detected) {
        c.apply_language_thresholds(r, lang);
    }
    let langs: Vec<String> = gold
        .iter()
        .zip(&detected)
        .map(|(g, d)| g.lang.clone().unwrap_or_else(|| d.to_string()))
        .collect();
    let lang_set: Vec<String> = langs
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Single-label: a record's prediction is its top label (thresholds are then only reported);
    // multi-label: the labels it flags.
    let single = !args.config.labels.multi_label && gold.iter().all(|g| g.labels.len() == 1);
    let truth = |i: usize, k: usize| gold[i].labels.contains(&names[k]);
    let counts = |idx: &[usize], k: usize| {
        let (mut tp, mut fp, mut fn_) = (0, 0, 0);
        for &i in idx {
            let predicted = if single {
                results[i].top().is_some_and(|t| t.label() == names[k])
            } else {
                results[i].labels()[k].flagged()
            };
            match (predicted, truth(i, k)) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
        metrics::prf(tp, fp, fn_)
    };
    let scored = |idx: &[usize], k: usize| -> Vec<(f32, bool)> {
        idx.iter()
            .map(|&i| (results[i].labels()[k].score(), truth(i, k)))
            .collect()
    };
    let all: Vec<usize> = (0..gold.len()).collect();
    let by_lang: BTreeMap<&str, Vec<usize>> = lang_set
        .iter()
        .map(|l| {
            (
                l.as_str(),
                (0..gold.len()).filter(|&i| langs[i] == *l).collect(),
            )
        })
        .collect();
    let accuracy = |idx: &[usize]| -> f64 {
        idx.iter()
            .filter(|&&i| {
                results[i]
                    .top()
                    .is_some_and(|t| gold[i].labels[0] == t.label())
            })
            .count() as f64
            / idx.len().max(1) as f64
    };
    let label_reports: Vec<LabelReport> = (0..names.len())
        .map(|k| LabelReport {
            label: names[k].clone(),
            overall: counts(&all, k),
            best_f1: metrics::best_f1_threshold(&scored(&all, k)),
            at_precision: metrics::threshold_for_precision(&scored(&all, k), args.precision),
            languages: by_lang
                .iter()
                .map(|(l, idx)| {
                    (
                        l.to_string(),
                        LangLabel {
                            prf: counts(idx, k),
                            best_f1: metrics::best_f1_threshold(&scored(idx, k)),
                        },
                    )
                })
                .collect(),
        })
        .collect();
    let overall: Vec<Prf> = label_reports.iter().map(|r| r.overall).collect();
    let mut lang_reports: Vec<LangReport> = by_lang
        .iter()
        .map(|(l, idx)| {
            let per: Vec<Prf> = label_reports.iter().map(|r| r.languages[*l].prf).collect();
            LangReport {
                lang: l.to_string(),
                records: idx.len(),
                macro_f1: metrics::macro_avg(&per).f1,
                micro_f1: metrics::micro(&per).f1,
                accuracy: single.then(|| accuracy(idx)),
                retained: None,
                retained_raw: None,
            }
        })
        .collect();
    if let Some(reference) = &args.reference_language {
        let base = lang_reports
            .iter()
            .find(|r| &r.lang == reference)
            .map(|r| r.macro_f1);
        match base {
            Some(b) if b > 0.0 && by_lang.contains_key(reference.as_str()) => {
                for r in lang_reports.iter_mut() {
                    r.retained_raw = Some(r.macro_f1 / b);
                    // compare like with like: the labels both languages have
                    let shared: Vec<(f64, f64)> = label_reports
                        .iter()
                        .map(|l| (l.languages[&r.lang].prf, l.languages[reference].prf))
                        .filter(|(a, b)| a.support > 0 && b.support > 0)
                        .map(|(a, b)| (a.f1, b.f1))
                        .collect();
                    let base: f64 = shared.iter().map(|x| x.1).sum();
                    if base > 0.0 {
                        r.retained = Some(shared.iter().map(|x| x.0).sum::<f64>() / base);
                    }
                }
            }
            _ => eprintln!(
                "triage: no records of the reference language {reference} in the gold set"
            ),
        }
    }
    let every: Vec<(f32, bool)> = (0..names.len()).flat_map(|k| scored(&all, k)).collect();
    let confusion = single.then(|| {
        let t: Vec<usize> = gold
            .iter()
            .map(|g| names.iter().position(|n| *n == g.labels[0]).unwrap_or(0))
            .collect();
        let p: Vec<usize> = results
            .iter()
            .map(|r| {
                r.top()
                    .and_then(|x| names.iter().position(|n| n == x.label()))
                    .unwrap_or(0)
            })
            .collect();
        metrics::confusion(&t, &p, names.len())
    });
    let report = Report {
        gold: args.gold.display().to_string(),
        model: c.model_id().to_owned(),
        mode: args.config.labels.mode,
        multi_label: args.config.labels.multi_label,
        records: gold.len(),
        skipped: skipped.clone(),
        target_precision: args.precision,
        micro: metrics::micro(&overall),
        macro_: metrics::macro_avg(&overall),
        accuracy: single.then(|| accuracy(&all)),
        calibration_error: metrics::expected_calibration_error(&every, 10),
        labels: label_reports,
        languages: lang_reports,
        confusion,
    };
    print!("{}", report_text(&report, &names));
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("eval.json"), serde_json::to_vec_pretty(&report)?)?;
        let curves: Vec<(String, Vec<ThresholdPoint>)> = by_lang
            .iter()
            .map(|(l, idx)| {
                (
                    l.to_string(),
                    metrics::pr_curve(
                        &(0..names.len())
                            .flat_map(|k| scored(idx, k))
                            .collect::<Vec<_>>(),
                    ),
                )
            })
            .collect();
        crate::plots::pr_curves(&out.join("pr_curves.svg"), &curves)?;
        let grid: Vec<Vec<Option<f64>>> = lang_set
            .iter()
            .map(|l| {
                report
                    .labels
                    .iter()
                    .map(|r| {
                        let p = r.languages[l].prf;
                        (p.support > 0).then_some(p.f1)
                    })
                    .collect()
            })
            .collect();
        crate::plots::f1_heatmap(&out.join("f1_heatmap.svg"), &lang_set, &names, &grid)?;
        std::fs::write(out.join("eval.txt"), report_text(&report, &names))?;
        eprintln!(
            "report written to {} (eval.txt, eval.json, pr_curves.svg, f1_heatmap.svg)",
            out.display()
        );
    }
    if args.write_thresholds {
        write_thresholds(&args.config_path, &report, args.min_support)?;
    }
    Ok(skipped.is_empty())
}

fn report_text(r: &Report, names: &[String]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "gold {}  records {}  model {}",
        r.gold, r.records, r.model
    );
    let _ = writeln!(
        s,
        "\n{:<22} {:>6} {:>6} {:>6} {:>7}  {:>14}  {:>18}",
        "label",
        "prec",
        "recall",
        "F1",
        "support",
        "best-F1 thr",
        format!("thr @ P>={:.2}", r.target_precision)
    );
    for l in &r.labels {
        let best = l
            .best_f1
            .map_or("-".into(), |b| format!("{:.3} ({:.3})", b.threshold, b.f1));
        let at = l.at_precision.map_or("unreachable".into(), |b| {
            format!("{:.3} (R {:.3})", b.threshold, b.recall)
        });
        let _ = writeln!(
            s,
            "{:<22} {:>6.3} {:>6.3} {:>6.3} {:>7}  {best:>14}  {at:>18}",
            l.label, l.overall.precision, l.overall.recall, l.overall.f1, l.overall.support
        );
    }
    let _ = writeln!(
        s,
        "{:<22} {:>6.3} {:>6.3} {:>6.3}",
        "macro", r.macro_.precision, r.macro_.recall, r.macro_.f1
    );
    let _ = writeln!(
        s,
        "{:<22} {:>6.3} {:>6.3} {:>6.3}",
        "micro", r.micro.precision, r.micro.recall, r.micro.f1
    );
    if let Some(a) = r.accuracy {
        let _ = writeln!(s, "accuracy {a:.3}");
    }
    let _ = writeln!(
        s,
        "calibration error (ECE, 10 bins, all label scores) {:.4}",
        r.calibration_error
    );
    let _ = writeln!(
        s,
        "\n{:<8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "language", "records", "macro-F1", "micro-F1", "accuracy", "retained", "retained-raw"
    );
    for l in &r.languages {
        let acc = l.accuracy.map_or("-".into(), |a| format!("{a:.3}"));
        let pct = |x: Option<f64>| x.map_or("-".into(), |a| format!("{:.0}%", a * 100.0));
        let (ret, raw) = (pct(l.retained), pct(l.retained_raw));
        let _ = writeln!(
            s,
            "{:<8} {:>8} {:>9.3} {:>9.3} {acc:>9} {ret:>9} {raw:>12}",
            l.lang, l.records, l.macro_f1, l.micro_f1
        );
    }
    if r.languages.iter().any(|l| l.retained.is_some()) {
        let _ = writeln!(s, "retained: macro-F1 over the labels the language shares with the reference language, as a share of the reference's over the same labels; retained-raw: over all labels");
    }
    if let Some(m) = &r.confusion {
        let w = names.iter().map(|n| n.len()).max().unwrap_or(4).min(14);
        let _ = writeln!(s, "\nconfusion (rows: gold, columns: predicted)");
        let _ = write!(s, "{:<w$}", "");
        for n in names {
            let _ = write!(s, " {:>6}", &n[..n.len().min(6)]);
        }
        let _ = writeln!(s);
        for (n, row) in names.iter().zip(m) {
            let _ = write!(s, "{:<w$}", &n[..n.len().min(w)]);
            for v in row {
                let _ = write!(s, " {v:>6}");
            }
            let _ = writeln!(s);
        }
    }
    s
}

/// Writes each label's best-F1 threshold per language into `[labels.<name>.language_thresholds]`,
/// keeping the file's comments and layout.
fn write_thresholds(config_path: &Path, r: &Report, min_support: u64) -> Result<()> {
    let text = std::fs::read_to_string(config_path)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let labels = doc["labels"].or_insert(toml_edit::table());
    let mut written = 0;
    for l in &r.labels {
        for (lang, ll) in &l.languages {
            let (Some(best), true) = (ll.best_f1, ll.prf.support >= min_support) else {
                continue;
            };
            let entry = labels[l.label.as_str()].or_insert(toml_edit::table());
            if let Some(t) = entry.as_table_mut() {
                t.set_implicit(false);
            }
            let lt = entry["language_thresholds"].or_insert(toml_edit::table());
            lt[lang.as_str()] = toml_edit::value(((best.threshold as f64) * 1e4).round() / 1e4);
            written += 1;
        }
    }
    let new = doc.to_string();
    WorkspaceConfig::parse(&new, config_path)
        .context("the thresholds would make the configuration invalid")?;
    let tmp = config_path.with_extension("toml.tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, config_path)?;
    eprintln!("wrote {written} per-language thresholds into {} (labels with at least {min_support} positives per language)", config_path.display());
    Ok(())
}
