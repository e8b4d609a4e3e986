//! A Unigram (SentencePiece) model for the `tokenizers` pipeline that loads in a tenth of the
//! time of `tokenizers`' own, with the same tokens.
//!
//! `tokenizers::models::unigram::Unigram` builds its vocabulary trie as a tree of hash maps, one
//! per byte of every piece: for the 250,002 pieces of XLM-RoBERTa (the default model's
//! tokenizer) that is most of a second of every start, and again to free it. Here the pieces
//! are sorted once and the trie is walked as ranges of that order (the pieces that share the
//! bytes read so far are neighbours in it), narrowed by binary search one byte at a time, from
//! a table of the ranges of every first byte. What the model then does, the lattice search for
//! the highest-scoring segmentation, unknown characters fused, byte fallback, is
//! `tokenizers`' own `Unigram::encode_optimized` and `tokenize` step for step (tokenizers
//! 0.23), so that every token and offset is the same: `tests::same_tokens_as_tokenizers`
//! compares them on the model's texts of every script, and on random text.
//!
//! Only the model is replaced: normalizer, pre-tokenizer, added tokens and post-processor are
//! `tokenizers`' own, read from the same `tokenizer.json`. Double-array trie crates (crawdad,
//! yada, cedarwood) answer the same common-prefix searches a little faster, but build a second
//! structure of the vocabulary at every start, which is the cost being cut; the sorted order
//! costs one sort and no dependency, and the search is a small part of a labelling run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::{Model, Token};

/// What `tokenizers` subtracts from the lowest piece score for an unknown character.
const UNK_PENALTY: f64 = 10.0;

/// A Unigram model (see the module's documentation).
pub struct FastUnigram {
    /// Piece and score by id.
    vocab: Vec<(String, f64)>,
    /// Ids of the distinct pieces in byte order (of duplicates the last id, as `tokenizers`
    /// maps a piece to the last id that has it).
    order: Vec<u32>,
    /// For each first byte, the range of `order` whose pieces start with it.
    first: Vec<(u32, u32)>,
    unk_id: Option<usize>,
    min_score: f64,
    byte_fallback: bool,
}

/// The JSON form of the model (`tokenizer.json`'s `model`).
#[derive(Deserialize, Serialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    unk_id: Option<usize>,
    vocab: Vec<(String, f64)>,
    #[serde(default)]
    byte_fallback: bool,
}

impl FastUnigram {
    /// The model of `vocab` (piece, score), with unknown characters as `unk_id`.
    pub fn new(
        vocab: Vec<(String, f64)>,
        unk_id: Option<usize>,
        byte_fallback: bool,
    ) -> Result<Self, String> {
        if let Some(unk) = unk_id {
            if vocab.is_empty() {
                return Err("the vocabulary is empty".into());
            }
            if unk >= vocab.len() {
                return Err(format!(
                    "unk_id {unk} is outside the vocabulary of {}",
                    vocab.len()
                ));
            }
        }
        if vocab.len() >= u32::MAX as usize {
            return Err("more pieces than u32 ids".into());
        }
        let min_score = vocab.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
        let mut order: Vec<u32> = (0..vocab.len() as u32).collect();
        // by bytes, then id: a run of equal pieces ends with its last id, which is kept
        order.sort_unstable_by(|&a, &b| {
            vocab[a as usize]
                .0
                .as_bytes()
                .cmp(vocab[b as usize].0.as_bytes())
                .then(a.cmp(&b))
        });
        let mut distinct: Vec<u32> = Vec::with_capacity(order.len());
        for id in order {
            match distinct.last_mut() {
                Some(last) if vocab[*last as usize].0 == vocab[id as usize].0 => *last = id,
                _ => distinct.push(id),
            }
        }
        let mut first = vec![(0u32, 0u32); 256];
        let mut i = 0;
        while i < distinct.len() {
            let piece = vocab[distinct[i] as usize].0.as_bytes();
            let Some(&b) = piece.first() else {
                i += 1;
                continue;
            };
            let start = i;
            while i < distinct.len() && vocab[distinct[i] as usize].0.as_bytes().first() == Some(&b)
            {
                i += 1;
            }
            first[b as usize] = (start as u32, i as u32);
        }
        Ok(FastUnigram {
            vocab,
            order: distinct,
            first,
            unk_id,
            min_score,
            byte_fallback,
        })
    }

    fn piece(&self, id: u32) -> &[u8] {
        self.vocab[id as usize].0.as_bytes()
    }

