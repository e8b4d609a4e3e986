//! Self-attention in bf16 for the int8 graph: triage's own ONNX Runtime operator
//! (`triage.Attention`), on CPUs with AVX-512 BF16.
//!
//! In the int8 graph the two products inside attention (the scores `q k^T` and the context
//! `p v`) were the largest cost left in f32: ONNX Runtime runs them at about 100 GFLOP/s a core,
//! its f32 peak here, and with the softmax between them they took a fifth of a window's time
//! on the benchmark's dump, half of it in windows of 256 tokens or more. This operator takes
//! the QKV product's output (`[len, 3 h]`) and gives the context (`[len, h]`) in one pass, with
//! both products in bf16 (`vdpbf16ps`: pairs of bf16 products summed into f32, twice the f32
//! rate) and the softmax in f32 between them:
//!
//! - q (times `1 / sqrt(head width)`), k and v are rounded to bf16 (to nearest even), each head
//!   packed the way its product reads it;
//! - for each head and each block of [`R`] query rows: the scores against every key, each row's
//!   largest kept on the way; `exp(s - largest)` in f32 (a polynomial, relative error below
//!   1e-5, far under bf16's 4e-3), its sum in f32, the values rounded to bf16;
//! - the context `exp(s - largest) v`, divided by the sum.
//!
//! So besides f32 attention's rounding, the inputs of both products are rounded to bf16. The
//! int8 graph's activations were already rounded to 8 bits before the QKV product, a coarser
//! step; BENCHMARKS.md has what the bf16 rounding added end to end. The f32 graph (the `f32`
//! precision, and the windows that refinement scores again) keeps ONNX Runtime's f32 attention.

use std::arch::x86_64::*;
use std::mem::transmute;

use super::{check, guarded};

use ort::operator::{
    BoxedKernel, ComputeContext, KernelContext, Operator, OperatorInput, OperatorOutput,
};
use ort::value::TensorElementType;

/// Query rows per block.
const R: usize = 8;

/// Whether this CPU runs the operator (AVX-512 with BF16).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// A kernel's buffers, kept between runs.
#[derive(Default)]
pub(crate) struct Scratch {
    /// q in bf16, `[heads][rows][hq]`
    q: Vec<u16>,
    /// k in bf16, `[heads][tiles of 16 keys][hq / 2 pairs][16 keys][2]`
    k: Vec<u16>,
    /// v in bf16, `[heads][key pairs][hv][2]`
    v: Vec<u16>,
    /// one block's scores, `[R][lk]`
    s: Vec<f32>,
    /// one block's `exp(s - largest)` in bf16, `[R][lk]`
    p: Vec<u16>,
}

