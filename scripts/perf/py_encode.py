#!/usr/bin/env python3
"""The Python baseline of the speed benchmark: encodes a dump's texts with the same model
directory, prefix and pooling as triage, and prints one JSON line of figures.

  py_encode.py sentence-transformers <model dir> <dump.jsonl> [--batch 32] [--prefix "query: "]
      [--device cpu|cuda] [--dtype f32|bf16]
  py_encode.py transformers <model dir> <dump.jsonl> ...

`sentence-transformers` is `SentenceTransformer(dir).encode(texts, batch_size)` (it sorts by
length, truncates at the model's 512 tokens, mean-pools and normalises as modules.json says).
`transformers` is AutoModel with the same length-sorted batches and mean pooling written out.
Timing covers encoding only, after one warm-up batch; the model load is reported apart. On a
GPU (`--device cuda`, scripts/gpu/) the embeddings are copied back to the host before the clock
stops, and `--dtype bf16` casts the model to bfloat16.
"""
import json
import resource
import sys
import time


def main(argv):
    kind, model_dir, dump = argv[:3]
    batch = int(argv[argv.index("--batch") + 1]) if "--batch" in argv else 32
    prefix = argv[argv.index("--prefix") + 1] if "--prefix" in argv else "query: "
    device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
    dtype = argv[argv.index("--dtype") + 1] if "--dtype" in argv else "f32"
    texts = []
    for line in open(dump, encoding="utf-8"):
        try:
            texts.append(prefix + json.loads(line)["text"])
        except (ValueError, KeyError, TypeError):
            pass
    import torch

    torch.set_grad_enabled(False)
    # f32 means f32 on a GPU too, not TensorFloat-32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cast = torch.bfloat16 if dtype == "bf16" else torch.float32
    t0 = time.perf_counter()
    if kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_dir, device=device).to(cast)
        tokenizer = model.tokenizer
        max_len = model.max_seq_length
        load = time.perf_counter() - t0
        model.encode(texts[:batch], batch_size=batch)
        start = time.perf_counter()
        emb = model.encode(texts, batch_size=batch)
        seconds = time.perf_counter() - start
    else:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir).eval().to(device=device, dtype=cast)
        max_len = 512
        load = time.perf_counter() - t0

        def encode(items):
            order = sorted(range(len(items)), key=lambda i: -len(items[i]))
            out = [None] * len(items)
            for s in range(0, len(order), batch):
                idx = order[s:s + batch]
                enc = tokenizer([items[i] for i in idx], padding=True, truncation=True,
                                max_length=max_len, return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                pooled = pooled.cpu()
                for k, i in enumerate(idx):
                    out[i] = pooled[k]
            return out

        encode(texts[:batch])
        start = time.perf_counter()
        emb = encode(texts)
        seconds = time.perf_counter() - start
    tokens = sum(min(len(ids), max_len) for ids in tokenizer(texts)["input_ids"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine = f"python {kind}" + ("" if dtype == "f32" else f" {dtype}")
    print(json.dumps({"engine": engine, "records": len(emb), "seconds": seconds,
                      "records_per_s": len(emb) / seconds, "tokens_per_s": tokens / seconds,
                      "tokens": tokens, "peak_mib": peak, "load_s": load,
                      "threads": torch.get_num_threads(), "batch": batch,
                      "torch": torch.__version__, "device": device}))


if __name__ == "__main__":
    main(sys.argv[1:])
