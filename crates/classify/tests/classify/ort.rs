//! The `ort` backend (ONNX Runtime on a graph triage writes from the same weights) against the
//! values Python `transformers` computed: logits of the tiny checkpoints and the default
//! model's embeddings in f32, and int8 within its documented error. The library comes from
//! `ORT_DYLIB_PATH` (scripts/setup_onnxruntime.sh); without it these tests skip and say so (and fail under `TRIAGE_TEST_STRICT`, as
//! `scripts/test.sh` runs them).

use triage_classify::{Backend, Precision};

#[cfg(feature = "ort")]
use crate::{checkpoint::check_on, cosine, e5_dir};
#[cfg(feature = "ort")]
use triage_classify::{Activation, ClassifierBuilder};

#[test]
fn int8_needs_the_ort_backend() {
    for backend in [Backend::Candle, Backend::Tch] {
        let err = crate::refusal(
            crate::tiny_checkpoint("tiny-bert-cls")
                .backend(backend)
                .ort_library(crate::ort_path())
                .precision(Precision::Int8),
            "int8 is the ort backend's",
        );
        assert!(err.to_string().contains("--backend ort"), "{err}");
    }
}

#[cfg(not(feature = "ort"))]
#[test]
fn the_ort_backend_without_the_feature_is_a_clear_error() {
    let err = crate::refusal(
        crate::tiny_checkpoint("tiny-bert-cls").backend(Backend::Ort),
        "no ort backend in this build",
    );
    assert!(err.to_string().contains("--features ort"), "{err}");
}

#[cfg(feature = "ort")]
#[test]
fn checkpoint_logits_match_transformers_in_f32() {
    if !crate::have_ort() {
        return;
    }
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
    if !crate::have_ort() {
        return;
    }
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
    if !crate::have_e5() {
        return;
    }
    if !crate::have_ort() {
        return;
    }
    let r = crate::e5::reference();
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    let build = |p: Precision| {
        ClassifierBuilder::new(e5_dir())
            .prefix(&r.prefix)
            .backend(Backend::Ort)
            .ort_library(crate::ort_path())
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
        // smoothed int8 with outlier channels in f32: the lowest is 0.99983 (0.99966 with
        // smoothing alone and 0.99880 before smoothing: this fails both)
        let c = cosine(q, &t.embedding);
        assert!(c >= 0.9997, "{} int8: cosine {c} vs transformers", t.lang);
        worst_int8 = worst_int8.min(c);
    }
    // int8 really is quantized: not f32's numbers
    assert!(worst_int8 < 0.99999, "int8 gave f32's embeddings");
    eprintln!("e5-small on ort: lowest int8 cosine vs transformers {worst_int8}");
}

