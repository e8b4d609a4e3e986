//! The languages of a mixed document, with their character spans and shares.
//!
//! A document is cut where a sentence ends (`.`, `!`, `?`, `؟`, `۔`, `।`, a line break) and
//! where the letters change script, so that Arabic quoted inside English is its own piece. Each
//! piece is detected; pieces of one language that follow each other are joined, and an
//! unreliable piece in the script of the span before it joins that span.

use serde::Serialize;

use crate::{ngram::is_word_char, Detector};

/// One language's stretch of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// Language code, as [`crate::Detection::lang`].
    pub lang: &'static str,
    /// Script name.
    pub script: &'static str,
    /// Start, in characters (Unicode scalar values) from the document's start.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
    /// Share of the document's letters that this span holds, within 0 and 1.
    pub share: f64,
}

/// A coarse script class of a letter, enough to see where a document changes script.
fn script_class(c: char) -> u32 {
    let u = c as u32;
    match u {
        0x0041..=0x024F | 0x1E00..=0x1EFF => 1, // Latin
        0x0370..=0x03FF => 2,                   // Greek
        0x0400..=0x052F => 3,                   // Cyrillic
        0x0590..=0x05FF => 4,                   // Hebrew
        0x0600..=0x06FF | 0x0750..=0x077F | 0x08A0..=0x08FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => {
            5
        }
        0x200C | 0x200D => 0, // joiners belong to their neighbours
        _ => 0x100 + (u >> 7),
    }
}

fn ends_sentence(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '؟' | '۔' | '।' | '\n')
}

impl Detector {
    /// The languages of `text` in order, with their spans and shares of its letters. A
    /// document in one language gives one span over all of it; a text without letters gives
    /// none.
    pub fn detect_spans(&self, text: &str) -> Vec<Span> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        // pieces: (start char, end char)
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut class = None;
        for (i, &(_, c)) in chars.iter().enumerate() {
            if is_word_char(c) {
                let k = script_class(c);
                if k != 0 {
                    if class.is_some_and(|cl| cl != k) {
                        pieces.push((start, i));
                        start = i;
                    }
                    class = Some(k);
                }
            } else if ends_sentence(c) {
                pieces.push((start, i + 1));
                start = i + 1;
                class = None;
            }
        }
        pieces.push((start, chars.len()));
        let byte = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
        let total: usize = chars.iter().filter(|c| is_word_char(c.1)).count();
        let mut spans: Vec<(Span, usize, bool)> = Vec::new(); // letters, reliable
        for (s, e) in pieces {
            let piece = &text[byte(s)..byte(e)];
            let letters = piece.chars().filter(|&c| is_word_char(c)).count();
            if letters == 0 {
                if let Some(last) = spans.last_mut() {
                    last.0.end = e;
                }
                continue;
            }
            let d = self.detect(piece);
            if let Some((last, n, _)) = spans.last_mut() {
                let joins = last.lang == d.lang()
                    || (last.script == d.script() && (!d.is_reliable() || d.lang() == "und"));
                if joins {
                    last.end = e;
                    *n += letters;
                    continue;
                }
            }
            spans.push((
                Span {
                    lang: d.lang(),
                    script: d.script(),
                    start: s,
                    end: e,
                    share: 0.0,
                },
                letters,
                d.is_reliable(),
            ));
        }
        // a first unreliable piece joins the span after it when they share a script
        if spans.len() > 1 && !spans[0].2 && spans[0].0.script == spans[1].0.script {
            let (first, n, _) = spans.remove(0);
            spans[0].0.start = first.start;
            spans[0].1 += n;
        }
        // join neighbours that now have the same language
        let mut out: Vec<(Span, usize)> = Vec::new();
        for (span, n, _) in spans {
            match out.last_mut() {
                Some((last, m)) if last.lang == span.lang => {
                    last.end = span.end;
                    *m += n;
                }
                _ => out.push((span, n)),
            }
        }
        out.into_iter()
            .map(|(mut span, n)| {
                span.share = n as f64 / total.max(1) as f64;
                span
            })
            .collect()
    }
}
