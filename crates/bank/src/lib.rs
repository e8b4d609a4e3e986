//! Banks of known content for triage: which records of a dump are re-uploads of confirmed items,
//! even edited or obfuscated.
//!
//! - [`normalize`]: the one normalisation used for matching (NFKC-style folding, confusables,
//!   invisibles, leetspeak, URLs/mentions/hashtags as features).
//! - [`minhash`]: MinHash signatures over character shingles with fixed hashes, LSH bands and
//!   anchors.
//! - [`Bank`]: items with their exact digest and signature; built, saved, loaded and queried
//!   ([`Bank::find`]): exact digests, near duplicates (LSH), and items contained in a longer text
//!   with their character span.

pub mod minhash;
pub mod normalize;

mod bank;

pub use bank::{digest, Bank, BankError, BankInfo, Item, Match, Method, FORMAT};
pub use normalize::{normalize, Normalized};
