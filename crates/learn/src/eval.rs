//! `triage eval`: per label and language precision, recall and F1, thresholds, hard negatives
//! and ordinary text, a confusion matrix and pictures, on a gold set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use triage_batch::{Labeller, WorkspaceConfig};
use triage_classify::{HeadMeta, Mode};

use crate::embed_cache::EmbeddingCache;
use crate::examples::{read_examples, NONE};
use crate::metrics::{self, Prf, ThresholdPoint};

/// Options of `triage eval`.
pub struct EvalArgs {
    /// The gold set (JSON Lines, as [`crate::examples::read_examples`] reads).
    pub gold: PathBuf,
    /// The workspace configuration file (`workspace.toml`).
    pub config_path: PathBuf,
    /// The configuration as read from it.
    pub config: WorkspaceConfig,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Where window embeddings are cached.
    pub cache_dir: PathBuf,
    /// Evaluate this head directory instead of the configured labels.
    pub head: Option<PathBuf>,
    /// A folder for the report files.
    pub out: Option<PathBuf>,
    /// The precision each label's suggested threshold aims at.
    pub precision: f64,
    /// The language whose macro-F1 the others are compared with.
    pub reference_language: Option<String>,
    /// Write the thresholds into the configuration file.
    pub write_thresholds: bool,
    /// Fewest positives of a label in a language for a threshold of its own.
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
    /// Ordinary records (of none of the labels, not hard negatives), and how many of them some
    /// label flagged.
    unlabelled: usize,
    unlabelled_flagged: usize,
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
    /// Rows and columns: the labels, then `none`.
    confusion: Option<Vec<Vec<u64>>>,
    hard_negatives: Vec<HardNegatives>,
}

/// How a label fared on its hard negatives (gold records with `"counter_to"`).
#[derive(Serialize)]
struct HardNegatives {
    label: String,
    records: usize,
    flagged: usize,
    /// `(records, flagged)` per `"kind"` and per language.
    kinds: BTreeMap<String, (usize, usize)>,
    languages: BTreeMap<String, (usize, usize)>,
}

/// Evaluates the workspace (or a head) on a gold set: prints the report, writes it under
/// `out` when given, and the per-language thresholds when asked. Returns whether every gold
/// record was usable.
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
    let labeller = Labeller::from_config(&args.config, &args.model_dir, &args.config_path)?;
    let c = labeller.classifier();
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
    let (results, detected) = label_texts(&labeller, &texts, &args.cache_dir, &args.config)?;
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
    let single = !args.config.labels.multi_label && gold.iter().all(|g| g.labels.len() <= 1);
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
    // ordinary text: of none of the labels, and not a hard negative (those are reported apart)
    let ordinary = |i: usize| gold[i].labels.is_empty() && gold[i].counter_to.is_none();
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
                results[i].top().map(|t| t.label()) == gold[i].labels.first().map(|l| l.as_str())
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
                unlabelled: idx.iter().filter(|&&i| ordinary(i)).count(),
                unlabelled_flagged: idx
                    .iter()
                    .filter(|&&i| ordinary(i) && results[i].labels().iter().any(|l| l.flagged()))
                    .count(),
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
    // the labels' indices, and `names.len()` for none
    let index = |l: Option<&str>| {
        l.and_then(|l| names.iter().position(|n| n == l))
            .unwrap_or(names.len())
    };
    let confusion = single.then(|| {
        let t: Vec<usize> = gold
            .iter()
            .map(|g| index(g.labels.first().map(String::as_str)))
            .collect();
        let p: Vec<usize> = results
            .iter()
            .map(|r| index(r.top().map(|x| x.label())))
            .collect();
        metrics::confusion(&t, &p, names.len() + 1)
    });
    let hard_negatives = names
        .iter()
        .enumerate()
        .filter_map(|(k, name)| {
            let idx: Vec<usize> = (0..gold.len())
                .filter(|&i| gold[i].counter_to.as_deref() == Some(name))
                .collect();
            if idx.is_empty() {
                return None;
            }
            let mut h = HardNegatives {
                label: name.clone(),
                records: idx.len(),
                flagged: 0,
                kinds: BTreeMap::new(),
                languages: BTreeMap::new(),
            };
            for &i in &idx {
                let f = results[i].labels()[k].flagged() as usize;
                h.flagged += f;
                let kind = gold[i].kind.clone().unwrap_or_else(|| "-".into());
                for e in [
                    h.kinds.entry(kind).or_default(),
                    h.languages.entry(langs[i].clone()).or_default(),
                ] {
                    e.0 += 1;
                    e.1 += f;
                }
            }
            Some(h)
        })
        .collect();
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
        hard_negatives,
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

