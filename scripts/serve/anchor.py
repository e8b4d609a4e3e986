#!/usr/bin/env python3
"""The Python anchor of the serve benchmark (reports/serve/): FastAPI and uvicorn serving
transformers with the same model directory as triage: the "query: " prefix, mean pooling,
L2 normalisation, then the starter head's linear layer and sigmoid, one batch per request
(what a plain Python service does). Texts are cut at the model's 512 tokens (no windows).

  uvicorn --app-dir scripts/serve anchor:app --port 8181   (MODEL_DIR, TORCH_THREADS)

POST /v1/classify {"texts": [...]} answers {"results": [{"labels": [{"label", "score"}]}]}.
"""
import os

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

MODEL_DIR = os.environ.get("MODEL_DIR", "models/multilingual-e5-small")
torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count() or 1)))
torch.set_grad_enabled(False)
tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
model = AutoModel.from_pretrained(MODEL_DIR).eval()
head_dir = os.path.join(MODEL_DIR, "heads", "starter")
head = load_file(os.path.join(head_dir, "head.safetensors"))
weight = next(v for k, v in head.items() if v.dim() == 2).float()
bias = next((v for k, v in head.items() if v.dim() == 1), torch.zeros(weight.shape[0])).float()
import json  # noqa: E402

LABELS = json.load(open(os.path.join(head_dir, "head.json")))["labels"]
app = FastAPI()


class Request(BaseModel):
    texts: list[str]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/v1/classify")
def classify(req: Request):
    batch = tokenizer(["query: " + t for t in req.texts], padding=True, truncation=True,
                      max_length=512, return_tensors="pt")
    out = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    scores = torch.sigmoid(emb @ weight.T + bias)
    return {"results": [{"labels": [{"label": l, "score": float(s)} for l, s in zip(LABELS, row)]}
                        for row in scores]}
