#!/usr/bin/env bash
# How long triage takes to start (issue 22): `triage label` of the sample dump's first 3
# records, run N times for each engine in turn (alternating, so that the machine's drift hits
# all alike), timing from the spawn to the "ready to label" log line (model, head, banks and
# language detector loaded; for the default engine its int8 graph and error bound read from
# `<model>/.triage-cache/`) and to the end of the whole command (labelling, output, the
# manifest's SHA-256 of every model file). The first run of the default engine fills the cache
# and is left out. Prints a Markdown table of the medians; names the CPU.
#
#   scripts/perf/start.sh [N]     (default 7)
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-7}"
eval "$(scripts/setup_onnxruntime.sh)"
cargo build --locked --release --quiet
bin="$PWD/${CARGO_TARGET_DIR:-target}/release/triage"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
head -3 tests/data/sample.jsonl > "$work/three.jsonl"
"$bin" label "$work/three.jsonl" -o "$work/out.jsonl" --progress never 2>/dev/null
python3 - "$bin" "$work" "$n" <<'PY'
import datetime, os, statistics, subprocess, sys, time
bin, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
engines = {
    "default (ort int8, refine auto)": [],
    "candle f32 (--backend candle --dtype f32)": ["--backend", "candle", "--dtype", "f32"],
}
times = {k: ([], []) for k in engines}
env = dict(os.environ, RUST_LOG="triage=debug", NO_COLOR="1")
for _ in range(n):
    for name, extra in engines.items():
        t0 = time.time()
        p = subprocess.run([bin, "label", f"{work}/three.jsonl", "-o", f"{work}/out.jsonl",
                            "--progress", "never", *extra], env=env, capture_output=True, text=True)
        t1 = time.time()
        line = next(l for l in p.stderr.splitlines() if "ready to label" in l)
        stamp = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        times[name][0].append(stamp - t0)
        times[name][1].append(t1 - t0)
cpu = open("/proc/cpuinfo").read()
model = next(l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("model name"))
flags = sorted({f for f in cpu.split() if f.startswith("avx512")}) or ["avx2 only"]
print(f"CPU: {model}, {' '.join(flags)}; {n} runs each, alternating; medians (min-max)\n")
print("| engine | ready to label (s) | whole command (s) |")
print("|---|---:|---:|")
for name, (ready, total) in times.items():
    f = lambda v: f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
    print(f"| {name} | {f(ready)} | {f(total)} |")
PY
