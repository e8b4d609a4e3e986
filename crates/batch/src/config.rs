//! `workspace.toml`: the meaning of a labelling run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use triage_classify::{LabelsConfig, ModelOptions};
use triage_langid::LanguagesConfig;

use crate::error::{Error, Result};

/// The `[input]` section: where records keep their fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Field of a JSON record that holds its id (the line number when absent).
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Field of a JSON record that holds the text to label.
    #[serde(default = "default_text_field")]
    pub text_field: String,
}

fn default_id_field() -> String {
    "id".into()
}
fn default_text_field() -> String {
    "text".into()
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            id_field: default_id_field(),
            text_field: default_text_field(),
        }
    }
}

/// The `[banks]` section: banks of known content every run matches against, and the least
/// similarities of a match.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BanksConfig {
    /// Bank folders (`triage bank build`), relative to the folder of `workspace.toml`.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Least estimated Jaccard similarity of a near match of the whole text (also the edge of
    /// a re-upload family).
    #[serde(default = "default_near")]
    pub near: f32,
    /// Least share of an item's signature found in a longer text.
    #[serde(default = "default_contained")]
    pub contained: f32,
    /// Least cosine similarity of a semantic match.
    #[serde(default = "default_semantic")]
    pub semantic: f32,
    /// Least margin of a semantic match over the text's next nearest items
    /// (`triage_bank::Thresholds::semantic_margin`).
    #[serde(default = "default_margin")]
    pub semantic_margin: f32,
    /// Least lift of a semantic match over its item's level
    /// (`triage_bank::Thresholds::semantic_lift`).
    #[serde(default = "default_lift")]
    pub semantic_lift: f32,
    /// Matches written per record, best first (the summary counts every bank matched).
    #[serde(default = "default_max_matches")]
    pub max_matches: usize,
    /// Whether re-upload families (`--families`, `triage families`) also join records of
    /// different languages by semantic edges (translations) at `family_semantic` and
    /// `family_semantic_margin`: the records' texts are embedded for it.
    #[serde(default = "default_true")]
    pub families_semantic: bool,
    /// Least cosine of a family's semantic edge (stricter than a bank match's: a wrong edge
    /// joins two whole families).
    #[serde(default = "default_family_semantic")]
    pub family_semantic: f32,
    /// Least margin of a family's semantic edge over the next nearest families.
    #[serde(default = "default_family_margin")]
    pub family_semantic_margin: f32,
}

fn default_family_semantic() -> f32 {
    0.9
}
fn default_family_margin() -> f32 {
    0.05
}

fn default_true() -> bool {
    true
}

fn default_max_matches() -> usize {
    10
}

fn default_near() -> f32 {
    triage_bank::Thresholds::default().near
}
fn default_contained() -> f32 {
    triage_bank::Thresholds::default().contained
}
fn default_semantic() -> f32 {
    triage_bank::Thresholds::default().semantic
}
fn default_margin() -> f32 {
    triage_bank::Thresholds::default().semantic_margin
}
fn default_lift() -> f32 {
    triage_bank::Thresholds::default().semantic_lift
}

impl Default for BanksConfig {
    fn default() -> Self {
        BanksConfig {
            paths: Vec::new(),
            near: default_near(),
            contained: default_contained(),
            semantic: default_semantic(),
            semantic_margin: default_margin(),
            semantic_lift: default_lift(),
            max_matches: default_max_matches(),
            families_semantic: true,
            family_semantic: default_family_semantic(),
            family_semantic_margin: default_family_margin(),
        }
    }
}

impl BanksConfig {
    /// The thresholds as the bank crate takes them.
    pub fn thresholds(&self) -> triage_bank::Thresholds {
        triage_bank::Thresholds {
            near: self.near,
            contained: self.contained,
            semantic: self.semantic,
            semantic_margin: self.semantic_margin,
            semantic_lift: self.semantic_lift,
        }
    }
}

/// The whole `workspace.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Which model and how texts are fed to it.
    pub model: ModelOptions,
    /// The taxonomy and how it is scored.
    #[serde(default)]
    pub labels: LabelsConfig,
    /// Languages the detector may answer.
    #[serde(default)]
    pub languages: LanguagesConfig,
    /// Where records keep their fields.
    #[serde(default)]
    pub input: InputConfig,
    /// Banks of known content to match every record against.
    #[serde(default)]
    pub banks: BanksConfig,
}

