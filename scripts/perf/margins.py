#!/usr/bin/env python3
"""From scripts/perf/agreement.sh's outputs: for each kind, the share of records that a
refinement margin m would send to f32 (an int8 score within m of its label's threshold for the
record's language, in workspace.toml), and how many of the records whose flags differ from
candle f32 it would have caught. A measurement, not a tuning: nothing is chosen from it here.

Usage: margins.py <agreement work folder> [workspace.toml]
"""
import glob
import json
import sys
import tomllib


def main(argv):
    work = argv[0]
    w = tomllib.load(open(argv[1] if len(argv) > 1 else "workspace.toml", "rb"))
    lab = w["labels"]

    def thr(label, lang):
        s = lab.get(label, {})
        return s.get("language_thresholds", {}).get(lang, s.get("threshold", lab.get("default_threshold", 0.5)))

    ms = [0.005, 0.01, 0.02, 0.03, 0.06]
    print("| kind | records | " + " | ".join(f"refined at {m}" for m in ms) + " | flag disagreements caught at each |")
    print("|---|---:|" + "---:|" * len(ms) + "---|")
    tot, cov, n_all, dis_all = [0] * len(ms), [0] * len(ms), 0, 0
    for f in sorted(glob.glob(f"{work}/out-*-int8.jsonl")):
        kind = f.split("out-")[1][: -len("-int8.jsonl")]
        a = [json.loads(l) for l in open(f.replace("-int8.jsonl", "-f32.jsonl"))]
        b = [json.loads(l) for l in open(f)]
        share, caught, dis = [], [], 0
        for i, m in enumerate(ms):
            refined = c = d = 0
            for ra, rb in zip(a, b):
                near = min(abs(l["score"] - thr(l["label"], rb["lang"])) for l in rb["labels"]) < m
                refined += near
                fa = sorted(l["label"] for l in ra["labels"] if l["flagged"])
                fb = sorted(l["label"] for l in rb["labels"] if l["flagged"])
                if fa != fb:
                    d += 1
                    c += near
            share.append(f"{100 * refined / len(b):.1f}%")
            caught.append(f"{c}/{d}")
            tot[i] += refined
            cov[i] += c
            dis = d
        n_all += len(b)
        dis_all += dis
        print(f"| {kind} | {len(b)} | " + " | ".join(share) + " | " + " ".join(caught) + " |")
    print(f"| all | {n_all} | " + " | ".join(f"{100 * t / n_all:.1f}%" for t in tot) + " | "
          + " ".join(f"{c}/{dis_all}" for c in cov) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
