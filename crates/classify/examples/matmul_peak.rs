//! Matrix-multiply micro-benchmark: the FLOP/s the cores reach on f32 products (candle, and
//! libtorch f32/bf16 when built with `--features tch`; ONNX Runtime f32 and int8 with
//! `--features ort` and `ORT_DYLIB_PATH` set), against which the encoder's figures in
//! `scripts/perf/bench.sh` are compared. ONNX Runtime's products are the encoder graph's own
//! (`x @ w.T + b`; in int8 with the quantization of `x` included).
//!
//! Usage: `cargo run --release -p triage-classify --example matmul_peak [--features tch,ort]`
use std::time::Instant;

use candle_core::{Device, Tensor};

/// (m, k, n): a square product, and the encoder's own shapes for a 128-token window of a
/// 384-wide model (the QKV, FFN-in and FFN-out products).
const SHAPES: &[(usize, usize, usize)] = &[
    (1024, 1024, 1024),
    (128, 384, 1152),
    (128, 384, 1536),
    (128, 1536, 384),
];

fn best<F: FnMut()>(mut f: F, flops: f64) -> f64 {
    f();
    // repetitions for about 0.2 s, then the best of five such measurements
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-6);
    let reps = ((0.2 / once) as usize).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

fn main() -> candle_core::Result<()> {
    println!("threads {}", rayon::current_num_threads());
    println!("{:<22} {:>16} {:>10}", "engine", "m x k x n", "GFLOP/s");
    for &(m, k, n) in SHAPES {
        let flops = 2.0 * (m * k * n) as f64;
        let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
        let g = best(|| drop(a.matmul(&b).unwrap()), flops);
        println!(
            "{:<22} {:>16} {g:>10.1}",
            "candle f32",
            format!("{m}x{k}x{n}")
        );
        #[cfg(feature = "tch")]
        for (name, kind) in [
            ("libtorch f32", tch::Kind::Float),
            ("libtorch bf16", tch::Kind::BFloat16),
        ] {
            let _guard = tch::no_grad_guard();
            let a = tch::Tensor::randn([m as i64, k as i64], (kind, tch::Device::Cpu));
            let b = tch::Tensor::randn([k as i64, n as i64], (kind, tch::Device::Cpu));
            let g = best(|| drop(a.matmul(&b)), flops);
            println!("{name:<22} {:>16} {g:>10.1}", format!("{m}x{k}x{n}"));
        }
        #[cfg(feature = "ort")]
        if std::env::var_os("ORT_DYLIB_PATH").is_some() {
            let x = a.flatten_all()?.to_vec1::<f32>()?;
            for (name, int8) in [("onnxruntime f32", false), ("onnxruntime int8", true)] {
                let threads = rayon::current_num_threads();
                let library = std::path::PathBuf::from(std::env::var_os("ORT_DYLIB_PATH").unwrap());
                let mut lin = triage_classify::OrtLinear::new(
                    k,
                    n,
                    int8,
                    threads,
                    &library,
                    triage_classify::Int8Kernels::Auto,
                )
                .map_err(candle_core::Error::wrap)?;
                let g = best(|| lin.run(&x, m).unwrap(), flops);
                println!("{name:<22} {:>16} {g:>10.1}", format!("{m}x{k}x{n}"));
            }
        }
    }
    Ok(())
}
