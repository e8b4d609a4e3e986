#!/usr/bin/env python3
"""Compares two `triage label` outputs of the same dump: how many records get the same top
label and the same flagged labels, the largest score difference and the root mean square of the
score differences over all labels of all records; with --json also per language (records, top
labels agreeing, flags agreeing) and the records that disagree.

Usage: compare_outputs.py <reference.jsonl> <other.jsonl> [--json]
"""
import json
import sys


def load(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        if "labels" in r:
            out[r.get("position", r.get("id"))] = r
    return out


def language(r):
    """The record's language code as `triage label` writes it ("und" when unknown)."""
    lang = r.get("language", r.get("lang"))
    if isinstance(lang, dict):
        lang = lang.get("code", lang.get("lang"))
    return lang or "und"


def compare(a_path, b_path):
    a, b = load(a_path), load(b_path)
    keys = sorted(set(a) & set(b), key=str)
    same_top = same_flags = 0
    max_diff, worst = 0.0, None
    squares, count = 0.0, 0
    by_language, disagreements = {}, []
    for k in keys:
        ra, rb = a[k], b[k]
        same_top += ra["top"] == rb["top"]
        fa = sorted(l["label"] for l in ra["labels"] if l["flagged"])
        fb = sorted(l["label"] for l in rb["labels"] if l["flagged"])
        same_flags += fa == fb
        lang = language(ra)
        row = by_language.setdefault(lang, [0, 0, 0])
        row[0] += 1
        row[1] += ra["top"] == rb["top"]
        row[2] += fa == fb
        if ra["top"] != rb["top"] or fa != fb:
            disagreements.append({"record": k, "language": lang, "top": [ra["top"], rb["top"]],
                                  "flagged": [fa, fb]})
        sb = {l["label"]: l["score"] for l in rb["labels"]}
        for l in ra["labels"]:
            d = abs(l["score"] - sb[l["label"]])
            squares += d * d
            count += 1
            if d > max_diff:
                max_diff, worst = d, (k, l["label"])
    n = len(keys)
    return {"records": n, "only_in_one": len(set(a) ^ set(b)),
            "top_label_agreement": same_top / n if n else None,
            "flag_agreement": same_flags / n if n else None,
            "max_score_difference": max_diff, "worst": worst,
            "rms_score_difference": (squares / count) ** 0.5 if count else None,
            "by_language": by_language, "disagreements": disagreements}


if __name__ == "__main__":
    r = compare(sys.argv[1], sys.argv[2])
    if "--json" in sys.argv:
        print(json.dumps(r))
    else:
        print(f"records {r['records']}  top label agreement {100 * r['top_label_agreement']:.2f}%  "
              f"flagged labels agreement {100 * r['flag_agreement']:.2f}%  "
              f"largest score difference {r['max_score_difference']:.6f}"
              + (f" (record {r['worst'][0]}, {r['worst'][1]})" if r["worst"] else " (identical scores)")
              + (f"  RMS {r['rms_score_difference']:.5f}" if r["rms_score_difference"] is not None else ""))
