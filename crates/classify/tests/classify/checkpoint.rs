//! `checkpoint` mode on tiny random `*ForSequenceClassification` models made by
//! `scripts/reference/make_tiny_models.py`, against the logits Python `transformers` computed.

use serde::Deserialize;
use triage_classify::{
    Activation, Backend, ClassifierBuilder, DeviceSpec, LabelSpec, LabelsConfig, Mode, Precision,
};

use crate::root;

#[derive(Deserialize)]
struct Reference {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    logits: Vec<Vec<f32>>,
    problem_type: Option<String>,
    labels: Vec<String>,
}

pub fn check(name: &str, activation: Activation) {
    check_on(name, activation, Backend::Candle, Precision::F32, 1e-4);
}

/// The checkpoint `name`'s logits and scores on `backend` and `precision`, within `tol` of
/// Python `transformers`' logits.
pub fn check_on(
    name: &str,
    activation: Activation,
    backend: Backend,
    precision: Precision,
    tol: f32,
) {
    check_on_device(name, activation, backend, precision, DeviceSpec::Cpu, tol)
}

/// [`check_on`] with the encoder on `device`.
pub fn check_on_device(
    name: &str,
    activation: Activation,
    backend: Backend,
    precision: Precision,
    device: DeviceSpec,
    tol: f32,
) {
    let dir = root().join("tests/data/models").join(name);
    let r: Reference =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let labels = LabelsConfig {
        mode: Mode::Checkpoint,
        multi_label: r.problem_type.as_deref() == Some("multi_label_classification"),
        ..Default::default()
    };
    let c = ClassifierBuilder::new(&dir)
        .labels(labels)
        .backend(backend)
        .ort_library(crate::ort_path())
        .precision(precision)
        .device(device)
        .build()
        .unwrap();
    assert_eq!(c.label_names(), r.labels);
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    for (t, ids) in texts.iter().zip(&r.ids) {
        assert_eq!(&c.tokenizer().encode_full(t).unwrap(), ids, "{t}");
    }
    let logits = c.checkpoint_logits(&texts).unwrap();
    for ((t, got), want) in texts.iter().zip(&logits).zip(&r.logits) {
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < tol,
                "{name} {backend} {precision} {device} {t}: {got:?} vs {want:?}"
            );
        }
    }
    let results = c.classify_batch(&texts).unwrap();
    for (res, want) in results.iter().zip(&r.logits) {
        let mut p = want.clone();
        activation.apply(&mut p);
        for (l, w) in res.labels().iter().zip(&p) {
            assert!(
                (l.score() - w).abs() < tol,
                "{name} {backend} {precision} {device}: {} {} vs {w}",
                l.label(),
                l.score()
            );
        }
    }
}

#[test]
fn bert_sequence_classification_matches_transformers() {
    check("tiny-bert-cls", Activation::Softmax);
}

#[test]
fn xlm_roberta_multi_label_matches_transformers() {
    check("tiny-xlmr-cls", Activation::Sigmoid);
}

#[test]
fn a_label_the_checkpoint_does_not_have_is_an_error() {
    let mut labels = LabelsConfig {
        mode: Mode::Checkpoint,
        ..Default::default()
    };
    labels.labels.push((
        "weather".into(),
        LabelSpec {
            threshold: Some(0.3),
            ..Default::default()
        },
    ));
    let err = ClassifierBuilder::new(root().join("tests/data/models/tiny-bert-cls"))
        .labels(labels)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels.weather") && err.contains("spam"),
        "{err}"
    );
}

#[test]
fn thresholds_flag_labels() {
    if !crate::have_e5() {
        return;
    }
    let mut labels = LabelsConfig {
        mode: Mode::Checkpoint,
        multi_label: true,
        default_threshold: 0.0,
        ..Default::default()
    };
    labels.labels.push((
        "spam".into(),
        LabelSpec {
            threshold: Some(1.0),
            ..Default::default()
        },
    ));
    let c = ClassifierBuilder::new(root().join("tests/data/models/tiny-xlmr-cls"))
        .labels(labels)
        .build()
        .unwrap();
    let r = c.classify("free money click this link").unwrap();
    for l in r.labels() {
        assert_eq!(l.flagged(), l.label() != "spam", "{l:?}");
    }
}

