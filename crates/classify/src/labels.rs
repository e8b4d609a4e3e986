//! The `[labels]` section: the team's taxonomy and how each label is scored.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// How labels are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each label's description and examples are embedded; a text scores by similarity.
    #[default]
    Prototypes,
    /// The model's own `*ForSequenceClassification` head and `id2label`.
    Checkpoint,
    /// A linear head trained on the team's examples, read from a file.
    Head,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prototypes" => Ok(Mode::Prototypes),
            "checkpoint" => Ok(Mode::Checkpoint),
            "head" => Ok(Mode::Head),
            _ => Err(format!(
                "unknown mode {s:?} (one of: prototypes head checkpoint)"
            )),
        }
    }
}

/// One label of the taxonomy (`[labels.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// What the label means, in any language; embedded as a prototype.
    #[serde(default)]
    pub description: Option<String>,
    /// Example texts of the label; each is embedded as a prototype.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Hard negatives: texts that look like the label but are not it (news reports of an
    /// attack, counter-speech, condemnation, a quote in a report, academic analysis). In
    /// `prototypes` mode a text scores against them as well as against the background; `triage
    /// train` adds them as negatives of every label; they need a description or examples.
    #[serde(default)]
    pub counter_examples: Vec<String>,
    /// Score at or above which the label is flagged; `default_threshold` when absent.
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Thresholds for texts of one language (ISO 639-1 code -> threshold), written by
    /// `triage eval --write-thresholds`; `threshold` for the other languages.
    #[serde(default)]
    pub language_thresholds: std::collections::BTreeMap<String, f32>,
    /// How grave the label is, 1 (least) to 5, for ordering a review queue (`triage queue`);
    /// `default_severity` when absent.
    #[serde(default)]
    pub severity: Option<u8>,
}

/// The `[labels]` section: the mode, thresholds and the labels in the order written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelsConfig {
    /// How labels are scored.
    pub mode: Mode,
    /// Whether several labels may be flagged at once; otherwise only the top one can be.
    pub multi_label: bool,
    /// Threshold of labels that set none.
    pub default_threshold: f32,
    /// Sharpness of `prototypes` scores: a label's score is
    /// `sigmoid((nearest positive - nearest negative) / temperature)` in cosine similarity.
    pub temperature: f32,
    /// `prototypes` mode: ordinary texts that belong to no label, the negatives every label
    /// is weighed against; `None` is the built-in multilingual background
    /// ([`BUILTIN_BACKGROUND`]), an empty list none at all.
    pub background: Option<Vec<String>>,
    /// `head` mode: the head directory, relative to the model directory unless absolute.
    pub head: Option<PathBuf>,
    /// The labels, in the order of the file.
    pub labels: Vec<(String, LabelSpec)>,
    /// Severity of labels that set none (1 to 5).
    pub default_severity: u8,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            mode: Mode::default(),
            multi_label: true,
            default_threshold: 0.5,
            temperature: 0.02,
            background: None,
            head: None,
            labels: Vec::new(),
            default_severity: 3,
        }
    }
}

impl LabelsConfig {
    /// The threshold of `label`.
    pub fn threshold(&self, label: &str) -> f32 {
        self.labels
            .iter()
            .find(|(n, _)| n == label)
            .and_then(|(_, s)| s.threshold)
            .unwrap_or(self.default_threshold)
    }

    /// The severity of `label` (1 to 5).
    pub fn severity(&self, label: &str) -> u8 {
        self.labels
            .iter()
            .find(|(n, _)| n == label)
            .and_then(|(_, s)| s.severity)
            .unwrap_or(self.default_severity)
    }
}

const SCALAR_KEYS: &[&str] = &[
    "mode",
    "multi_label",
    "default_threshold",
    "temperature",
    "background",
    "head",
    "default_severity",
];

/// The built-in background of `prototypes` mode: ordinary text in the 15 languages of the
/// design (conversation, news, weather, official notices, software interface text), written
/// for this project (`crates/classify/data/background.txt`, one text a line).
pub const BUILTIN_BACKGROUND: &str = include_str!("../data/background.txt");

/// The lines of [`BUILTIN_BACKGROUND`] (blank lines and `#` comments skipped).
pub fn builtin_background() -> Vec<String> {
    BUILTIN_BACKGROUND
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The lines of [`BUILTIN_BACKGROUND`] with their language (the `# xx` line above them): the
/// same ordinary sentences written in each of the 15 languages, from which triage-bank's
/// language space is estimated.
pub fn builtin_background_by_language() -> Vec<(String, String)> {
    let mut lang = None;
    let mut out = Vec::new();
    for line in BUILTIN_BACKGROUND.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            let code =
                rest.len() <= 3 && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase());
            if code {
                lang = Some(rest.to_owned());
            }
            continue;
        }
        if let (Some(l), false) = (&lang, line.is_empty() || line.starts_with('#')) {
            out.push((l.clone(), line.to_owned()));
        }
    }
    out
}

