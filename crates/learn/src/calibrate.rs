//! `triage calibrate`: per-language thresholds from a background sample of ordinary text, so
//! that at most a chosen share of each language's ordinary text is flagged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use triage_batch::{Labeller, WorkspaceConfig};

use crate::eval::{label_texts, write_language_thresholds};
use crate::examples::read_texts;

/// Options of `triage calibrate`.
pub struct CalibrateArgs {
    /// JSON Lines of ordinary texts (`text`, optional `lang`) to calibrate on.
    pub background: PathBuf,
    /// The workspace configuration file (`workspace.toml`).
    pub config_path: PathBuf,
    /// The configuration as read from it.
    pub config: WorkspaceConfig,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Where window embeddings are cached.
    pub cache_dir: PathBuf,
    /// Most share of a language's background that a label may flag.
    pub rate: f64,
    /// Fewest background records of a language to set its thresholds.
    pub min_records: usize,
    /// Write the thresholds into the configuration file.
    pub write_thresholds: bool,
    /// A folder for the report files.
    pub out: Option<PathBuf>,
}

/// One label in one language.
#[derive(Debug, Serialize, PartialEq)]
pub struct Calibrated {
    /// The label.
    pub label: String,
    /// The language.
    pub lang: String,
    /// Background records of that language.
    pub records: usize,
    /// The label's threshold before (the language's own if it had one, else the label's).
    pub before: f32,
    /// Share of the background it flagged at `before`.
    pub flagged_before: f64,
    /// The threshold set: the lowest at which at most `rate` of the background is flagged, and
    /// never below the label's own threshold; `None` where the language has too few records.
    pub threshold: Option<f32>,
    /// Share of the background flagged at `threshold`.
    pub flagged_after: Option<f64>,
}

/// The lowest threshold (on a 1e-4 grid, as `workspace.toml` stores them) at which at most
/// `rate` of `scores` reach it, and never below `floor`.
pub fn threshold_for_rate(scores: &[f32], rate: f64, floor: f32) -> f32 {
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (rate * sorted.len() as f64).floor() as usize;
    let t = match sorted.get(allowed) {
        // just above the first score that may not be flagged, on the grid, compared as f32
        Some(&s) => {
            let mut t = (((s as f64) * 1e4).floor() + 1.0) / 1e4;
            while t as f32 <= s {
                t += 1e-4;
            }
            t
        }
        None => 0.0,
    };
    (t as f32).max(floor).min(1.0)
}

fn share(scores: &[f32], t: f32) -> f64 {
    scores.iter().filter(|&&s| s >= t).count() as f64 / scores.len().max(1) as f64
}

/// Calibrates per-language thresholds on a background sample: each label's threshold in a
/// language is the score that flags the target share of its ordinary texts. Returns whether
/// every background record was usable.
pub fn calibrate(args: CalibrateArgs) -> Result<bool> {
    if !(0.0..1.0).contains(&args.rate) {
        bail!("--rate {}: a share from 0 to below 1", args.rate);
    }
    let (texts, skipped) = read_texts(&args.background, &args.config.input)?;
    for s in &skipped {
        eprintln!("triage: skipped {s}");
    }
    if texts.is_empty() {
        bail!(
            "{}: no usable background records",
            args.background.display()
        );
    }
    if let Some(e) = texts.iter().find(|e| !e.labels.is_empty()) {
        eprintln!(
            "triage: {}:{}: a background record says labels {:?}; a background is ordinary text, and it is used as such",
            args.background.display(),
            e.line,
            e.labels
        );
    }
    let labeller = Labeller::from_config(&args.config, &args.model_dir, &args.config_path)?;
    let refs: Vec<&str> = texts.iter().map(|e| e.text.as_str()).collect();
    let (results, detected) = label_texts(&labeller, &refs, &args.cache_dir, &args.config)?;
    let mut by_lang: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in texts.iter().enumerate() {
        let lang = e.lang.clone().unwrap_or_else(|| detected[i].to_owned());
        by_lang.entry(lang).or_default().push(i);
    }
    let c = labeller.classifier();
    let names: Vec<String> = c.label_names().iter().map(|s| s.to_string()).collect();
    let mut rows = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let base = c.threshold(k, None);
        for (lang, idx) in &by_lang {
            let before = c.threshold(k, Some(lang));
            let scores: Vec<f32> = idx
                .iter()
                .map(|&i| results[i].labels()[k].score())
                .collect();
            let threshold = (idx.len() >= args.min_records)
                .then(|| threshold_for_rate(&scores, args.rate, base));
            rows.push(Calibrated {
                label: name.clone(),
                lang: lang.clone(),
                records: idx.len(),
                before,
                flagged_before: share(&scores, before),
                flagged_after: threshold.map(|t| share(&scores, t)),
                threshold,
            });
        }
    }
    let text = table(&rows, &args, &by_lang);
    print!("{text}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("calibration.txt"), &text)?;
        std::fs::write(
            out.join("calibration.json"),
            serde_json::to_vec_pretty(&serde_json::json!({
                "background": args.background.display().to_string(),
                "records": texts.len(),
                "rate": args.rate,
                "min_records": args.min_records,
                "rows": rows,
            }))?,
        )?;
    }
    if args.write_thresholds {
        let entries: Vec<(String, String, f32)> = rows
            .iter()
            .filter_map(|r| r.threshold.map(|t| (r.label.clone(), r.lang.clone(), t)))
            .collect();
        let n = write_language_thresholds(&args.config_path, &entries)?;
        eprintln!(
            "wrote {n} per-language thresholds into {}",
            args.config_path.display()
        );
    }
    Ok(skipped.is_empty())
}

