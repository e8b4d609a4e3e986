//! Nearest neighbours of 8-bit unit embeddings, for semantic look-up in a bank and semantic
//! edges between the records of a dump.
//!
//! Below [`EXHAUSTIVE_BELOW`] vectors every one is compared (exact). From there an inverted-file
//! index (IVF) is used: the vectors are clustered by spherical k-means into about √n lists, and a
//! query compares only the vectors of the [`PROBES`] lists whose centroids are nearest to it.
//!
//! Why an IVF of our own rather than an HNSW crate (`usearch`, `hnsw_rs`, `instant-distance`
//! were compared; see `reports/matching/semantic-scale.md`): it keeps the 8-bit vectors the bank
//! already holds (no second copy; a million 384-dimensional items stay under 400 MiB), adds
//! only 4 bytes an item and the centroids to the bank, builds in a fixed order from a fixed
//! sample so that the same vectors always give the same index, whatever the thread count
//! (families of a dump must not depend on it), and its look-ups are plain scans whose cost is
//! easy to bound. The price: a probe compares a few per cent of the vectors where a graph
//! compares a few hundred, which at a million items is a few milliseconds a query.

use rayon::prelude::*;

/// Collections smaller than this are searched exhaustively.
pub const EXHAUSTIVE_BELOW: usize = 20_000;
/// Lists compared per query.
pub const PROBES: usize = 12;
/// k-means iterations.
const ITERATIONS: usize = 12;
/// Sample vectors per list that k-means is trained on.
const SAMPLE_PER_LIST: usize = 48;
const MAGIC: &[u8; 8] = b"TRIVF02\n";
/// A query compares at most this many times the vectors of [`PROBES`] lists of even size.
pub const SCAN_BUDGET: usize = 2;

/// 8-bit vectors: `scales[i]` (0 for none) and `dim` bytes each in `data`.
#[derive(Clone, Copy)]
pub struct Vectors<'a> {
    /// Values per vector.
    pub dim: usize,
    /// Per vector: the scale of its bytes, 0 for a missing vector.
    pub scales: &'a [f32],
    /// `dim` bytes per vector.
    pub data: &'a [i8],
}

impl<'a> Vectors<'a> {
    fn len(&self) -> usize {
        self.scales.len()
    }

    fn row(&self, i: usize) -> &'a [i8] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The vector as floats (unit length, up to rounding).
    fn float(&self, i: usize) -> Vec<f32> {
        let s = self.scales[i];
        self.row(i).iter().map(|x| *x as f32 * s).collect()
    }

    /// Cosine of vector `i` with a query quantised by [`quantize`].
    pub fn cosine(&self, i: usize, q: &(f32, Vec<i8>)) -> f32 {
        dot_i8(self.row(i), &q.1) as f32 * self.scales[i] * q.0
    }
}

/// A unit vector.
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

/// An embedding in 8 bits: the unit vector over its largest magnitude, times 127.
pub fn quantize(v: &[f32]) -> (f32, Vec<i8>) {
    let u = unit(v);
    let max = u.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    let scale = max / 127.0;
    (scale, u.iter().map(|x| (x / scale).round() as i8).collect())
}

/// The inverted file: centroids and, per list, its vectors in index order. Lists are made and
/// probed on the vectors less their mean, made unit length again: a sentence encoder's
/// embeddings lie in a narrow cone, on which k-means over the raw vectors piled most of them
/// into a few lists (`scripts/matching/semantic_scale.sh --grow 1000000` at 13442b2: a
/// 1000-record run took 158 s); the cosines that decide matches are the raw vectors', computed
/// on the candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Ivf {
    dim: usize,
    mean: Vec<f32>,
    centroids: Vec<f32>,
    lists: Vec<Vec<u32>>,
}

impl Ivf {
    /// Lists for `n` vectors: about √n, from 16 to 4096.
    pub fn lists_for(n: usize) -> usize {
        ((n as f64).sqrt().round() as usize).clamp(16, 4096)
    }

    /// The vector as the lists see it: less the mean, unit length.
    fn centred(&self, x: &[f32]) -> Vec<f32> {
        let d: Vec<f32> = x.iter().zip(&self.mean).map(|(a, m)| a - m).collect();
        unit(&d)
    }

