#!/usr/bin/env python3
"""Writes reports/quality/README.md and quality.json from the `triage eval` folders that
scripts/quality/report.sh made, the langid answers on the langid test set, and the starter recipe.

Usage: summarize.py <report dir> <langid test.jsonl> <langid answers.json> <starter recipe.json>
"""
import collections, datetime, json, os, re, subprocess, sys

MISSION = ["ar", "en", "fr", "de", "ru", "tr", "fa", "ur", "ps", "id", "bn", "nl", "ro", "bg", "es"]
CONFIGS = {"default": "default (starter head, calibrated thresholds)",
           "prototypes": "`--mode prototypes` (same taxonomy)"}
SETS = {"starter-test": "starter test split", "sample": "sample dump", "interface": "CLDR interface strings"}


def pct(x):
    return f"{100 * x:.1f}%"


def cpu():
    try:
        flags = open("/proc/cpuinfo").read()
        model = re.search(r"model name\s*:\s*(.*)", flags).group(1).strip()
        avx = sorted(set(re.findall(r"\bavx512[a-z_]*", flags)))
        return f"{model}; {' '.join(avx) if avx else 'no AVX-512 (AVX2)'}"
    except (OSError, AttributeError):
        return "unknown CPU"


def langid_rows(test, answers):
    items = [json.loads(l) for l in open(test, encoding="utf-8")]
    run = next(r for r in json.load(open(answers))["runs"] if r["detector"] == "triage-langid (ours)")
    listed = collections.defaultdict(lambda: [0, 0])
    short = collections.defaultdict(lambda: [0, 0])
    unlisted = collections.defaultdict(lambda: collections.Counter())
    for it, a, rel in zip(items, run["answers"], run["reliable"]):
        lang = it["lang"]
        if lang in MISSION:
            listed[lang][0] += a == lang
            listed[lang][1] += 1
            if len(it["text"]) <= 60:
                short[lang][0] += a == lang
                short[lang][1] += 1
        else:
            c = unlisted[lang]
            c["items"] += 1
            c["itself"] += a == lang
            c["listed"] += a in MISSION
            c["listed_reliable"] += a in MISSION and rel
            if len(it["text"]) > 60:
                c["long"] += 1
                c["long_listed_reliable"] += a in MISSION and rel
    return listed, short, unlisted