/// `x` in bf16, rounded to nearest even (finite `x`).
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Attention over `len` tokens of `heads` heads: `qkv` is `[len, 3 h]` (q, k, v of each token,
/// head after head), `out` `[len, h]`. Panics unless [`available`].
pub(crate) fn attention(
    qkv: &[f32],
    len: usize,
    heads: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
) -> Result<(), String> {
    check(available(), "this CPU has no AVX-512 BF16")?;
    check(heads > 0 && len > 0, "heads > 0 && len > 0")?;
    let h = out.len() / len;
    check(
        h.is_multiple_of(heads) && out.len() == len * h && qkv.len() == len * 3 * h,
        "h.is_multiple_of(heads) && out.len() == len * h && qkv.len() == len * 3 * h",
    )?;
    // SAFETY: the CPU has the features (checked above) and the slices' lengths fit the shape
    unsafe { attention_avx512(qkv, len, heads, h / heads, scratch, out) };
    Ok(())
}

/// # Safety
///
/// The CPU has AVX-512F, BF16 and BW, and the slices fit the shape: `qkv` holds `len * 3 *
/// heads * hd` values and `out` `len * heads * hd` ([`attention`] checks both).
#[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
unsafe fn attention_avx512(
    qkv: &[f32],
    len: usize,
    heads: usize,
    hd: usize,
    sc: &mut Scratch,
    out: &mut [f32],
) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let h = heads * hd;
        let hq = round_up(hd, 2); // q and k in pairs
        let pairs = hq / 2;
        let hv = round_up(hd, 16); // v in whole vectors
        let lk = round_up(len, 16); // keys in whole tiles
        let lv = round_up(len, 2); // keys in pairs for the values
        let rows = round_up(len, R);
        let tiles = lk / 16;
        let scale = 1.0 / (hd as f32).sqrt();
        for (buf, n) in [
            (&mut sc.q, heads * rows * hq),
            (&mut sc.k, heads * lk * hq),
            (&mut sc.v, heads * lv * hv),
            (&mut sc.p, R * lk),
        ] {
            buf.clear();
            buf.resize(n, 0);
        }
        sc.s.resize(R * lk, 0.0);
        if hd.is_multiple_of(16) {
            pack_wide(qkv, len, heads, hd, scale, (rows, lk, lv), sc);
        } else {
            for i in 0..len {
                let row = &qkv[i * 3 * h..(i + 1) * 3 * h];
                for head in 0..heads {
                    let at = |part: usize| &row[part * h + head * hd..][..hd];
                    let (qh, kh, vh) = (head * rows * hq, head * lk * hq, head * lv * hv);
                    for (d, &x) in at(0).iter().enumerate() {
                        sc.q[qh + i * hq + d] = bf16(x * scale);
                    }
                    let (t, j) = (i / 16, i % 16);
                    for (d, &x) in at(1).iter().enumerate() {
                        sc.k[kh + ((t * pairs + d / 2) * 16 + j) * 2 + d % 2] = bf16(x);
                    }
                    for (d, &x) in at(2).iter().enumerate() {
                        sc.v[vh + ((i / 2) * hv + d) * 2 + i % 2] = bf16(x);
                    }
                }
            }
        }
        for head in 0..heads {
            let (qh, kh, vh) = (head * rows * hq, head * lk * hq, head * lv * hv);
            let k = sc.k.as_ptr().add(kh);
            for r0 in (0..rows).step_by(R) {
                let q = sc.q.as_ptr().add(qh + r0 * hq);
                let mut largest = [_mm512_set1_ps(f32::MIN); R];
                let s = sc.s.as_mut_ptr();
                let keys = Keys { k, pairs, lk, len };
                for t0 in (0..tiles).step_by(3) {
                    match tiles - t0 {
                        1 => scores::<1>(q, hq, &keys, s, t0, &mut largest),
                        2 => scores::<2>(q, hq, &keys, s, t0, &mut largest),
                        _ => scores::<3>(q, hq, &keys, s, t0, &mut largest),
                    }
                }
                let mut inv = [0f32; R];
                for (r, inv) in inv.iter_mut().enumerate() {
                    let m = _mm512_reduce_max_ps(largest[r]);
                    *inv = softmax(
                        sc.s.as_ptr().add(r * lk),
                        sc.p.as_mut_ptr().add(r * lk),
                        len,
                        m,
                    );
                }
                let n = (len - r0).min(R);
                let o = out.as_mut_ptr().add(r0 * h + head * hd);
                let probs = Probs {
                    p: sc.p.as_ptr(),
                    lk,
                    key_pairs: lv / 2,
                    inv: &inv,
                    rows: n,
                };
                // the values 32 columns at a time
                for c0 in (0..hv / 16).step_by(2) {
                    let w = (hd - c0 * 16).min(32);
                    let v = sc.v.as_ptr().add(vh + c0 * 32);
                    let o = o.add(c0 * 16);
                    if w > 16 {
                        context::<2>(&probs, v, hv, o, h, w);
                    } else {
                        context::<1>(&probs, v, hv, o, h, w);
                    }
                }
            }
        }
    }
}

