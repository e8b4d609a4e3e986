#!/usr/bin/env python3
"""Train/eval files from the PyPI package chatterbot-corpus==1.3.3 (BSD): dialogue lines
labelled with the topic of their file, in 14 languages.

Writes data/chatterbot/train.jsonl (80% of the English conversations, by a fixed seed) and
data/chatterbot/eval.jsonl (the other 20% of English, minus any line also in train, and every
line of the other 13 languages), each line {"text", "label", "lang"}. Topics: the English ones
that at least one other language also has.

Usage: python3 scripts/chatterbot_data.py <chatterbot_corpus wheel> <out dir>
(scripts/chatterbot_eval.sh downloads the wheel with pip and runs this.)
"""
import collections, json, os, random, sys, zipfile

import yaml

LANGS = {"english": "en", "spanish": "es", "portuguese": "pt", "italian": "it", "german": "de",
         "french": "fr", "russian": "ru", "turkish": "tr", "indonesian": "id", "dutch": "nl",
         "bengali": "bn", "persian": "fa", "ukrainian": "uk", "urdu": "ur"}


def lines_of(conversations):
    for conv in conversations or []:
        for line in conv if isinstance(conv, list) else [conv]:
            if isinstance(line, str) and line.strip():
                yield line.strip()


def main(wheel, out):
    data = collections.defaultdict(list)  # lang -> [(topic, [conversation lines...])]
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) != 4 or parts[1] != "data" or not name.endswith(".yml") or parts[2] not in LANGS:
                continue
            doc = yaml.safe_load(z.read(name).decode("utf-8"))
            if not doc or not doc.get("categories"):
                continue
            topic = str(doc["categories"][0]).strip().lower()
            for conv in doc.get("conversations") or []:
                data[LANGS[parts[2]]].append((topic, list(lines_of([conv]))))
    english = {t for t, _ in data["en"]}
    others = {t for l, convs in data.items() if l != "en" for t, _ in convs}
    topics = sorted(english & others)
    rnd = random.Random(1331)
    convs = [c for c in data["en"] if c[0] in topics]
    rnd.shuffle(convs)
    cut = int(len(convs) * 0.8)
    train, test = convs[:cut], convs[cut:]
    os.makedirs(out, exist_ok=True)
    seen = set()
    with open(os.path.join(out, "train.jsonl"), "w", encoding="utf-8") as f:
        for topic, lines in train:
            for line in lines:
                if (line, topic) not in seen:
                    seen.add((line, topic))
                    f.write(json.dumps({"text": line, "label": topic, "lang": "en"}, ensure_ascii=False) + "\n")
    train_texts = {t for t, _ in seen}
    counts = collections.Counter()
    with open(os.path.join(out, "eval.jsonl"), "w", encoding="utf-8") as f:
        for lang in LANGS.values():
            pool = test if lang == "en" else [c for c in data[lang] if c[0] in topics]
            done = set()
            for topic, lines in pool:
                for line in lines:
                    if (lang == "en" and line in train_texts) or (line, topic) in done:
                        continue
                    done.add((line, topic))
                    counts[lang] += 1
                    f.write(json.dumps({"text": line, "label": topic, "lang": lang}, ensure_ascii=False) + "\n")
    print(f"{len(topics)} topics: {', '.join(topics)}")
    print(f"train: {len(seen)} English lines; eval: " + ", ".join(f"{l} {n}" for l, n in counts.items()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
