//! Re-upload families of a dump: records joined by near-duplicate (and exact) edges, each family
//! named by its first record in input order.
//!
//! Records are pushed in input order; each is compared with the earlier records that share an
//! LSH band with it (at most [`PER_KEY`] remembered per band value), and joined to those whose
//! estimated Jaccard similarity reaches the threshold. The edges do not depend on the order in
//! which records were prepared, so the families of a dump are the same whatever the thread
//! count, sharding or resume of the run that labelled it.

use std::collections::HashMap;

use crate::bank::Query;
use crate::minhash::{self, Signature, BANDS};

/// Earlier records remembered per band value: a band value shared by more records than this
/// (boilerplate) links a new record to the first ones only, which are already joined.
pub const PER_KEY: usize = 8;

/// Builds families incrementally.
#[derive(Debug, Default)]
pub struct FamilyBuilder {
    threshold: f32,
    parent: Vec<u32>,
    signatures: Vec<Option<Signature>>,
    exact: HashMap<[u8; 32], u32>,
    bands: HashMap<u64, Vec<u32>>,
}

impl FamilyBuilder {
    /// Families whose near-duplicate edges need an estimated Jaccard similarity of `threshold`.
    pub fn new(threshold: f32) -> FamilyBuilder {
        FamilyBuilder {
            threshold,
            ..Default::default()
        }
    }

    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = p;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // the root is the earlier record: a family is named by its first member
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi as usize] = lo;
        }
    }

    /// Adds the next record (in input order); returns its index.
    pub fn push(&mut self, q: &Query) -> u32 {
        let i = self.parent.len() as u32;
        self.parent.push(i);
        let digest = q.digest_bytes();
        if let Some(&j) = self.exact.get(&digest) {
            self.union(i, j);
        } else {
            self.exact.insert(digest, i);
        }
        let sig = q.signature().copied();
        if let Some(s) = &sig {
            let mut candidates = Vec::new();
            for band in 0..BANDS {
                let slot = self.bands.entry(minhash::band_key(s, band)).or_default();
                candidates.extend_from_slice(slot);
                if slot.len() < PER_KEY {
                    slot.push(i);
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            for j in candidates {
                let close = self.signatures[j as usize]
                    .as_ref()
                    .is_some_and(|t| minhash::jaccard(s, t) >= self.threshold);
                if close {
                    self.union(i, j);
                }
            }
        }
        self.signatures.push(sig);
        i
    }

    /// Joins two records (a semantic edge found elsewhere).
    pub fn join(&mut self, a: u32, b: u32) {
        self.union(a, b);
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The family of every record: the index of its first member.
    pub fn families(mut self) -> Vec<u32> {
        (0..self.parent.len() as u32)
            .map(|i| self.find(i))
            .collect()
    }
}

/// Pairwise precision, recall and F1 of predicted families against known ones (both: a family
/// key per record). A pair of records is positive when they share a family.
pub fn pairwise_f1<A: Eq + std::hash::Hash, B: Eq + std::hash::Hash>(
    predicted: &[A],
    truth: &[B],
) -> (f64, f64, f64) {
    fn pairs<K: Eq + std::hash::Hash>(keys: &[K]) -> usize {
        let mut m: HashMap<&K, usize> = HashMap::new();
        for k in keys {
            *m.entry(k).or_default() += 1;
        }
        m.values().map(|n| n * (n - 1) / 2).sum()
    }
    let (np, nt) = (pairs(predicted), pairs(truth));
    // true positives: pairs together in both = sum over (pred, truth) cells of C(n, 2)
    let mut cells: HashMap<(&A, &B), usize> = HashMap::new();
    for (a, b) in predicted.iter().zip(truth) {
        *cells.entry((a, b)).or_default() += 1;
    }
    let tp: usize = cells.values().map(|n| n * (n - 1) / 2).sum();
    let precision = if np == 0 { 1.0 } else { tp as f64 / np as f64 };
    let recall = if nt == 0 { 1.0 } else { tp as f64 / nt as f64 };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "The soldiers of the caliphate attacked the apostate checkpoint near the river and killed twelve of them.";
    const B: &str = "Join us this weekend for the annual street food festival in the old town, with music until midnight.";

    #[test]
    fn copies_join_the_family_of_their_first_member_in_any_order_of_edges() {
        let texts = [
            B.to_owned(),
            A.to_owned(),
            A.to_uppercase(),
            "Completely unrelated words about the weather forecast for tomorrow morning."
                .to_owned(),
            format!("{A} #news https://t.me/x"),
            B.replace("festival", "f3stival"),
        ];
        let mut f = FamilyBuilder::new(0.5);
        for t in &texts {
            f.push(&Query::new(t));
        }
        assert_eq!(f.families(), vec![0, 1, 1, 3, 1, 0]);
        // pushed in reverse, the partition is the same (names follow the new order)
        let mut r = FamilyBuilder::new(0.5);
        for t in texts.iter().rev() {
            r.push(&Query::new(t));
        }
        assert_eq!(r.families(), vec![0, 1, 2, 1, 1, 0]);
    }

    #[test]
    fn pairwise_f1_counts_pairs() {
        // truth {0,1,2} {3}; predicted {0,1} {2,3}: predicted pairs (0,1) (2,3), truth pairs
        // (0,1) (0,2) (1,2): one true positive
        let (p, r, f) = pairwise_f1(&[0, 0, 2, 2], &["a", "a", "a", "b"]);
        assert_eq!((p, r), (0.5, 1.0 / 3.0));
        assert!((f - 0.4).abs() < 1e-9);
        assert_eq!(pairwise_f1(&[1, 2], &[1, 2]), (1.0, 1.0, 1.0));
    }
}