/// The packing of [`attention_avx512`] for heads a whole number of vectors wide (`hd % 16 ==
/// 0`, so `hq == hv == hd`), 16 values at a time.
///
/// # Safety
///
/// The CPU has AVX-512F, BF16 and BW; `hd` is a multiple of 16, `qkv` holds `len` rows of `3 *
/// heads * hd` values, and the scratch buffers are sized for `len`, `heads` and `hd` as
/// [`attention_avx512`] sizes them (its only caller).
#[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
unsafe fn pack_wide(
    qkv: &[f32],
    len: usize,
    heads: usize,
    hd: usize,
    scale: f32,
    (rows, lk, lv): (usize, usize, usize),
    sc: &mut Scratch,
) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let h = heads * hd;
        let pairs = hd / 2;
        let sv = _mm512_set1_ps(scale);
        // a key's pairs go 16 pairs apart in its tile
        let spread = _mm512_setr_epi32(
            0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
        );
        // two tokens' values interleaved: a0 b0 a1 b1 ...
        let mut idx = [0u16; 32];
        for (d, x) in idx.iter_mut().enumerate() {
            *x = (d / 2 + 16 * (d % 2)) as u16;
        }
        let weave = _mm512_loadu_si512(idx.as_ptr() as *const _);
        let (qp, kp, vp) = (sc.q.as_mut_ptr(), sc.k.as_mut_ptr(), sc.v.as_mut_ptr());
        let bf16s = |x: __m512| transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x));
        for i in 0..len {
            let row = qkv.as_ptr().add(i * 3 * h);
            let (t, j) = (i / 16, i % 16);
            for head in 0..heads {
                for c in 0..hd / 16 {
                    let col = head * hd + c * 16;
                    let q = bf16s(_mm512_mul_ps(_mm512_loadu_ps(row.add(col)), sv));
                    _mm256_storeu_si256(qp.add((head * rows + i) * hd + c * 16) as *mut _, q);
                    let k = bf16s(_mm512_loadu_ps(row.add(h + col)));
                    // this chunk's 8 pairs, c * 8 .. c * 8 + 8
                    let at = kp.add(head * lk * hd + ((t * pairs + c * 8) * 16 + j) * 2);
                    _mm512_mask_i32scatter_epi32::<4>(
                        at as *mut _,
                        0x00ff,
                        spread,
                        _mm512_castsi256_si512(k),
                    );
                }
            }
            // the values go in pairs of tokens: at each odd token, and at the last
            if i % 2 == 1 || i + 1 == len {
                let (first, second) = if i % 2 == 1 {
                    (row.sub(3 * h), Some(row))
                } else {
                    (row, None)
                };
                for head in 0..heads {
                    for c in 0..hd / 16 {
                        let col = 2 * h + head * hd + c * 16;
                        let a = bf16s(_mm512_loadu_ps(first.add(col)));
                        let b = match second {
                            Some(r) => bf16s(_mm512_loadu_ps(r.add(col))),
                            None => _mm256_setzero_si256(),
                        };
                        let ab = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
                        let at = vp.add(head * lv * hd + ((i / 2) * hd + c * 16) * 2);
                        _mm512_storeu_si512(at as *mut _, _mm512_permutexvar_epi16(weave, ab));
                    }
                }
            }
        }
    }
}

/// One head's packed keys.
struct Keys {
    k: *const u16,
    pairs: usize,
    lk: usize,
    /// keys that exist (the rest of the last tile is padding)
    len: usize,
}

/// The scores of [`R`] query rows (`q`, row stride `hq`) against `NJ` tiles of 16 keys from
/// tile `t0`, into `s` (row stride `lk`); `largest` keeps each row's largest over real keys.
///
/// # Safety
///
/// The CPU has AVX-512F and BF16; `q` points to [`R`] readable rows of `hq` bf16 values,
/// `keys` holds the packed keys' tiles `t0..t0 + NJ`, and `s` has room for [`R`] rows of
/// stride `lk` up to the end of tile `t0 + NJ`.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn scores<const NJ: usize>(
    q: *const u16,
    hq: usize,
    keys: &Keys,
    s: *mut f32,
    t0: usize,
    largest: &mut [__m512; R],
) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NJ]; R];
        for p in 0..keys.pairs {
            let mut kv = [_mm512_setzero_si512(); NJ];
            for (n, kv) in kv.iter_mut().enumerate() {
                *kv = _mm512_loadu_si512(keys.k.add(((t0 + n) * keys.pairs + p) * 32) as *const _);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let qp = (q.add(r * hq + 2 * p) as *const i32).read_unaligned();
                let qb = transmute::<__m512i, __m512bh>(_mm512_set1_epi32(qp));
                for (a, kv) in acc.iter_mut().zip(&kv) {
                    *a = _mm512_dpbf16_ps(*a, transmute::<__m512i, __m512bh>(*kv), qb);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (n, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(s.add(r * keys.lk + (t0 + n) * 16), *a);
                let real = keys.len.saturating_sub((t0 + n) * 16).min(16);
                let mask = ((1u32 << real) - 1) as __mmask16;
                largest[r] = _mm512_mask_max_ps(largest[r], mask, largest[r], *a);
            }
        }
    }
}

