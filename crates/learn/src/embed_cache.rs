//! Window embeddings cached on disk by text hash, so training and evaluating again are fast.
//!
//! One file per model and windowing setup (`<cache>/<key>.emb`): a header, then entries of
//! (SHA-256 of the text, window count, the windows' f32 vectors). New entries are appended.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use triage_classify::{Classifier, ModelOptions};

const MAGIC: &[u8; 8] = b"TRIEMB01";

/// Window embeddings of one model and windowing setup, by SHA-256 of the text.
pub struct EmbeddingCache {
    path: PathBuf,
    hidden: usize,
    map: HashMap<[u8; 32], Vec<Vec<f32>>>,
    fresh: Vec<[u8; 32]>,
    /// Texts found in the cache since it was opened.
    pub hits: usize,
    /// Texts embedded since it was opened.
    pub misses: usize,
}

fn text_key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl EmbeddingCache {
    /// Opens (or starts) the cache of `classifier` with `options` under `dir`.
    pub fn open(dir: &Path, classifier: &Classifier, options: &ModelOptions) -> Result<Self> {
        let mut setup = format!(
            "{} prefix={:?} max_tokens={:?} overlap={}",
            classifier.weights_sha256(),
            options.prefix,
            options.max_tokens,
            options.window_overlap
        );
        // bf16 embeddings differ from f32 ones; the two f32 backends agree within 1e-7 and share
        if options.precision != triage_classify::Precision::F32 {
            setup.push_str(&format!(" precision={}", options.precision));
        }
        // int8 embeddings depend on the kernels (chosen for the CPU), and refined ones on
        // which windows refinement took to f32 (the labels' thresholds and bounds)
        if options.precision == triage_classify::Precision::Int8 {
            let engine = classifier.engine();
            setup.push_str(&format!(
                " kernels={:?} cpu={}",
                engine.int8_kernels,
                engine.cpu.join(",")
            ));
            if let Some(k) = classifier.refinement_key() {
                setup.push_str(&format!(" {k}"));
            }
        }
        let key: String = Sha256::digest(setup.as_bytes())
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = dir.join(format!("{key}.emb"));
        let hidden = classifier.hidden_size();
        let mut cache = EmbeddingCache {
            path,
            hidden,
            map: HashMap::new(),
            fresh: Vec::new(),
            hits: 0,
            misses: 0,
        };
        if let Ok(bytes) = std::fs::read(&cache.path) {
            if let Err(e) = cache.load(&bytes) {
                tracing::warn!(
                    "ignoring the unreadable embedding cache {}: {e}",
                    cache.path.display()
                );
                cache.map.clear();
            }
        }
        Ok(cache)
    }

    fn load(&mut self, mut b: &[u8]) -> Result<()> {
        let mut head = [0u8; 12];
        b.read_exact(&mut head)?;
        ensure!(&head[..8] == MAGIC, "bad magic");
        ensure!(
            u32::from_le_bytes(head[8..12].try_into()?) as usize == self.hidden,
            "width differs"
        );
        while !b.is_empty() {
            let mut k = [0u8; 32];
            b.read_exact(&mut k)?;
            let mut n = [0u8; 4];
            b.read_exact(&mut n)?;
            let n = u32::from_le_bytes(n) as usize;
            let mut windows = Vec::with_capacity(n);
            for _ in 0..n {
                let mut raw = vec![0u8; self.hidden * 4];
                b.read_exact(&mut raw)?;
                windows.push(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                );
            }
            self.map.insert(k, windows);
        }
        Ok(())
    }

    /// Window embeddings of `texts`, computing only those not cached yet.
    pub fn window_embeddings(
        &mut self,
        classifier: &Classifier,
        texts: &[&str],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let keys: Vec<[u8; 32]> = texts.iter().map(|t| text_key(t)).collect();
        let mut missing: Vec<usize> = (0..texts.len())
            .filter(|&i| !self.map.contains_key(&keys[i]))
            .collect();
        missing.dedup_by_key(|i| keys[*i]);
        let mut seen = std::collections::HashSet::new();
        missing.retain(|&i| seen.insert(keys[i]));
        self.misses += missing.len();
        self.hits += texts.len() - missing.len();
        let started = std::time::Instant::now();
        for (c, chunk) in missing.chunks(256).enumerate() {
            let prepared = chunk
                .iter()
                .map(|&i| classifier.prepare(texts[i]))
                .collect::<Result<Vec<_>, _>>()?;
            let emb = classifier.window_embeddings(&prepared)?;
            for (&i, e) in chunk.iter().zip(emb) {
                self.map.insert(keys[i], e);
                self.fresh.push(keys[i]);
            }
            let done = (c * 256 + chunk.len()).min(missing.len());
            eprint!(
                "\rembedding {done}/{} new texts ({:.0} texts/s)   ",
                missing.len(),
                done as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
        if !missing.is_empty() {
            eprintln!();
        }
        Ok(keys.iter().map(|k| self.map[k].clone()).collect())
    }

    /// Appends the new entries to the file.
    pub fn save(&mut self) -> Result<()> {
        if self.fresh.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let new_file = !self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let mut buf = Vec::new();
        if new_file {
            buf.extend_from_slice(MAGIC);
            buf.extend_from_slice(&(self.hidden as u32).to_le_bytes());
        }
        for k in self.fresh.drain(..) {
            let windows = &self.map[&k];
            buf.extend_from_slice(&k);
            buf.extend_from_slice(&(windows.len() as u32).to_le_bytes());
            for w in windows {
                for v in w {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        f.write_all(&buf)?;
        Ok(())
    }
}
