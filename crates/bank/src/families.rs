//! Re-upload families of a dump: records joined by near-duplicate (and exact) edges, and by
//! semantic edges (translations, rewordings) where embeddings are given, each family named by
//! its first record in input order.
//!
//! Records are pushed in input order; each is compared with the earlier records that share an
//! LSH band with it (at most [`PER_KEY`] remembered per band value), and joined to those whose
//! estimated Jaccard similarity reaches the threshold. The edges do not depend on the order in
//! which records were prepared, so the families of a dump are the same whatever the thread
//! count, sharding or resume of the run that labelled it.
//!
//! Semantic edges ([`FamilyBuilder::join_semantic`]) come after: each record's nearest records
//! by cosine ([`crate::ann`]: exhaustive, or an IVF index over a large dump) are grouped by
//! the family the near-duplicate edges gave them, and a record joins a family whose nearest
//! member reaches the threshold and stands out by the margin from the next
//! [`MARGIN_NEIGHBOURS`] families (the bank's rule for semantic matches). Families, not
//! records, are compared, so that a family of many copies is one neighbour, not many. All edges
//! are found against that one snapshot and then joined, so they do not depend on the order in
//! which records are examined.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::ann::{self, quantize, unit, Ivf, Vectors};
use crate::bank::{Query, MARGIN_NEIGHBOURS};
use crate::minhash::{self, Signature, BANDS};