#[cfg(feature = "ort")]
#[test]
fn int8_states_do_not_depend_on_the_batch() {
    if !crate::have_e5() {
        return;
    }
    if !crate::have_ort() {
        return;
    }
    let e = ClassifierBuilder::new(e5_dir())
        .prefix("query: ")
        .backend(Backend::Ort)
        .ort_library(crate::ort_path())
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

#[test]
fn refinement_needs_int8_on_ort_and_a_margin_between_0_and_1() {
    let build = |backend: Backend, precision: Precision, margin: f32| {
        crate::refusal(
            crate::tiny_checkpoint("tiny-bert-cls")
                .backend(backend)
                .ort_library(crate::ort_path())
                .precision(precision)
                .refine_margin(Some(margin)),
            "refused",
        )
    };
    let msg = build(Backend::Candle, Precision::F32, 0.02);
    assert!(msg.contains("--backend ort --dtype int8"), "{msg}");
    let msg = build(Backend::Ort, Precision::F32, 0.02);
    assert!(msg.contains("--backend ort --dtype int8"), "{msg}");
    let msg = build(Backend::Ort, Precision::Int8, 1.5);
    assert!(msg.contains("between 0 and 1"), "{msg}");
}

#[cfg(feature = "ort")]
fn prototypes_on(precision: Precision, refine: Option<f32>) -> triage_classify::Classifier {
    ClassifierBuilder::new(e5_dir())
        .prefix("query: ")
        .labels(crate::e5::labels())
        .backend(Backend::Ort)
        .ort_library(crate::ort_path())
        .precision(precision)
        .refine_margin(refine)
        .build()
        .unwrap()
}

#[cfg(feature = "ort")]
fn score_rows(c: &triage_classify::Classifier, texts: &[&str]) -> Vec<Vec<f32>> {
    c.classify_batch(texts)
        .unwrap()
        .iter()
        .map(|r| r.labels().iter().map(|l| l.score()).collect())
        .collect()
}

#[cfg(feature = "ort")]
#[test]
fn int8_windows_near_a_decision_are_scored_again_in_f32() {
    if !crate::have_e5() {
        return;
    }
    if !crate::have_ort() {
        return;
    }
    let texts = [
        "Join the fight, brothers, the hour has come.",
        "Gagnez 5000 euros par semaine, cliquez ici !",
        "Der Stadtrat hat gestern den Haushalt beschlossen.",
        "Погода завтра будет солнечной.",
        "Hari ini cuaca cerah di Jakarta.",
    ];
    let f32 = score_rows(&prototypes_on(Precision::F32, None), &texts);
    let int8 = score_rows(&prototypes_on(Precision::Int8, None), &texts);
    // every window is near a decision at a margin of 1: all of them are f32's, bit for bit
    // (the prototypes are embedded in f32 in both)
    let all = score_rows(&prototypes_on(Precision::Int8, Some(0.999)), &texts);
    assert_eq!(all, f32);
    assert_ne!(int8, f32, "int8 gave f32's scores");
    // with a small margin, a window is refined exactly when its int8 scores are near a decision
    let margin = 0.05;
    let some = score_rows(&prototypes_on(Precision::Int8, Some(margin)), &texts);
    let mut refined = 0;
    // multi-label (LabelsConfig's default): each label decides alone, at its threshold
    for ((s, q), f) in some.iter().zip(&int8).zip(&f32) {
        let near = q.iter().any(|&x| (x - 0.5).abs() < margin);
        if near {
            refined += 1;
            assert_eq!(s, f, "a window near a decision kept its int8 scores");
        } else {
            assert_eq!(s, q, "a window far from any decision was scored again");
        }
    }
    eprintln!(
        "{refined} of {} texts refined at margin {margin}",
        texts.len()
    );
}

#[cfg(feature = "ort")]
#[test]
fn int8_calibration_is_cached_and_a_damaged_cache_is_measured_again() {
    if !crate::have_ort() {
        return;
    }
    // a private copy of a tiny checkpoint: the cache is written beside the model
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let src = crate::root().join("tests/data/models/tiny-xlmr-cls");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        if f.path().is_file() && !f.file_name().to_string_lossy().starts_with('.') {
            std::fs::copy(f.path(), model.join(f.file_name())).unwrap();
        }
    }
    let texts = [
        "join the fight now",
        "the weather is sunny today",
        "free money",
    ];
    let embed = || {
        ClassifierBuilder::new(&model)
            .backend(Backend::Ort)
            .ort_library(crate::ort_path())
            .precision(Precision::Int8)
            .build_embedder()
            .unwrap()
            .embed(&texts)
            .unwrap()
    };
    let cache_files = || -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(model.join(".triage-cache")) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    };
    assert!(cache_files().is_empty());
    let first = embed();
    let files = cache_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let cached = std::fs::read(&files[0]).unwrap();
    assert!(cached.starts_with(b"triage int8 ranges 1\n"));
    // the second start reads the ranges: the same embeddings, bit for bit
    let second = embed();
    assert_eq!(first, second);
    assert_eq!(std::fs::read(&files[0]).unwrap(), cached);
    // a damaged cache is not used: measured again, the same embeddings, the file sound again
    let mut bad = cached.clone();
    let n = bad.len();
    bad[n - 2] ^= 0x40;
    std::fs::write(&files[0], &bad).unwrap();
    assert_eq!(embed(), first);
    assert_eq!(std::fs::read(&files[0]).unwrap(), cached);
    // another number format of the same model does not touch it
    ClassifierBuilder::new(&model)
        .backend(Backend::Ort)
        .ort_library(crate::ort_path())
        .precision(Precision::F32)
        .build_embedder()
        .unwrap();
    assert_eq!(cache_files().len(), 1);
}
