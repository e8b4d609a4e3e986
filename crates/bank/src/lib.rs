//! Banks of known content for triage: which records of a dump are re-uploads of confirmed items,
//! even edited, obfuscated or translated.
//!
//! - [`normalize`]: the one normalisation used for matching (NFKC-style folding, confusables,
//!   invisibles, leetspeak, URLs/mentions/hashtags as features).
//! - [`minhash`]: MinHash signatures over character shingles with fixed hashes, LSH bands and
//!   anchors.
//! - [`Bank`]: items with their exact digest, signature and embedding; built, saved, loaded and
//!   queried ([`Bank::find`] with a [`Query`]): exact digests, near duplicates (LSH), items
//!   contained in a longer text with their character span, and semantic neighbours (which
//!   must stand out from the bank's other items, and lift over the item's level: its likeness
//!   to ordinary text, [`Bank::set_reference`]).
//! - [`space`]: language-neutral embeddings: the directions of language removed before a
//!   semantic comparison, so that a translation is nearer than another text of its language.
//! - [`families`]: re-upload families of a dump (union-find over near-duplicate edges).

pub mod ann;
pub mod families;
pub mod minhash;
pub mod normalize;
pub mod space;

mod bank;
mod index;
mod records;

pub use bank::{
    digest, merge_matches, Bank, BankError, BankInfo, EmbeddingModel, FileHash, Item, Match,
    Method, Query, Thresholds, FORMAT, MARGIN_NEIGHBOURS, REFERENCE_NEIGHBOURS,
};
pub use normalize::{normalize, Normalized};
pub use space::LanguageSpace;
