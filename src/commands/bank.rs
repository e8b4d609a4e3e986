//! `triage bank`: build, extend, list and describe banks of known content
//! ([`triage_bank::Bank`]).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use rayon::prelude::*;
use serde_json::{Map, Value};
use triage_bank::{Bank, EmbeddingModel, Item};
use triage_classify::Classifier;

use crate::cli::{ConfigArgs, Failure};

#[derive(Subcommand)]
pub(crate) enum BankCommand {
    /// Build a bank from items (JSON Lines: "id", "text" or "digest", and any metadata such as
    /// "source", "entity", "ideology", "date", "notes"; or, with `--digests`, a plain list of
    /// SHA-256 digests of normalised text, one per line, optionally followed by an id).
    Build {
        /// The items file (`.gz` and `.zst` are decompressed).
        items: String,
        /// The bank's folder, e.g. `banks/seized-2026`.
        #[arg(long, short = 'o')]
        output: PathBuf,
        #[command(flatten)]
        source: Source,
    },
    /// Add items to a bank (an id it already holds is skipped and reported).
    Add {
        /// The bank's folder.
        bank: PathBuf,
        /// The items file.
        items: String,
        #[command(flatten)]
        source: Source,
    },
    /// List the banks under a folder.
    List {
        /// The folder that holds banks.
        #[arg(default_value = "banks")]
        dir: PathBuf,
    },
    /// Describe a bank (and check its files).
    Info {
        /// The bank's folder.
        bank: PathBuf,
    },
}

#[derive(clap::Args)]
pub(crate) struct Source {
    /// The items are SHA-256 digests, one per line (`DIGEST [ID]`): exact matches only.
    #[arg(long)]
    digests: bool,
    /// The bank's name (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
    /// No embeddings (no semantic look-up; no model needed, and much faster to build).
    #[arg(long)]
    no_embeddings: bool,
    /// Error records of bad items (default: standard error).
    #[arg(long)]
    errors: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) fn bank(c: BankCommand) -> Result<ExitCode, Failure> {
    match c {
        BankCommand::Build {
            items,
            output,
            source,
        } => {
            if output.join("bank.json").exists() {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "{} already holds a bank: `triage bank add {} {items}` adds to it",
                    output.display(),
                    output.display()
                )));
            }
            let name = source.name.clone().unwrap_or_else(|| {
                output
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "bank".into())
            });
            // a missing items file fails before the model loads
            triage_batch::input::open_lines(&items).map_err(Failure::usage)?;
            let embedder = if source.digests || source.no_embeddings {
                None
            } else {
                Some(embedder(&source.config)?)
            };
            let model = embedder.as_ref().map(|c| EmbeddingModel {
                model: c.model_id().to_owned(),
                weights_sha256: c.weights_sha256().to_owned(),
                dim: c.hidden_size(),
            });
            let mut bank = Bank::new(&name, model);
            if let Some(c) = &embedder {
                let (space, reference) = frame(c)?;
                bank.set_language_space(space).map_err(Failure::usage)?;
                bank.set_reference(&reference).map_err(Failure::usage)?;
            }
            fill(&mut bank, &output, &items, &source, embedder.as_ref(), true)
        }
        BankCommand::Add {
            bank: dir,
            items,
            source,
        } => {
            let mut bank = Bank::load(&dir).map_err(Failure::usage)?;
            let mut upgraded = false;
            let embedder = match bank.info().embeddings.clone() {
                Some(_) if !source.digests => {
                    let c = embedder(&source.config)?;
                    bank.check_model(&dir, c.model_id(), c.weights_sha256())
                        .map_err(Failure::usage)?;
                    if bank.language_space().is_none() || !bank.has_reference() {
                        // a bank of format 1 or 2, or one made before references: its
                        // embeddings are projected, its items' levels measured, and saved so
                        let (space, reference) = frame(&c)?;
                        if bank.set_language_space(space).map_err(Failure::usage)? {
                            eprintln!(
                                "triage: {}: embeddings projected into the model's language space (bank format {})",
                                dir.display(),
                                triage_bank::FORMAT
                            );
                        }
                        if bank.set_reference(&reference).map_err(Failure::usage)? {
                            eprintln!(
                                "triage: {}: items' levels measured against the built-in background",
                                dir.display()
                            );
                        }
                        upgraded = true;
                    }
                    Some(c)
                }
                _ => None,
            };
            fill(
                &mut bank,
                &dir,
                &items,
                &source,
                embedder.as_ref(),
                upgraded,
            )
        }
        BankCommand::List { dir } => list(&dir),
        BankCommand::Info { bank } => {
            let b = Bank::load(&bank).map_err(Failure::usage)?;
            let mut json = serde_json::to_string_pretty(b.info()).map_err(anyhow::Error::from)?;
            json.push('\n');
            print!("{json}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn embedder(config: &ConfigArgs) -> Result<Classifier, Failure> {
    let (workspace, dir) = config.load()?;
    triage_classify::ClassifierBuilder::new(&dir)
        .options(workspace.model.clone())
        .build_embedder()
        .map_err(|e| {
            Failure::Run(anyhow::Error::new(e).context(format!("loading {}", dir.display())))
        })
}

/// The directions of language of the embedder's embeddings, and the reference of items'
/// levels (the built-in background's embeddings).
fn frame(c: &Classifier) -> Result<(triage_bank::LanguageSpace, Vec<Vec<f32>>), Failure> {
    triage_batch::semantic_frame(c)
        .map_err(|e| Failure::Run(anyhow::Error::new(e).context("estimating the language space")))
}

fn list(dir: &Path) -> Result<ExitCode, Failure> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))
        .map_err(Failure::Usage)?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bank.json").exists())
        .collect();
    dirs.sort();
    let mut ok = true;
    println!(
        "{:<24} {:>10} {:>8} {:>6} {:>12} {:<28} path",
        "name", "items", "version", "format", "digest-only", "embeddings"
    );
    for d in dirs {
        match Bank::load(&d) {
            Ok(b) => {
                let i = b.info();
                // embeddings without a language space: a bank of format 1 or 2, projected at
                // every load until it is saved again
                let embeddings = match (&i.embeddings, i.language_space) {
                    (None, _) => "-".into(),
                    (Some(e), Some(_)) if b.has_reference() => e.model.clone(),
                    // format 3 before items' levels: measured at every load until saved so
                    (Some(e), Some(_)) => format!("{} (no levels)", e.model),
                    (Some(e), None) => format!("{} (no language space)", e.model),
                };
                println!(
                    "{:<24} {:>10} {:>8} {:>6} {:>12} {:<28} {}",
                    i.name,
                    i.items,
                    i.version,
                    i.format,
                    i.digest_only,
                    embeddings,
                    d.display()
                );
            }
            Err(e) => {
                ok = false;
                println!("{:<24} {e}", "(unusable)");
            }
        }
    }
    Ok(super::ok_or_1(ok))
}

