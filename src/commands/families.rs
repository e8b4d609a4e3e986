//! `triage families`: re-upload families of a labelled output and its input
//! ([`triage_batch::families`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use triage_batch::families::{FamiliesSummary, SemanticEdges};
use triage_batch::WorkspaceConfig;
use triage_classify::Classifier;

use crate::cli::{ConfigArgs, Failure};

/// `triage families`: give each record of a labelled output its re-upload family.
#[derive(clap::Args)]
pub(crate) struct FamiliesArgs {
    /// The labelled output (JSON Lines); rewritten with a `family` field per record.
    pub(crate) labelled: PathBuf,
    /// The input it was labelled from.
    #[arg(long)]
    pub(crate) input: String,
    /// Input format (default: from the extension).
    #[arg(long, value_parser = ["jsonl", "csv", "tsv", "txt", "dir"])]
    pub(crate) format: Option<String>,
    /// The labelling configuration (`[input]` fields, `[banks]` thresholds, and the model whose
    /// embeddings make semantic edges) and its engine.
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

pub(crate) fn families(a: FamiliesArgs) -> Result<ExitCode, Failure> {
    let started = crate::manifest::now();
    let (workspace, input) =
        super::config_and_input(&a.config.config, &a.input, a.format.as_deref())?;
    let classifier = if workspace.banks.families_semantic {
        Some(super::bank::embedder(&a.config)?)
    } else {
        None
    };
    // the output as it was, so that its manifest is amended only if it vouched for it
    let before = crate::manifest::hash_file(&a.labelled).ok();
    let f = match &classifier {
        Some(c) => find(&a.labelled, input.records, &a.input, &workspace, c)?,
        None => triage_batch::families::families(
            &a.labelled,
            input.records,
            &a.input,
            &workspace.input,
            workspace.banks.near,
            None,
        )
        .map_err(|e| Failure::Run(e.into()))?,
    };
    print(&f);
    match crate::manifest::amend_after_families(&a.labelled, before, &f.path, &started) {
        Ok(Some(m)) => eprintln!("families: {} updated", m.display()),
        Ok(None) => {}
        Err(e) => eprintln!("triage: warning: {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Families of a labelled output, with semantic edges from `classifier`'s embeddings where the
/// configuration asks for them.
pub(crate) fn find(
    labelled: &Path,
    records: triage_batch::input::Records,
    input: &str,
    workspace: &WorkspaceConfig,
    classifier: &Classifier,
) -> Result<FamiliesSummary, Failure> {
    let embed = |texts: &[&str]| classifier.embed(texts).map_err(|e| e.to_string());
    let semantic = SemanticEdges {
        threshold: workspace.banks.family_semantic,
        margin: workspace.banks.family_semantic_margin,
        embed: &embed,
    };
    triage_batch::families::families(
        labelled,
        records,
        input,
        &workspace.input,
        workspace.banks.near,
        workspace.banks.families_semantic.then_some(&semantic),
    )
    .map_err(|e| Failure::Run(e.into()))
}

pub(crate) fn print(f: &FamiliesSummary) {
    eprintln!(
        "families: {} records; {} families of two or more hold {} of them (largest {}): {}",
        f.records,
        f.families,
        f.in_families,
        f.largest,
        f.path.display()
    );
    if f.semantic {
        eprintln!(
            "families: {} semantic edges (translations, rewordings){}",
            f.semantic_edges,
            if f.embedding_failures > 0 {
                format!(
                    "; {} records could not be embedded and have near-duplicate edges only",
                    f.embedding_failures
                )
            } else {
                String::new()
            }
        );
    }
}
