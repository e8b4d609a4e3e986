#!/usr/bin/env bash
# Peak resident memory of `triage label` on generated dumps of 10k, 100k and 1M records: it must
# not grow with the dump. Uses the tiny test checkpoint so that a million records take minutes,
# not a day; the pipeline (reader, channels, writer, checkpoints) is the same for any model.
#   scripts/memory_bench.sh [sizes...]          (TRIAGE_LABEL_ARGS adds flags, e.g. --no-dedupe)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[model]\nname = "%s/tests/data/models/tiny-bert-cls"\n[labels]\nmode = "checkpoint"\n' "$PWD" > "$work/w.toml"
printf '%8s %10s %12s %12s %14s\n' records "input MiB" "wall s" records/s "peak RSS MiB"
# (each run also fsyncs its outputs and writes a checkpoint every 256 records)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
for n in "${sizes[@]}"; do
  python3 - "$n" "$work/dump.jsonl" <<'PY'
import random, sys
n, path = int(sys.argv[1]), sys.argv[2]
words = "join the fight now free money click this link council approved budget weather is sunny today".split()
rnd = random.Random(7)
with open(path, "w") as f:
    for i in range(n):
        # mostly distinct texts (so the duplicate cache fills up to its bound), varied lengths
        t = " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 40)))
        f.write('{"id": "%d", "text": "%s %d"}\n' % (i, t, i))
PY
  size=$(du -m "$work/dump.jsonl" | cut -f1)
  start=$(date +%s.%N)
  status=0
  /usr/bin/time -f '%M' -o "$work/rss" ./target/release/triage label "$work/dump.jsonl" -o "$work/out.jsonl" \
    -c "$work/w.toml" --progress never ${TRIAGE_LABEL_ARGS:-} 2>"$work/stderr" || status=$?
  end=$(date +%s.%N)
  rss=$(( $(tail -n 1 "$work/rss") / 1024 ))
  if [ "$status" -ne 0 ]; then echo "triage exited $status:"; tail -n 5 "$work/stderr"; fi
  awk -v n="$n" -v s="$size" -v a="$start" -v b="$end" -v r="$rss" \
    'BEGIN { printf "%8d %10d %12.1f %12.0f %14d\n", n, s, b - a, n / (b - a), r }'
done
