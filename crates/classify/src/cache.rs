//! The int8 engine's measurements, cached next to the model: the per-channel ranges that the
//! f32 probe graph measures on the calibration windows ([`Kind::Ranges`]), the int8 graph made
//! with them ([`Kind::Graph`]), and the pooled embeddings of the error-measuring windows in
//! int8 and in f32 that `refine_margin = "auto"` derives its bounds from ([`Kind::Errors`]):
//! seconds at every start otherwise.
//!
//! The file `<model>/.triage-cache/int8-<kind>-<key>.bin` is named by a key over everything the
//! values depend on: the recipe's version, the weights' checksum, the graph's settings, what
//! decides the windows (for ranges: the calibration texts, the tokenizer file and the window
//! options; for errors: the windows' tokens), ONNX Runtime's library (path and size), the CPU's
//! instructions and, for errors, the int8 kernels; for the graph, the ranges' key and the
//! source of the code that writes graphs (so that a triage that writes them otherwise never
//! reads an older one).
//! A cache made for another model, recipe or library has another name and is never read; a
//! file that is cut, edited or of another format fails its own SHA-256 or header check and is
//! measured again and rewritten, never used.
//!
//! Format: four header lines (`triage int8 <kind> 1`, `key <hex>`, `count <n>`, `sha256 <hex
//! of the payload>`), then `n` little-endian f32 (a graph: `n` bytes).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The calibration recipe: bump it when what the probe measures changes.
pub(crate) const RECIPE: &str = "triage-int8-smoothquant-probe-1";