#[test]
fn head_mode_scores_pooled_embeddings_with_the_head_file() {
    if !crate::have_e5() {
        return;
    }
    use candle_core::{Device, Tensor};
    let model = root().join("tests/data/models/tiny-bert-cls");
    let head = tempfile::tempdir().unwrap();
    let (h, names) = (32usize, ["a", "b", "c"]);
    let w: Vec<f32> = (0..names.len() * h)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 10.0)
        .collect();
    let b = vec![0.1f32, -0.2, 0.05];
    let tensors = std::collections::HashMap::from([
        (
            "weight".to_string(),
            Tensor::from_vec(w.clone(), (names.len(), h), &Device::Cpu).unwrap(),
        ),
        (
            "bias".to_string(),
            Tensor::from_vec(b.clone(), names.len(), &Device::Cpu).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, head.path().join("head.safetensors")).unwrap();
    std::fs::write(
        head.path().join("head.json"),
        r#"{"labels": ["a", "b", "c"], "activation": "sigmoid", "thresholds": {"b": 0.9}}"#,
    )
    .unwrap();
    let labels = LabelsConfig {
        mode: Mode::Head,
        head: Some(head.path().to_owned()),
        ..Default::default()
    };
    let c = ClassifierBuilder::new(&model)
        .labels(labels)
        .build()
        .unwrap();
    let text = "the council approved the budget";
    let e = c.embed(&[text]).unwrap().remove(0);
    let r = c.classify(text).unwrap();
    for (k, l) in r.labels().iter().enumerate() {
        let z: f32 = w[k * h..(k + 1) * h]
            .iter()
            .zip(&e)
            .map(|(a, b)| a * b)
            .sum::<f32>()
            + b[k];
        let want = 1.0 / (1.0 + (-z).exp());
        assert!(
            (l.score() - want).abs() < 1e-5,
            "{}: {} vs {want}",
            l.label(),
            l.score()
        );
        let threshold = if l.label() == "b" { 0.9 } else { 0.5 };
        assert_eq!(l.flagged(), l.score() >= threshold);
    }
    // a head trained on another encoder is refused
    std::fs::write(
        head.path().join("head.json"),
        r#"{"labels": ["a", "b", "c"], "activation": "sigmoid", "encoder_sha256": "0000"}"#,
    )
    .unwrap();
    let labels = LabelsConfig {
        mode: Mode::Head,
        head: Some(head.path().to_owned()),
        ..Default::default()
    };
    let err = ClassifierBuilder::new(&model)
        .labels(labels)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trained on the encoder") && err.contains("sha256:0000"),
        "{err}"
    );
    // a head of the wrong width is refused with its path
    std::fs::write(
        head.path().join("head.json"),
        r#"{"labels": ["a", "b"], "activation": "softmax"}"#,
    )
    .unwrap();
    let labels = LabelsConfig {
        mode: Mode::Head,
        head: Some(head.path().to_owned()),
        ..Default::default()
    };
    let err = ClassifierBuilder::new(&model)
        .labels(labels)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit 2 labels"), "{err}");
}

#[test]
fn a_damaged_weights_file_is_an_error_naming_it() {
    let src = root().join("tests/data/models/tiny-bert-cls");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let builder = |d: &std::path::Path| {
        ClassifierBuilder::new(d).labels(LabelsConfig {
            mode: Mode::Checkpoint,
            ..Default::default()
        })
    };
    // the copy loads
    builder(dir.path()).build().unwrap();
    // cut short: the tensor whose bytes are past the end is named
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).unwrap();
    let err = crate::refusal(builder(dir.path()), "a truncated weights file");
    assert!(
        err.contains("weights of") && err.contains("model.safetensors: tensor "),
        "{err}"
    );
    assert!(err.contains("of the data, which has"), "{err}");
}
