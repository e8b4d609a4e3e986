//! Counts of a run and their table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-label counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCount {
    /// Records where the label was flagged.
    pub flagged: u64,
    /// Records where it was the top label.
    pub top: u64,
}

/// Per-bank counts: records that matched the bank, by their best method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankCount {
    /// Records with at least one match in the bank.
    pub records: u64,
    /// Of those, records whose best match was exact.
    pub exact: u64,
    /// ... near.
    pub near: u64,
    /// ... semantic.
    pub semantic: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Records read (labelled or not).
    pub records: u64,
    /// Records labelled.
    pub labelled: u64,
    /// Records that became error records.
    pub errors: u64,
    /// Labelled records per language.
    pub languages: BTreeMap<String, u64>,
    /// Labelled records per language outside `[languages] allow` (also counted in
    /// `languages`).
    #[serde(default)]
    pub unlisted_languages: BTreeMap<String, u64>,
    /// Labelled records that no label flagged.
    #[serde(default)]
    pub unflagged: u64,
    /// Counts per label, in the configured order.
    pub labels: Vec<(String, LabelCount)>,
    /// Error records per kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// Records that matched each bank (absent when no bank is configured).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub banks: BTreeMap<String, BankCount>,
    /// Characters labelled.
    pub chars: u64,
    /// Text tokens (without specials and prefix).
    pub tokens: u64,
    /// Tokens this process ran through the encoder (windows with specials and prefix; not
    /// serialised: it depends on what an interrupted run had already done).
    #[serde(skip)]
    pub encoder_tokens: u64,
    /// Windows through the encoder.
    pub windows: u64,
    /// Records this process did not run through the encoder because a record with the same
    /// tokens came earlier (not serialised, like `encoder_tokens`).
    #[serde(skip)]
    pub reused: u64,
    /// Whether `--max-errors` stopped the run before the end of the input.
    pub stopped_early: bool,
    /// Whether a signal stopped the run before the end of the input.
    pub interrupted: bool,
    /// Wall time of this process (not serialised: a summary depends only on the input).
    #[serde(skip)]
    pub elapsed: Duration,
    /// Worker threads (not serialised).
    #[serde(skip)]
    pub threads: usize,
}

impl Summary {
    /// Adds another run's counts (a shard of the same input and labels): every count, the
    /// languages and error kinds, and the flags that a part stopped early or was interrupted.
    /// Refuses a summary of other labels.
    pub fn add(&mut self, s: &Summary) -> Result<(), String> {
        if self.labels.is_empty() {
            self.labels = s
                .labels
                .iter()
                .map(|(l, _)| (l.clone(), Default::default()))
                .collect();
        }
        if !self
            .labels
            .iter()
            .map(|l| &l.0)
            .eq(s.labels.iter().map(|l| &l.0))
        {
            return Err("the parts were labelled with different labels".into());
        }
        for ((_, a), (_, b)) in self.labels.iter_mut().zip(&s.labels) {
            a.flagged += b.flagged;
            a.top += b.top;
        }
        self.records += s.records;
        self.labelled += s.labelled;
        self.errors += s.errors;
        self.chars += s.chars;
        self.tokens += s.tokens;
        self.windows += s.windows;
        self.stopped_early |= s.stopped_early;
        self.interrupted |= s.interrupted;
        for (k, v) in &s.unlisted_languages {
            *self.unlisted_languages.entry(k.clone()).or_default() += v;
        }
        self.unflagged += s.unflagged;
        for (k, v) in &s.languages {
            *self.languages.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.banks {
            let c = self.banks.entry(k.clone()).or_default();
            c.records += v.records;
            c.exact += v.exact;
            c.near += v.near;
            c.semantic += v.semantic;
        }
        Ok(())
    }

    /// Counts a record's bank matches: per bank matched, its best method.
    pub fn count_bank_hits(&mut self, hits: &[(String, triage_bank::Method)]) {
        for (bank, method) in hits {
            let c = self.banks.entry(bank.clone()).or_default();
            c.records += 1;
            match method {
                triage_bank::Method::Exact => c.exact += 1,
                triage_bank::Method::Near => c.near += 1,
                triage_bank::Method::Semantic => c.semantic += 1,
            }
        }
    }

    /// Starts the per-bank counts at zero, so that a bank nothing matched is listed too.
    pub fn list_banks<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for n in names {
            self.banks.entry(n.to_owned()).or_default();
        }
    }