/// Labels `texts` as `triage label` would (the detected language's thresholds applied), with
/// the window embeddings cached by text hash; also returns each text's detected language.
pub fn label_texts(
    labeller: &Labeller,
    texts: &[&str],
    cache_dir: &Path,
    config: &WorkspaceConfig,
) -> Result<(Vec<triage_classify::Classification>, Vec<&'static str>)> {
    let c = labeller.classifier();
    let prepared = texts
        .iter()
        .map(|t| c.prepare(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = if c.uses_embeddings() {
        let mut cache = EmbeddingCache::open(cache_dir, c, &config.model)?;
        let windows = cache.window_embeddings(c, texts)?;
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
        .map(|t| labeller.detector().detect(t).lang())
        .collect();
    for (r, lang) in results.iter_mut().zip(&detected) {
        c.apply_language_thresholds(r, lang);
    }
    Ok((results, detected))
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
    if r.languages.iter().any(|l| l.unlabelled > 0) {
        let _ = writeln!(
            s,
            "\n{:<8} {:>10} {:>8} {:>9}",
            "language", "no label", "flagged", "rate"
        );
        for l in r.languages.iter().filter(|l| l.unlabelled > 0) {
            let _ = writeln!(
                s,
                "{:<8} {:>10} {:>8} {:>8.1}%",
                l.lang,
                l.unlabelled,
                l.unlabelled_flagged,
                100.0 * l.unlabelled_flagged as f64 / l.unlabelled as f64
            );
        }
    }
    for h in &r.hard_negatives {
        let _ = writeln!(
            s,
            "\nhard negatives of {}: {} of {} flagged ({:.1}%)",
            h.label,
            h.flagged,
            h.records,
            100.0 * h.flagged as f64 / h.records as f64
        );
        for (what, rows) in [("kind", &h.kinds), ("language", &h.languages)] {
            let row: Vec<String> = rows
                .iter()
                .map(|(k, (n, f))| format!("{k} {f}/{n}"))
                .collect();
            let _ = writeln!(s, "  by {what}: {}", row.join(", "));
        }
    }
    if r.languages.iter().any(|l| l.retained.is_some()) {
        let _ = writeln!(s, "retained: macro-F1 over the labels the language shares with the reference language, as a share of the reference's over the same labels; retained-raw: over all labels");
    }
    if let Some(m) = &r.confusion {
        let names: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(NONE))
            .collect();
        let w = names.iter().map(|n| n.len()).max().unwrap_or(4).min(14);
        let _ = writeln!(s, "\nconfusion (rows: gold, columns: predicted)");
        let _ = write!(s, "{:<w$}", "");
        for n in &names {
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
    let mut entries = Vec::new();
    for l in &r.labels {
        for (lang, ll) in &l.languages {
            if let (Some(best), true) = (ll.best_f1, ll.prf.support >= min_support) {
                entries.push((l.label.clone(), lang.clone(), best.threshold));
            }
        }
    }
    let written = write_language_thresholds(config_path, &entries)?;
    eprintln!("wrote {written} per-language thresholds into {} (labels with at least {min_support} positives per language)", config_path.display());
    Ok(())
}

/// Writes `(label, language, threshold)` entries into `[labels.<label>.language_thresholds]` of
/// the configuration file, keeping its comments and layout; refuses a result that would not
/// load. Returns how many were written.
pub fn write_language_thresholds(
    config_path: &Path,
    entries: &[(String, String, f32)],
) -> Result<usize> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", config_path.display()))?;
    let labels = doc["labels"].or_insert(toml_edit::table());
    for (label, lang, threshold) in entries {
        let entry = labels[label.as_str()].or_insert(toml_edit::table());
        if let Some(t) = entry.as_table_mut() {
            t.set_implicit(false);
        }
        let lt = entry["language_thresholds"].or_insert(toml_edit::table());
        lt[lang.as_str()] = toml_edit::value(((*threshold as f64) * 1e4).round() / 1e4);
    }
    let new = doc.to_string();
    WorkspaceConfig::parse(&new, config_path)
        .context("the thresholds would make the configuration invalid")?;
    let tmp = config_path.with_extension("toml.tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, config_path)?;
    Ok(entries.len())
}