    /// Clusters `v` (spherical k-means on an evenly spaced sample, less its mean, seeded by
    /// sample vectors spread over it: the same vectors give the same index) and files every
    /// vector under its nearest centroid.
    pub fn build(v: Vectors) -> Ivf {
        let present: Vec<usize> = (0..v.len()).filter(|&i| v.scales[i] != 0.0).collect();
        let k = Ivf::lists_for(present.len()).min(present.len().max(1));
        let want = (k * SAMPLE_PER_LIST).min(present.len());
        let step = present.len() as f64 / want.max(1) as f64;
        let dim = v.dim;
        let raw: Vec<Vec<f32>> = (0..want)
            .map(|s| v.float(present[(s as f64 * step) as usize]))
            .collect();
        let mut mean = vec![0f32; dim];
        for x in &raw {
            mean.iter_mut().zip(x).for_each(|(m, a)| *m += a);
        }
        mean.iter_mut().for_each(|m| *m /= raw.len().max(1) as f32);
        let mut ivf = Ivf {
            dim,
            mean,
            centroids: Vec::new(),
            lists: vec![Vec::new(); k],
        };
        let sample: Vec<Vec<f32>> = raw.iter().map(|x| ivf.centred(x)).collect();
        // seeds: k sample vectors spread over the sample
        let mut centroids: Vec<f32> = (0..k)
            .flat_map(|c| sample[c * sample.len() / k].clone())
            .collect();
        for _ in 0..ITERATIONS {
            let nearest: Vec<usize> = sample
                .par_iter()
                .map(|x| nearest_centroid(&centroids, dim, x))
                .collect();
            let mut sums = vec![0f32; k * dim];
            let mut counts = vec![0usize; k];
            for (x, &c) in sample.iter().zip(&nearest) {
                counts[c] += 1;
                for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                    *s += x;
                }
            }
            for c in 0..k {
                // an emptied list keeps its centroid
                if counts[c] > 0 {
                    let u = unit(&sums[c * dim..(c + 1) * dim]);
                    centroids[c * dim..(c + 1) * dim].copy_from_slice(&u);
                }
            }
        }
        ivf.centroids = centroids;
        let assigned: Vec<(usize, usize)> = present
            .par_iter()
            .map(|&i| {
                (
                    i,
                    nearest_centroid(&ivf.centroids, dim, &ivf.centred(&v.float(i))),
                )
            })
            .collect();
        for (i, c) in assigned {
            ivf.lists[c].push(i as u32);
        }
        ivf
    }

    /// The lists.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether there are no lists.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Vectors per list.
    pub fn list_sizes(&self) -> Vec<usize> {
        self.lists.iter().map(Vec::len).collect()
    }

    /// Vectors filed.
    pub fn vectors(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// The vectors of the lists whose centroids are nearest to unit vector `q`, nearest first:
    /// up to `probes` lists, and no more once [`SCAN_BUDGET`] times the vectors of `probes`
    /// lists of even size are reached (the nearest list is always taken whole), so that the
    /// cost of a query is bounded whatever the lists' sizes.
    pub fn candidates(&self, q: &[f32], probes: usize) -> impl Iterator<Item = u32> + '_ {
        let q = self.centred(q);
        let mut scored: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(c, x)| (dot_f32(x, &q), c))
            .collect();
        let probes = probes.min(scored.len());
        if probes > 0 && probes < scored.len() {
            scored
                .select_nth_unstable_by(probes - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        scored.truncate(probes);
        scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let budget = SCAN_BUDGET * probes * self.vectors().div_ceil(self.lists.len().max(1));
        let mut taken = 0;
        let chosen: Vec<usize> = scored
            .into_iter()
            .map(|(_, c)| c)
            .take_while(|&c| {
                let go = taken == 0 || taken + self.lists[c].len() <= budget;
                if go {
                    taken += self.lists[c].len();
                }
                go
            })
            .collect();
        chosen
            .into_iter()
            .flat_map(move |c| self.lists[c].iter().copied())
    }

    /// The index as bytes: a magic line, dim and list count, the mean, the centroids, then
    /// each of `n` vectors' list (`u32::MAX` for a vector not filed).
    pub fn to_bytes(&self, n: usize) -> Vec<u8> {
        let mut list_of = vec![u32::MAX; n];
        for (c, l) in self.lists.iter().enumerate() {
            for &i in l {
                list_of[i as usize] = c as u32;
            }
        }
        let mut b = Vec::with_capacity(16 + (self.dim + self.centroids.len() + n) * 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.dim as u32).to_le_bytes());
        b.extend_from_slice(&(self.lists.len() as u32).to_le_bytes());
        for x in self.mean.iter().chain(&self.centroids) {
            b.extend_from_slice(&x.to_le_bytes());
        }
        for c in list_of {
            b.extend_from_slice(&c.to_le_bytes());
        }
        b
    }

    /// Reads [`Ivf::to_bytes`] for `n` vectors of `dim` values; why not, if it cannot.
    pub fn from_bytes(b: &[u8], n: usize, dim: usize) -> Result<Ivf, String> {
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        if b.len() < 16 || &b[..8] != MAGIC {
            return Err("not a triage IVF index of this version".into());
        }
        let (d, k) = (word(8) as usize, word(12) as usize);
        if d != dim {
            return Err(format!("vectors of {d} values, the bank's have {dim}"));
        }
        let need = 16 + (dim + k * dim + n) * 4;
        if b.len() != need {
            return Err(format!(
                "{} bytes, {k} lists and {n} items need {need}",
                b.len()
            ));
        }
        let float = |j: usize| f32::from_bits(word(16 + j * 4));
        let mean = (0..dim).map(float).collect();
        let centroids = (dim..dim + k * dim).map(float).collect();
        let mut lists = vec![Vec::new(); k];
        let base = 16 + (dim + k * dim) * 4;
        for i in 0..n {
            let c = word(base + i * 4);
            if c != u32::MAX {
                lists
                    .get_mut(c as usize)
                    .ok_or_else(|| format!("item {i} filed under list {c} of {k}"))?
                    .push(i as u32);
            }
        }
        Ok(Ivf {
            dim,
            mean,
            centroids,
            lists,
        })
    }
}

