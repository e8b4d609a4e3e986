//! The classifier on the tiny random BERT checkpoint (`tests/data/models/tiny-bert-cls`, cut
//! into windows of 24 tokens, so that a paragraph has several): windows to scores to flags.

use std::path::PathBuf;

use crate::{Classifier, ClassifierBuilder, LabelSpec, LabelsConfig, Mode};

fn tiny(multi_label: bool, spam_in: Option<(&str, f32)>) -> Classifier {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/models/tiny-bert-cls");
    let mut labels = LabelsConfig {
        mode: Mode::Checkpoint,
        multi_label,
        ..Default::default()
    };
    if let Some((lang, t)) = spam_in {
        labels.labels.push((
            "spam".into(),
            LabelSpec {
                language_thresholds: [(lang.to_string(), t)].into(),
                ..Default::default()
            },
        ));
    }
    // windows of 24 tokens, so that a paragraph has several
    let options = crate::ModelOptions {
        max_tokens: Some(24),
        window_overlap: 4,
        ..crate::ModelOptions::new("tiny-bert-cls")
    };
    ClassifierBuilder::new(dir)
        .options(options)
        .labels(labels)
        .build()
        .unwrap()
}

const LONG: &str =
    "The city council met on Tuesday to approve the budget of the public libraries, \
    which will open longer hours in the winter. Free money, click this link now to win a prize! \
    The weather will stay mild and dry until the weekend, with rain expected on Sunday evening.";

#[test]
fn a_texts_scores_are_its_windows_largest_and_the_evidence_is_the_best_window() {
    let c = tiny(true, None);
    let p = c.prepare(LONG).unwrap();
    assert!(p.windows.len() > 1, "{} windows", p.windows.len());
    let rows = c.window_scores(std::slice::from_ref(&p)).unwrap().remove(0);
    assert_eq!(rows.len(), p.windows.len());
    let r = c.classify_window_scores(&p, &rows, None);
    assert_eq!(r, c.classify(LONG).unwrap());
    for (l, score) in r.labels().iter().enumerate() {
        let best = rows.iter().map(|w| w[l]).fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(score.score(), best);
        assert_eq!(score.flagged(), best >= c.threshold(l, None));
    }
    let best = r.best().unwrap();
    let l = c
        .label_names()
        .iter()
        .position(|n| *n == best.label())
        .unwrap();
    let w = rows.iter().position(|w| w[l] == best.score()).unwrap();
    assert_eq!(
        (r.evidence().start, r.evidence().end),
        (p.windows[w].start, p.windows[w].end)
    );
    assert_eq!(
        (r.windows(), r.chars()),
        (p.windows.len(), LONG.chars().count())
    );
}

/// A window's scores alone and among other texts: the same to rounding here (candle's own
/// helper threads split the tiny model's products by the batch; the `triage` command runs
/// them on one thread, where the default model's scores are the same bits: `tests/classify`).
#[test]
fn a_windows_scores_do_not_depend_on_its_batch() {
    let c = tiny(true, None);
    let texts = [
        "Gagnez 5000 euros par semaine !",
        LONG,
        "Погода завтра будет солнечной.",
    ];
    let prepared: Vec<_> = texts.iter().map(|t| c.prepare(t).unwrap()).collect();
    let together = c.window_scores(&prepared).unwrap();
    for (p, t) in prepared.iter().zip(&together) {
        let alone = &c.window_scores(std::slice::from_ref(&p)).unwrap()[0];
        assert_eq!(alone.len(), t.len());
        for (a, b) in alone.iter().flatten().zip(t.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6, "{a} alone, {b} among others");
        }
    }
}

#[test]
fn language_thresholds_flag_in_their_language_only() {
    // spam flagged at any score in French, at its own threshold elsewhere
    let c = tiny(true, Some(("fr", 0.0)));
    let spam = c.label_names().iter().position(|n| *n == "spam").unwrap();
    assert_eq!(c.threshold(spam, Some("fr")), 0.0);
    assert_eq!(c.threshold(spam, Some("de")), c.threshold(spam, None));
    let p = c.prepare("Bonjour à tous").unwrap();
    let rows = c.window_scores(std::slice::from_ref(&p)).unwrap().remove(0);
    let fr = c.classify_window_scores(&p, &rows, Some("fr"));
    let de = c.classify_window_scores(&p, &rows, Some("de"));
    assert!(fr.labels()[spam].flagged());
    assert_eq!(de, c.classify_window_scores(&p, &rows, None));
    let mut applied = de.clone();
    c.apply_language_thresholds(&mut applied, "fr");
    assert_eq!(applied, fr);
    if de.labels()[spam].score() < c.threshold(spam, None) {
        assert!(!de.labels()[spam].flagged());
    }
}

#[test]
fn single_label_flags_only_the_top_label() {
    let c = tiny(false, None);
    for text in [
        "Gagnez 5000 euros par semaine !",
        LONG,
        "Погода завтра будет солнечной.",
    ] {
        let r = c.classify(text).unwrap();
        let best = r.best().unwrap().label().to_string();
        for l in r.labels() {
            if l.label() != best {
                assert!(!l.flagged(), "{text}: {l:?} flagged beside the top {best}");
            }
        }
        // softmax: one window's scores sum to one (a longer text's are maxima over windows)
        if r.windows() == 1 {
            let sum: f32 = r.labels().iter().map(|l| l.score()).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        }
    }
}

#[test]
fn scores_with_embeddings_are_the_same_bits_as_scores_alone() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/models/tiny-bert-cls");
    let labels = LabelsConfig {
        mode: Mode::Prototypes,
        labels: vec![(
            "spam".into(),
            LabelSpec {
                examples: vec!["Free money, click this link now".into()],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let options = crate::ModelOptions {
        max_tokens: Some(24),
        window_overlap: 4,
        ..crate::ModelOptions::new("tiny-bert-cls")
    };
    let c = ClassifierBuilder::new(dir)
        .options(options)
        .labels(labels)
        .build()
        .unwrap();
    let prepared: Vec<_> = [LONG, "short text", "Free money!"]
        .iter()
        .map(|t| c.prepare(t).unwrap())
        .collect();
    let (scores, embeddings) = c.window_scores_and_embeddings(&prepared).unwrap();
    assert_eq!(scores, c.window_scores(&prepared).unwrap());
    assert_eq!(embeddings, c.window_embeddings(&prepared).unwrap());
    assert!(scores[0].len() > 1, "the long text has several windows");
}
