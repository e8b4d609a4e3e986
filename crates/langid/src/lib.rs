//! Language and script detection for triage, with [whatlang](https://docs.rs/whatlang) inside.
//!
//! Answers ISO 639-1 codes (ISO 639-3 where a language has none), the script, a confidence
//! and a reliable flag, and `und` with a reason when a text is empty, has no letters, or cannot
//! be decided. An allow-list (`[languages] allow` in `workspace.toml`) restricts the answers.
//! Where whatlang is weak in the Arabic script (it has no Pashto and confuses Persian and Urdu)
//! the letters that only one language of the group uses decide.
//!
//! ```
//! use triage_langid::{Detector, LanguagesConfig};
//!
//! let detector = Detector::new(&LanguagesConfig::default())?;
//! let d = detector.detect("Le gouvernement a présenté hier une réforme des retraites.");
//! assert_eq!(d.lang(), "fr");
//! assert_eq!(d.script(), "Latin");
//! assert_eq!(detector.detect("12345 !!!").lang(), "und");
//! # Ok::<(), triage_langid::Error>(())
//! ```
#![deny(missing_docs)]

mod arabic;
mod codes;

use serde::{Deserialize, Serialize};
use whatlang::{Lang, Script};

pub use codes::{iso639_1, known_code};

/// Errors of the language detector's configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The allow-list names a code that is not a language this crate knows.
    #[error("languages.allow: unknown language code {code:?} (use ISO 639-1, or 639-3 where there is none)")]
    UnknownCode {
        /// The code as written.
        code: String,
    },
}

/// The `[languages]` section of `workspace.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LanguagesConfig {
    /// Languages the detector may answer (ISO 639-1 or 639-3 codes); empty means all.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Why a text got `und`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UndReason {
    /// The text is empty or only white space.
    Empty,
    /// The text has no letters (digits, punctuation, emoji only).
    NoLetters,
    /// The text has letters, but no allowed language fits them.
    Undecided,
}

/// The language of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    lang: &'static str,
    script: &'static str,
    confidence: f64,
    reliable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    und: Option<UndReason>,
}

impl Detection {
    /// ISO 639-1 code (639-3 where none exists), or `und`.
    pub fn lang(&self) -> &'static str {
        self.lang
    }
    /// Script name (`Latin`, `Arabic`, `Cyrillic`, ...), `Common` when the text has no letters.
    pub fn script(&self) -> &'static str {
        self.script
    }
    /// Confidence within 0 and 1.
    pub fn confidence(&self) -> f64 {
        self.confidence
    }
    /// Whether the answer is considered reliable.
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }
    /// Why the answer is `und`, if it is.
    pub fn und_reason(&self) -> Option<UndReason> {
        self.und
    }

    fn und(script: &'static str, reason: UndReason) -> Self {
        Detection {
            lang: "und",
            script,
            confidence: 0.0,
            reliable: false,
            und: Some(reason),
        }
    }
}

/// The name of a script, borrowed from whatlang's static table.
fn script_name(s: Script) -> &'static str {
    Script::all()
        .iter()
        .find(|x| **x == s)
        .map_or("Common", |x| x.name())
}

/// A language detector: immutable, `Send + Sync`.
#[derive(Debug)]
pub struct Detector {
    whatlang: whatlang::Detector,
    /// The allow-list as codes; empty means all.
    allow: Vec<&'static str>,
}

impl Detector {
    /// Builds a detector from the `[languages]` section.
    pub fn new(config: &LanguagesConfig) -> Result<Self, Error> {
        let mut allow = Vec::new();
        for code in &config.allow {
            let c = known_code(code).ok_or_else(|| Error::UnknownCode { code: code.clone() })?;
            if !allow.contains(&c) {
                allow.push(c);
            }
        }
        let whatlang = if allow.is_empty() {
            whatlang::Detector::new()
        } else {
            let langs: Vec<Lang> = Lang::all()
                .iter()
                .copied()
                .filter(|l| allow.contains(&iso639_1(*l)))
                .collect();
            whatlang::Detector::with_allowlist(langs)
        };
        Ok(Detector { whatlang, allow })
    }

    fn allowed(&self, code: &str) -> bool {
        self.allow.is_empty() || self.allow.contains(&code)
    }