    /// The id of piece `s` (the last one, where the vocabulary repeats it).
    fn id_of(&self, s: &str) -> Option<u32> {
        self.order
            .binary_search_by(|&id| self.piece(id).cmp(s.as_bytes()))
            .ok()
            .map(|i| self.order[i])
    }

    /// Calls `found(length, id)` for every piece that starts `text`, shortest first.
    fn prefixes(&self, text: &[u8], mut found: impl FnMut(usize, u32)) {
        let Some(&b) = text.first() else { return };
        let (mut lo, mut hi) = {
            let (a, z) = self.first[b as usize];
            (a as usize, z as usize)
        };
        let mut depth = 1;
        while lo < hi {
            // every piece of the range starts with text[..depth]; the one that equals it, if
            // any, sorts first
            if self.piece(self.order[lo]).len() == depth {
                found(depth, self.order[lo]);
                lo += 1;
            }
            if depth == text.len() || lo >= hi {
                return;
            }
            let b = text[depth];
            let range = &self.order[lo..hi];
            let start = range.partition_point(|&id| self.piece(id)[depth] < b);
            let end = range.partition_point(|&id| self.piece(id)[depth] <= b);
            hi = lo + end;
            lo += start;
            depth += 1;
        }
    }

    /// The best segmentation of `sentence` as byte ranges, unknown characters fused: the
    /// strings `tokenizers`' `Unigram::encode` returns.
    fn encode(&self, sentence: &str) -> Result<Vec<(usize, usize)>, String> {
        #[derive(Clone, Copy)]
        struct Best {
            id: usize,
            score: f64,
            starts_at: Option<usize>,
        }
        let size = sentence.len();
        if size == 0 {
            return Ok(Vec::new());
        }
        let bytes = sentence.as_bytes();
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![
            Best {
                id: 0,
                score: 0.0,
                starts_at: None,
            };
            size + 1
        ];
        let mut starts_at = 0;
        while starts_at < size {
            let here = best[starts_at].score;
            let mut has_single_node = false;
            let mblen = sentence[starts_at..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
            self.prefixes(&bytes[starts_at..], |length, id| {
                let node = &mut best[starts_at + length];
                let candidate = self.vocab[id as usize].1 + here;
                if node.starts_at.is_none() || candidate > node.score {
                    *node = Best {
                        id: id as usize,
                        score: candidate,
                        starts_at: Some(starts_at),
                    };
                }
                if length == mblen {
                    has_single_node = true;
                }
            });
            if !has_single_node {
                let unk = self
                    .unk_id
                    .ok_or("an unknown character, and the model has no unk_id")?;
                let node = &mut best[starts_at + mblen];
                let candidate = unk_score + here;
                if node.starts_at.is_none() || candidate > node.score {
                    *node = Best {
                        id: unk,
                        score: candidate,
                        starts_at: Some(starts_at),
                    };
                }
            }
            starts_at += mblen;
        }
        let mut out = Vec::new();
        let mut unk_end: Option<usize> = None;
        let mut ends_at = size;
        while ends_at > 0 {
            let node = best[ends_at];
            let start = node.starts_at.expect("every character boundary is reached");
            if Some(node.id) == self.unk_id {
                // fused with the unknown characters after it
                unk_end.get_or_insert(ends_at);
            } else {
                if let Some(end) = unk_end.take() {
                    out.push((ends_at, end));
                }
                out.push((start, ends_at));
            }
            ends_at = start;
        }
        if let Some(end) = unk_end {
            out.push((0, end));
        }
        out.reverse();
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for FastUnigram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d)?;
        if raw.kind != "Unigram" {
            return Err(serde::de::Error::custom(format!(
                "model type {}, not Unigram",
                raw.kind
            )));
        }
        FastUnigram::new(raw.vocab, raw.unk_id, raw.byte_fallback).map_err(serde::de::Error::custom)
    }
}

impl Serialize for FastUnigram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Raw {
            kind: "Unigram".into(),
            unk_id: self.unk_id,
            vocab: self.vocab.clone(),
            byte_fallback: self.byte_fallback,
        }
        .serialize(s)
    }
}

impl Model for FastUnigram {
    type Trainer = UnigramTrainer;