    /// Records per second of wall time.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Encoder tokens per second of wall time.
    pub fn tokens_per_sec(&self) -> f64 {
        self.encoder_tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The end-of-run table for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} records: {} labelled ({} reused earlier scores), {} errors{} in {:.1} s: {:.1} records/s, {:.0} tokens/s ({} threads)",
            self.records,
            self.labelled,
            self.reused,
            self.errors,
            if self.stopped_early {
                " (stopped early by --max-errors)"
            } else if self.interrupted {
                " (interrupted: resume with --resume)"
            } else {
                ""
            },
            self.elapsed.as_secs_f64(),
            self.records_per_sec(),
            self.tokens_per_sec(),
            self.threads
        );
        let w = self
            .labels
            .iter()
            .map(|(l, _)| l.len())
            .max()
            .unwrap_or(5)
            .max(8);
        let _ = writeln!(s, "\n{:<w$}  {:>8}", "language", "records");
        let mut langs: Vec<_> = self.languages.iter().collect();
        langs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (lang, n) in langs {
            let unlisted = if self.unlisted_languages.contains_key(lang) {
                "  (not in [languages] allow)"
            } else {
                ""
            };
            let _ = writeln!(s, "{lang:<w$}  {n:>8}{unlisted}");
        }
        let _ = writeln!(s, "\n{:<w$}  {:>8}  {:>8}", "label", "flagged", "top");
        for (label, c) in &self.labels {
            let _ = writeln!(s, "{label:<w$}  {:>8}  {:>8}", c.flagged, c.top);
        }
        let _ = writeln!(s, "{:<w$}  {:>8}  {:>8}", "(none)", "", self.unflagged);
        if !self.banks.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<w$}  {:>8}  {:>8}  {:>8}  {:>8}",
                "bank", "records", "exact", "near", "semantic"
            );
            for (b, c) in &self.banks {
                let _ = writeln!(
                    s,
                    "{b:<w$}  {:>8}  {:>8}  {:>8}  {:>8}",
                    c.records, c.exact, c.near, c.semantic
                );
            }
        }
        if !self.error_kinds.is_empty() {
            let _ = writeln!(s, "\n{:<w$}  {:>8}", "error", "records");
            for (k, n) in &self.error_kinds {
                let _ = writeln!(s, "{k:<w$}  {n:>8}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_languages_by_count_and_labels_in_order() {
        let s = Summary {
            records: 10,
            labelled: 9,
            errors: 1,
            languages: BTreeMap::from([("ar".into(), 2), ("en".into(), 6), ("pt".into(), 1)]),
            unlisted_languages: BTreeMap::from([("pt".into(), 1)]),
            unflagged: 2,
            labels: vec![
                ("spam".into(), LabelCount { flagged: 3, top: 4 }),
                ("news".into(), LabelCount { flagged: 1, top: 5 }),
            ],
            error_kinds: BTreeMap::from([("invalid_json".into(), 1)]),
            elapsed: Duration::from_secs(2),
            threads: 2,
            ..Default::default()
        };
        let t = s.table();
        assert!(
            t.starts_with("10 records: 9 labelled (0 reused earlier scores), 1 errors in 2.0 s: 5.0 records/s"),
            "{t}"
        );
        assert!(t.find("en ").unwrap() < t.find("ar ").unwrap());
        assert!(t.find("spam").unwrap() < t.find("news").unwrap());
        assert!(t.contains("invalid_json"));
        assert!(
            t.contains("pt               1  (not in [languages] allow)"),
            "{t}"
        );
        assert!(!t.contains("en               6  (not"), "{t}");
        assert!(t.contains("(none)                     2"), "{t}");
    }
}
