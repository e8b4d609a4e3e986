#!/usr/bin/env python3
"""Writes the training text and the evaluation sets of triage-langid (see corpus.py for sources
and splits).

Usage: prepare.py <udhr package dir> <chatterbot-corpus wheel> <cldr dir> <out dir>
(the cldr dir holds the `main/<locale>` folders of cldr-localenames-full and cldr-dates-full)

<out>/train/langs.txt        the languages, one code a line, in the model's order
<out>/train/<lang>.txt       the training sections of the declaration, one paragraph a line
<out>/train/<lang>.freq.tsv  wordfreq's list: word TAB frequency per million words
<out>/dev.jsonl              calibration items {"lang", "kind", "text"} (declaration dev sections)
<out>/test.jsonl             evaluation items (declaration test sections, chatterbot lines)
"""
import json
import os
import random
import sys

import corpus


# Spellings a language is commonly written in besides its training text's. The Pashto
# declaration writes every yeh as Arabic ي, where most Pashto online writes ی (U+06CC) too; its
# training text is added a second time in that spelling.
VARIANTS = {"ps": [("\u064a", "\u06cc")]}


def main(udhr, wheel, cldr, out):
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    rng = random.Random(20261129)
    sets = {"dev": [], "test": []}
    for lang, (code, freq, chat) in corpus.LANGS.items():
        by_split = {"train": [], "dev": [], "test": []}
        if code.startswith("cldr:"):
            locale = code[5:]
            by_split["train"] = corpus.cldr_strings(cldr, locale, corpus.CLDR_TRAIN)
            for text in corpus.cldr_strings(cldr, locale, corpus.CLDR_TEST):
                sets["test"].append({"lang": lang, "kind": "term", "source": "cldr", "text": text})
        else:
            for section, text in corpus.udhr_paragraphs(udhr, code):
                by_split[corpus.split_of(section)].append(text)
        train = list(by_split["train"])
        for old, new in VARIANTS.get(lang, []):
            train += [t.replace(old, new) for t in by_split["train"]]
        with open(os.path.join(out, "train", lang + ".txt"), "w", encoding="utf-8") as f:
            f.writelines(t + "\n" for t in train)
        if freq:
            with open(os.path.join(out, "train", lang + ".freq.tsv"), "w", encoding="utf-8") as f:
                for word, fr in corpus.wordfreq_words(freq):
                    f.write(f"{word}\t{fr * 1e6:.3f}\n")
        for split in ("dev", "test"):
            for kind, text in corpus.items_of(by_split[split], rng):
                sets[split].append({"lang": lang, "kind": kind, "source": "udhr", "text": text})
        if chat:
            lines = corpus.chatterbot_lines(wheel, chat)
            rng.shuffle(lines)
            for text in lines[:300]:
                sets["test"].append({"lang": lang, "kind": "chat", "source": "chatterbot", "text": text})
    with open(os.path.join(out, "train", "langs.txt"), "w", encoding="utf-8") as f:
        f.writelines(lang + "\n" for lang in corpus.LANGS)
    for split, items in sets.items():
        with open(os.path.join(out, split + ".jsonl"), "w", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        print(f"{split}: {len(items)} items", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