fn table(
    rows: &[Calibrated],
    args: &CalibrateArgs,
    by_lang: &BTreeMap<String, Vec<usize>>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "background {}  records {}  target: at most {:.1}% flagged per label and language",
        args.background.display(),
        by_lang.values().map(Vec::len).sum::<usize>(),
        args.rate * 100.0
    );
    let _ = writeln!(
        s,
        "\n{:<20} {:<6} {:>7} {:>8} {:>8} {:>9} {:>8}",
        "label", "lang", "records", "before", "flagged", "threshold", "flagged"
    );
    for r in rows {
        let (t, after) = match (r.threshold, r.flagged_after) {
            (Some(t), Some(a)) => (format!("{t:.4}"), format!("{:.1}%", a * 100.0)),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:<20} {:<6} {:>7} {:>8.4} {:>7.1}% {t:>9} {after:>8}",
            r.label,
            r.lang,
            r.records,
            r.before,
            r.flagged_before * 100.0,
        );
    }
    let few: Vec<String> = by_lang
        .iter()
        .filter(|(_, v)| v.len() < args.min_records)
        .map(|(l, v)| format!("{l} ({})", v.len()))
        .collect();
    if !few.is_empty() {
        let _ = writeln!(
            s,
            "\nfewer than {} background records, so these languages keep the label's threshold: {}",
            args.min_records,
            few.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "languages with no background record at all keep the label's threshold too"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_flags_at_most_the_rate_and_never_goes_below_the_floor() {
        // 200 scores 0.000, 0.005, ..., 0.995
        let scores: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
        let t = threshold_for_rate(&scores, 0.01, 0.0);
        // two of 200 may be flagged: 0.995 and 0.99; 0.985 may not
        assert!((t - 0.9851).abs() < 1e-6, "{t}");
        assert_eq!(share(&scores, t), 0.01);
        assert!(share(&scores, t - 0.0051) > 0.01);
        // a label already quiet on the background keeps its own threshold
        assert_eq!(threshold_for_rate(&scores, 0.01, 0.995), 0.995);
        // rate 0: nothing of the background is flagged
        let t0 = threshold_for_rate(&scores, 0.0, 0.0);
        assert_eq!(share(&scores, t0), 0.0);
        // ties: at most the rate even when many scores are equal
        let tied = vec![0.7f32; 100];
        assert_eq!(share(&tied, threshold_for_rate(&tied, 0.05, 0.5)), 0.0);
    }

    #[test]
    fn thresholds_stay_within_one() {
        let scores = vec![1.0f32; 10];
        assert_eq!(threshold_for_rate(&scores, 0.01, 0.5), 1.0);
    }
}
