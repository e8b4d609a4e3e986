//! MinHash signatures over character shingles, with fixed, documented hash functions so that a
//! bank built on one machine matches on every other.
//!
//! A shingle is `SHINGLE` consecutive characters of the normalised text (any script); its
//! 64-bit hash is FNV-1a over its UTF-8 bytes followed by the splitmix64 finaliser. Row `i` of
//! a signature is the least `(a_i * h + b_i) >> 32` over the text's shingles, `a_i` (odd) and
//! `b_i` drawn from splitmix64 seeded with `i`.

/// Characters per shingle.
pub const SHINGLE: usize = 5;
/// Rows of a signature.
pub const ROWS: usize = 64;
/// LSH bands (of `ROWS / BANDS` rows each) for whole-text look-up.
pub const BANDS: usize = 16;
/// Rows used one by one as anchors, to find an item contained in a longer text.
pub const ANCHORS: usize = 8;

/// A MinHash signature.
pub type Signature = [u32; ROWS];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn coefficients() -> &'static [(u64, u64); ROWS] {
    static C: std::sync::OnceLock<[(u64, u64); ROWS]> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        std::array::from_fn(|i| {
            let a = splitmix(2 * i as u64) | 1;
            let b = splitmix(2 * i as u64 + 1);
            (a, b)
        })
    })
}

/// Row `row`'s value of a shingle hash.
#[inline]
pub fn permute(row: usize, h: u64) -> u32 {
    let (a, b) = coefficients()[row];
    (a.wrapping_mul(h).wrapping_add(b) >> 32) as u32
}

/// The shingles of a normalised text: `(hash, first char, one past the last char)`; a text
/// shorter than a shingle is one shingle; an empty text has none.
pub fn shingles(text: &str) -> Vec<(u64, usize, usize)> {
    let starts: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    let n = starts.len();
    if n == 0 {
        return Vec::new();
    }
    let hash = |s: &str| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        splitmix(h)
    };
    if n <= SHINGLE {
        return vec![(hash(text), 0, n)];
    }
    (0..=n - SHINGLE)
        .map(|i| {
            let end = starts.get(i + SHINGLE).copied().unwrap_or(text.len());
            (hash(&text[starts[i]..end]), i, i + SHINGLE)
        })
        .collect()
}

/// A shingle hash folded to 32 bits (its upper half), as items keep their edges' hashes.
pub fn fold(h: u64) -> u32 {
    (h >> 32) as u32
}

/// The signature of a set of shingle hashes (`None` for an empty set).
pub fn signature(hashes: impl Iterator<Item = u64> + Clone) -> Option<Signature> {
    let mut sig = [u32::MAX; ROWS];
    let mut any = false;
    for h in hashes {
        any = true;
        for (row, s) in sig.iter_mut().enumerate() {
            *s = (*s).min(permute(row, h));
        }
    }
    any.then_some(sig)
}

/// The estimated Jaccard similarity of two signatures' sets.
pub fn jaccard(a: &Signature, b: &Signature) -> f32 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f32 / ROWS as f32
}

/// Band `band`'s key: a hash of its rows and its index.
pub fn band_key(sig: &Signature, band: usize) -> u64 {
    let r = ROWS / BANDS;
    let mut h = splitmix(band as u64 ^ 0x5bd1_e995);
    for v in &sig[band * r..(band + 1) * r] {
        h = splitmix(h ^ *v as u64);
    }
    h
}

/// Anchor `row`'s key for value `v`.
pub fn anchor_key(row: usize, v: u32) -> u64 {
    ((row as u64) << 32) | v as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &str) -> Signature {
        signature(shingles(s).into_iter().map(|x| x.0)).unwrap()
    }

    #[test]
    fn the_estimate_follows_the_true_jaccard() {
        // two texts sharing about half their shingles
        let a: String = (0..400)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let b = format!("{}{}", &a[..200], "zyxwvutsrqponmlkjihgfedcba".repeat(8));
        let sa: std::collections::HashSet<u64> = shingles(&a).iter().map(|x| x.0).collect();
        let sb: std::collections::HashSet<u64> = shingles(&b).iter().map(|x| x.0).collect();
        let truth = sa.intersection(&sb).count() as f32 / sa.union(&sb).count() as f32;
        let est = jaccard(&sig(&a), &sig(&b));
        assert!((est - truth).abs() < 0.2, "estimate {est}, truth {truth}");
        assert_eq!(jaccard(&sig(&a), &sig(&a)), 1.0);
    }

    #[test]
    fn fixed_hashes_give_fixed_signatures() {
        // the first rows of one text's signature, as this crate's documented hashes make them;
        // a change here would orphan every bank built before it
        let s = sig("join the army");
        // computed by an independent Python implementation of the documented hashes
        // (FNV-1a, splitmix64, multiply-shift rows), not by this code
        assert_eq!(s[..4], [168118242, 357200896, 518486541, 509631560]);
        let again = signature(shingles("join the army").into_iter().map(|x| x.0)).unwrap();
        assert_eq!(s, again);
        assert_ne!(sig("join the army"), sig("join the navy"));
        assert_eq!(shingles("abc").len(), 1);
        assert_eq!(shingles("abcdefg").len(), 3);
        assert!(shingles("").is_empty());
    }
}