impl<'de> Deserialize<'de> for LabelsConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelsConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a [labels] table: mode, multi_label, default_threshold, temperature, background, head, default_severity, and one table per label")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelsConfig, A::Error> {
                let mut c = LabelsConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "mode" => c.mode = map.next_value()?,
                        "multi_label" => c.multi_label = map.next_value()?,
                        "default_threshold" => c.default_threshold = map.next_value()?,
                        "temperature" => c.temperature = map.next_value()?,
                        "background" => c.background = Some(map.next_value()?),
                        "head" => c.head = Some(map.next_value()?),
                        "default_severity" => c.default_severity = map.next_value()?,
                        _ => {
                            if c.labels.iter().any(|(n, _)| *n == key) {
                                return Err(de::Error::custom(format!(
                                    "label `{key}` is defined twice"
                                )));
                            }
                            let spec: LabelSpec = map.next_value().map_err(|e| {
                                de::Error::custom(format!(
                                    "`{key}` is not a known key ({}) nor a valid label table: {e}",
                                    SCALAR_KEYS.join(", ")
                                ))
                            })?;
                            c.labels.push((key, spec));
                        }
                    }
                }
                for (name, spec) in &c.labels {
                    if !spec.counter_examples.is_empty()
                        && spec.description.is_none()
                        && spec.examples.is_empty()
                    {
                        return Err(de::Error::custom(format!(
                            "label `{name}` has counter_examples but neither a description nor examples: say what the label is before what it is not"
                        )));
                    }
                    for (lang, t) in &spec.language_thresholds {
                        if !(0.0..=1.0).contains(t) {
                            return Err(de::Error::custom(format!(
                                "labels.{name}.language_thresholds.{lang} must be within 0 and 1, not {t}"
                            )));
                        }
                    }
                    if let Some(v) = spec.severity {
                        if !(1..=5).contains(&v) {
                            return Err(de::Error::custom(format!(
                                "labels.{name}.severity must be 1 to 5, not {v}"
                            )));
                        }
                    }
                    if let Some(t) = spec.threshold {
                        if !(0.0..=1.0).contains(&t) {
                            return Err(de::Error::custom(format!(
                                "labels.{name}.threshold must be within 0 and 1, not {t}"
                            )));
                        }
                    }
                }
                if !(0.0..=1.0).contains(&c.default_threshold) {
                    return Err(de::Error::custom(
                        "default_threshold must be within 0 and 1",
                    ));
                }
                if !(1..=5).contains(&c.default_severity) {
                    return Err(de::Error::custom("default_severity must be 1 to 5"));
                }
                if c.temperature <= 0.0 {
                    return Err(de::Error::custom("temperature must be positive"));
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// The JSON file beside a trained head's weights (`head.json`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeadMeta {
    /// Label of each output row, in order.
    pub labels: Vec<String>,
    /// `sigmoid` (one-vs-rest, multi-label) or `softmax` (single-label).
    pub activation: Activation,
    /// Suggested threshold per label (used when `workspace.toml` sets none).
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, f32>,
    /// Checksum of the encoder weights the head was trained on.
    #[serde(default)]
    pub encoder_sha256: Option<String>,
    /// Hash of the training data.
    #[serde(default)]
    pub data_sha256: Option<String>,
    /// Text prefix used when the training texts were embedded.
    #[serde(default)]
    pub prefix: Option<String>,
    /// How the head was trained (examples, epochs, options, validation scores).
    #[serde(default)]
    pub training: Option<serde_json::Value>,
}

/// How a head's logits become scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Independent probabilities.
    Sigmoid,
    /// Probabilities that sum to one.
    Softmax,
}

impl Activation {
    /// Applies the activation to one row of logits, in place.
    pub fn apply(self, row: &mut [f32]) {
        match self {
            Activation::Sigmoid => row.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            Activation::Softmax => softmax(row),
        }
    }
}

/// Softmax of a row, in place.
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    row.iter_mut().for_each(|x| *x /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_background_gives_every_line_its_language() {
        let by_language = builtin_background_by_language();
        // every text line, in order, under the `# xx` line above it
        let texts: Vec<String> = by_language.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(texts, builtin_background());
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for (l, _) in &by_language {
            *counts.entry(l.as_str()).or_default() += 1;
        }
        let langs: Vec<&str> = counts.keys().copied().collect();
        assert_eq!(
            langs,
            [
                "ar", "bg", "bn", "de", "en", "es", "fa", "fr", "id", "nl", "ps", "ro", "ru", "tr",
                "ur"
            ]
        );
        // the same sentences in each language (English has one more)
        assert!(counts.values().all(|n| (9..=10).contains(n)), "{counts:?}");
        assert_eq!(by_language[0], ("en".to_owned(), texts[0].clone()));
        assert!(by_language
            .iter()
            .any(|(l, t)| l == "fr" && t.starts_with("Merci pour le dîner")));
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut r = [1.0, 2.0, 3.0];
        softmax(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(r[0] < r[1] && r[1] < r[2]);
        // exp(1)/(exp(1)+exp(2)+exp(3)) by hand
        assert!((r[0] - 0.090_030_57).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_of_zero_is_half() {
        let mut r = [0.0, 2.0];
        Activation::Sigmoid.apply(&mut r);
        assert_eq!(r[0], 0.5);
        assert!((r[1] - 0.880_797_1).abs() < 1e-6);
    }
}
