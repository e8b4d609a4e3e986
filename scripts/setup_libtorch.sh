#!/usr/bin/env bash
# Installs a CPU-only libtorch 2.4.1 for the `tch` backend (rust-bert 0.23 / tch 0.17), cut out
# of the PyPI `torch==2.4.1` wheel: nothing is downloaded from any host but PyPI (tch's own
# download step cannot work on machines without internet).
#
#   eval "$(scripts/setup_libtorch.sh)"     # prints the exports the build and the tests need
#
# It takes torch/include and torch/lib/{libtorch_cpu,libc10,libgomp} from the wheel, plus the
# two CUDA runtime libraries libtorch_cpu.so links against (from the nvidia-* wheels of that
# torch), and an empty libtorch.so: torch-sys always links -ltorch, and without
# libtorch_cuda.so beside it the link is CPU-only. The wheels are removed once the
# cut is made; the result is cached in $TRIAGE_CACHE/libtorch-2.4.1 (about 530 MB).
# Progress goes to stderr; stdout is only the exports.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
dir="$cache/libtorch-2.4.1"
if [ ! -f "$dir/.complete" ]; then
  mkdir -p "$cache/wheels"
  echo "libtorch: downloading the torch 2.4.1 wheel from PyPI (about 800 MB, cached)" >&2
  python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$cache/wheels" \
    torch==2.4.1 nvidia-cuda-runtime-cu12==12.1.105 nvidia-cuda-cupti-cu12==12.1.105 >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/lib"
  python3 - "$cache/wheels" "$dir.tmp" <<'PY' >&2
import glob, os, re, shutil, sys, zipfile
wheels, out = sys.argv[1:]
def wheel(pattern):
    found = sorted(glob.glob(os.path.join(wheels, pattern)))
    if not found:
        sys.exit(f"no wheel {pattern} in {wheels}")
    return zipfile.ZipFile(found[-1])
torch = wheel("torch-2.4.1-*.whl")
keep = re.compile(r"^torch/(include/.*|lib/(libtorch_cpu\.so|libc10\.so|libgomp[^/]*\.so[^/]*))$")
for name in torch.namelist():
    m = keep.match(name)
    if m and not name.endswith("/"):
        dest = os.path.join(out, name[len("torch/"):])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with torch.open(name) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
for pattern, lib in (("nvidia_cuda_runtime_cu12-12.1.105-*.whl", "libcudart.so.12"),
                     ("nvidia_cuda_cupti_cu12-12.1.105-*.whl", "libcupti.so.12")):
    z = wheel(pattern)
    name = next(n for n in z.namelist() if n.endswith("/" + lib))
    with z.open(name) as src, open(os.path.join(out, "lib", lib), "wb") as dst:
        shutil.copyfileobj(src, dst)
open(os.path.join(out, "build-version"), "w").write("2.4.1\n")
PY
  # torch-sys links -ltorch: an empty library stands in for the CUDA-and-CPU one
  gcc -shared -o "$dir.tmp/lib/libtorch.so" -x c /dev/null
  rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.complete"
  # the cut is cached; the 800 MB of wheels it came from are not needed again
  rm -f "$cache"/wheels/torch-2.4.1-*.whl "$cache"/wheels/nvidia_cuda_*_cu12-12.1.105-*.whl
  echo "libtorch: installed in $dir ($(du -sh "$dir" | cut -f1))" >&2
fi
echo "export LIBTORCH='$dir'"
echo "export LIBTORCH_CXX11_ABI=0"
echo "export LIBTORCH_BYPASS_VERSION_CHECK=1"
echo "export LD_LIBRARY_PATH='$dir/lib'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
