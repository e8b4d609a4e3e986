//! `triage bench`: records/s, tokens/s and peak memory on a dump, against candle f32 in the
//! same run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use triage_batch::{RunOptions, Sink};

use super::chunk_records;
use crate::cli::{ConfigArgs, Failure};

/// `triage bench`: measure records/s, tokens/s and peak memory on a dump.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// The dump to label.
    #[arg(default_value = "tests/data/sample.jsonl")]
    pub(crate) input: PathBuf,
    /// Runs to make (the table shows each and the best).
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: usize,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the process's peak resident set size (Linux), so that each configuration's peak is
/// its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn bench(a: BenchArgs) -> Result<ExitCode, Failure> {
    let (input, runs, config) = (a.input.as_path(), a.runs, &a.config);
    use triage_classify::{Backend, Precision};
    // candle f32 always runs first, so that another backend or precision is compared with it
    // in the same run, on the same machine state
    let (workspace, _) = config.load()?;
    let asked = (workspace.model.backend, workspace.model.precision);
    // the options' rules (what this build has, what combines) before any model is loaded
    workspace.model.check().map_err(Failure::usage)?;
    let mut configs = vec![(Backend::Candle, Precision::F32)];
    if asked != configs[0] {
        configs.push(asked);
    }
    let mut table = Vec::new();
    for (backend, precision) in configs {
        let args = ConfigArgs {
            backend: Some(backend),
            dtype: Some(precision),
            no_refine: (backend, precision) != asked,
            ..config.clone()
        };
        println!("== backend {backend}, {precision}");
        table.push(bench_one(input, runs, &args)?);
        println!();
    }
    if table.len() > 1 {
        println!(
            "{:<20} {:>9} {:>10} {:>8} {:>10} {:>8}",
            "engine", "records/s", "tokens/s", "load s", "peak MiB", "speed-up"
        );
        let base = table[0].1;
        for (name, rps, tps, load, peak) in &table {
            println!(
                "{name:<20} {rps:>9.1} {tps:>10.0} {load:>8.2} {:>10} {:>7.2}x",
                peak.map_or("-".into(), |m| format!("{m:.0}")),
                rps / base
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

type BenchRow = (String, f64, f64, f64, Option<f64>);

fn bench_one(input: &Path, runs: usize, config: &ConfigArgs) -> Result<BenchRow, Failure> {
    reset_peak_rss();
    let t = Instant::now();
    let (labeller, workspace) = config.labeller()?;
    let load = t.elapsed();
    let c = labeller.classifier();
    println!("model      {}", c.model_id());
    println!("labels     {}", c.label_names().join(", "));
    println!("threads    {}", rayon::current_num_threads());
    println!("input      {}", input.display());
    println!(
        "load       {:.2} s (model, tokenizer, label prototypes)",
        load.as_secs_f64()
    );
    println!();
    println!(
        "{:>4} {:>8} {:>7} {:>8} {:>9} {:>10} {:>11}",
        "run", "records", "errors", "wall s", "records/s", "tokens/s", "windows"
    );
    let (mut best, mut best_tokens) = (0f64, 0f64);
    for run in 1..=runs.max(1) {
        let columns = triage_batch::Columns {
            text: workspace.input.text_field.clone(),
            id: workspace.input.id_field.clone(),
        };
        let reader = triage_batch::input::open(&input.to_string_lossy(), None, &columns)
            .map_err(Failure::usage)?
            .records;
        let options = RunOptions {
            input_name: input.display().to_string(),
            chunk_records: chunk_records(&workspace),
            ..Default::default()
        };
        let s = triage_batch::run(
            &labeller,
            reader,
            &mut Sink::discard(),
            &mut Sink::discard(),
            &options,
            None,
            &|_| {},
            &mut |_| Ok(()),
        )
        .map_err(|e| Failure::Run(e.into()))?;
        if s.records_per_sec() > best {
            best = s.records_per_sec();
            best_tokens = s.tokens_per_sec();
        }
        println!(
            "{run:>4} {:>8} {:>7} {:>8.2} {:>9.1} {:>10.0} {:>11}",
            s.records,
            s.errors,
            s.elapsed.as_secs_f64(),
            s.records_per_sec(),
            s.tokens_per_sec(),
            s.windows
        );
    }
    println!();
    println!("best       {best:.1} records/s");
    let peak = peak_rss_mib();
    if let Some(m) = peak {
        println!("peak RSS   {m:.0} MiB");
    }
    let mut name = format!("{} {}", workspace.model.backend, workspace.model.precision);
    if workspace.model.device.is_cuda() {
        name.push_str(&format!(" {}", workspace.model.device));
    }
    if let Some(m) = workspace.model.refine_margin {
        name.push_str(&format!("+refine{m}"));
    }
    Ok((name, best, best_tokens, load.as_secs_f64(), peak))
}
