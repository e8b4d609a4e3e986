#!/usr/bin/env python3
"""Python datasketch MinHashLSH on the same items and parameters as a triage bank (64
permutations, 16 bands of 4 rows, 5-character shingles of the text, lower-cased and
whitespace-collapsed: datasketch has no normalisation of its own), timed: build (MinHash of
every item, inserted) and query (MinHash of every query, looked up); recall = queries whose
item is among the candidates with an estimated Jaccard similarity of at least 0.35 (triage's
`near`). Prints one JSON line.

Usage: datasketch_lsh.py items.jsonl queries.jsonl [--limit N]
"""
import json
import re
import sys
import time

from datasketch import MinHash, MinHashLSH


def shingles(text):
    t = re.sub(r"\s+", " ", text.lower()).strip()
    if len(t) <= 5:
        return {t}
    return {t[i:i + 5] for i in range(len(t) - 4)}


def signature(text):
    m = MinHash(num_perm=64, seed=1)
    m.update_batch([s.encode("utf-8") for s in shingles(text)])
    return m


def main(argv):
    items_path, queries_path = argv[:2]
    limit = int(argv[argv.index("--limit") + 1]) if "--limit" in argv else None
    items = []
    with open(items_path, encoding="utf-8") as f:
        for line in f:
            items.append(json.loads(line))
            if limit and len(items) >= limit:
                break
    ids = {r["id"] for r in items}
    queries = [q for q in map(json.loads, open(queries_path, encoding="utf-8")) if q["item"] in ids]
    t0 = time.perf_counter()
    lsh = MinHashLSH(num_perm=64, params=(16, 4))
    sigs = {}
    for r in items:
        m = signature(r["text"])
        sigs[r["id"]] = m
        lsh.insert(r["id"], m)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = 0
    for q in queries:
        m = signature(q["text"])
        found = [c for c in lsh.query(m) if sigs[c].jaccard(m) >= 0.35]
        hits += q["item"] in found
    query = time.perf_counter() - t0
    print(json.dumps({"tool": "datasketch 1.6.5", "items": len(items), "queries": len(queries),
                      "build_s": round(build, 3), "query_s": round(query, 3),
                      "items_per_s": round(len(items) / build, 1),
                      "queries_per_s": round(len(queries) / query, 1),
                      "recall": hits / max(1, len(queries))}))


if __name__ == "__main__":
    main(sys.argv[1:])
