//! The GPU device (`--device cuda`, candle's CUDA kernels, a build with the feature `cuda`).
//!
//! In every build: asking for a GPU is checked before anything loads. In a CUDA build (made with
//! scripts/setup_cuda.sh and run on a machine with an NVIDIA GPU: scripts/gpu/), the encoder on
//! the GPU against the values Python `transformers` computed, as the CPU tests check it: the
//! tiny checkpoints' logits and the default model's embeddings in f32, and in bf16 within a
//! documented error. These fail, never skip, on a CUDA build without a GPU.

use triage_classify::{Backend, ClassifierBuilder, DeviceSpec};

fn tiny() -> ClassifierBuilder {
    crate::tiny_checkpoint("tiny-bert-cls")
}

#[test]
fn device_names_parse_and_print() {
    assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
    assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
    assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
    for bad in ["gpu", "cuda:", "cuda:x", "CUDA", "cuda:-1"] {
        let err = bad.parse::<DeviceSpec>().unwrap_err();
        assert!(err.contains(bad) && err.contains("cuda:N"), "{bad}: {err}");
    }
    assert_eq!(DeviceSpec::Cuda(0).to_string(), "cuda:0");
    assert_eq!(DeviceSpec::Cpu.to_string(), "cpu");
}

#[test]
fn only_candle_runs_on_a_gpu() {
    assert!(!tiny().build().unwrap().on_gpu());
    for backend in [Backend::Tch, Backend::Ort] {
        let msg = crate::refusal(
            tiny().backend(backend).device(DeviceSpec::Cuda(0)),
            "no GPU for this backend",
        );
        assert!(
            msg.contains("only the candle backend") && msg.contains("cuda:0"),
            "{msg}"
        );
    }
}

/// The GPU's way of batching (passes of up to 65,536 tokens in turn, each pooled and scored at
/// once), run on the CPU: the same scores as the CPU's way, for both scorers and long texts.
#[test]
fn gpu_style_passes_give_the_cpu_passes_scores() {
    if !crate::have_e5() {
        return;
    }
    let r = crate::e5::reference();
    let mut texts: Vec<String> = r.texts.iter().map(|t| t.text.clone()).collect();
    // long texts: several windows each, of other lengths than the short ones
    texts.push(texts.join(" ").repeat(6));
    texts.push(texts[..5].join(" ").repeat(4));
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let e5 = |gpu: bool| {
        ClassifierBuilder::new(crate::e5_dir())
            .prefix(&r.prefix)
            .labels(crate::e5::labels())
            .gpu_passes(gpu)
            .build()
            .unwrap()
    };
    let tiny_xlmr = |gpu: bool| {
        crate::tiny_checkpoint("tiny-xlmr-cls")
            .gpu_passes(gpu)
            .build()
            .unwrap()
    };
    for (name, cpu, gpu) in [
        ("e5 prototypes", e5(false), e5(true)),
        ("tiny-xlmr checkpoint", tiny_xlmr(false), tiny_xlmr(true)),
    ] {
        let prepared: Vec<_> = texts.iter().map(|t| cpu.prepare(t).unwrap()).collect();
        assert!(
            prepared.iter().any(|p| p.windows.len() > 2),
            "{name}: no long text"
        );
        let a = cpu.window_scores(&prepared).unwrap();
        let b = gpu.window_scores(&prepared).unwrap();
        assert_eq!(a.len(), b.len());
        let mut worst = 0f32;
        for (ta, tb) in a.iter().zip(&b) {
            assert_eq!(ta.len(), tb.len(), "{name}: windows");
            for (wa, wb) in ta.iter().zip(tb) {
                assert_eq!(wa.len(), wb.len());
                for (x, y) in wa.iter().zip(wb) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
        assert!(worst < 1e-5, "{name}: largest score difference {worst}");
        let embeddings = |c: &triage_classify::Classifier| c.embed(&texts).unwrap();
        if name.starts_with("e5") {
            for (x, y) in embeddings(&cpu).iter().zip(&embeddings(&gpu)) {
                assert!(crate::cosine(x, y) > 0.99999, "{name}: embeddings");
            }
        }
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn a_gpu_without_the_feature_is_a_clear_error() {
    assert_eq!(triage_classify::CUDA_BUILT, cfg!(feature = "cuda"));
    let msg = crate::refusal(tiny().device(DeviceSpec::Cuda(0)), "no CUDA in this build");
    assert!(
        msg.contains("--features cuda") && msg.contains("scripts/setup_cuda.sh"),
        "{msg}"
    );
}

#[cfg(feature = "cuda")]
mod gpu {
    use triage_classify::{Activation, Backend, ClassifierBuilder, DeviceSpec, Precision};

    use crate::checkpoint::check_on_device;
    use crate::{cosine, e5_dir};

    const GPU: DeviceSpec = DeviceSpec::Cuda(0);

    #[test]
    fn checkpoint_logits_match_transformers_on_the_gpu() {
        for (name, activation) in [
            ("tiny-bert-cls", Activation::Softmax),
            ("tiny-xlmr-cls", Activation::Sigmoid),
        ] {
            check_on_device(name, activation, Backend::Candle, Precision::F32, GPU, 1e-4);
        }
    }

    #[test]
    fn default_model_embeddings_match_transformers_on_the_gpu() {
        let r = crate::e5::reference();
        let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
        let build = |p: Precision| {
            ClassifierBuilder::new(e5_dir())
                .prefix(&r.prefix)
                .device(GPU)
                .precision(p)
                .build_embedder()
                .unwrap()
        };
        let on_gpu = build(Precision::F32);
        assert!(on_gpu.on_gpu());
        let f32 = on_gpu.embed(&texts).unwrap();
        let bf16 = build(Precision::Bf16).embed(&texts).unwrap();
        let mut worst_bf16 = 1f32;
        for ((t, a), h) in r.texts.iter().zip(&f32).zip(&bf16) {
            // f32 on the GPU: cuBLAS sums in another order than the CPU, so not bit for bit
            let c = cosine(a, &t.embedding);
            assert!(c >= 0.9999, "{} f32 on the GPU: cosine {c}", t.lang);
            let c = cosine(h, &t.embedding);
            assert!(c >= 0.99, "{} bf16 on the GPU: cosine {c}", t.lang);
            worst_bf16 = worst_bf16.min(c);
        }
        // bf16 really is bf16: not f32's numbers
        assert!(worst_bf16 < 0.99999, "bf16 gave f32's embeddings");
        eprintln!("e5-small on the GPU: lowest bf16 cosine vs transformers {worst_bf16}");
    }
}
