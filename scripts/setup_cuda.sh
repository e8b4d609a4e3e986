#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs, from PyPI alone: CUDA 13.0's compiler and
# headers (nvidia-cuda-nvcc, -crt, -cccl, -runtime, nvidia-nvvm) and the libraries candle links
# (cuBLAS, cuRAND, NVRTC), laid out as one toolkit folder. CPU builds never need any of it.
#
#   eval "$(scripts/setup_cuda.sh)"     # prints the exports for the build
#   cargo build --release --features cuda
#
# CUDA 13.0 because the H200 machines this was written for have a 13.0 driver (580): the PTX
# that candle's kernels are compiled to must not be newer than the driver. CUDA_COMPUTE_CAP
# (default 90, Hopper) picks the target of the kernels built ahead of time.
#
# candle links the driver library (libcuda.so.1) at build time, and no wheel carries it: the
# driver comes with the GPU. So this makes a stub libcuda.so with the right soname, whose
# functions are never called: at run time the loader takes the machine's real libcuda.so.1.
#
# The toolkit folder is $TRIAGE_CACHE/cuda-13.0 (about 1.5 GB); the wheels are removed.
# Progress goes to stderr; stdout is only the exports.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
dir="$cache/cuda-13.0"
if [ ! -x "$dir/bin/nvcc" ] || [ ! -e "$dir/stub-rt/libcuda.so.1" ] || [ ! -f "$dir/include/nv/target" ]; then
  wheels="$cache/wheels/cuda-13.0"
  mkdir -p "$wheels"
  echo "cuda: downloading CUDA 13.0's compiler and libraries from PyPI (about 680 MB)" >&2
  python3 -m pip download --no-deps --disable-pip-version-check --quiet --only-binary=:all: \
    -d "$wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 >&2
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  python3 - "$wheels" "$dir.tmp" <<'PY' >&2
import glob, os, stat, sys, zipfile
wheels, out = sys.argv[1:]
for whl in sorted(glob.glob(os.path.join(wheels, "nvidia_*.whl"))):
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            name = info.filename
            if not name.startswith("nvidia/cu13/") or name.endswith("/"):
                continue
            dest = os.path.join(out, name[len("nvidia/cu13/"):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                dst.write(src.read())
            mode = info.external_attr >> 16
            if mode & stat.S_IXUSR or "/bin/" in "/" + name:
                os.chmod(dest, 0o755)
PY
  lib="$dir.tmp/lib"
  # Unversioned names for the linker (the wheels ship only the sonames).
  for so in cublas cublasLt nvrtc cudart; do ln -sf "lib$so.so.13" "$lib/lib$so.so"; done
  ln -sf libcurand.so.10 "$lib/libcurand.so"
  # The driver stub: every cu* function that cuda.h names, answering CUDA_ERROR_NO_DEVICE (100),
  # soname libcuda.so.1.
  grep -oE '\bcu[A-Z][A-Za-z0-9_]*' "$dir.tmp/include/cuda.h" | sort -u |
    awk '{print "int " $1 "(void) { return 100; }"}' >"$lib/cuda_stub.c"
  gcc -shared -fPIC -w -Wl,-soname,libcuda.so.1 -o "$lib/libcuda.so" "$lib/cuda_stub.c"
  rm "$lib/cuda_stub.c"
  # For running a CUDA build on a machine without a driver (its CPU path, or the clear error of
  # --device cuda): stub-rt/libcuda.so.1. Never put it on the library path where a GPU is.
  mkdir -p "$dir.tmp/stub-rt"
  ln -s ../lib/libcuda.so "$dir.tmp/stub-rt/libcuda.so.1"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  rm -rf "$wheels"
  echo "cuda: installed $dir" >&2
fi
echo "export CUDA_HOME='$dir'"
echo "export PATH='$dir/bin':\"\$PATH\""
echo "export CUDA_COMPUTE_CAP=\"\${CUDA_COMPUTE_CAP:-90}\""
echo "export CUDARC_CUDA_VERSION=13000"
