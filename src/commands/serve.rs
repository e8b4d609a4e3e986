//! `triage serve`: the labeller as an HTTP service ([`triage_serve`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{ConfigArgs, Failure};

/// `triage serve`: classify over HTTP.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TRIAGE_ADDR")]
    pub(crate) addr: String,
    /// A bank of known content to match every text against (repeatable; adds to `[banks]`).
    #[arg(long = "bank", value_name = "DIR")]
    pub(crate) banks: Vec<PathBuf>,
    /// API keys, one per line (blank lines and `#` comments skipped): requests but `/health`
    /// and `/ready` then need `Authorization: Bearer KEY`.
    #[arg(long, env = "TRIAGE_API_KEYS", value_name = "FILE")]
    pub(crate) api_keys: Option<PathBuf>,
    /// Largest request body, bytes (413 above).
    #[arg(long, default_value_t = 2 << 20)]
    pub(crate) max_body_bytes: usize,
    /// Texts per request (413 above).
    #[arg(long, default_value_t = 256)]
    pub(crate) max_texts: usize,
    /// Characters per text (413 above).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) max_chars: usize,
    /// Requests handled at once (429 with Retry-After above).
    #[arg(long, default_value_t = 256)]
    pub(crate) max_concurrent: usize,
    /// How long a request may wait for its labels, ms (503 after).
    #[arg(long, default_value_t = 30_000)]
    pub(crate) deadline_ms: u64,
    /// How long the first request of a batch waits for more to join, ms.
    #[arg(long, default_value_t = 5)]
    pub(crate) batch_wait_ms: u64,
    /// Estimated tokens per batch (characters / 3).
    #[arg(long, default_value_t = 8192)]
    pub(crate) batch_tokens: usize,
    /// After SIGTERM or Ctrl-C, how long `/ready` answers 503 while requests are still taken, s.
    #[arg(long, default_value_t = 0)]
    pub(crate) drain_delay_s: u64,
    /// Then how long requests in flight may take to finish, s.
    #[arg(long, default_value_t = 30)]
    pub(crate) drain_timeout_s: u64,
}

/// API keys from a file: one per line, blank lines and `#` comments skipped.
fn read_keys(p: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!keys.is_empty(), "{}: no API key in it", p.display());
    Ok(keys)
}

pub(crate) fn serve(a: ServeArgs) -> Result<ExitCode, Failure> {
    let api_keys = match &a.api_keys {
        Some(p) => read_keys(p).map_err(Failure::Usage)?,
        None => Vec::new(),
    };
    // a lone request's window gets every core (a run's passes fill them; a server's often
    // do not)
    let (labeller, workspace) = a.config.labeller_tuned(&a.banks, |c| {
        c.model.lone_window_threads = rayon::current_num_threads();
    })?;
    let config_id = super::config_id(&labeller, &workspace)?;
    let labeller = labeller.with_config_id(&config_id);
    let c = labeller.classifier();
    let labels = &workspace.labels;
    let info = serde_json::json!({
        "triage_version": env!("CARGO_PKG_VERSION"),
        "triage_commit": env!("TRIAGE_COMMIT"),
        "model": super::model_json(c, &workspace),
        "config_id": config_id,
        "labels": labels.labels.iter().map(|(n, s)| serde_json::json!({
            "name": n,
            "threshold": labels.threshold(n),
            "language_thresholds": s.language_thresholds,
            "severity": labels.severity(n),
        })).collect::<Vec<_>>(),
        "banks": labeller.banks().iter().map(|b| {
            let i = b.info();
            serde_json::json!({"name": i.name, "version": i.version, "items": i.items})
        }).collect::<Vec<_>>(),
    });
    let options = triage_serve::ServeOptions {
        max_body_bytes: a.max_body_bytes,
        max_texts: a.max_texts,
        max_concurrent: a.max_concurrent,
        deadline: Duration::from_millis(a.deadline_ms),
        drain_delay: Duration::from_secs(a.drain_delay_s),
        drain_timeout: Duration::from_secs(a.drain_timeout_s),
        api_keys,
        batch: triage_serve::BatchOptions {
            max_batch_tokens: a.batch_tokens,
            max_wait: Duration::from_millis(a.batch_wait_ms),
            max_chars: a.max_chars,
        },
    };
    // the async threads only move bytes: the labelling runs on rayon's pool
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.addr)
            .await
            .with_context(|| format!("cannot listen on {}", a.addr))
            .map_err(Failure::Usage)?;
        let local = listener.local_addr().map_err(anyhow::Error::from)?;
        // one line a script can wait for (the port, when --addr gave :0)
        eprintln!(
            "triage serve: listening on http://{local} (model {})",
            labeller.classifier().model_id()
        );
        tracing::info!(addr = %local, "listening");
        triage_serve::serve(
            listener,
            Arc::new(labeller),
            info,
            options,
            shutdown_signal(),
        )
        .await
        .map_err(|e| Failure::Run(e.into()))
    })?;
    eprintln!("triage serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
