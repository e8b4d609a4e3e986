//! Normalisation for matching: the one function that turns a text into what banks compare.
//!
//! Steps, per character of the input (so every normalised character knows where it came from):
//! URLs, @mentions and #hashtags are cut out and kept as separate features; compatibility
//! decomposition (NFKD, then the marks that only carry accents, Latin/Greek/Cyrillic combining
//! diacritics and Arabic harakat, and the tatweel, are dropped); zero-width, bidi and other
//! invisible controls removed; case folded; leetspeak folded inside words that hold letters
//! (`h4te` -> `hate`, but `2024` stays); confusable characters folded to their skeleton
//! (Unicode TS #39, e.g. Cyrillic `а` -> Latin `a`); runs of whitespace, punctuation and symbols
//! collapsed into one space. The result is stable across versions of this crate within one
//! bank format (`FORMAT` in `bank.rs`): a digest list shared by a partner stays valid.

use std::cell::RefCell;
use std::collections::HashMap;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A text as banks compare it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalized {
    /// The normalised text: words separated by single spaces.
    pub text: String,
    /// For each character of `text`, the index (in chars) of the input character it came from.
    pub origin: Vec<usize>,
    /// URLs, lower-cased, without trailing punctuation.
    pub urls: Vec<String>,
    /// @mentions, lower-cased, without the `@`.
    pub mentions: Vec<String>,
    /// #hashtags, lower-cased, without the `#`.
    pub hashtags: Vec<String>,
}

impl Normalized {
    /// The input character span `[start, end)` of normalised characters `[from, to)`.
    pub fn input_span(&self, from: usize, to: usize) -> (usize, usize) {
        if self.origin.is_empty() || from >= to {
            return (0, 0);
        }
        let to = to.min(self.origin.len());
        (self.origin[from], self.origin[to - 1] + 1)
    }
}

/// Characters that change nothing visible: zero-width, joiners, bidi embeddings, overrides and
/// isolates, the soft hyphen, the byte-order mark, variation selectors.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

/// Marks that only carry accents or vowelling and are dropped: combining diacritics used by
/// Latin, Greek and Cyrillic, Arabic harakat, and the Arabic tatweel (a stretching filler).
fn is_dropped_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}'
        | '\u{0670}' | '\u{06D6}'..='\u{06ED}' | '\u{0640}')
}

fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        '9' => 'g',
        _ => return None,
    })
}

/// A hash for the skeleton cache's char keys (one multiplication: the keys are not chosen by
/// an attacker, and SipHash cost more than the look-up it guards).
#[derive(Default, Clone, Copy)]
struct CharHash;

impl std::hash::BuildHasher for CharHash {
    type Hasher = CharHasher;
    fn build_hasher(&self) -> CharHasher {
        CharHasher(0)
    }
}

struct CharHasher(u64);

impl std::hash::Hasher for CharHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The TS #39 skeleton of one character, lower-cased (cached: the table is consulted per
/// character).
fn skeleton(c: char, out: &mut Vec<char>) {
    if c.is_ascii_lowercase() || c == ' ' {
        // the skeleton maps one ASCII lower-case letter, `m` -> `rn` (a test checks every
        // letter against the table)
        match c {
            'm' => out.extend_from_slice(&['r', 'n']),
            _ => out.push(c),
        }
        return;
    }
    thread_local! {
        static CACHE: RefCell<HashMap<char, Vec<char>, CharHash>> = RefCell::new(HashMap::default());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let v = cache.entry(c).or_insert_with(|| {
            unicode_security::skeleton(&c.to_string())
                .filter(|c| !is_dropped_mark(*c))
                .flat_map(char::to_lowercase)
                .collect()
        });
        out.extend_from_slice(v);
    });
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// Where the features (URLs, mentions, hashtags) are: `[start, end)` char ranges.
fn features(chars: &[char], n: &mut Normalized) -> Vec<(usize, usize)> {
    let mut cut = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        // only a word that starts like a URL, a mention or a hashtag is looked at closer
        if !matches!(chars[start], 'h' | 'H' | 'w' | 'W' | '@' | '#') {
            continue;
        }
        let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
        let trimmed = word.trim_end_matches(|c: char| ".,;:!?)]}'\"»".contains(c));
        let strip = |p: char| {
            trimmed
                .strip_prefix(p)
                .filter(|r| !r.is_empty() && r.chars().all(|c| is_word(c) || c == '_'))
                .map(str::to_owned)
        };
        if trimmed.starts_with("http://")
            || trimmed.starts_with("https://")
            || trimmed.starts_with("www.")
        {
            n.urls.push(trimmed.to_owned());
        } else if let Some(m) = strip('@') {
            n.mentions.push(m);
        } else if let Some(h) = strip('#') {
            n.hashtags.push(h);
        } else {
            continue;
        }
        cut.push((start, start + trimmed.chars().count()));
    }
    cut
}