/// `e^x` for 16 finite lanes: `2^n 2^f` with `n` the nearest integer to `x log2 e`, and `2^f`
/// (`|f| <= 0.5`) by its Taylor polynomial of degree 5 (relative error below 1e-5).
///
/// # Safety
///
/// The CPU has AVX-512F (no memory is touched).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp(x: __m512) -> __m512 {
    let t = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let f = _mm512_sub_ps(t, n);
    // ln2^k / k!
    let mut p = _mm512_set1_ps(1.333_355_8e-3);
    for c in [
        9.618_129e-3,
        5.550_411e-2,
        0.240_226_5,
        std::f32::consts::LN_2,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// `exp(s - largest)` of a row's `len` scores into bf16 `p` (zeros after them, up to the
/// tile); returns one over their sum.
///
/// # Safety
///
/// The CPU has AVX-512F, BF16 and BW; `s` points to `len` readable f32 and `p` to a writable
/// bf16 row up to `len` rounded up to the next multiple of 32.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
unsafe fn softmax(s: *const f32, p: *mut u16, len: usize, largest: f32) -> f32 {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let m = _mm512_set1_ps(largest);
        let mut sum = _mm512_setzero_ps();
        let mut put = |c: usize, mask: __mmask16| {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(s.add(c * 16)), m));
            let e = _mm512_maskz_mov_ps(mask, e);
            sum = _mm512_add_ps(sum, e);
            let e = transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(e));
            _mm256_storeu_si256(p.add(c * 16) as *mut _, e);
        };
        for c in 0..len / 16 {
            put(c, 0xffff);
        }
        if !len.is_multiple_of(16) {
            put(len / 16, ((1u32 << (len % 16)) - 1) as __mmask16);
        }
        1.0 / _mm512_reduce_add_ps(sum)
    }
}

/// One block's `exp(s - largest)` in bf16.
struct Probs<'a> {
    p: *const u16,
    lk: usize,
    key_pairs: usize,
    /// each row's one over its sum
    inv: &'a [f32; R],
    /// the block's real rows
    rows: usize,
}

/// The block's probabilities times `C * 16` columns of the values (`v`, key pairs `hv * 2`
/// apart): the first `w` columns of its real rows into `o` (row stride `h`).
///
/// # Safety
///
/// The CPU has AVX-512F and BF16; `v` points to the packed values of the block's keys
/// (`C * 16` columns, key pairs `hv * 2` apart, as many keys as `probs` holds), and `o` to
/// the block's real rows of at least `w` writable f32 each, `h` apart.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn context<const C: usize>(
    probs: &Probs,
    v: *const u16,
    hv: usize,
    o: *mut f32,
    h: usize,
    w: usize,
) {
    // SAFETY: the caller keeps this function's contract (# Safety), which is all its
    // intrinsics and pointer arithmetic need
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for jp in 0..probs.key_pairs {
            let mut vv = [_mm512_setzero_si512(); C];
            for (c, vv) in vv.iter_mut().enumerate() {
                *vv = _mm512_loadu_si512(v.add((jp * hv + c * 16) * 2) as *const _);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let pp = (probs.p.add(r * probs.lk + 2 * jp) as *const i32).read_unaligned();
                let pb = transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pp));
                for (a, vv) in acc.iter_mut().zip(&vv) {
                    *a = _mm512_dpbf16_ps(*a, transmute::<__m512i, __m512bh>(*vv), pb);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(probs.rows) {
            let inv = _mm512_set1_ps(probs.inv[r]);
            for (c, a) in acc.iter().enumerate() {
                let cols = w.saturating_sub(c * 16).min(16);
                let mask = ((1u32 << cols) - 1) as __mmask16;
                _mm512_mask_storeu_ps(o.add(r * h + c * 16), mask, _mm512_mul_ps(*a, inv));
            }
        }
    }
}

