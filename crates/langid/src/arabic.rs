//! Arabic, Persian, Urdu and Pashto share a script; whatlang has no Pashto and often mixes
//! Persian and Urdu on short texts. Letters that only one of them uses decide first.

use crate::{iso639_1, Detection};

/// Letters of Pashto's alphabet that Persian, Urdu and Arabic lack.
const PASHTO: &[char] = &['ټ', 'ډ', 'ړ', 'ږ', 'ښ', 'ځ', 'څ', 'ګ', 'ڼ', 'ۍ', 'ې', 'ئ'];
/// Letters of Urdu's alphabet that the others lack (retroflex letters, bari ye, do-chashmi he).
const URDU: &[char] = &['ٹ', 'ڈ', 'ڑ', 'ں', 'ے', 'ھ', 'ہ', 'ۓ'];
/// Persian (and Urdu/Pashto) letters and forms that Arabic does not use.
const PERSIAN: &[char] = &['پ', 'چ', 'ژ', 'گ', 'ک', 'ی'];
/// Arabic forms that Persian, Urdu and Pashto spelling avoid.
const ARABIC: &[char] = &['ة', 'ى', 'ي', 'ك', 'إ', 'أ'];

fn count(text: &str, set: &[char]) -> usize {
    text.chars().filter(|c| set.contains(c)).count()
}

/// Decides among the allowed Arabic-script languages, or `None` to leave it to whatlang.
pub fn detect(
    text: &str,
    allowed: impl Fn(&str) -> bool,
    whatlang: Option<whatlang::Info>,
) -> Option<Detection> {
    // 'ئ' is Pashto only with its own letters; alone it is also Urdu/Arabic/Persian.
    let ps = count(text, &PASHTO[..PASHTO.len() - 1]);
    let ur = count(text, URDU);
    let fa = count(text, PERSIAN);
    let ar = count(text, ARABIC);
    let letters = text.chars().filter(|c| c.is_alphabetic()).count().max(1);
    let mut ranked: Vec<(&'static str, usize)> =
        vec![("ps", ps * 3), ("ur", ur * 2), ("fa", fa), ("ar", ar)];
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    let (best, score) = ranked.iter().copied().find(|(l, _)| allowed(l))?;
    let evidence = if best == "ps" {
        ps
    } else if best == "ur" {
        ur
    } else {
        score
    };
    if evidence == 0 {
        // No distinctive letter at all: whatlang's answer if it is allowed, else undecided.
        return match whatlang {
            Some(info) if allowed(iso639_1(info.lang())) => None,
            _ => Some(Detection::und("Arabic", crate::UndReason::Undecided)),
        };
    }
    let runner_up = ranked
        .iter()
        .filter(|(l, _)| *l != best && allowed(l))
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(0);
    let margin = (score - runner_up.min(score)) as f64 / score as f64;
    let density = (evidence as f64 / letters as f64 * 10.0).min(1.0);
    let confidence = (0.5 + 0.5 * margin * density).min(1.0);
    Some(Detection {
        lang: best,
        script: "Arabic",
        confidence,
        reliable: confidence >= 0.8 && evidence >= 2,
        und: None,
    })
}