def main(out, langid_test, langid_answers, recipe_path):
    evals = {}
    for config in CONFIGS:
        for s in SETS:
            with open(os.path.join(out, config, s, "eval.json")) as f:
                evals[config, s] = json.load(f)
    recipe = json.load(open(recipe_path))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    L = []
    w = L.append
    w("# Quality of the default configuration")
    w("")
    w(f"Made by `scripts/quality/report.sh` on {datetime.date.today()} at commit {commit}, on {cpu()}.")
    w("Nothing here was trained, tuned or calibrated on the data it reports: the starter head was")
    w("trained on the starter train split and its thresholds calibrated on the calibration and dev")
    w("splits (`scripts/starter/build.py`); HateCheck, Multilingual HateCheck and gettext catalogs")
    w("were not used for anything. Model: " + evals["default", "sample"]["model"] + ".")
    w("")
    w("## Gold sets")
    w("")
    w("| set | records | what |")
    w("|---|---:|---|")
    w(f"| starter test split | {evals['default', 'starter-test']['records']} | "
      + ", ".join(f"{k} {v}" for k, v in sorted(recipe["counts"]["test"].items()))
      + " (source/labels) |")
    w(f"| sample dump | {evals['default', 'sample']['records']} | tests/data/sample.jsonl: 15 languages, "
      "violent_extremism, hate, spam, and news and conversation as none |")
    w(f"| interface | {evals['default', 'interface']['records']} | CLDR date, calendar, language and territory "
      "strings, 60 per language (npm cldr-dates-full, cldr-localenames-full 48.2.0), none |")
    w("")
    w("## Per label (flags against gold)")
    w("")
    w("| configuration | set | label | precision | recall | F1 | support |")
    w("|---|---|---|---:|---:|---:|---:|")
    for (config, s), r in evals.items():
        if s == "interface":  # no positives: its flags are in the next table
            continue
        for l in r["labels"]:
            o = l["overall"]
            w(f"| {config} | {s} | {l['label']} | {o['precision']:.3f} | {o['recall']:.3f} | {o['f1']:.3f} | {o['support']} |")
        w(f"| {config} | {s} | **macro** | {r['macro']['precision']:.3f} | {r['macro']['recall']:.3f} | **{r['macro']['f1']:.3f}** | |")
    w("")
    w("## Ordinary text flagged with any label, per language")
    w("")
    w("Records of none of the labels that are not hard negatives (news, parliament, conversation,")
    w("UDHR, ham mail; in the sample, news and conversation) that got any flag. Target: at most 2%")
    w("in each language.")
    w("")
    langs = sorted({l["lang"] for r in evals.values() for l in r["languages"] if l.get("unlabelled")})
    w("| configuration | set | " + " | ".join(langs) + " |")
    w("|---|---|" + "---:|" * len(langs))
    for (config, s), r in evals.items():
        by = {l["lang"]: l for l in r["languages"]}
        cells = []
        for lang in langs:
            l = by.get(lang)
            cells.append(f"{l['unlabelled_flagged']}/{l['unlabelled']}" if l and l.get("unlabelled") else "-")
        w(f"| {config} | {s} | " + " | ".join(cells) + " |")
    w("")
    w("## Hard negatives")
    w("")
    w("Texts that look like a label but are not it, and how many that label flagged (by kind, by")
    w("language). News about terrorism is the starter test split's English news and the held-out")
    w("written reports in the 15 languages; the target is none flagged `violent_extremism`.")
    w("")
    w("| configuration | set | label | flagged | by kind | by language |")
    w("|---|---|---|---:|---|---|")
    for (config, s), r in evals.items():
        for h in r["hard_negatives"]:
            kinds = ", ".join(f"{k} {f}/{n}" for k, (n, f) in sorted(h["kinds"].items()))
            langs_ = ", ".join(f"{k} {f}/{n}" for k, (n, f) in sorted(h["languages"].items()))
            w(f"| {config} | {s} | {h['label']} | {h['flagged']}/{h['records']} | {kinds} | {langs_} |")
    w("")
    w("## Per language (macro-F1 over the labels with positives in that language; - where none)")
    w("")
    all_langs = sorted({l["lang"] for r in evals.values() for l in r["languages"]})
    w("| configuration | set | " + " | ".join(all_langs) + " |")
    w("|---|---|" + "---:|" * len(all_langs))
    for (config, s), r in evals.items():
        cells = []
        for x in all_langs:
            f1s = [l["languages"][x]["prf"]["f1"] for l in r["labels"]
                   if x in l["languages"] and l["languages"][x]["prf"]["support"] > 0]
            cells.append(f"{sum(f1s) / len(f1s):.2f}" if f1s else "-")
        w(f"| {config} | {s} | " + " | ".join(cells) + " |")
    w("")
    w("Pictures: `<configuration>/<set>/f1_heatmap.svg` (language x label F1) and `pr_curves.svg`")
    w("(one precision-recall curve per language), beside each `eval.txt`.")
    w("")
    listed, short, unlisted = langid_rows(langid_test, langid_answers)
    w("## Languages outside the allow-list")
    w("")
    w("The langid test set (`scripts/langid/corpus.py`: UDHR, CLDR, wordfreq and chatterbot items:")
    w("words, pairs, sentences, paragraphs), with DESIGN.md's 15 languages listed. Unlisted items are")
    w("answered among every language the detector knows; a listed language wins a near tie")
    w(f"(`[languages] listed_prior`, default 20), and such an answer is never reliable.")
    w("")
    macro = sum(c / n for c, n in listed.values()) / len(listed)
    macro_short = sum(c / n for c, n in short.values()) / len(short)
    w(f"Listed languages: macro accuracy {pct(macro)} ({pct(macro_short)} on items of at most 60 characters).")
    w("")
    w("| unlisted language | items | answered as itself | as a listed language | as a listed language, reliable | same, items over 60 characters |")
    w("|---|---:|---:|---:|---:|---:|")
    tot = collections.Counter()
    for lang, c in sorted(unlisted.items()):
        tot.update(c)
        w(f"| {lang} | {c['items']} | {pct(c['itself'] / c['items'])} | {pct(c['listed'] / c['items'])} | "
          f"{c['listed_reliable']} ({pct(c['listed_reliable'] / c['items'])}) | {c['long_listed_reliable']} of {c['long']} |")
    w(f"| **all** | {tot['items']} | {pct(tot['itself'] / tot['items'])} | {pct(tot['listed'] / tot['items'])} | "
      f"{tot['listed_reliable']} ({pct(tot['listed_reliable'] / tot['items'])}) | {tot['long_listed_reliable']} of {tot['long']} |")
    w("")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    summary = {
        "commit": commit,
        "cpu": cpu(),
        "macro_f1": {f"{c}/{s}": r["macro"]["f1"] for (c, s), r in evals.items()},
        "ordinary_flagged": {f"{c}/{s}": {l["lang"]: [l["unlabelled_flagged"], l["unlabelled"]]
                                           for l in r["languages"] if l.get("unlabelled")}
                             for (c, s), r in evals.items()},
        "hard_negatives": {f"{c}/{s}": {h["label"]: [h["flagged"], h["records"]] for h in r["hard_negatives"]}
                           for (c, s), r in evals.items()},
        "langid": {"listed_macro_accuracy": macro, "listed_macro_accuracy_short": macro_short,
                   "unlisted": {k: dict(v) for k, v in sorted(unlisted.items())}},
    }
    with open(os.path.join(out, "quality.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
