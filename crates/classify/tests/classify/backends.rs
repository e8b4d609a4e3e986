//! The `tch` backend (libtorch through rust-bert) against candle: the same model directories
//! give the same logits and pooled embeddings within 1e-4 in f32. Without the feature, asking
//! for it is a clear error.

use triage_classify::Backend;
#[cfg(feature = "tch")]
use triage_classify::{Classifier, ClassifierBuilder, Precision};

#[cfg(not(feature = "tch"))]
#[test]
fn the_tch_backend_without_the_feature_is_a_clear_error() {
    let msg = crate::refusal(
        crate::tiny_checkpoint("tiny-bert-cls").backend(Backend::Tch),
        "no tch backend in this build",
    );
    assert!(
        msg.contains("--features tch") && msg.contains("setup_libtorch"),
        "{msg}"
    );
}

#[test]
fn bf16_on_candle_is_refused() {
    let err = crate::refusal(
        crate::tiny_checkpoint("tiny-bert-cls")
            .backend(Backend::Candle)
            .ort_library(crate::ort_path())
            .precision(triage_classify::Precision::Bf16),
        "bf16 is refused on candle",
    );
    assert!(
        err.to_string().contains("bf16 needs the tch backend"),
        "{err}"
    );
    // and it names the other way to get bf16
    assert!(err.to_string().contains("--device cuda"), "{err}");
}

#[cfg(feature = "tch")]
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max)
}

#[cfg(feature = "tch")]
fn checkpoint(name: &str, backend: Backend) -> Classifier {
    crate::tiny_checkpoint(name)
        .backend(backend)
        .ort_library(crate::ort_path())
        .build()
        .unwrap()
}

#[cfg(feature = "tch")]
const TEXTS: &[&str] = &[
    "Join the fight, brothers, the hour has come.",
    "Gana dinero fácil desde casa, haz clic aquí.",
    "Le conseil municipal a voté le budget hier soir.",
    "انضموا إلى القتال",
    "短い",
    "A somewhat longer sentence that runs over several tokens to exercise the padding and the \
     attention mask of both engines in one batch with shorter texts.",
];

#[cfg(feature = "tch")]
#[test]
fn checkpoint_logits_agree_on_bert_and_xlm_roberta() {
    for name in ["tiny-bert-cls", "tiny-xlmr-cls"] {
        let candle = checkpoint(name, Backend::Candle)
            .checkpoint_logits(TEXTS)
            .unwrap();
        let tch = checkpoint(name, Backend::Tch)
            .checkpoint_logits(TEXTS)
            .unwrap();
        let d = max_diff(&candle, &tch);
        // XLM-R's layer_norm_eps is 1e-5 and rust-bert always uses 1e-12: measured ~5e-5 here
        assert!(d < 1e-4, "{name}: largest logit difference {d}");
        eprintln!("{name}: largest logit difference candle vs tch {d:e}");
    }
}

#[cfg(feature = "tch")]
#[test]
fn pooled_embeddings_of_the_default_model_agree() {
    if !crate::have_e5() {
        return;
    }
    let dir = crate::e5_dir();
    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let build = |b: Backend, p: Precision| {
        ClassifierBuilder::new(&dir)
            .prefix("query: ")
            .backend(b)
            .ort_library(crate::ort_path())
            .precision(p)
            .build_embedder()
            .unwrap()
    };
    let candle = build(Backend::Candle, Precision::F32).embed(&refs).unwrap();
    let tch = build(Backend::Tch, Precision::F32).embed(&refs).unwrap();
    let d = max_diff(&candle, &tch);
    assert!(d < 1e-4, "largest embedding difference {d}");
    eprintln!("e5-small: largest embedding difference candle vs tch {d:e}");
    // bf16 is close but not the same
    let bf16 = build(Backend::Tch, Precision::Bf16).embed(&refs).unwrap();
    for (a, b) in candle.iter().zip(&bf16) {
        let c = crate::cosine(a, b);
        assert!(c > 0.99, "bf16 cosine {c}");
    }
    let d = max_diff(&candle, &bf16);
    assert!(
        d > 1e-5,
        "bf16 gave f32's numbers ({d}): is it really bf16?"
    );
    eprintln!("e5-small: largest embedding difference f32 vs bf16 {d:e}");
}

/// A copy of the tiny BERT checkpoint whose weights `edit` changed.
#[cfg(feature = "tch")]
fn edited_copy(
    edit: impl Fn(&mut std::collections::HashMap<String, candle_core::Tensor>),
) -> tempfile::TempDir {
    let src = crate::root().join("tests/data/models/tiny-bert-cls");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension().is_none_or(|e| e != "safetensors") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

#[cfg(feature = "tch")]
#[test]
fn tch_reads_f16_weights_and_names_a_missing_or_misshapen_tensor() {
    let builder = |dir: &std::path::Path| {
        ClassifierBuilder::new(dir).labels(triage_classify::LabelsConfig {
            mode: triage_classify::Mode::Checkpoint,
            ..Default::default()
        })
    };
    // every tensor stored as f16: both engines widen the same values to f32
    let half = edited_copy(|t| {
        for v in t.values_mut() {
            *v = v.to_dtype(candle_core::DType::F16).unwrap();
        }
    });
    let logits = |b: Backend| {
        builder(half.path())
            .backend(b)
            .ort_library(crate::ort_path())
            .build()
            .unwrap()
            .checkpoint_logits(TEXTS)
            .unwrap()
    };
    let (candle, tch) = (logits(Backend::Candle), logits(Backend::Tch));
    let d = max_diff(&candle, &tch);
    assert!(d < 1e-4, "f16 weights: largest logit difference {d}");
    // and they are not the f32 checkpoint's logits (the f16 rounding shows)
    let f32 = checkpoint("tiny-bert-cls", Backend::Candle)
        .checkpoint_logits(TEXTS)
        .unwrap();
    assert!(max_diff(&candle, &f32) > 0.0);

    let name = "bert.encoder.layer.0.output.dense.bias";
    let missing = edited_copy(|t| {
        assert!(t.remove(name).is_some(), "the tiny model has {name}");
    });
    let err = crate::refusal(
        builder(missing.path()).backend(Backend::Tch),
        "a missing tensor",
    );
    assert!(
        err.contains("tensors missing from the weights") && err.contains(name),
        "{err}"
    );

    let misshapen = edited_copy(|t| {
        let b = t.get(name).unwrap();
        let n = b.dims1().unwrap();
        t.insert(name.into(), b.narrow(0, 0, n - 1).unwrap());
    });
    let err = crate::refusal(
        builder(misshapen.path()).backend(Backend::Tch),
        "a wrong shape",
    );
    assert!(
        err.contains(name) && err.contains("in the weights"),
        "{err}"
    );
}
