//! `triage detect`: the language of each input line.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triage_batch::WorkspaceConfig;

use crate::cli::Failure;

/// `triage detect`: the language of each input line.
#[derive(clap::Args)]
pub(crate) struct DetectArgs {
    /// Input text, one record per line (`-` or nothing for standard input).
    #[arg(default_value = "-")]
    pub(crate) input: String,
    /// One JSON object per line instead of tab-separated columns.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also list each line's languages with their character spans and shares (a post that
    /// quotes Arabic inside English reports both).
    #[arg(long)]
    pub(crate) spans: bool,
    /// Use the `[languages]` allow-list of this configuration.
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
}

pub(crate) fn detect(a: DetectArgs) -> Result<ExitCode, Failure> {
    let DetectArgs {
        input,
        json,
        spans,
        config,
    } = a;
    let input = input.as_str();
    let config = config.as_deref();
    let languages = match config {
        Some(p) => WorkspaceConfig::load(p).map_err(Failure::usage)?.languages,
        None => Default::default(),
    };
    let detector = triage_langid::Detector::new(&languages).map_err(Failure::usage)?;
    let (mut reader, _) = triage_batch::input::open_lines(input).map_err(Failure::usage)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut bad = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {input}"))?;
        if n == 0 {
            break;
        }
        line += 1;
        let text = String::from_utf8_lossy(&buf);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            eprintln!("triage: {input}:{line}: invalid UTF-8 (replaced with U+FFFD)");
            bad += 1;
        }
        let text = text.trim_end_matches(['\n', '\r']);
        let d = detector.detect(text);
        let parts = spans.then(|| detector.detect_spans(text));
        let written = if json {
            let mut v = serde_json::json!({"line": line, "lang": d.lang(), "script": d.script(),
                "confidence": (d.confidence() * 1e4).round() / 1e4, "reliable": d.is_reliable(), "listed": d.is_listed(), "und": d.und_reason()});
            if let Some(parts) = &parts {
                v["spans"] = serde_json::json!(parts
                    .iter()
                    .map(
                        |s| serde_json::json!({"lang": s.lang, "script": s.script, "start": s.start,
                        "end": s.end, "share": (s.share * 1e4).round() / 1e4})
                    )
                    .collect::<Vec<_>>());
            }
            writeln!(out, "{v}")
        } else {
            let parts = parts.map_or(String::new(), |parts| {
                parts
                    .iter()
                    .map(|s| format!("\t{}:{}-{}:{:.2}", s.lang, s.start, s.end, s.share))
                    .collect()
            });
            writeln!(
                out,
                "{}\t{}\t{:.3}\t{}{parts}",
                d.lang(),
                d.script(),
                d.confidence(),
                if d.is_reliable() {
                    "reliable"
                } else {
                    "unreliable"
                }
            )
        };
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            r => r.context("writing standard output")?,
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Failure::Run(e.into()));
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
