//! Tokenization into windows: a text longer than the model's maximum is cut into overlapping
//! windows, each with the special tokens and the prefix, and each knowing its character span.

use std::path::Path;

use tokenizers::{
    DecoderWrapper, Encoding, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerImpl,
};

use crate::error::{Error, Result};
use crate::unigram::FastUnigram;

/// A tokenizer whose model is [`FastUnigram`] (Unigram vocabularies: XLM-RoBERTa, e5), or
/// `tokenizers`' own for every other model (WordPiece, BPE).
enum Engine {
    Unigram(
        Box<
            TokenizerImpl<
                FastUnigram,
                NormalizerWrapper,
                PreTokenizerWrapper,
                PostProcessorWrapper,
                DecoderWrapper,
            >,
        >,
    ),
    Other(Box<Tokenizer>),
}

impl Engine {
    /// Reads `tokenizer.json`: a Unigram model's tokenizer with [`FastUnigram`], any other
    /// with `tokenizers`' own model.
    fn from_file(path: &Path) -> std::result::Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        match serde_json::from_slice(&bytes) {
            Ok(t) => Ok(Engine::Unigram(Box::new(t))),
            // not a Unigram model (or not a tokenizer at all: `tokenizers` says what is wrong)
            Err(_) => Tokenizer::from_bytes(&bytes)
                .map(|t| Engine::Other(Box::new(t)))
                .map_err(|e| e.to_string()),
        }
    }

    fn unbounded(&mut self) -> std::result::Result<(), String> {
        match self {
            Engine::Unigram(t) => {
                t.with_padding(None);
                t.with_truncation(None).map_err(|e| e.to_string())?;
            }
            Engine::Other(t) => {
                t.with_padding(None);
                t.with_truncation(None).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Engine::Unigram(t) => t.token_to_id(token),
            Engine::Other(t) => t.token_to_id(token),
        }
    }

    fn encode_char_offsets(&self, text: &str) -> tokenizers::Result<Encoding> {
        match self {
            Engine::Unigram(t) => t.encode_char_offsets(text, false),
            Engine::Other(t) => t.encode_char_offsets(text, false),
        }
    }
}

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
    tokenizer: Engine,
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
        let mut tokenizer = Engine::from_file(path).map_err(err)?;
        tokenizer.unbounded().map_err(err)?;
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
                .encode_char_offsets(prefix.trim_end())
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

    /// Token ids of `text` and their character offsets, no specials, no prefix: for comparing
    /// tokenizers in tests.
    #[doc(hidden)]
    pub fn tokens_with_offsets(&self, text: &str) -> Result<Vec<(u32, (usize, usize))>> {
        let enc = self.encode(text)?;
        Ok(enc
            .get_ids()
            .iter()
            .copied()
            .zip(enc.get_offsets().iter().copied())
            .collect())
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
            .encode_char_offsets(text)
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
