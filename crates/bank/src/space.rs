//! Language-neutral embeddings for semantic look-up. A multilingual encoder puts a text's
//! language into its embedding as well as its meaning: every text of one language is moved
//! the same way, so a translation sits further from its original than a different text of the
//! original's language. The directions along which the languages' mean embeddings differ are
//! estimated from the same sentences in each language, and removed from every embedding before
//! it is compared (language information removal: Yang et al., "A Simple and Effective Method To
//! Eliminate the Self Language Bias in Multilingual Representations", EMNLP 2021, with every
//! direction the means span rather than the first few principal ones: the dev split of
//! `cargo run --example matching` recalled as many translations with all of them).
//!
//! A bank keeps the directions its embeddings were made with (`language_space.bin`), so that
//! every text it is asked about is projected the same way.

/// Orthonormal directions of language: an embedding less its components along them, made unit
/// length again, keeps its meaning and loses its language.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageSpace {
    dim: usize,
    /// `len / dim` unit vectors, each orthogonal to the others.
    basis: Vec<f32>,
}

/// Relative length under which a language's centred mean adds no direction of its own.
const INDEPENDENT: f64 = 1e-3;

impl LanguageSpace {
    /// The directions spanned by the differences between the mean unit embeddings of each
    /// group (one group per language, the same sentences in each). `None` for fewer than two
    /// groups, an empty group or embeddings of unequal sizes.
    pub fn from_languages(groups: &[Vec<Vec<f32>>]) -> Option<LanguageSpace> {
        let dim = groups.first()?.first()?.len();
        if groups.len() < 2
            || dim == 0
            || groups
                .iter()
                .any(|g| g.is_empty() || g.iter().any(|e| e.len() != dim))
        {
            return None;
        }
        // means of unit vectors, in f64: the differences between them are small
        let means: Vec<Vec<f64>> = groups
            .iter()
            .map(|g| {
                let mut m = vec![0f64; dim];
                for e in g {
                    let n = e.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                    for (m, x) in m.iter_mut().zip(e) {
                        *m += *x as f64 / n.max(1e-12);
                    }
                }
                m.iter_mut().for_each(|x| *x /= g.len() as f64);
                m
            })
            .collect();
        let mut centre = vec![0f64; dim];
        for m in &means {
            centre.iter_mut().zip(m).for_each(|(c, x)| *c += x);
        }
        centre.iter_mut().for_each(|c| *c /= means.len() as f64);
        // Gram-Schmidt, each vector orthogonalised twice (the second pass takes what rounding
        // left of the first's directions)
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for m in &means {
            let mut v: Vec<f64> = m.iter().zip(&centre).map(|(x, c)| x - c).collect();
            let length = norm(&v);
            for _ in 0..2 {
                for b in &basis {
                    let d = dot(&v, b);
                    v.iter_mut().zip(b).for_each(|(x, b)| *x -= d * b);
                }
            }
            let left = norm(&v);
            if length > 0.0 && left > INDEPENDENT * length {
                v.iter_mut().for_each(|x| *x /= left);
                basis.push(v);
            }
        }
        Some(LanguageSpace {
            dim,
            basis: basis.into_iter().flatten().map(|x| x as f32).collect(),
        })
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Directions removed.
    pub fn rank(&self) -> usize {
        self.basis.len() / self.dim.max(1)
    }

    fn direction(&self, k: usize) -> &[f32] {
        &self.basis[k * self.dim..(k + 1) * self.dim]
    }

    /// `v` less its components along the directions, unit length (`v` itself, made unit
    /// length, when its size is not the space's).
    pub fn project(&self, v: &[f32]) -> Vec<f32> {
        let mut out = v.to_vec();
        if v.len() == self.dim {
            for k in 0..self.rank() {
                let b = self.direction(k);
                let d: f32 = out.iter().zip(b).map(|(x, y)| x * y).sum();
                out.iter_mut().zip(b).for_each(|(x, b)| *x -= d * b);
            }
        }
        crate::ann::unit(&out)
    }

    /// The directions as `language_space.bin` keeps them: f32 little-endian, one direction
    /// after the other.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.basis.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Reads [`LanguageSpace::to_bytes`] for embeddings of `dim` values: `rank` directions.
    pub fn from_bytes(bytes: &[u8], dim: usize, rank: usize) -> Result<LanguageSpace, String> {
        if dim == 0 || bytes.len() != rank * dim * 4 {
            return Err(format!(
                "{} bytes, {rank} directions of {dim} values need {}",
                bytes.len(),
                rank * dim * 4
            ));
        }
        let basis: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if basis.iter().any(|x| !x.is_finite()) {
            return Err("a value that is not a finite number".into());
        }
        Ok(LanguageSpace { dim, basis })
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small fixed generator (splitmix64) of values in [-1, 1).
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) >> 11) as f32 / (1u64 << 52) as f32 - 1.0
            })
            .collect()
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        d / (n(a) * n(b))
    }

    /// Sentences (random meanings) written in languages that each add their own offset.
    fn corpus(dim: usize, langs: usize, sentences: usize) -> (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>) {
        let meanings: Vec<Vec<f32>> = (0..sentences)
            .map(|s| values(100 + s as u64, dim))
            .collect();
        let groups = (0..langs)
            .map(|l| {
                let offset: Vec<f32> = values(900 + l as u64, dim)
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect();
                meanings
                    .iter()
                    .map(|m| m.iter().zip(&offset).map(|(m, o)| m + o).collect())
                    .collect()
            })
            .collect();
        (meanings, groups)
    }

    #[test]
    fn the_directions_are_orthonormal_and_span_every_languages_offset() {
        let (dim, langs) = (48, 6);
        let (_, groups) = corpus(dim, langs, 5);
        let s = LanguageSpace::from_languages(&groups).unwrap();
        // six means differ along five directions
        assert_eq!(s.rank(), langs - 1);
        for i in 0..s.rank() {
            for j in 0..s.rank() {
                let d: f32 = s
                    .direction(i)
                    .iter()
                    .zip(s.direction(j))
                    .map(|(a, b)| a * b)
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-5, "{i} {j}: {d}");
            }
        }
        // a difference of two languages' means lies in the span: nothing of it is left
        let mean = |g: &Vec<Vec<f32>>| -> Vec<f32> {
            let mut m = vec![0f32; dim];
            for e in g {
                let u = crate::ann::unit(e);
                m.iter_mut()
                    .zip(&u)
                    .for_each(|(m, x)| *m += x / g.len() as f32);
            }
            m
        };
        let diff: Vec<f32> = mean(&groups[1])
            .iter()
            .zip(mean(&groups[4]))
            .map(|(a, b)| a - b)
            .collect();
        let mut left = diff.clone();
        for k in 0..s.rank() {
            let b = s.direction(k);
            let d: f32 = left.iter().zip(b).map(|(x, y)| x * y).sum();
            left.iter_mut().zip(b).for_each(|(x, b)| *x -= d * b);
        }
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(n(&left) < 1e-4 * n(&diff), "{} of {}", n(&left), n(&diff));
    }

    #[test]
    fn projection_brings_a_translation_nearer_than_another_text_of_its_language() {
        let (dim, langs) = (64, 5);
        // the space is estimated on some sentences, and used on others
        let (_, reference) = corpus(dim, langs, 8);
        let s = LanguageSpace::from_languages(&reference).unwrap();
        let offsets: Vec<Vec<f32>> = (0..langs)
            .map(|l| {
                values(900 + l as u64, dim)
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect()
            })
            .collect();
        let text = |meaning: &[f32], l: usize| -> Vec<f32> {
            meaning
                .iter()
                .zip(&offsets[l])
                .map(|(m, o)| m + o)
                .collect()
        };
        let (a, b) = (values(7, dim), values(8, dim));
        let original = text(&a, 0);
        let translation = text(&a, 3);
        let other = text(&b, 0);
        // raw, the other text of the same language is nearer than the translation
        assert!(cos(&original, &other) > cos(&original, &translation));
        let p = |v: &[f32]| s.project(v);
        let (t, o) = (
            cos(&p(&original), &p(&translation)),
            cos(&p(&original), &p(&other)),
        );
        assert!(t > 0.95 && t > o + 0.2, "translation {t}, other text {o}");
        // unit length, and projecting twice changes nothing
        let once = p(&original);
        assert!((once.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        let twice = p(&once);
        assert!(once.iter().zip(&twice).all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn a_dependent_language_adds_no_direction_and_bad_groups_give_none() {
        let dim = 16;
        let (_, mut groups) = corpus(dim, 3, 4);
        // a fourth language whose mean is the first's: nothing new to remove
        groups.push(groups[0].clone());
        assert_eq!(LanguageSpace::from_languages(&groups).unwrap().rank(), 2);
        assert!(LanguageSpace::from_languages(&groups[..1]).is_none());
        assert!(LanguageSpace::from_languages(&[groups[0].clone(), vec![]]).is_none());
        assert!(LanguageSpace::from_languages(&[groups[0].clone(), vec![vec![1.0; 3]]]).is_none());
    }

    #[test]
    fn bytes_round_trip_and_a_wrong_size_is_named() {
        let (_, groups) = corpus(8, 3, 3);
        let s = LanguageSpace::from_languages(&groups).unwrap();
        let bytes = s.to_bytes();
        assert_eq!(LanguageSpace::from_bytes(&bytes, 8, s.rank()).unwrap(), s);
        let e = LanguageSpace::from_bytes(&bytes[..bytes.len() - 4], 8, s.rank()).unwrap_err();
        assert!(e.contains("2 directions of 8 values need 64"), "{e}");
        let mut nan = bytes.clone();
        nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(LanguageSpace::from_bytes(&nan, 8, s.rank()).is_err());
    }
}
