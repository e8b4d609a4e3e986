//! Outputs that know how much they hold and can be made durable, for checkpoints.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// A line-oriented output: a file (synced on commit) or a stream (stdout, stderr, nothing).
pub struct Sink {
    out: Box<dyn Write + Send>,
    file: Option<File>,
    written: u64,
    name: String,
}

impl Sink {
    /// Creates (truncates) `path`, or, with `resume_at`, keeps its first `resume_at` bytes and
    /// continues after them (whatever came after the last checkpoint, a torn line included, is cut).
    pub fn file(path: &Path, resume_at: Option<u64>) -> std::io::Result<Sink> {
        let mut f = match resume_at {
            Some(_) => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?,
            None => File::create(path)?,
        };
        let written = match resume_at {
            Some(n) => {
                if f.metadata()?.len() < n {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is shorter ({} bytes) than its checkpoint says ({n})",
                            path.display(),
                            f.metadata()?.len()
                        ),
                    ));
                }
                f.set_len(n)?;
                f.seek(SeekFrom::Start(n))?;
                n
            }
            None => 0,
        };
        let sync = f.try_clone()?;
        Ok(Sink {
            out: Box::new(BufWriter::with_capacity(1 << 20, f)),
            file: Some(sync),
            written,
            name: path.display().to_string(),
        })
    }

    /// A stream that cannot be synced or resumed.
    pub fn stream(out: Box<dyn Write + Send>, name: &str) -> Sink {
        Sink {
            out,
            file: None,
            written: 0,
            name: name.to_owned(),
        }
    }

    /// Discards everything (benchmarks).
    pub fn discard() -> Sink {
        Sink::stream(Box::new(std::io::sink()), "(discarded)")
    }

    /// The output's name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far (including what a resumed file already held).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one line.
    pub fn line(&mut self, s: &str) -> std::io::Result<()> {
        self.out.write_all(s.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.written += s.len() as u64 + 1;
        Ok(())
    }

    /// Flushes, and syncs a file to disk; returns the bytes written.
    pub fn commit(&mut self) -> std::io::Result<u64> {
        self.out.flush()?;
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        Ok(self.written)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content:
/// write a temporary file, sync it, rename it over, sync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
