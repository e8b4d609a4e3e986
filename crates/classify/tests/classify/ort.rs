//! The `ort` backend (ONNX Runtime on a graph triage writes from the same weights) against the
//! values Python `transformers` computed: logits of the tiny checkpoints and the default
//! model's embeddings in f32, and int8 within its documented error. The library comes from
//! `ORT_DYLIB_PATH` (scripts/setup_onnxruntime.sh); without it these tests skip and say so (and fail under `TRIAGE_TEST_STRICT`, as
//! `scripts/test.sh` runs them).

use triage_classify::{Backend, Precision, Refine};

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
                .refine_margin(Some(Refine::Margin(margin))),
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

/// Checkpoint mode scores windows from their states, not embeddings: with refinement on, a
/// window's pooled embedding is still given (the int8 one), as without refinement.
#[cfg(feature = "ort")]
#[test]
fn checkpoint_mode_with_refinement_still_gives_window_embeddings() {
    if !crate::have_ort() {
        return;
    }
    let build = |refine| {
        crate::tiny_checkpoint("tiny-bert-cls")
            .backend(Backend::Ort)
            .ort_library(crate::ort_path())
            .precision(Precision::Int8)
            .refine_margin(refine)
            .build()
            .unwrap()
    };
    let refined = build(Some(Refine::Margin(0.5)));
    let plain = build(None);
    let prepared = [refined.prepare("join the fight now").unwrap()];
    let got = refined.window_embeddings(&prepared).unwrap();
    assert_eq!(got, plain.window_embeddings(&prepared).unwrap());
    assert_eq!(got[0].len(), 1);
}

#[cfg(feature = "ort")]
fn prototypes_on(precision: Precision, refine: Option<Refine>) -> triage_classify::Classifier {
    prototypes_in(&e5_dir(), precision, refine)
}

#[cfg(feature = "ort")]
fn prototypes_in(
    dir: &std::path::Path,
    precision: Precision,
    refine: Option<Refine>,
) -> triage_classify::Classifier {
    ClassifierBuilder::new(dir)
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
    let all = score_rows(
        &prototypes_on(Precision::Int8, Some(Refine::Margin(0.999))),
        &texts,
    );
    assert_eq!(all, f32);
    assert_ne!(int8, f32, "int8 gave f32's scores");
    // with a small margin, a window is refined exactly when its int8 scores are near a decision
    let margin = 0.05;
    let some = score_rows(
        &prototypes_on(Precision::Int8, Some(Refine::Margin(margin))),
        &texts,
    );
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

/// `refine_margin = "auto"`: each label's bound is AUTO_SAFETY times the largest logit error
/// of int8 against f32 over the built-in error-measuring texts (computed here again from the
/// two engines' own scores, with a logit of this test's), windows are refined exactly when an
/// int8 logit is within its label's bound of the threshold's, and a second start reads the
/// measurement from the cache beside the model and gets the same bounds, as does a start
/// after the cache is damaged.
#[cfg(feature = "ort")]
#[test]
fn auto_refinement_bounds_the_int8_error_measured_on_the_built_in_texts() {
    if !crate::have_e5() || !crate::have_ort() {
        return;
    }
    let logit = |s: f32| {
        let s = f64::from(s);
        (s / (1.0 - s)).ln()
    };
    let sound = |s: f32| s > 1e-6 && s < 1.0 - 1e-6;
    let texts: Vec<&str> = [
        include_str!("../../data/int8-error.txt"),
        include_str!("../../data/calibration.txt"),
    ]
    .iter()
    .flat_map(|t| t.lines())
    .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
    .collect();
    let f32 = prototypes_on(Precision::F32, None);
    // every built-in text is one window (the largest is well under 512 tokens), so a text's
    // scores are its window's
    assert!(texts
        .iter()
        .all(|t| f32.prepare(t).unwrap().windows.len() == 1));
    let exact = score_rows(&f32, &texts);
    let int8 = score_rows(&prototypes_on(Precision::Int8, None), &texts);
    let labels = exact[0].len();
    let mut largest = vec![0f64; labels];
    for (a, b) in int8.iter().zip(&exact) {
        for l in 0..labels {
            if sound(a[l]) && sound(b[l]) {
                largest[l] = largest[l].max((logit(a[l]) - logit(b[l])).abs());
            }
        }
    }
    // a private view of the model (its files linked), whose cache this test may damage
    let private = tempfile::tempdir().unwrap();
    link_files(&e5_dir(), private.path());
    let model = private.path();
    let auto = prototypes_in(model, Precision::Int8, Some(Refine::Auto));
    let bounds = auto.refine_bounds().to_vec();
    eprintln!("largest logit errors {largest:?}, bounds {bounds:?}");
    assert_eq!(bounds.len(), labels);
    for (b, e) in bounds.iter().zip(&largest) {
        assert!(*e > 0.0, "int8 equals f32 on every built-in text");
        let want = (e * f64::from(triage_classify::AUTO_SAFETY)).max(1e-3);
        assert!(
            (f64::from(*b) - want).abs() <= want * 1e-4,
            "bound {b}, measured {want}"
        );
    }
    // what decides refinement is named for caches of embeddings: the rule and the bounds
    let key = auto.refinement_key().expect("refinement is on");
    assert!(key.contains("refine=auto") && key.contains(&bounds[0].to_bits().to_string()));
    assert_eq!(f32.refinement_key(), None);
    // refined exactly when near a threshold in logits
    let probe = [
        "Join the fight, brothers, the hour has come.",
        "Gagnez 5000 euros par semaine, cliquez ici !",
        "Der Stadtrat hat gestern den Haushalt beschlossen.",
        "Погода завтра будет солнечной.",
        "Free prizes for everyone who clicks this link today!",
    ];
    let refined = score_rows(&auto, &probe);
    let plain = score_rows(&prototypes_on(Precision::Int8, None), &probe);
    let f32_probe = score_rows(&f32, &probe);
    for ((r, q), f) in refined.iter().zip(&plain).zip(&f32_probe) {
        let near = q.iter().enumerate().any(|(l, &x)| {
            (logit(x) - logit(auto.threshold(l, None))).abs() < f64::from(bounds[l])
        });
        assert_eq!(r, if near { f } else { q }, "near {near}");
    }
    // a second start: the same bounds, from the cache
    let cache = model.join(".triage-cache");
    let errors: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("int8-errors-"))
        .collect();
    assert!(!errors.is_empty(), "no error cache in {}", cache.display());
    let again = prototypes_in(model, Precision::Int8, Some(Refine::Auto));
    assert_eq!(again.refine_bounds(), &bounds[..]);
    // a damaged cache is measured again, never used
    for p in &errors {
        let mut bytes = std::fs::read(p).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0x40;
        std::fs::write(p, &bytes).unwrap();
    }
    let repaired = prototypes_in(model, Precision::Int8, Some(Refine::Auto));
    assert_eq!(repaired.refine_bounds(), &bounds[..]);
}

