#!/usr/bin/env python3
"""A large labelled output and its dump, for timing `triage queue` (BENCHMARKS.md): N records
with random scores (fixed seed) for the three starter labels, flagged over 0.9, families of 3.

Usage: make_labelled.py <dump.jsonl> <labelled.jsonl> [--records N]
"""
import json
import random
import sys


def main(argv):
    dump, out = argv[0], argv[1]
    n = int(argv[argv.index("--records") + 1]) if "--records" in argv else 1_000_000
    rng = random.Random(5)
    with open(dump, "w") as d, open(out, "w") as o:
        for i in range(n):
            t = f"record {i} some text of a post that is about this long, more or less, to look real."
            d.write(json.dumps({"id": f"r{i}", "text": t}) + "\n")
            labs = [{"label": l, "score": round(rng.random(), 6), "flagged": False}
                    for l in ("violent_extremism", "hate", "spam")]
            for l in labs:
                l["flagged"] = l["score"] > 0.9
            o.write(json.dumps({"id": f"r{i}", "position": i + 1, "lang": "en", "labels": labs,
                                "evidence": {"start": 0, "end": len(t)}, "family": f"r{i - i % 3}"}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