/// Nearest records kept per record when looking for semantic edges, before they are grouped by
/// family.
const SEMANTIC_CANDIDATES: usize = 64;

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
    /// Per record: the scale of its 8-bit embedding (0 for none), and `dim` bytes each.
    scales: Vec<f32>,
    vectors: Vec<i8>,
    dim: usize,
    /// Per record: its language (an index into `language_names`; `u16::MAX` for none).
    languages: Vec<u16>,
    language_names: Vec<String>,
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

    /// Gives record `i` (pushed already) its embedding, for [`FamilyBuilder::join_semantic`].
    /// Every embedding must have the size of the first.
    pub fn set_embedding(&mut self, i: u32, embedding: &[f32]) {
        if self.dim == 0 {
            self.dim = embedding.len();
        }
        assert_eq!(embedding.len(), self.dim, "embeddings of one size");
        let n = self.parent.len();
        self.scales.resize(n, 0.0);
        self.vectors.resize(n * self.dim, 0);
        let (scale, bytes) = quantize(embedding);
        self.scales[i as usize] = scale;
        self.vectors[i as usize * self.dim..(i as usize + 1) * self.dim].copy_from_slice(&bytes);
    }

    /// Gives record `i` (pushed already) its language: semantic edges then join only records
    /// of different languages (translations), whose neighbours are compared in the other
    /// records' languages only. Same-language rewordings are left to near-duplicate edges:
    /// an encoder puts texts of one language closer together than their meaning does, so
    /// same-language semantic neighbours are mostly related texts, not re-uploads
    /// (`reports/matching/README.md`, "Families with translations").
    pub fn set_language(&mut self, i: u32, language: &str) {
        let code = match self.language_names.iter().position(|l| l == language) {
            Some(k) => k,
            None => {
                self.language_names.push(language.to_owned());
                self.language_names.len() - 1
            }
        };
        let n = self.parent.len();
        self.languages.resize(n, u16::MAX);
        self.languages[i as usize] = code.min(u16::MAX as usize - 1) as u16;
    }

    /// Joins records by semantic edges (see the module's documentation): a record joins
    /// another family whose nearest member's cosine is at least `threshold` and exceeds the mean
    /// of the next [`MARGIN_NEIGHBOURS`] families' by `margin`. Returns the edges found.
    pub fn join_semantic(&mut self, threshold: f32, margin: f32) -> usize {
        let n = self.parent.len();
        if self.dim == 0 || n < 2 {
            return 0;
        }
        self.scales.resize(n, 0.0);
        self.vectors.resize(n * self.dim, 0);
        let by_language = !self.languages.is_empty();
        self.languages.resize(n, u16::MAX);
        let roots: Vec<u32> = (0..n as u32).map(|i| self.find(i)).collect();
        let languages = &self.languages;
        // with languages, a record's neighbours are records of another language
        let other = |i: usize, j: usize| {
            !by_language || (languages[j] != languages[i] || languages[i] == u16::MAX)
        };
        let v = Vectors {
            dim: self.dim,
            scales: &self.scales,
            data: &self.vectors,
        };
        let present = self.scales.iter().filter(|s| **s != 0.0).count();
        let ivf = (present >= ann::EXHAUSTIVE_BELOW).then(|| Ivf::build(v));
        let edges: Vec<(u32, u32)> = (0..n)
            .into_par_iter()
            .filter(|&i| v.scales[i] != 0.0)
            .flat_map_iter(|i| {
                let q = (v.scales[i], v.data[i * v.dim..(i + 1) * v.dim].to_vec());
                let e = unit(&q.1.iter().map(|x| *x as f32).collect::<Vec<_>>());
                let mut near: Vec<(f32, u32)> = ann::candidates(v, ivf.as_ref(), &e)
                    .filter(|&j| roots[j as usize] != roots[i] && other(i, j as usize))
                    .map(|j| (v.cosine(j as usize, &q), j))
                    .collect();
                let keep = SEMANTIC_CANDIDATES.min(near.len());
                if keep > 0 && keep < near.len() {
                    near.select_nth_unstable_by(keep - 1, |a, b| {
                        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
                    });
                    near.truncate(keep);
                }
                near.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                // the best member of each family, best first
                let mut families: Vec<(f32, u32)> = Vec::new();
                for (cos, j) in near {
                    if !families
                        .iter()
                        .any(|f| roots[f.1 as usize] == roots[j as usize])
                    {
                        families.push((cos, j));
                    }
                }
                let mut out = Vec::new();
                for (k, &(cos, j)) in families.iter().enumerate() {
                    if cos < threshold {
                        break;
                    }
                    let others: Vec<f32> = families
                        .iter()
                        .enumerate()
                        .filter(|(m, _)| *m != k)
                        .map(|(_, f)| f.0)
                        .take(MARGIN_NEIGHBOURS)
                        .collect();
                    let mean = (others.iter().sum::<f32>()
                        + (MARGIN_NEIGHBOURS - others.len()) as f32 * threshold)
                        / MARGIN_NEIGHBOURS as f32;
                    if cos - mean >= margin {
                        out.push((i as u32, j));
                    }
                }
                out
            })
            .collect();
        for &(a, b) in &edges {
            self.union(a, b);
        }
        edges.len()
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
    use crate::ann::unit;

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

    /// A unit vector from a fixed generator, and `base` moved by `noise` of such a vector.
    fn random(seed: u64, dim: usize) -> Vec<f32> {
        let mut s = seed;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        unit(&v)
    }
    fn moved(base: &[f32], noise: f32, seed: u64) -> Vec<f32> {
        let r = random(seed, base.len());
        unit(
            &base
                .iter()
                .zip(&r)
                .map(|(b, r)| b + noise * r)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn semantic_edges_join_translations_but_not_merely_related_records() {
        let dim = 256;
        // record 0 and its translation 3 (cosine about 0.95); 1 and 2 unrelated; 4 to 9 all
        // near one another (one topic, none a translation: no margin); 10 a copy of 1
        let topic = random(99, dim);
        let mut embeddings = vec![
            random(1, dim),
            random(2, dim),
            random(3, dim),
            moved(&random(1, dim), 0.3, 10),
        ];
        embeddings.extend((0..6).map(|k| moved(&topic, 0.5, 11 + k)));
        embeddings.push(random(2, dim));
        let texts = [
            "first text about one thing",
            "second text, unrelated",
            "third text, unrelated too",
            "premier texte sur une chose",
            "topic one",
            "topic two",
            "topic three",
            "topic four",
            "topic five",
            "topic six",
            "second text, unrelated!!",
        ];
        let build = || {
            let mut f = FamilyBuilder::new(0.5);
            for (t, e) in texts.iter().zip(&embeddings) {
                let i = f.push(&Query::new(t));
                f.set_embedding(i, e);
            }
            f
        };
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(cos(&embeddings[0], &embeddings[3]) > 0.9);
        assert!(cos(&embeddings[4], &embeddings[5]) > 0.7);
        let mut f = build();
        // 7 is joined to 1 by its near-duplicate edge already; 3 joins 0; 4 to 6 stay apart
        // 0 and 3 each find the other
        assert_eq!(f.join_semantic(0.8, 0.05), 2);
        let apart = vec![0, 1, 2, 0, 4, 5, 6, 7, 8, 9, 1];
        assert_eq!(f.families(), apart);
        // without the margin, the records of one topic are joined too
        let mut f = build();
        f.join_semantic(0.6, -1.0);
        assert!(f.families()[4..10].iter().all(|r| *r == 4));
        // the same on one thread
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let mut f = build();
        let one = pool.install(|| {
            f.join_semantic(0.8, 0.05);
            f.families()
        });
        assert_eq!(one, apart);
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
