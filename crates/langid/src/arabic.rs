//! Arabic, Persian, Urdu and Pashto share a script; whatlang has no Pashto and often mixes
//! Persian and Urdu on short texts. Letters that only one of them uses decide first.

use crate::Detection;

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
///
/// The order matters: Pashto's and Urdu's own letters never occur in the other languages, while
/// the Persian letters are also used by Urdu and Pashto, and Arabic forms turn up in all of them.
pub fn detect(text: &str, allowed: impl Fn(&str) -> bool) -> Option<Detection> {
    // 'ئ' is Pashto only with its own letters; alone it is also Urdu/Arabic/Persian.
    let ps = count(text, &PASHTO[..PASHTO.len() - 1]);
    let ur = count(text, URDU);
    let fa = count(text, PERSIAN);
    let ar = count(text, ARABIC);
    let letters = text.chars().filter(|c| c.is_alphabetic()).count().max(1);
    // (language, its evidence, the evidence of the strongest rival it must beat)
    let ranked = [
        ("ps", ps, ur),
        ("ur", ur, ps),
        ("fa", fa, ar),
        ("ar", ar, fa),
    ];
    let (best, evidence, rival) = ranked
        .iter()
        .copied()
        .filter(|(l, _, _)| allowed(l))
        .find(|&(_, e, r)| e > 0 && e >= r)?;
    if evidence == 0 {
        return None;
    }
    let margin = (evidence - rival.min(evidence)) as f64 / evidence as f64;
    let density = (evidence as f64 / letters as f64 * 10.0).min(1.0);
    let confidence = (0.5 + 0.5 * margin.max(0.2) * density).min(1.0);
    Some(Detection {
        lang: best,
        script: "Arabic",
        confidence,
        reliable: confidence >= 0.8 && evidence >= 2,
        und: None,
    })
}