/// Links (or copies, across file systems) the model files under `from` into `to`, folders
/// included, leaving out hidden files and folders (the caches).
#[cfg(feature = "ort")]
fn link_files(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir(&target).unwrap();
            link_files(&e.path(), &target);
        } else if std::fs::hard_link(e.path(), &target).is_err() {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[cfg(feature = "ort")]
#[test]
fn int8_calibration_and_graph_are_cached_and_a_damaged_cache_is_made_again() {
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
    let mut files = cache_files();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    // the int8 graph made with the ranges, and the ranges
    let (graph, ranges) = (&files[0], &files[1]);
    let graph_bytes = std::fs::read(graph).unwrap();
    let cached = std::fs::read(ranges).unwrap();
    assert!(graph_bytes.starts_with(b"triage int8 graph 1\n"));
    assert!(cached.starts_with(b"triage int8 ranges 1\n"));
    let damage = |path: &std::path::Path, bytes: &[u8]| {
        let mut bad = bytes.to_vec();
        let n = bad.len();
        bad[n - 2] ^= 0x40;
        std::fs::write(path, &bad).unwrap();
        bad
    };
    // the second start reads the graph: the same embeddings, bit for bit, and the ranges are
    // not even read (damaged, they stay as they are)
    let bad_ranges = damage(ranges, &cached);
    let second = embed();
    assert_eq!(first, second);
    assert_eq!(std::fs::read(graph).unwrap(), graph_bytes);
    assert_eq!(std::fs::read(ranges).unwrap(), bad_ranges);
    // a damaged graph is not used: written again from the (damaged, so measured again)
    // ranges: the same embeddings, both files sound again
    damage(graph, &graph_bytes);
    assert_eq!(embed(), first);
    assert_eq!(std::fs::read(ranges).unwrap(), cached);
    assert_eq!(std::fs::read(graph).unwrap(), graph_bytes);
    // a damaged graph with sound ranges: the graph is written from the cached ranges
    damage(graph, &graph_bytes);
    assert_eq!(embed(), first);
    assert_eq!(std::fs::read(graph).unwrap(), graph_bytes);
    // cut short: the same
    std::fs::write(graph, &graph_bytes[..graph_bytes.len() / 2]).unwrap();
    assert_eq!(embed(), first);
    assert_eq!(std::fs::read(graph).unwrap(), graph_bytes);
    // another number format of the same model does not touch it
    ClassifierBuilder::new(&model)
        .backend(Backend::Ort)
        .ort_library(crate::ort_path())
        .precision(Precision::F32)
        .build_embedder()
        .unwrap();
    assert_eq!(cache_files().len(), 2);
}
