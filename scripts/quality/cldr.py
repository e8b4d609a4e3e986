#!/usr/bin/env python3
"""A gold set of interface strings: CLDR's date and calendar strings ("last year", "next
Tuesday", month and day names, "in {0} hours") and its language and territory names in DESIGN.md's
15 languages, all texts of none of the labels. CLDR comes from the npm packages
cldr-dates-full@48.2.0 and cldr-localenames-full@48.2.0 (Unicode licence), which
scripts/langid/report.sh fetches; nothing here is a gettext catalog.

Usage: python3 scripts/quality/cldr.py <cldr dir> <gold.jsonl> [per language, default 60]
"""
import hashlib, json, os, re, sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "langid"))
from corpus import json_strings as strings  # noqa: E402

MISSION = ["ar", "en", "fr", "de", "ru", "tr", "fa", "ur", "ps", "id", "bn", "nl", "ro", "bg", "es"]
FILES = ["dateFields.json", "ca-gregorian.json", "languages.json", "territories.json"]


def main(cldr, dst, per=60):
    n = 0
    with open(dst, "w", encoding="utf-8") as out:
        for lang in MISSION:
            seen = set()
            for name in FILES:
                with open(os.path.join(cldr, "main", lang, name), encoding="utf-8") as f:
                    for s in strings(json.load(f)):
                        s = " ".join(s.split())
                        # words and phrases, not patterns or codes
                        pattern = re.fullmatch(r"[GyYMLdDEecabBhHkKmsSzZvVOxXuUqQwW\W_]+", s)
                        if len(s) >= 4 and not pattern and not re.search(r"[{}#+0-9]", s) \
                                and s not in seen:
                            seen.add(s)
            picked = sorted(seen, key=lambda s: hashlib.sha256(s.encode()).hexdigest())[:per]
            for s in sorted(picked):
                out.write(json.dumps({"text": s, "labels": [], "lang": lang, "kind": "interface"},
                                     ensure_ascii=False) + "\n")
                n += 1
    print(f"{dst}: {n} interface strings", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(x) for x in sys.argv[3:]))
