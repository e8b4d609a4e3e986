//! Tokenization into windows: a text longer than the model's maximum is cut into overlapping
//! windows, each with the special tokens and the prefix, and each knowing its character span.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// One window of a text: token ids with specials and prefix, and the characters it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Token ids as the encoder takes them.
    pub ids: Vec<u32>,
    /// First character of the text covered (0-based, in chars).
    pub start: usize,
    /// One past the last character covered.
    pub end: usize,
}

/// A text cut into windows, ready for inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The windows, in text order; at least one.
    pub windows: Vec<Window>,
    /// Length of the text in characters.
    pub chars: usize,
    /// Tokens of the text (without specials and prefix).
    pub tokens: usize,
}

impl Prepared {
    /// Tokens over all windows, specials and prefix included: the encoder's work.
    pub fn window_tokens(&self) -> usize {
        self.windows.iter().map(|w| w.ids.len()).sum()
    }
}

/// How to cut texts into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOptions {
    /// Most tokens in a window, specials and prefix included.
    pub max_tokens: usize,
    /// Tokens shared by two neighbouring windows.
    pub overlap: usize,
}

/// `tokenizer.json` plus the windowing rules.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    prefix: Vec<u32>,
    budget: usize,
    step: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, with truncation and padding off (windows are cut here).
    pub fn from_file(path: &Path, prefix: &str, options: WindowOptions) -> Result<Self> {
        let err = |message: String| Error::Tokenizer {
            path: path.to_owned(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        let find = |names: &[&str]| names.iter().find_map(|n| tokenizer.token_to_id(n));
        let cls = find(&["<s>", "[CLS]"]).ok_or_else(|| err("has no <s> or [CLS] token".into()))?;
        let sep =
            find(&["</s>", "[SEP]"]).ok_or_else(|| err("has no </s> or [SEP] token".into()))?;
        let prefix = if prefix.trim().is_empty() {
            Vec::new()
        } else {
            // The prefix is tokenized alone, without its trailing space: the text that follows
            // starts a new word, so the concatenation equals tokenizing "prefix text" at once.
            tokenizer
                .encode(prefix.trim_end(), false)
                .map_err(|e| err(e.to_string()))?
                .get_ids()
                .to_vec()
        };
        let reserved = prefix.len() + 2;
        if options.max_tokens < reserved + 8 {
            return Err(err(format!(
                "max_tokens {} leaves no room for text after the prefix and special tokens",
                options.max_tokens
            )));
        }
        let budget = options.max_tokens - reserved;
        let overlap = options.overlap.min(budget / 2);
        Ok(TextTokenizer {
            tokenizer,
            cls,
            sep,
            prefix,
            budget,
            step: budget - overlap,
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text` as one sequence: specials and prefix, no windows, no truncation.
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.encode(text)?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + self.prefix.len() + 2);
        ids.push(self.cls);
        ids.extend_from_slice(&self.prefix);
        ids.extend_from_slice(enc.get_ids());
        ids.push(self.sep);
        Ok(ids)
    }

    fn encode(&self, text: &str) -> Result<tokenizers::Encoding> {
        self.tokenizer
            .encode_char_offsets(text, false)
            .map_err(|e| Error::Input(e.to_string()))
    }

    /// Cuts `text` into windows of at most `max_tokens` tokens that overlap by `overlap`.
    pub fn prepare(&self, text: &str) -> Result<Prepared> {
        let enc = self.encode(text)?;
        let ids = enc.get_ids();
        let offsets = enc.get_offsets();
        let chars = text.chars().count();
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + self.budget).min(ids.len());
            let mut w = Vec::with_capacity(end - start + self.prefix.len() + 2);
            w.push(self.cls);
            w.extend_from_slice(&self.prefix);
            w.extend_from_slice(&ids[start..end]);
            w.push(self.sep);
            let span = &offsets[start..end];
            let (s, e) = if span.is_empty() {
                (0, chars)
            } else {
                (
                    span.iter().map(|o| o.0).min().unwrap_or(0),
                    span.iter().map(|o| o.1).max().unwrap_or(chars),
                )
            };
            windows.push(Window {
                ids: w,
                start: s,
                end: e,
            });
            if end >= ids.len() {
                break;
            }
            start += self.step;
        }
        Ok(Prepared {
            windows,
            chars,
            tokens: ids.len(),
        })
    }
}