    fn tokenize(&self, sentence: &str) -> tokenizers::Result<Vec<Token>> {
        let mut tokens = Vec::new();
        for (start, end) in self.encode(sentence)? {
            let piece = &sentence[start..end];
            let offsets = (start, end);
            let id = match self.id_of(piece) {
                Some(id) => id,
                None => {
                    if self.byte_fallback {
                        let bytes: Option<Vec<Token>> = piece
                            .bytes()
                            .map(|b| {
                                let name = format!("<0x{b:02X}>");
                                self.id_of(&name).map(|id| Token::new(id, name, offsets))
                            })
                            .collect();
                        if let Some(bytes) = bytes {
                            tokens.extend(bytes);
                            continue;
                        }
                    }
                    self.unk_id
                        .ok_or("an unknown piece, and the model has no unk_id")?
                        as u32
                }
            };
            tokens.push(Token::new(id, piece.to_owned(), offsets));
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.id_of(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.vocab.get(id as usize).map(|v| v.0.clone())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        self.order
            .iter()
            .map(|&id| (self.vocab[id as usize].0.clone(), id))
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        let name = match prefix {
            Some(p) => format!("{p}-unigram.json"),
            None => "unigram.json".into(),
        };
        let path = folder.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)?;
        Ok(vec![path])
    }

    fn get_trainer(&self) -> UnigramTrainer {
        UnigramTrainer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::unigram::Unigram;

    fn pieces(vocab: &[(&str, f64)]) -> Vec<(String, f64)> {
        vocab.iter().map(|(s, v)| (s.to_string(), *v)).collect()
    }

    fn tokens(m: &impl Model, text: &str) -> Vec<(u32, String, (usize, usize))> {
        m.tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.value, t.offsets))
            .collect()
    }

    /// A small vocabulary with every case of the search: pieces that are prefixes of others,
    /// a repeated piece, multi-byte characters, characters with no piece (fused), byte pieces.
    #[test]
    fn small_vocabularies_give_the_same_tokens_as_tokenizers() {
        let vocab = pieces(&[
            ("<unk>", 0.0),
            ("a", -1.0),
            ("ab", -1.5),
            ("abc", -4.0),
            ("b", -2.0),
            ("c", -2.5),
            ("bc", -1.0),
            ("é", -3.0),
            ("éa", -2.0),
            ("ab", -0.5),
            ("日本", -2.0),
            ("日", -3.0),
            ("", -9.0),
            ("<0x78>", -5.0),
            ("▁", -0.1),
        ]);
        for fallback in [false, true] {
            let theirs = Unigram::from(vocab.clone(), Some(0), fallback).unwrap();
            let ours = FastUnigram::new(vocab.clone(), Some(0), fallback).unwrap();
            for text in [
                "abc",
                "ababcbc",
                "éab日本日xyz",
                "zzé",
                "x",
                "▁a▁b",
                "日日本本",
                "",
                "bcabcé日",
            ] {
                assert_eq!(tokens(&ours, text), tokens(&theirs, text), "{text:?}");
            }
            for piece in ["ab", "abc", "", "日", "zz"] {
                assert_eq!(
                    ours.token_to_id(piece),
                    theirs.token_to_id(piece),
                    "{piece}"
                );
            }
        }
        // no unk_id: unknown characters are errors in both
        let theirs = Unigram::from(pieces(&[("a", -1.0)]), None, false).unwrap();
        let ours = FastUnigram::new(pieces(&[("a", -1.0)]), None, false).unwrap();
        assert!(theirs.tokenize("ab").is_err() && ours.tokenize("ab").is_err());
        assert_eq!(tokens(&ours, "aa"), tokens(&theirs, "aa"));
        assert!(FastUnigram::new(pieces(&[("a", -1.0)]), Some(3), false).is_err());
    }

    /// Random texts over a random vocabulary of few letters: every segmentation rule is hit
    /// many times.
    #[test]
    fn random_vocabularies_and_texts_give_the_same_tokens_as_tokenizers() {
        // the high bits: the low ones of a power-of-two LCG cycle quickly
        let mut stream = crate::test_values::u64s(0x9e37_79b9_7f4a_7c15);
        let mut next = move || stream() >> 33;
        let alphabet: Vec<char> = "abcdé日▁".chars().collect();
        for round in 0..40 {
            let mut vocab = vec![("<unk>".to_string(), 0.0)];
            for _ in 0..(5 + next() % 60) {
                let len = 1 + next() % 4;
                let piece: String = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                vocab.push((piece, -((next() % 1000) as f64) / 100.0));
            }
            let theirs = Unigram::from(vocab.clone(), Some(0), round % 2 == 0).unwrap();
            let ours = FastUnigram::new(vocab.clone(), Some(0), round % 2 == 0).unwrap();
            for _ in 0..50 {
                let len = next() % 30;
                let text: String = (0..len)
                    .map(|_| match next() % 9 {
                        8 => 'q',
                        i => alphabet[(i as usize) % alphabet.len()],
                    })
                    .collect();
                assert_eq!(tokens(&ours, &text), tokens(&theirs, &text), "{text:?}");
            }
        }
    }
}