fn missing(what: &str) -> ort::Error {
    ort::Error::new(format!("triage.Attention: {what}"))
}

/// `triage.Attention`: input `qkv` (`[len, 3 h]`), attribute `heads`; output `[len, h]`.
pub(crate) struct AttentionOp;

impl Operator for AttentionOp {
    type Kernel<'attr> = BoxedKernel<'attr>;

    fn name(&self) -> &str {
        "Attention"
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        [OperatorInput::required(TensorElementType::Float32)]
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(
        &self,
        info: &KernelContext<'attr>,
    ) -> ort::Result<Self::Kernel<'attr>> {
        let heads = info
            .get::<i64>("heads")
            .filter(|&n| n > 0)
            .ok_or_else(|| missing("no attribute heads"))? as usize;
        if !available() {
            return Err(missing("this CPU has no AVX-512 BF16"));
        }
        let mut scratch = Scratch::default();
        Ok(Box::new(move |ctx: &ComputeContext| {
            guarded("Attention", || {
                let qkv = ctx.input(0)?.ok_or_else(|| missing("no input"))?;
                let (shape, qkv) = qkv.try_extract_tensor::<f32>()?;
                let (len, width) = match **shape {
                    [len, width] => (len as usize, width as usize),
                    _ => return Err(missing("qkv is not [len, 3 h]")),
                };
                if width % (3 * heads) != 0 {
                    return Err(missing("qkv's width is not 3 h with h a multiple of heads"));
                }
                let h = width / 3;
                let mut out = ctx
                    .output(0, vec![len as i64, h as i64])?
                    .ok_or_else(|| missing("no output"))?;
                let out = out.try_extract_tensor_mut::<f32>()?.1;
                if len > 0 {
                    attention(qkv, len, heads, &mut scratch, out).map_err(|e| missing(&e))?;
                }
                Ok(())
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention in f64 from the f32 inputs.
    fn reference(qkv: &[f32], len: usize, heads: usize) -> Vec<f32> {
        let h = qkv.len() / len / 3;
        let hd = h / heads;
        let at = |i: usize, part: usize, head: usize, d: usize| {
            f64::from(qkv[i * 3 * h + part * h + head * hd + d])
        };
        let mut out = vec![0f32; len * h];
        for head in 0..heads {
            for i in 0..len {
                let s: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..hd)
                            .map(|d| at(i, 0, head, d) * at(j, 1, head, d))
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let c: f64 = (0..len).map(|j| e[j] * at(j, 2, head, d)).sum();
                    out[i * h + head * hd + d] = (c / sum) as f32;
                }
            }
        }
        out
    }

    fn qkv(len: usize, h: usize, seed: u64) -> Vec<f32> {
        crate::test_values::values_of(len * 3 * h, seed)
    }

    /// Against attention in f64, at widths of whole vectors and not, lengths of whole tiles
    /// and blocks and not: within bf16's rounding of the inputs (one part in 256 of each
    /// product's terms), and far from a kernel that mixes heads or tokens up.
    #[test]
    fn agrees_with_attention_in_f64() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let mut scratch = Scratch::default();
        for (len, heads, hd) in [
            (1, 2, 32),
            (7, 3, 32),
            (16, 12, 32),
            (45, 2, 64),
            (37, 4, 6),
        ] {
            let h = heads * hd;
            // scores of a few units, as in a trained model
            let x: Vec<f32> = qkv(len, h, len as u64).iter().map(|v| v * 2.0).collect();
            let want = reference(&x, len, heads);
            let mut got = vec![f32::NAN; len * h];
            attention(&x, len, heads, &mut scratch, &mut got).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 0.03, "len {len} heads {heads} x {hd}: {worst}");
            // a different token's context is far off: the check above can fail
            if len > 1 {
                let shifted = got[h..].iter().zip(&want).map(|(a, b)| (a - b).abs());
                assert!(shifted.fold(0f32, f32::max) > 0.1, "len {len}");
            }
        }
    }
}
