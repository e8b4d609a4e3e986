//! ISO 639 codes of the languages this crate can answer.

use whatlang::Lang;

/// ISO 639-1 code of a whatlang language (639-3 where there is no 639-1 code).
pub fn iso639_1(lang: Lang) -> &'static str {
    let three = lang.code();
    TABLE
        .iter()
        .find(|(t, _)| *t == three)
        .map_or(three, |(_, o)| *o)
}

/// Languages beyond whatlang's that the n-gram model answers, and other codes of whatlang's.
/// Kurdish (Sorani, Kurmanji) and Dari have no 639-1 code of their own.
const EXTRA: &[(&str, &str)] = &[
    ("pus", "ps"),
    ("pbu", "ps"),
    ("pbt", "ps"),
    ("fas", "fa"),
    ("per", "fa"),
    ("ckb", "ckb"),
    ("kmr", "kmr"),
    ("som", "so"),
    ("uig", "ug"),
    ("msa", "ms"),
    ("zsm", "ms"),
    ("may", "ms"),
    ("prs", "prs"),
];

/// The canonical code for `code` (639-1 or 639-3, any case), if this crate knows the language.
pub fn known_code(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_lowercase();
    if let Some((_, one)) = TABLE
        .iter()
        .chain(EXTRA)
        .find(|(three, one)| *three == code || *one == code)
    {
        return Some(one);
    }
    Lang::all().iter().map(|l| l.code()).find(|c| *c == code)
}

/// whatlang's 639-3 codes and their 639-1 equivalents.
const TABLE: &[(&str, &str)] = &[
    ("afr", "af"),
    ("aka", "ak"),
    ("amh", "am"),
    ("ara", "ar"),
    ("aze", "az"),
    ("bel", "be"),
    ("ben", "bn"),
    ("bul", "bg"),
    ("cat", "ca"),
    ("ces", "cs"),
    ("cmn", "zh"),
    ("cym", "cy"),
    ("dan", "da"),
    ("deu", "de"),
    ("ell", "el"),
    ("eng", "en"),
    ("epo", "eo"),
    ("est", "et"),
    ("fin", "fi"),
    ("fra", "fr"),
    ("guj", "gu"),
    ("heb", "he"),
    ("hin", "hi"),
    ("hrv", "hr"),
    ("hun", "hu"),
    ("hye", "hy"),
    ("ind", "id"),
    ("ita", "it"),
    ("jav", "jv"),
    ("jpn", "ja"),
    ("kan", "kn"),
    ("kat", "ka"),
    ("khm", "km"),
    ("kor", "ko"),
    ("lat", "la"),
    ("lav", "lv"),
    ("lit", "lt"),
    ("mal", "ml"),
    ("mar", "mr"),
    ("mkd", "mk"),
    ("mya", "my"),
    ("nep", "ne"),
    ("nld", "nl"),
    ("nob", "nb"),
    ("ori", "or"),
    ("pan", "pa"),
    ("pes", "fa"),
    ("pol", "pl"),
    ("por", "pt"),
    ("ron", "ro"),
    ("rus", "ru"),
    ("sin", "si"),
    ("slk", "sk"),
    ("slv", "sl"),
    ("sna", "sn"),
    ("spa", "es"),
    ("srp", "sr"),
    ("swe", "sv"),
    ("tam", "ta"),
    ("tel", "te"),
    ("tgl", "tl"),
    ("tha", "th"),
    ("tuk", "tk"),
    ("tur", "tr"),
    ("ukr", "uk"),
    ("urd", "ur"),
    ("uzb", "uz"),
    ("vie", "vi"),
    ("yid", "yi"),
    ("zul", "zu"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_whatlang_language_has_a_code_and_round_trips() {
        for &l in Lang::all() {
            let code = iso639_1(l);
            assert!(code.len() == 2 || code.len() == 3, "{l:?}");
            assert_eq!(known_code(code), Some(code), "{l:?}");
            assert_eq!(known_code(l.code()), Some(code), "{l:?}");
        }
        assert_eq!(known_code("PS"), Some("ps"));
        assert_eq!(known_code("zz"), None);
    }
}
