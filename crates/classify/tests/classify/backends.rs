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
    let dir = crate::e5_dir();
    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let build = |b: Backend, p: Precision| {
        ClassifierBuilder::new(&dir)
            .prefix("query: ")
            .backend(b)
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
