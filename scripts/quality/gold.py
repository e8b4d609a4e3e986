#!/usr/bin/env python3
"""Turns the sample dump (tests/data/sample.jsonl) into a gold set for `triage eval`.

Its records carry `gold` (violent_extremism, hate, spam, news, other) and `gold_lang`; the starter
taxonomy has only the three harmful labels, so news and conversation ("other") are texts of none
of the labels (`"labels": []`, kind news or conversation). Bad lines (the sample has some on
purpose) are left out.

Usage: python3 scripts/quality/gold.py <sample.jsonl> <gold.jsonl>
"""
import json, sys

HARMFUL = {"violent_extremism", "hate", "spam"}


def main(src, dst):
    n = 0
    with open(src, "rb") as f, open(dst, "w", encoding="utf-8") as out:
        for raw in f:
            try:
                r = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if not isinstance(r, dict) or not isinstance(r.get("text"), str) or not r["text"].strip():
                continue
            if "gold" not in r:
                continue
            g = r["gold"]
            rec = {"text": r["text"], "lang": r.get("gold_lang"),
                   "labels": [g] if g in HARMFUL else [],
                   "kind": {"other": "conversation"}.get(g, g)}
            out.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    print(f"{dst}: {n} gold records", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
