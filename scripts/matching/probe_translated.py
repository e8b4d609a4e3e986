#!/usr/bin/env python3
"""Probes of translated re-upload matching outside the Rust evaluation, on the 8-bit embeddings
that `triage bank build` keeps (BENCHMARKS.md, "Translations are the weak point").

It builds (once, in <work dir>) a bank of the aligned UDHR paragraphs and a bank of the built-in
background (crates/classify/data/background.txt), with the `triage` binary and any extra
`bank build` options given after `--` (e.g. `--backend candle --dtype f32`), reads their
embeddings (in the bank's language space), and redoes the translated protocol of
`cargo run --example matching` in numpy: for every ordered pair of languages, a bank of the
split's paragraphs in A, queried by the split's paragraphs in B (positives) and the other split's
(negatives); dev = even articles, test = odd ones. It prints:

- the shipped rule: cosine and margin over the next 4 items, chosen on dev on the example's grid
  (highest pooled dev recall with at most 1% pooled false matches), reported on test; it should
  print the example's figure for the default engine;
- how far threshold choice alone could go, as ceilings chosen on the test data themselves (so
  not figures to ship): the best pooled cosine and margin pair on the example's grid, and the best
  pair for each language pair on its own (no false match in the pair: one of its negatives would
  already be over 1%), on the grid and, for the cosine alone, just over the pair's highest
  negative;
- the rule with the items' levels (`semantic_lift`), chosen on dev on the example's grid, and
  the two rules' best test recall at false-match budgets of 0.25% to 1% (ceilings, to compare
  the rules).

Needs numpy: the venv that scripts/matching/scale.sh makes has it
(`.cache/matching/venv/bin/python`).

`--swap`: the other way round (dev = odd articles, test = even ones), to see how far the figures
move with the split.

Usage: probe_translated.py <aligned.jsonl> <work dir> [--swap] [--triage BIN] [-- bank build options]
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLOORS = [0.80, 0.84, 0.86, 0.88, 0.89, 0.90, 0.91, 0.92, 0.93, 0.94]
MARGINS = [m / 100 for m in range(11)]


def build(triage, items, out, extra):
    if not os.path.exists(os.path.join(out, "bank.json")):
        subprocess.run([triage, "bank", "build", items, "-o", out, *extra], check=True)


def embeddings(bank):
    ids = [json.loads(line)["id"] for line in open(os.path.join(bank, "items.jsonl"))]
    raw = np.fromfile(os.path.join(bank, "embeddings.bin"), dtype=np.uint8)
    info = json.load(open(os.path.join(bank, "bank.json")))
    dim = info["embeddings"]["dim"]
    raw = raw.reshape(len(ids), 4 + dim)
    scale = raw[:, :4].copy().view(np.float32)[:, 0]
    v = raw[:, 4:].view(np.int8).astype(np.float32) * scale[:, None]
    return ids, v / np.linalg.norm(v, axis=1, keepdims=True)


def rows(V, U, langs, split, other, ref):
    """Per query: (correct top item, positive, best cosine, margin, best cosine less level,
    language pair)."""
    out = []
    pair = -1
    for a in langs:
        bank = V[[U[(a, k)] for k in split]]
        level = np.sort(bank @ ref.T, 1)[:, -5:].mean(1)
        for b in langs:
            if a == b:
                continue
            pair += 1
            for keys, positive in ((split, True), (other, False)):
                s = V[[U[(b, k)] for k in keys]] @ bank.T
                order = np.argsort(-s, 1)
                n = np.arange(len(s))
                top = order[:, 0]
                best = s[n, top]
                margin = best - s[n[:, None], order[:, 1:5]].mean(1)
                for j in range(len(s)):
                    out.append((positive and top[j] == j, positive, best[j], margin[j],
                                best[j] - level[top[j]], pair))
    return np.array(out, dtype=float)


def rates(r, ok):
    p, n = r[r[:, 1] == 1], r[r[:, 1] == 0]
    return (p[:, 0].astype(bool) & ok(p)).mean(), ok(n).mean()


def chosen(dev, test, rules):
    best = None
    for rule in rules:
        d = rates(dev, rule[1])
        if d[1] <= 0.01 and (best is None or d[0] > best[0][0]):
            best = (d, rule)
    t = rates(test, best[1][1])
    return best[1][0], best[0], t


def main():
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    triage = os.path.join(ROOT, "target/release/triage")
    swap = "--swap" in args
    args = [a for a in args if a != "--swap"]
    if "--triage" in args:
        triage = args[args.index("--triage") + 1]
        args = [a for a in args if a not in ("--triage", triage)]
    if len(args) != 2:
        sys.exit(__doc__)
    aligned, work = args
    os.makedirs(work, exist_ok=True)
    items = os.path.join(work, "aligned-items.jsonl")
    with open(items, "w") as f:
        for line in open(aligned):
            p = json.loads(line)
            f.write(json.dumps({"id": f"{p['lang']}:{p['key']}", "text": p["text"]}) + "\n")
    background = os.path.join(work, "background-items.jsonl")
    with open(background, "w") as f:
        lang, n = None, 0
        for line in open(os.path.join(ROOT, "crates/classify/data/background.txt")):
            line = line.strip()
            if line.startswith("# ") and line[2:].isalpha() and len(line[2:]) <= 3:
                lang = line[2:]
            elif line and not line.startswith("#") and lang:
                f.write(json.dumps({"id": f"{lang}:{n}", "text": line}) + "\n")
                n += 1
    build(triage, items, os.path.join(work, "bank"), extra)
    build(triage, background, os.path.join(work, "background"), extra)
    ids, V = embeddings(os.path.join(work, "bank"))
    _, ref = embeddings(os.path.join(work, "background"))
    U = {tuple(i.split(":", 1)): k for k, i in enumerate(ids)}
    langs = sorted({lang for lang, _ in U})
    keys = sorted({k for _, k in U}, key=lambda k: tuple(map(int, k.split("."))))
    dev = [k for k in keys if int(k.split(".")[0]) % 2 == 0]
    test = [k for k in keys if int(k.split(".")[0]) % 2 == 1]
    if swap:
        dev, test = test, dev
    d, t = rows(V, U, langs, dev, test, ref), rows(V, U, langs, test, dev, ref)
    rules = [((c, m), lambda r, c=c, m=m: (r[:, 2] >= c) & (r[:, 3] >= m))
             for c in FLOORS for m in MARGINS]
    rule, dr, tr = chosen(d, t, rules)
    print(f"cosine and margin, chosen on dev {rule}: dev {dr[0]:.1%} at {dr[1]:.2%}, "
          f"test {tr[0]:.1%} at {tr[1]:.2%}")
    # ceilings: thresholds chosen on test itself
    rule, tr, _ = chosen(t, t, rules)
    print(f"ceiling, one cosine and margin pair chosen on test itself {rule}: "
          f"test {tr[0]:.1%} at {tr[1]:.2%}")
    grid, cosine = [], []
    for k in range(int(t[:, 5].max()) + 1):
        r = t[t[:, 5] == k]
        grid.append(max(rates(r, ok)[0] for _, ok in rules if rates(r, ok)[1] == 0))
        top = r[r[:, 1] == 0][:, 2].max()
        cosine.append(rates(r, lambda x: x[:, 2] > top)[0])
    for name, per in (("cosine and margin on the grid", grid), ("cosine alone, any value", cosine)):
        print(f"ceiling, chosen for each language pair on its test data ({name}): "
              f"{np.mean(per):.1%} mean recall, {sum(x >= 0.8 for x in per)} of {len(per)} pairs "
              f"at 80% or more, none of their negatives matched")
    # with the items' levels (the level: the item's mean cosine with its 5 nearest background
    # sentences; `semantic_lift` bounds margin + cosine - level), on the example's grid
    lifts = [round(0.08 + 0.005 * i, 3) for i in range(25)]
    lifted = [((c, m, lift), lambda r, c=c, m=m, lift=lift: (r[:, 2] >= c) & (r[:, 3] >= m)
               & (r[:, 3] + r[:, 4] >= lift))
              for lift in lifts for c in [0.80, 0.84, 0.88, 0.90, 0.92] for m in MARGINS[:6]]
    rule, dr, tr = chosen(d, t, lifted)
    print(f"cosine, margin and lift over the item's level, chosen on dev {rule}: "
          f"dev {dr[0]:.1%} at {dr[1]:.2%}, test {tr[0]:.1%} at {tr[1]:.2%}")
    # the two rules' trade-off on test, each at its best grid point for a false-match budget
    # (chosen on test: for comparing the rules, not figures to ship)
    for name, rules in (("cosine and margin", rules), ("with the lift", lifted)):
        found = [rates(t, ok) for _, ok in rules]
        best = [max([r for r, f in found if f <= x] or [0.0]) for x in (0.0025, 0.005, 0.0075, 0.01)]
        print(f"ceiling, {name}: best test recall at false matches <= 0.25/0.5/0.75/1%: "
              + " / ".join(f"{b:.1%}" for b in best))

if __name__ == "__main__":
    main()