/// Normalises `text` for matching (see the module's documentation).
pub fn normalize(text: &str) -> Normalized {
    let chars: Vec<char> = text.chars().collect();
    let mut n = Normalized::default();
    let cut = features(&chars, &mut n);
    // 1. decompose, drop marks and invisibles, fold case: (char, origin)
    let mut folded: Vec<(char, usize)> = Vec::with_capacity(chars.len());
    let mut cuts = cut.iter().peekable();
    for (i, &c) in chars.iter().enumerate() {
        while cuts.peek().is_some_and(|r| r.1 <= i) {
            cuts.next();
        }
        if cuts.peek().is_some_and(|r| r.0 <= i) {
            folded.push((' ', i));
            continue;
        }
        if c.is_ascii() {
            // ASCII decomposes to itself and holds no invisible or dropped mark
            folded.push((c.to_ascii_lowercase(), i));
            continue;
        }
        decompose_compatible(c, |d| {
            if is_invisible(d) || is_dropped_mark(d) {
                return;
            }
            match d {
                'ß' => folded.extend([('s', i), ('s', i)]),
                'ς' => folded.push(('σ', i)),
                _ => folded.extend(d.to_lowercase().map(|l| (l, i))),
            }
        });
    }
    // 2. leetspeak inside words that hold a letter
    let mut w = 0;
    while w < folded.len() {
        // a leet symbol (`@`, `$`, `!`...) is part of a word only between two word characters
        let is_part = |k: usize| {
            let c = folded[k].0;
            is_word(c)
                || (leet(c).is_some()
                    && k > 0
                    && k + 1 < folded.len()
                    && is_word(folded[k - 1].0)
                    && is_word(folded[k + 1].0))
        };
        if !is_part(w) {
            w += 1;
            continue;
        }
        let start = w;
        while w < folded.len() && is_part(w) {
            w += 1;
        }
        let word = &mut folded[start..w];
        let letters = word.iter().filter(|(c, _)| c.is_alphabetic()).count();
        if letters > 0 && letters < word.len() {
            for (c, _) in word.iter_mut() {
                if let Some(l) = leet(*c) {
                    *c = l;
                }
            }
        }
    }
    // 3. skeleton, then collapse separators
    let mut buf = Vec::new();
    let mut pending_space = false;
    for (c, i) in folded {
        if !is_word(c) {
            pending_space = !n.text.is_empty();
            continue;
        }
        buf.clear();
        skeleton(c, &mut buf);
        for &s in &buf {
            if !is_word(s) {
                continue;
            }
            if pending_space {
                n.text.push(' ');
                n.origin.push(i);
                pending_space = false;
            }
            n.text.push(s);
            n.origin.push(i);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s).text
    }

    #[test]
    fn case_spacing_and_punctuation_fold() {
        assert_eq!(
            norm("Join   the FIGHT!!!  Now..."),
            norm("join the fight now")
        );
        assert_ne!(norm("join the fight"), norm("join the fright"));
    }

    #[test]
    fn confusables_fold_to_the_latin_skeleton() {
        // Cyrillic а, е, о inside Latin words
        assert_eq!(norm("j\u{043e}in the \u{0430}rmy"), norm("join the army"));
        // fullwidth Latin (NFKC) and mathematical bold
        assert_eq!(norm("ｊｏｉｎ"), norm("join"));
        assert_eq!(norm("\u{1d423}\u{1d428}\u{1d422}\u{1d427}"), norm("join"));
    }

    #[test]
    fn zero_width_and_bidi_controls_vanish() {
        assert_eq!(
            norm("jo\u{200b}in th\u{200d}e\u{202e} army\u{feff}"),
            norm("join the army")
        );
        assert_eq!(norm("سلا\u{200c}م"), norm("سلام"));
    }

    #[test]
    fn leetspeak_folds_inside_words_only() {
        assert_eq!(norm("j0in th3 4rmy"), norm("join the army"));
        assert_eq!(norm("h@te"), norm("hate"));
        // a plain number is not a word in disguise
        assert_ne!(norm("born in 1990"), norm("born in iggo"));
        assert_ne!(norm("in 2024"), norm("in 2025"));
        assert_eq!(norm("stop!!! now"), norm("stop now"));
    }

    #[test]
    fn urls_mentions_and_hashtags_are_features() {
        let n = normalize("Join us @Recruiter: https://example.org/x?id=1. #Caliphate now");
        assert_eq!(n.urls, ["https://example.org/x?id=1"]);
        assert_eq!(n.mentions, ["recruiter"]);
        assert_eq!(n.hashtags, ["caliphate"]);
        assert_eq!(n.text, norm("join us now"));
    }

    #[test]
    fn arabic_vowelling_and_tatweel_drop() {
        assert_eq!(norm("جِهَاد"), norm("جهاد"));
        assert_eq!(norm("جـــهاد"), norm("جهاد"));
        assert_ne!(norm("جهاد"), norm("جهود"));
    }

    #[test]
    fn indic_vowel_signs_stay() {
        // Bengali: vowel signs are part of the word and distinguish words
        let a = norm("আমি বাংলায় গান গাই");
        assert!(
            a.chars().any(|c| ('\u{09be}'..='\u{09cc}').contains(&c)),
            "{a}"
        );
        assert_ne!(norm("কাল"), norm("কল"));
        assert_eq!(norm("আমি  বাংলায়, গান!"), norm("আমি বাংলায় গান"));
    }

    #[test]
    fn cyrillic_and_greek_words_keep_their_letters_apart() {
        assert_ne!(norm("мир"), norm("мор"));
        assert_eq!(norm("МИР"), norm("мир"));
        assert_eq!(norm("ΚΑΛΗΜΕΡΑ"), norm("καλημέρα"));
        assert_eq!(norm("Ёлка"), norm("елка"));
    }

    #[test]
    fn every_character_knows_its_origin() {
        let text = "Hé\u{200b}llo, wörld";
        let n = normalize(text);
        assert_eq!(n.origin.len(), n.text.chars().count());
        let (s, e) = n.input_span(0, n.origin.len());
        assert_eq!((s, e), (0, text.chars().count()));
        // the last word starts at the input's `w`
        let w = n.text.chars().position(|c| c == ' ').unwrap() + 1;
        assert_eq!(n.origin[w], 8);
    }

    #[test]
    fn the_ascii_letters_skeleton_maps_are_the_tables() {
        for c in 'a'..='z' {
            let table: String = unicode_security::skeleton(&c.to_string())
                .flat_map(char::to_lowercase)
                .collect();
            let mut mine = Vec::new();
            skeleton(c, &mut mine);
            assert_eq!(mine.iter().collect::<String>(), table, "{c}");
        }
    }
}