/// What a cache file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The probe graph's per-channel ranges (never negative).
    Ranges,
    /// Pooled embeddings of the error-measuring windows, int8 rows then f32 rows.
    Errors,
    /// The calibrated int8 graph itself (ONNX bytes): quantizing the weights and writing the
    /// graph took a third of a second at every start.
    Graph,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ranges => "ranges",
            Kind::Errors => "errors",
            Kind::Graph => "graph",
        }
    }

    /// Bytes per value of the payload.
    fn width(self) -> usize {
        match self {
            Kind::Ranges | Kind::Errors => 4,
            Kind::Graph => 1,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where a model's calibrated ranges are kept, and under which key.
#[derive(Debug, Clone)]
pub(crate) struct RangeCache {
    path: PathBuf,
    key: String,
    kind: Kind,
}

/// What [`RangeCache::load`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Cached {
    /// The values (ranges, or embeddings of the error measurement), checked.
    Values(Vec<f32>),
    /// No file under this key.
    Missing,
    /// A file that failed a check (and why): to be measured again.
    Damaged(String),
}

impl RangeCache {
    /// The cache of the model in `dir` for the ranges that `parts` (the key's inputs) decide.
    #[cfg(any(test, feature = "ort"))]
    pub(crate) fn new(dir: &Path, parts: &[&[u8]]) -> RangeCache {
        RangeCache::of_kind(dir, Kind::Ranges, parts)
    }

    /// The cache of the model in `dir` for the values of `kind` that `parts` decide.
    pub(crate) fn of_kind(dir: &Path, kind: Kind, parts: &[&[u8]]) -> RangeCache {
        let mut h = Sha256::new();
        h.update(RECIPE.as_bytes());
        h.update(kind.name().as_bytes());
        for p in parts {
            // lengths first, so that no two lists of parts hash alike
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let key = hex(&h.finalize());
        RangeCache {
            path: dir.join(".triage-cache").join(format!(
                "int8-{}-{}.bin",
                kind.name(),
                &key[..32]
            )),
            key,
            kind,
        }
    }

    /// The key (hex), which names everything the values depend on.
    #[cfg(feature = "ort")]
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    fn magic(&self) -> String {
        format!("triage int8 {} 1", self.kind.name())
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A cache of `kind` under a key of this one's key and `parts`: what this cache's values
    /// depend on and more.
    #[cfg(any(test, feature = "ort"))]
    pub(crate) fn derived(&self, kind: Kind, parts: &[&[u8]]) -> RangeCache {
        let mut all: Vec<&[u8]> = vec![self.key.as_bytes()];
        all.extend_from_slice(parts);
        let dir = self
            .path
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        RangeCache::of_kind(dir, kind, &all)
    }

    /// The cached ranges, when there is a sound file for this key.
    pub(crate) fn load(&self) -> Cached {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(_) => return Cached::Missing,
        };
        match self.parse(&bytes) {
            Ok(r) => Cached::Values(r),
            Err(why) => Cached::Damaged(why),
        }
    }

    /// The cached bytes of a [`Kind::Graph`] file, checked: `Ok(None)` when there is none,
    /// `Err(why)` when the file fails a check.
    #[cfg(any(test, feature = "ort"))]
    pub(crate) fn load_bytes(&self) -> std::result::Result<Option<Vec<u8>>, String> {
        let mut bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(_) => return Ok(None),
        };
        let start = self.payload_start(&bytes)?;
        bytes.drain(..start);
        Ok(Some(bytes))
    }

    fn parse(&self, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
        if self.kind.width() != 4 {
            return Err(format!(
                "a {} file holds bytes, not values",
                self.kind.name()
            ));
        }
        let rest = &bytes[self.payload_start(bytes)?..];
        let values: Vec<f32> = rest
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err("a value is not finite".into());
        }
        if self.kind == Kind::Ranges && values.iter().any(|v| *v < 0.0) {
            return Err("a range is negative".into());
        }
        Ok(values)
    }

    /// Where the payload starts, after the header is checked and the payload's length and
    /// SHA-256 are.
    fn payload_start(&self, bytes: &[u8]) -> std::result::Result<usize, String> {
        let mut rest = bytes;
        let mut line = || -> std::result::Result<String, String> {
            let i = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("the header is cut")?;
            let l = std::str::from_utf8(&rest[..i])
                .map_err(|_| "the header is not text")?
                .to_owned();
            rest = &rest[i + 1..];
            Ok(l)
        };
        if line()? != self.magic() {
            return Err(format!("not a {} file of this format", self.kind.name()));
        }
        if line()? != format!("key {}", self.key) {
            return Err("made under another key".into());
        }
        let count: usize = line()?
            .strip_prefix("count ")
            .and_then(|c| c.parse().ok())
            .ok_or("no count")?;
        let sha = line()?
            .strip_prefix("sha256 ")
            .map(str::to_owned)
            .ok_or("no sha256")?;
        if rest.len() != count * self.kind.width() {
            return Err(format!(
                "{} bytes of values where the header says {count}",
                rest.len()
            ));
        }
        if hex(&Sha256::digest(rest)) != sha {
            return Err("its values do not match their SHA-256".into());
        }
        Ok(bytes.len() - rest.len())
    }

    /// Writes the ranges (to a temporary file first, then renamed: a reader never sees half a
    /// file).
    pub(crate) fn store(&self, ranges: &[f32]) -> std::io::Result<()> {
        let payload: Vec<u8> = ranges.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.store_bytes(&payload)
    }

    /// Writes `payload` (values already as little-endian bytes, or a graph's bytes) under a
    /// header, to a temporary file first, then renamed: a reader never sees half a file.
    pub(crate) fn store_bytes(&self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = format!(
            "{}\nkey {}\ncount {}\nsha256 {}\n",
            self.magic(),
            self.key,
            payload.len() / self.kind.width(),
            hex(&Sha256::digest(payload))
        )
        .into_bytes();
        out.extend_from_slice(payload);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        std::fs::write(&tmp, &out)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_every_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let c = RangeCache::new(dir.path(), &[b"weights-a", b"spec"]);
        assert_eq!(c.load(), Cached::Missing);
        let ranges = vec![0.5f32, 1.25, 3.0, 0.0];
        c.store(&ranges).unwrap();
        assert_eq!(c.load(), Cached::Values(ranges.clone()));
        // another model or setting: another file, not read
        let other = RangeCache::new(dir.path(), &[b"weights-b", b"spec"]);
        assert_ne!(other.path(), c.path());
        assert_eq!(other.load(), Cached::Missing);
        // parts are delimited: ("ab", "c") is not ("a", "bc")
        assert_ne!(
            RangeCache::new(dir.path(), &[b"ab", b"c"]).path(),
            RangeCache::new(dir.path(), &[b"a", b"bc"]).path()
        );
        let good = std::fs::read(c.path()).unwrap();
        // one flipped bit in a value
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x10;
        std::fs::write(c.path(), &bad).unwrap();
        assert!(matches!(c.load(), Cached::Damaged(w) if w.contains("SHA-256")));
        // cut short
        std::fs::write(c.path(), &good[..good.len() - 4]).unwrap();
        assert!(matches!(c.load(), Cached::Damaged(w) if w.contains("header says")));
        // a file of another key under this name
        let mut moved = good.clone();
        let i = good.iter().position(|&b| b == b'\n').unwrap() + 5;
        moved[i] = if moved[i] == b'0' { b'1' } else { b'0' };
        std::fs::write(c.path(), &moved).unwrap();
        assert!(matches!(c.load(), Cached::Damaged(w) if w.contains("another key")));
        // rewritten: sound again
        c.store(&ranges).unwrap();
        assert_eq!(c.load(), Cached::Values(ranges.clone()));
        // the same parts for errors: another file, whose values may be negative
        let errors = RangeCache::of_kind(dir.path(), Kind::Errors, &[b"weights-a", b"spec"]);
        assert_ne!(errors.path(), c.path());
        assert_eq!(errors.load(), Cached::Missing);
        errors.store(&[-0.5, 2.0]).unwrap();
        assert_eq!(errors.load(), Cached::Values(vec![-0.5, 2.0]));
        // a ranges file copied under the errors' name is refused by its header
        std::fs::copy(c.path(), errors.path()).unwrap();
        assert!(matches!(errors.load(), Cached::Damaged(w) if w.contains("errors file")));
        // a negative range is refused
        c.store(&[-1.0]).unwrap();
        assert!(matches!(c.load(), Cached::Damaged(w) if w.contains("negative")));
    }

    #[test]
    fn graph_bytes_round_trip_and_every_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let ranges = RangeCache::new(dir.path(), &[b"weights-a", b"spec"]);
        let g = ranges.derived(Kind::Graph, &[b"code-1"]);
        assert_ne!(g.path(), ranges.path());
        assert_eq!(g.path().parent(), ranges.path().parent());
        assert_eq!(g.load_bytes(), Ok(None));
        let graph: Vec<u8> = (0..1001u32).map(|i| (i * 7 % 251) as u8).collect();
        g.store_bytes(&graph).unwrap();
        assert_eq!(g.load_bytes(), Ok(Some(graph.clone())));
        // the code that writes graphs changed: another file
        let newer = ranges.derived(Kind::Graph, &[b"code-2"]);
        // nor another model's
        let other = RangeCache::new(dir.path(), &[b"weights-b", b"spec"]);
        assert_ne!(other.derived(Kind::Graph, &[b"code-1"]).path(), g.path());
        assert_eq!(newer.load_bytes(), Ok(None));
        let good = std::fs::read(g.path()).unwrap();
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        std::fs::write(g.path(), &bad).unwrap();
        assert!(matches!(g.load_bytes(), Err(w) if w.contains("SHA-256")));
        std::fs::write(g.path(), &good[..n - 1]).unwrap();
        assert!(matches!(g.load_bytes(), Err(w) if w.contains("header says")));
        // a ranges file under a graph's name, and a graph read as values: refused
        ranges.store(&[1.0, 2.0]).unwrap();
        std::fs::copy(ranges.path(), g.path()).unwrap();
        assert!(matches!(g.load_bytes(), Err(w) if w.contains("graph file")));
        g.store_bytes(&graph).unwrap();
        assert!(matches!(g.load(), Cached::Damaged(w) if w.contains("holds bytes")));
        assert_eq!(g.load_bytes(), Ok(Some(graph)));
    }
}