    /// Detects the language of `text`.
    pub fn detect(&self, text: &str) -> Detection {
        if text.trim().is_empty() {
            return Detection::und("Common", UndReason::Empty);
        }
        if !text.chars().any(char::is_alphabetic) {
            return Detection::und("Common", UndReason::NoLetters);
        }
        let script = self.whatlang.detect_script(text);
        if script == Some(Script::Arabic) {
            if let Some(d) = arabic::detect(text, |c| self.allowed(c)) {
                return d;
            }
        }
        match self.whatlang.detect(text) {
            Some(info) => Detection {
                lang: iso639_1(info.lang()),
                script: script_name(info.script()),
                confidence: info.confidence(),
                reliable: info.is_reliable(),
                und: None,
            },
            None => Detection::und(script.map_or("Common", script_name), UndReason::Undecided),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detector {
        Detector::new(&LanguagesConfig::default()).unwrap()
    }

    #[test]
    fn sentences_of_the_main_languages() {
        let d = all();
        for (code, text) in [
            (
                "en",
                "The city council approved a new budget for public libraries on Tuesday evening.",
            ),
            (
                "fr",
                "Le gouvernement a présenté hier une réforme des retraites très contestée.",
            ),
            (
                "de",
                "Das Wetter bleibt am Wochenende sonnig, mit Temperaturen um 25 Grad.",
            ),
            (
                "ru",
                "В Москве открылась выставка современного искусства и много людей пришли.",
            ),
            (
                "tr",
                "Ankara'da yeni metro hattı bugün hizmete açıldı ve yolcular çok memnun.",
            ),
            (
                "es",
                "El Real Madrid ganó anoche su partido por tres goles a uno en casa.",
            ),
            (
                "id",
                "Pemerintah Indonesia meresmikan bandara baru di Kalimantan pada hari Senin.",
            ),
            (
                "nl",
                "De gemeente opent volgende maand een nieuw zwembad in het centrum van de stad.",
            ),
            ("bn", "ঢাকায় আজ নতুন মেট্রো রেল চালু হয়েছে এবং যাত্রীরা খুশি।"),
            (
                "ar",
                "أعلنت وزارة الصحة عن افتتاح مستشفى جديد في مدينة الإسكندرية.",
            ),
            (
                "fa",
                "بازار تهران امروز شاهد افزایش قیمت طلا بود و مردم نگران هستند.",
            ),
            (
                "ur",
                "کراچی میں آج بارش کا امکان ہے اور لوگ گھروں میں رہیں گے۔",
            ),
            ("ps", "په کابل کې نن ورځ یو نوی ښوونځی پرانیستل شو."),
            (
                "bg",
                "Правителството обяви нови мерки за подкрепа на малкия бизнес в страната.",
            ),
            (
                "ro",
                "Guvernul a anunțat noi măsuri pentru sprijinirea întreprinderilor mici.",
            ),
        ] {
            let r = d.detect(text);
            assert_eq!(r.lang(), code, "{text}: {r:?}");
            assert!(r.und_reason().is_none());
        }
    }

    #[test]
    fn und_with_a_reason() {
        let d = all();
        assert_eq!(d.detect("").und_reason(), Some(UndReason::Empty));
        assert_eq!(d.detect("   \n\t").und_reason(), Some(UndReason::Empty));
        assert_eq!(
            d.detect("12 345,00 € !!! 😀").und_reason(),
            Some(UndReason::NoLetters)
        );
        assert_eq!(d.detect("2024").lang(), "und");
    }

    #[test]
    fn the_allow_list_restricts_answers() {
        let only = Detector::new(&LanguagesConfig {
            allow: vec!["en".into(), "de".into()],
        })
        .unwrap();
        // Dutch is not allowed: the answer must be one of the allowed languages.
        let r = only.detect("De gemeente opent volgende maand een nieuw zwembad in het centrum.");
        assert!(["en", "de"].contains(&r.lang()), "{r:?}");
        // Arabic-script text with no allowed Arabic-script language is undecided.
        assert_eq!(
            only.detect("بازار تهران امروز شاهد افزایش قیمت طلا بود")
                .lang(),
            "und"
        );
        let fa_ps = Detector::new(&LanguagesConfig {
            allow: vec!["fa".into(), "ps".into()],
        })
        .unwrap();
        assert_eq!(
            fa_ps.detect("کراچی میں آج بارش کا امکان ہے۔").script(),
            "Arabic"
        );
        assert!(["fa", "ps"].contains(&fa_ps.detect("کراچی میں آج بارش کا امکان ہے۔").lang()));
    }

    #[test]
    fn unknown_codes_are_config_errors() {
        let err = Detector::new(&LanguagesConfig {
            allow: vec!["en".into(), "xx".into()],
        })
        .unwrap_err();
        assert!(err.to_string().contains("\"xx\""), "{err}");
        // 639-3 codes are accepted for languages that have a 639-1 code too
        assert!(Detector::new(&LanguagesConfig {
            allow: vec!["eng".into(), "pus".into()]
        })
        .is_ok());
    }
}
