#!/usr/bin/env bash
# The int8 engine's tests (and the bank's) on an x86-64 CPU without AVX-512 or VNNI, emulated: QEMU's user-mode
# emulator (Debian's qemu-user, pinned) runs the test binary as an AMD EPYC Zen 3 (EPYC-Milan:
# AVX2 and FMA, no AVX-512), so the CPUID that Rust's feature detection and ONNX Runtime's
# kernel choice read is that CPU's. What runs there: u8 x s8 kernels that sum pairs in 16 bits
# (and saturate), triage's own AVX-512 operators left out, `int8_kernels = "auto"` choosing
# u8 x u8. Correctness only: emulated timings mean nothing.
#
#   eval "$(scripts/setup_onnxruntime.sh)"; scripts/test_avx2.sh [test filter and libtest options]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ORT_DYLIB_PATH:?run eval \"\$(scripts/setup_onnxruntime.sh)\" first}"
qemu_version="1:7.2+dfsg-7+deb12u18+b3"
if ! command -v qemu-x86_64 >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "qemu-user=$qemu_version" >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends qemu-user >&2; }
fi
cpu="${TRIAGE_EMULATED_CPU:-EPYC-Milan}"
# QEMU warns once per CPU feature its TCG does not emulate (none that this code uses)
runner="$PWD/target/qemu-runner.sh"
mkdir -p target
cat > "$runner" <<SH
#!/bin/sh
exec qemu-x86_64 -cpu $cpu "\$@" 2> >(grep -v "TCG doesn't support requested feature" >&2)
SH
sed -i '1s|.*|#!/usr/bin/env bash|' "$runner"
chmod +x "$runner"
echo "test_avx2: the ort backend's unit tests on an emulated $cpu (no AVX-512)" >&2
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$runner" TRIAGE_EXPECT_NO_AVX512=1 \
  cargo test --locked -p triage-classify --features ort --lib -- "${@:-backend::ort}"
# and, in a whole run, the bank's unit tests: its 8-bit dot products (semantic look-up, items'
# levels) take their AVX2 path there
if [ $# -eq 0 ]; then
  echo "test_avx2: the bank's unit tests on an emulated $cpu (no AVX-512)" >&2
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$runner" TRIAGE_EXPECT_NO_AVX512=1 \
    cargo test --locked -p triage-bank --lib
fi