impl WorkspaceConfig {
    /// Reads and validates `workspace.toml`; errors name the file, the key and the line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigIo {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `workspace.toml` text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: WorkspaceConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        for (key, v) in [
            ("near", config.banks.near),
            ("contained", config.banks.contained),
            ("semantic", config.banks.semantic),
            ("semantic_margin", config.banks.semantic_margin),
            ("semantic_lift", config.banks.semantic_lift),
            ("family_semantic", config.banks.family_semantic),
            (
                "family_semantic_margin",
                config.banks.family_semantic_margin,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Config {
                    path: path.to_owned(),
                    message: format!("[banks] {key} = {v}: a similarity between 0 and 1"),
                });
            }
        }
        triage_langid::Detector::check(&config.languages).map_err(|source| Error::Languages {
            path: path.to_owned(),
            source,
        })?;
        Ok(config)
    }

    /// The model directory: `model.name` as a path when it is one, else `models_root/<name>`.
    pub fn model_dir(&self, models_root: &Path) -> PathBuf {
        let as_path = Path::new(&self.model.name);
        if as_path.is_absolute() || as_path.components().count() > 1 {
            as_path.to_owned()
        } else {
            models_root.join(as_path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[model]
name = "multilingual-e5-small"
prefix = "query: "

[labels]
mode = "prototypes"
multi_label = true
default_threshold = 0.4

[labels.spam]
description = "Scams"
threshold = 0.6

[labels.news]
examples = ["The council met", "Rates went up"]

[languages]
allow = ["en", "fr", "ps"]

[input]
text_field = "body"
"#;

    #[test]
    fn reads_every_section_in_order() {
        let c = WorkspaceConfig::parse(GOOD, Path::new("w.toml")).unwrap();
        assert_eq!(c.model.prefix, "query: ");
        assert_eq!(
            c.labels
                .labels
                .iter()
                .map(|l| l.0.as_str())
                .collect::<Vec<_>>(),
            ["spam", "news"]
        );
        assert_eq!(c.labels.threshold("spam"), 0.6);
        assert_eq!(c.labels.threshold("news"), 0.4);
        assert_eq!(c.input.text_field, "body");
        assert_eq!(c.input.id_field, "id");
        assert_eq!(
            c.model_dir(Path::new("/m")),
            Path::new("/m/multilingual-e5-small")
        );
    }

    fn err(text: &str) -> String {
        WorkspaceConfig::parse(text, Path::new("conf/workspace.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_keys_name_the_file_and_the_key() {
        let e = err(&GOOD.replace("prefix =", "colour = \"red\"\nprefix ="));
        assert!(
            e.contains("conf/workspace.toml") && e.contains("colour"),
            "{e}"
        );
        let e = err(&GOOD.replace("threshold = 0.6", "threshold = 0.6\nweight = 2"));
        assert!(
            e.contains("conf/workspace.toml") && e.contains("weight") && e.contains("spam"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[output]\nformat = \"csv\"\n"));
        assert!(e.contains("output"), "{e}");
        let e = err(&GOOD.replace("text_field", "txt_field"));
        assert!(e.contains("txt_field"), "{e}");
        let e = err(&GOOD.replace("\"ps\"", "\"klingon\""));
        assert!(
            e.contains("conf/workspace.toml") && e.contains("klingon"),
            "{e}"
        );
        let e = err(&GOOD.replace("threshold = 0.6", "threshold = 6"));
        assert!(e.contains("threshold"), "{e}");
        let e = err("[labels]\nmode = \"prototypes\"\n");
        assert!(e.contains("model"), "{e}");
    }

    #[test]
    fn severities_default_and_are_one_to_five() {
        let c = WorkspaceConfig::parse(
            &GOOD
                .replace(
                    "default_threshold = 0.4",
                    "default_threshold = 0.4\ndefault_severity = 2",
                )
                .replace("threshold = 0.6", "threshold = 0.6\nseverity = 5"),
            Path::new("w.toml"),
        )
        .unwrap();
        assert_eq!(
            (c.labels.severity("spam"), c.labels.severity("news")),
            (5, 2)
        );
        let e = err(&GOOD.replace("threshold = 0.6", "threshold = 0.6\nseverity = 6"));
        assert!(e.contains("severity must be 1 to 5"), "{e}");
        let e = err(&GOOD.replace(
            "default_threshold = 0.4",
            "default_threshold = 0.4\ndefault_severity = 0",
        ));
        assert!(e.contains("default_severity"), "{e}");
    }
}
