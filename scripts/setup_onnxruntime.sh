#!/usr/bin/env bash
# Installs ONNX Runtime 1.32.0's CPU library for the `ort` backend, taken out of the PyPI
# `onnxruntime==1.32.0` wheel (28 MB): the ort crate's own download step cannot work on machines
# without internet, so the crate is built with `load-dynamic` and finds the library at run time
# through ORT_DYLIB_PATH.
#
#   eval "$(scripts/setup_onnxruntime.sh)"     # prints the export the tests and the binary need
#
# The library is cached in $TRIAGE_CACHE/onnxruntime-1.32.0 (35 MB); the wheel is removed.
# Progress goes to stderr; stdout is only the export.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
dir="$cache/onnxruntime-1.32.0"
lib="$dir/libonnxruntime.so.1.32.0"
if [ ! -f "$lib" ]; then
  mkdir -p "$cache/wheels" "$dir"
  echo "onnxruntime: downloading the onnxruntime 1.32.0 wheel from PyPI (28 MB)" >&2
  python3 -m pip download --no-deps --disable-pip-version-check --quiet --only-binary=:all: \
    -d "$cache/wheels" onnxruntime==1.32.0 >&2
  python3 - "$cache/wheels" "$lib" <<'PY' >&2
import glob, os, shutil, sys, zipfile
wheels, out = sys.argv[1:]
found = sorted(glob.glob(os.path.join(wheels, "onnxruntime-1.32.0-*.whl")))
if not found:
    sys.exit(f"no onnxruntime 1.32.0 wheel in {wheels}")
with zipfile.ZipFile(found[-1]) as z, z.open("onnxruntime/capi/libonnxruntime.so.1.32.0") as src:
    with open(out + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.replace(out + ".tmp", out)
PY
  rm -f "$cache"/wheels/onnxruntime-1.32.0-*.whl
  echo "onnxruntime: installed $lib" >&2
fi
echo "export ORT_DYLIB_PATH='$lib'"