fn nearest_centroid(centroids: &[f32], dim: usize, x: &[f32]) -> usize {
    let mut best = (f32::NEG_INFINITY, 0);
    for (c, y) in centroids.chunks_exact(dim).enumerate() {
        let d = dot_f32(x, y);
        if d > best.0 {
            best = (d, c);
        }
    }
    best.1
}

/// The vectors to compare with a query: every one, or an index's candidates.
pub fn candidates<'a>(
    v: Vectors<'a>,
    ivf: Option<&'a Ivf>,
    q: &'a [f32],
) -> Box<dyn Iterator<Item = u32> + 'a> {
    match ivf {
        Some(ivf) => Box::new(ivf.candidates(q, PROBES)),
        None => Box::new((0..v.len() as u32).filter(move |&i| v.scales[i as usize] != 0.0)),
    }
}

/// Asks the CPU to bring `bytes` into its cache ahead of use: a scan of an index's lists reads
/// vectors scattered over the bank's memory, and waited on each one's first cache line (most of
/// its time). A hint only: it reads nothing and changes no result.
#[inline]
pub fn prefetch<T>(bytes: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = bytes.as_ptr() as *const i8;
        let len = std::mem::size_of_val(bytes);
        for off in (0..len).step_by(64) {
            // SAFETY: a prefetch never faults and reads no memory architecturally; the address
            // is inside `bytes` anyway (`off < len`), and SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Integer dot product of two byte vectors (AVX-512 or AVX2 where the CPU has them; integer
/// sums: the same result on every path).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512 BW (checked just above).
            return unsafe { dot_i8_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_plain(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn dot_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_plain(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_plain(a, b)
}

#[inline(always)]
fn dot_i8_plain(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| *x as i16 as i32 * *y as i16 as i32)
        .sum()
}

/// Dot product of two float vectors (AVX2 and FMA where the CPU has them; eight partial sums,
/// so the result does not depend on which path ran beyond rounding).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32_plain(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_plain(a, b)
}

#[inline(always)]
fn dot_f32_plain(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed generator of values in [-0.5, 0.5).
    fn generator(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        }
    }

    /// `n` unit vectors around `topics` random centres (vector `i` around centre `i % topics`),
    /// the noise as large as the centres' values, and the centres.
    fn clustered(
        n: usize,
        topics: usize,
        dim: usize,
        seed: u64,
    ) -> (Vec<f32>, Vec<i8>, Vec<Vec<f32>>) {
        let mut rnd = generator(seed);
        let centres: Vec<Vec<f32>> = (0..topics)
            .map(|_| unit(&(0..dim).map(|_| rnd()).collect::<Vec<_>>()))
            .collect();
        let noise = 1.0 / (dim as f32).sqrt();
        let (mut scales, mut data) = (Vec::new(), Vec::new());
        for i in 0..n {
            let c = &centres[i % topics];
            let v: Vec<f32> = c.iter().map(|x| x + noise * rnd()).collect();
            let (s, b) = quantize(&v);
            scales.push(s);
            data.extend(b);
        }
        (scales, data, centres)
    }

    fn nearest(v: Vectors, ivf: Option<&Ivf>, q: &[f32]) -> Option<(u32, f32)> {
        let qq = quantize(q);
        candidates(v, ivf, q)
            .map(|i| (i, v.cosine(i as usize, &qq)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    #[test]
    fn the_index_finds_what_an_exhaustive_search_finds() {
        let dim = 64;
        let (scales, data, centres) = clustered(30_000, 3_000, dim, 7);
        let v = Vectors {
            dim,
            scales: &scales,
            data: &data,
        };
        let ivf = Ivf::build(v);
        assert_eq!(ivf.len(), Ivf::lists_for(30_000));
        assert_eq!(ivf.vectors(), 30_000);
        // queries: new points around every 7th centre, none of them a vector of the index
        let mut rnd = generator(11);
        let noise = 1.0 / (dim as f32).sqrt();
        let (mut agree, mut total, mut compared) = (0, 0, 0);
        for c in centres.iter().step_by(7) {
            let q = unit(&c.iter().map(|x| x + noise * rnd()).collect::<Vec<_>>());
            compared += ivf.candidates(&q, PROBES).count();
            let exact = nearest(v, None, &q).expect("vectors");
            let found = nearest(v, Some(&ivf), &q).expect("candidates");
            total += 1;
            agree += (exact == found) as usize;
        }
        assert!(agree * 100 >= total * 98, "{agree} of {total}");
        // and it compares a small share of the vectors
        assert!(
            compared / total < 30_000 / 5,
            "{} a query",
            compared / total
        );
    }

    #[test]
    fn the_same_vectors_give_the_same_index_on_any_thread_count_and_it_round_trips() {
        let dim = 32;
        let (scales, data, _) = clustered(5_000, 50, dim, 3);
        let v = Vectors {
            dim,
            scales: &scales,
            data: &data,
        };
        let a = Ivf::build(v);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let b = pool.install(|| Ivf::build(v));
        assert_eq!(a, b);
        let bytes = a.to_bytes(5_000);
        assert_eq!(Ivf::from_bytes(&bytes, 5_000, dim), Ok(a.clone()));
        assert!(Ivf::from_bytes(&bytes[..bytes.len() - 4], 5_000, dim)
            .unwrap_err()
            .contains("bytes"));
        assert!(Ivf::from_bytes(&bytes, 5_000, 16)
            .unwrap_err()
            .contains("values"));
    }

    /// Under `scripts/test_avx2.sh` (an emulated AVX2 CPU), the emulation took: the 8-bit dot
    /// products, and so the tests of levels and semantic look-up, take the AVX2 path there.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_emulated_cpu_has_no_avx512_when_the_avx2_run_expects_none() {
        if std::env::var_os("TRIAGE_EXPECT_NO_AVX512").is_none() {
            return;
        }
        assert!(!std::is_x86_feature_detected!("avx512bw"));
        assert!(std::is_x86_feature_detected!("avx2"));
    }

    #[test]
    fn dot_products_agree_with_plain_loops() {
        let a: Vec<i8> = (0..389).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let b: Vec<i8> = (0..389).map(|i| ((i * 91) % 255 - 127) as i8).collect();
        let plain: i32 = a.iter().zip(&b).map(|(x, y)| *x as i32 * *y as i32).sum();
        assert_eq!(dot_i8(&a, &b), plain);
        let x: Vec<f32> = a.iter().map(|v| *v as f32 / 127.0).collect();
        let y: Vec<f32> = b.iter().map(|v| *v as f32 / 127.0).collect();
        let plain: f64 = x.iter().zip(&y).map(|(p, q)| *p as f64 * *q as f64).sum();
        assert!((dot_f32(&x, &y) as f64 - plain).abs() < 1e-3);
    }
}
