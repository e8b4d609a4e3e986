//! The `ort` backend (ONNX Runtime on a graph triage writes from the same weights) against the
//! values Python `transformers` computed: logits of the tiny checkpoints and the default
//! model's embeddings in f32, and int8 within its documented error. The library comes from
//! `ORT_DYLIB_PATH` (scripts/setup_onnxruntime.sh); these tests fail, never skip, without it.

use triage_classify::{Activation, Backend, ClassifierBuilder, LabelsConfig, Mode, Precision};

use crate::checkpoint::check_on;
use crate::{cosine, e5_dir, root};

#[test]
fn int8_needs_the_ort_backend() {
    for backend in [Backend::Candle, Backend::Tch] {
        let err = ClassifierBuilder::new(root().join("tests/data/models/tiny-bert-cls"))
            .labels(LabelsConfig {
                mode: Mode::Checkpoint,
                ..Default::default()
            })
            .backend(backend)
            .precision(Precision::Int8)
            .build()
            .err()
            .expect("int8 is the ort backend's");
        assert!(err.to_string().contains("--backend ort"), "{err}");
    }
}

#[cfg(not(feature = "ort"))]
#[test]
fn the_ort_backend_without_the_feature_is_a_clear_error() {
    let err = ClassifierBuilder::new(root().join("tests/data/models/tiny-bert-cls"))
        .labels(LabelsConfig {
            mode: Mode::Checkpoint,
            ..Default::default()
        })
        .backend(Backend::Ort)
        .build()
        .err()
        .expect("no ort backend in this build");
    assert!(err.to_string().contains("--features ort"), "{err}");
}

#[cfg(feature = "ort")]
fn library() {
    let path = std::env::var_os("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH is not set: run `eval \"$(scripts/setup_onnxruntime.sh)\"` before the tests",
    );
    assert!(std::path::Path::new(&path).is_file(), "{path:?} is missing");
}

#[cfg(feature = "ort")]
#[test]
fn checkpoint_logits_match_transformers_in_f32() {
    library();
    check_on(
        "tiny-bert-cls",
        Activation::Softmax,
        Backend::Ort,
        Precision::F32,
        1e-4,
    );
    check_on(
        "tiny-xlmr-cls",
        Activation::Sigmoid,
        Backend::Ort,
        Precision::F32,
        1e-4,
    );
}

#[cfg(feature = "ort")]
#[test]
fn checkpoint_logits_in_int8_are_close() {
    library();
    // random weights spread evenly: int8 keeps the logits within a few hundredths
    check_on(
        "tiny-bert-cls",
        Activation::Softmax,
        Backend::Ort,
        Precision::Int8,
        0.05,
    );
}

#[cfg(feature = "ort")]
#[test]
fn default_model_embeddings_match_transformers() {
    library();
    let r = crate::e5::reference();
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    let build = |p: Precision| {
        ClassifierBuilder::new(e5_dir())
            .prefix(&r.prefix)
            .backend(Backend::Ort)
            .precision(p)
            .build_embedder()
            .unwrap()
    };
    let f32 = build(Precision::F32).embed(&texts).unwrap();
    let int8 = build(Precision::Int8).embed(&texts).unwrap();
    let mut worst_int8 = 1f32;
    for ((t, a), q) in r.texts.iter().zip(&f32).zip(&int8) {
        let c = cosine(a, &t.embedding);
        assert!(c >= 0.9999, "{} f32: cosine {c} vs transformers", t.lang);
        let max = a
            .iter()
            .zip(&t.embedding)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(max < 2e-3, "{} f32: max abs difference {max}", t.lang);
        let c = cosine(q, &t.embedding);
        assert!(c >= 0.995, "{} int8: cosine {c} vs transformers", t.lang);
        worst_int8 = worst_int8.min(c);
    }
    // int8 really is quantized: not f32's numbers
    assert!(worst_int8 < 0.99999, "int8 gave f32's embeddings");
    eprintln!("e5-small on ort: lowest int8 cosine vs transformers {worst_int8}");
}

#[cfg(feature = "ort")]
#[test]
fn int8_states_do_not_depend_on_the_batch() {
    library();
    let e = ClassifierBuilder::new(e5_dir())
        .prefix("query: ")
        .backend(Backend::Ort)
        .precision(Precision::Int8)
        .build_embedder()
        .unwrap();
    let short = "Gagnez 5000 euros par semaine, cliquez ici !";
    let long = "Le conseil municipal a voté le budget des bibliothèques. ".repeat(40);
    let alone = e.embed(&[short]).unwrap();
    let batch = e.embed(&[&long, short, &long]).unwrap();
    assert_eq!(
        alone[0], batch[1],
        "a window's int8 states changed with its batch"
    );
}
