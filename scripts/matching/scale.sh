#!/usr/bin/env bash
# A bank at scale, measured (reports/matching/scale.md): a 1,000,000-item bank built (time,
# peak memory, size on disk) and loaded; labelling a dump with and without it; and the bank's
# MinHash LSH against Python datasketch's MinHashLSH on the same 100,000 items and parameters.
# Needs scripts/setup.sh first (the model, the UDHR package). Takes about 15 minutes on 2 cores.
#   scripts/matching/scale.sh [--items N] [--records N] [--runs N]
# (--runs: labelling runs with and without the bank, alternating; default 5, medians reported:
# on a shared 2-core machine single runs vary by 20%)
set -euo pipefail
cd "$(dirname "$0")/../.."
items=1000000 records=1000 runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --items) items=$2; shift 2 ;;
    --records) records=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--items N] [--records N] [--runs N]" >&2; exit 2 ;;
  esac
done
work=.cache/matching
mkdir -p "$work" reports/matching
udhr=.cache/starter/udhr/package
[ -d "$udhr" ] || { echo "$udhr is missing: run scripts/setup.sh" >&2; exit 2; }
cargo build --release -q --bin triage
cargo build --release -q -p triage-bank --example lsh_bench
bin=target/release/triage
if [ ! -s "$work/items-$items.jsonl" ]; then
  python3 scripts/matching/make_items.py "$udhr" "$work/items-$items.jsonl" "$work/queries-$items.jsonl" --items "$items"
fi
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q datasketch==1.6.5 numpy==2.1.3 scipy==1.14.1
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
avx=$(grep -o 'avx512[a-z_]*\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)
bank=$work/bank-$items
rm -rf "$bank"
measure() { # prints "seconds peak_MiB" of a command
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || { cat "$work/stderr.txt" >&2; return 1; }
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$work/time.txt"
}
read -r build_s build_mib < <(measure "$bin" bank build "$work/items-$items.jsonl" -o "$bank" --no-embeddings)
disk_mib=$(du -sm "$bank" | cut -f1)
read -r load_s load_mib < <(measure "$bin" bank info "$bank")
# labelling with and without the bank, alternating, twice
dump=$work/dump-$records.jsonl
[ -s "$dump" ] || python3 scripts/perf/make_dump.py "$udhr" "$dump" --records "$records" --seed 7 2>/dev/null
declare -a plain with
for run in $(seq "$runs"); do
  read -r s m < <(measure "$bin" label "$dump" -o "$work/plain.jsonl" --progress never); plain+=("$s $m")
  read -r s m < <(measure "$bin" label "$dump" -o "$work/with.jsonl" --progress never --bank "$bank"); with+=("$s $m")
done
matched=$(grep -c '"matches":\[{' "$work/with.jsonl" || true)
# the same labels with and without the bank
python3 - "$work/plain.jsonl" "$work/with.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
for x, y in zip(a, b):
    y.pop("matches", None)
    # the configuration id names the banks too
    x.pop("config", None); y.pop("config", None)
    assert x == y, (x["id"], "labels differ with the bank")
assert len(a) == len(b)
PY
rust=$(for i in 1 2 3; do target/release/examples/lsh_bench "$work/items-$items.jsonl" "$work/queries-$items.jsonl" --limit 100000; done)
py=$("$work/venv/bin/python" scripts/matching/datasketch_lsh.py "$work/items-$items.jsonl" "$work/queries-$items.jsonl" --limit 100000)
python3 - "$items" "$records" "$build_s" "$build_mib" "$disk_mib" "$load_s" "$load_mib" "$matched" "$cpu" "$avx" \
  "$runs" "${plain[@]}" "${with[@]}" "$py" $rust <<'PY' > reports/matching/scale.md
import json, sys, statistics
a = sys.argv[1:]
items, records, build_s, build_mib, disk, load_s, load_mib, matched, cpu, avx = a[:10]
runs = int(a[10])
plain = [tuple(map(float, x.split())) for x in a[11:11 + runs]]
withb = [tuple(map(float, x.split())) for x in a[11 + runs:11 + 2 * runs]]
py = json.loads(a[11 + 2 * runs])
rust = [json.loads(x) for x in a[12 + 2 * runs:]]
med = lambda k: statistics.median(r[k] for r in rust)
p = statistics.median(x[0] for x in plain)
w = statistics.median(x[0] for x in withb)
print(f"""# A bank at scale

Made by `scripts/matching/scale.sh` on {cpu} (2 cores; instructions: {avx or 'none of AVX2, AVX-512'}).
Items: `scripts/matching/make_items.py` ({int(items):,} items of 25 to 45 words drawn at random from
one language's UDHR vocabulary, the 15 languages in turn, with a serial number; about 250 characters;
queries: every 100th item cut by 20%, upper-cased, with a link line added).

| | figure |
|---|---|
| `triage bank build --no-embeddings`, {int(items):,} items | {float(build_s):.1f} s, peak memory {build_mib} MiB |
| the bank on disk | {disk} MiB |
| loading it (`triage bank info`: every file hashed, the tables read) | {float(load_s):.1f} s, peak memory {load_mib} MiB |
| `triage label` of a {records}-record dump (`scripts/perf/make_dump.py --seed 7`), default engine, without a bank | {p:.1f} s (median of {runs} runs: {', '.join(f'{x[0]:.1f}' for x in plain)}), peak {max(x[1] for x in plain):.0f} MiB |
| ... with `--bank` of the {int(items):,} items | {w:.1f} s (median of {runs} runs, alternating with the above: {', '.join(f'{x[0]:.1f}' for x in withb)}), peak {max(x[1] for x in withb):.0f} MiB: **{100*(w/p-1):+.1f}%** ({matched} records matched; labels unchanged, checked) |

Whole-process wall times: with the bank they include its load ({float(load_s):.1f} s); without the load the
bank adds {100*((w-float(load_s))/p-1):+.1f}% to this run, and the load is paid once per run whatever the dump's size.

## Against Python datasketch MinHashLSH

The first 100,000 items and their {rust[0]['queries']} queries; both with 64 permutations, 16 bands of 4 rows, 5-character
shingles, a match at an estimated Jaccard similarity of 0.35, one thread. datasketch gets the text lower-cased with
whitespace collapsed (it has no normalisation); triage's figures include its whole normalisation
(`crates/bank/examples/lsh_bench.rs`, median of 3 runs; `scripts/matching/datasketch_lsh.py`, 1 run).

| | build (items/s) | query (queries/s) | recall |
|---|---|---|---|
| datasketch 1.6.5 | {py['items_per_s']:,.0f} | {py['queries_per_s']:,.0f} | {py['recall']:.3f} |
| triage-bank (near) | {med('items_per_s'):,.0f} | {med('queries_per_s'):,.0f} | {statistics.median(r['recall'] for r in rust):.3f} |
| ratio | **{med('items_per_s')/py['items_per_s']:.1f}x** | **{med('queries_per_s')/py['queries_per_s']:.1f}x** | |

triage's query time, of which normalising and signing the text: {1000*statistics.median(r['of_which_normalise_and_sign_s'] for r in rust)/rust[0]['queries']:.3f} ms a query.
With the contained look-up on as well (the default thresholds; datasketch has no equivalent): {statistics.median(r['queries']/r['default_thresholds']['query_s'] for r in rust):,.0f} queries/s.
""")
PY
cat reports/matching/scale.md