/// One line of an items file, parsed: an item (without its embedding) and its text, or an
/// error record.
type Parsed = Result<(Item, Option<String>), Value>;

/// An error record as `triage label` writes them: file, line, and the error's kind, field and
/// reason.
fn error_record(file: &str, line: u64, kind: &str, field: Option<&str>, reason: String) -> Value {
    let mut error = serde_json::json!({"kind": kind, "reason": reason});
    if let Some(f) = field {
        error["field"] = f.into();
    }
    serde_json::json!({"file": file, "line": line, "error": error})
}

fn parse_item(bytes: &[u8], file: &str, line: u64, digests: bool) -> Option<Parsed> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some(Err(error_record(
            file,
            line,
            "invalid_utf8",
            None,
            "invalid UTF-8".into(),
        )));
    };
    let text = text.trim_end_matches('\r');
    if text.trim().is_empty() {
        return None;
    }
    if digests {
        let mut parts = text.split_whitespace();
        let digest = parts.next().unwrap_or("");
        let id = parts
            .next()
            .map_or_else(|| digest.to_ascii_lowercase(), str::to_owned);
        return Some(
            Item::from_digest(&id, digest, Map::new())
                .map(|i| (i, None))
                .map_err(|e| error_record(file, line, "invalid_digest", Some("digest"), e)),
        );
    }
    let mut obj = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Some(Err(error_record(
                file,
                line,
                "not_an_object",
                None,
                "an item must be a JSON object".into(),
            )))
        }
        Err(e) => {
            return Some(Err(error_record(
                file,
                line,
                "invalid_json",
                None,
                format!("invalid JSON: {e}"),
            )))
        }
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Some(Err(error_record(
                file,
                line,
                "missing_field",
                Some("id"),
                "missing id (a string or a number)".into(),
            )))
        }
    };
    let (text, digest) = (obj.remove("text"), obj.remove("digest"));
    // what is left is the item's metadata
    Some(match (text, digest) {
        (Some(Value::String(t)), _) if !t.trim().is_empty() => {
            Ok((Item::from_text(&id, &t, obj), Some(t)))
        }
        (None, Some(Value::String(d))) => Item::from_digest(&id, &d, obj)
            .map(|i| (i, None))
            .map_err(|e| error_record(file, line, "invalid_digest", Some("digest"), e)),
        (Some(_), _) => Err(error_record(
            file,
            line,
            "invalid_field",
            Some("text"),
            "\"text\" must be a non-empty string".into(),
        )),
        (None, _) => Err(error_record(
            file,
            line,
            "missing_field",
            Some("text"),
            "missing \"text\" (or \"digest\")".into(),
        )),
    })
}

