#!/usr/bin/env python3
"""Tabulates the detectors' answers on an evaluation set: accuracy per language and per length
bucket, macro averages, strings per second, and the reliability of confident answers.

Usage: report.py <items.jsonl> <answers.json>... [--md out.md] [--json out.json]
"""
import json
import sys

MISSION = ["ar", "en", "fr", "de", "ru", "tr", "fa", "ur", "ps", "id", "bn", "nl", "ro", "bg", "es"]
EXTRA = ["uk", "ckb", "kmr", "so", "ug", "ms", "prs"]
BUCKETS = ["<=20", "21-60", "61-250", ">250"]


def bucket(text):
    n = len(text)
    return "<=20" if n <= 20 else "21-60" if n <= 60 else "61-250" if n <= 250 else ">250"


def macro(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def main(argv):
    md_out = json_out = None
    files = []
    it = iter(argv)
    for a in it:
        if a == "--md":
            md_out = next(it)
        elif a == "--json":
            json_out = next(it)
        else:
            files.append(a)
    items = [json.loads(l) for l in open(files[0], encoding="utf-8")]
    runs = []
    meta = {}
    for f in files[1:]:
        d = json.load(open(f))
        meta[f] = {k: v for k, v in d.items() if k != "runs"}
        runs += d["runs"]
    report = {"items": len(items), "detectors": {}}
    for run in runs:
        answers = run["answers"]
        n = min(len(answers), len(items))
        cell = {}  # (lang, bucket) -> [right, total]
        for item, ans in zip(items[:n], answers[:n]):
            for key in ((item["lang"], bucket(item["text"])), (item["lang"], "<=60") if len(item["text"]) <= 60 else None):
                if key:
                    c = cell.setdefault(key, [0, 0])
                    c[0] += ans == item["lang"]
                    c[1] += 1
        acc = {f"{l}|{b}": r / t for (l, b), (r, t) in cell.items()}
        restricted = "(ours)" in run["detector"]
        judged = [a for item, a in zip(items[:n], answers[:n]) if not restricted or item["lang"] in MISSION]
        entry = {"strings_per_second": run["strings_per_second"], "accuracy": acc}
        for group, langs in (("mission", MISSION), ("extra", EXTRA)):
            for b in BUCKETS + ["<=60"]:
                entry[f"macro_{group}_{b}"] = macro([acc.get(f"{l}|{b}") for l in langs if f"{l}|{b}" in acc])
        if any(run.get("reliable", [])):
            # a restricted run is judged on the items of its languages only
            rel = [(item, a) for item, a, r in zip(items[:n], answers[:n], run["reliable"])
                   if r and ("(ours)" not in run["detector"] or item["lang"] in MISSION)]
            right = sum(a == item["lang"] for item, a in rel)
            entry["reliable_share"] = len(rel) / max(len(judged), 1)
            entry["reliable_accuracy"] = right / max(len(rel), 1)
        report["detectors"][run["detector"]] = entry
    lines = []
    dets = list(report["detectors"])
    pct = lambda v: "  n/a" if v is None else f"{100 * v:5.1f}"
    for group, langs in (("DESIGN.md's 15 languages", MISSION), ("languages whatlang lacks, and Ukrainian", EXTRA)):
        lines.append(f"\n## {group}: macro accuracy (%) per length bucket\n")
        lines.append("| detector | " + " | ".join(BUCKETS + ["<=60"]) + " | strings/s |")
        lines.append("|---|" + "---:|" * (len(BUCKETS) + 2))
        for d in (dets if langs is MISSION else [d for d in dets if "(ours)" not in d]):
            e = report["detectors"][d]
            g = "mission" if langs is MISSION else "extra"
            lines.append(f"| {d} | " + " | ".join(pct(e[f"macro_{g}_{b}"]) for b in BUCKETS + ["<=60"])
                         + f" | {e['strings_per_second']:,.0f} |")
        for b, what in (("<=60", "strings of <= 60 characters"), ("61-250", "sentences of 61-250 characters")):
            lines.append(f"\n### per language, {what} (%)\n")
            lines.append("| detector | " + " | ".join(langs) + " |")
            lines.append("|---|" + "---:|" * len(langs))
            for d in (dets if langs is MISSION else [d for d in dets if "(ours)" not in d]):
                acc = report["detectors"][d]["accuracy"]
                lines.append(f"| {d} | " + " | ".join(pct(acc.get(f"{l}|{b}")) for l in langs) + " |")
    for d in dets:
        e = report["detectors"][d]
        if "reliable_share" in e:
            lines.append(f"\n{d}: {100 * e['reliable_share']:.1f}% of answers on its languages reliable, "
                         f"{100 * e['reliable_accuracy']:.2f}% of those right.")
    text = "\n".join(lines) + "\n"
    print(text)
    if md_out:
        open(md_out, "w").write(text)
    if json_out:
        json.dump(report, open(json_out, "w"), indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
