#!/usr/bin/env python3
"""Accuracy of a labelled sample dump against its `gold` and `gold_lang` fields.

  triage label tests/data/sample.jsonl -o labelled.jsonl
  python3 scripts/sample_accuracy.py tests/data/sample.jsonl labelled.jsonl
"""
import collections, json, sys

def main(dump, labelled):
    gold = {}
    for line in open(dump, "rb"):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and "gold" in r:
            gold[r["id"]] = r
    n = ok = lang_ok = 0
    per = collections.defaultdict(lambda: [0, 0])
    for line in open(labelled, encoding="utf-8"):
        o = json.loads(line)
        g = gold[o["id"]]
        n += 1
        ok += o["top"] == g["gold"]
        lang_ok += o["lang"] == g["gold_lang"]
        per[g["gold_lang"]][0] += o["top"] == g["gold"]
        per[g["gold_lang"]][1] += 1
    print(f"records {n}  top-label accuracy {ok / n:.3f}  language accuracy {lang_ok / n:.3f}")
    print("per language (top-label accuracy):", " ".join(f"{k} {a / b:.2f}" for k, (a, b) in sorted(per.items())))

if __name__ == "__main__":
    main(*sys.argv[1:3])