const CHUNK: usize = 8192;

/// Adds the items of file `items` to `bank` and saves it in `dir`: always where `save` (a new
/// or upgraded bank), otherwise only if an item was added, so that a bank keeps its version
/// (and files) while its content is the same.
fn fill(
    bank: &mut Bank,
    dir: &Path,
    items: &str,
    source: &Source,
    embedder: Option<&Classifier>,
    save: bool,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let (mut reader, _) = triage_batch::input::open_lines(items).map_err(Failure::usage)?;
    let mut errors: Box<dyn Write> = match &source.errors {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot write {}", p.display()))
                .map_err(Failure::Usage)?,
        )),
        None => Box::new(std::io::stderr()),
    };
    let (mut added, mut bad, mut repeated, mut line) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let mut chunk: Vec<(u64, Vec<u8>)> = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            let mut buf = Vec::new();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {items}"))?;
            if n == 0 {
                break;
            }
            line += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            chunk.push((line, buf));
        }
        if chunk.is_empty() {
            break;
        }
        let parsed: Vec<(u64, Parsed)> = chunk
            .par_iter()
            .filter_map(|(n, b)| parse_item(b, items, *n, source.digests).map(|p| (*n, p)))
            .collect();
        let mut good: Vec<(u64, Item, Option<String>)> = Vec::new();
        for (n, p) in parsed {
            match p {
                Ok((item, text)) => good.push((n, item, text)),
                Err(e) => {
                    bad += 1;
                    writeln!(errors, "{e}").context("writing an error record")?;
                }
            }
        }
        if let Some(c) = embedder {
            let texts: Vec<&str> = good.iter().filter_map(|g| g.2.as_deref()).collect();
            let mut embeddings = c.embed(&texts).context("embedding the items")?.into_iter();
            good = good
                .into_iter()
                .map(|(n, item, text)| match &text {
                    Some(_) => {
                        let e = embeddings.next().expect("one embedding per text");
                        (n, item.with_embedding(e), text)
                    }
                    None => (n, item, text),
                })
                .collect();
        }
        for (n, item, _) in good {
            if bank.contains(&item.id) {
                let id = &item.id;
                repeated += 1;
                writeln!(
                    errors,
                    "{}",
                    error_record(
                        items,
                        n,
                        "repeated_id",
                        Some("id"),
                        format!(
                            "id {id:?} is already in the bank (or earlier in this file); skipped"
                        )
                    )
                )
                .context("writing an error record")?;
                continue;
            }
            bank.insert(item).map_err(|e| Failure::Run(e.into()))?;
            added += 1;
        }
        if embedder.is_some() {
            eprint!("\rtriage: {added} items embedded");
        }
    }
    errors.flush().context("writing the error records")?;
    if let Some(n) = &source.name {
        if n != bank.name() {
            eprintln!("triage: keeping the bank's name {:?}", bank.name());
        }
    }
    let saved = save || added > 0;
    if saved {
        bank.save(dir).map_err(|e| Failure::Run(e.into()))?;
    }
    let i = bank.info();
    eprintln!(
        "\ntriage: bank {:?} at {}: {} items ({added} added, {bad} bad, {repeated} repeated ids) version {}{}, in {:.1} s",
        i.name,
        dir.display(),
        i.items,
        i.version,
        if saved { "" } else { " (unchanged, not saved)" },
        started.elapsed().as_secs_f64()
    );
    Ok(super::ok_or_1(bad == 0 && repeated == 0))
}
