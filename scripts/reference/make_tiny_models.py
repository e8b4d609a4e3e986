#!/usr/bin/env python3
"""Tiny random *ForSequenceClassification checkpoints and their reference logits.

Writes tests/data/models/tiny-bert-cls (BERT, softmax, single-label) and
tests/data/models/tiny-xlmr-cls (XLM-RoBERTa, sigmoid, multi-label): config.json,
model.safetensors (random weights, seed 7; a few hundred KB, made here, safe to commit),
tokenizer.json (a WordPiece vocabulary of the words below), and reference.json with the
token ids and logits Python `transformers` computes.

Usage: /tmp/refenv/bin/python scripts/reference/make_tiny_models.py
"""
import json, os

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast,
                          XLMRobertaConfig, XLMRobertaForSequenceClassification)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = [
    "join the fight now",
    "free money click this link",
    "the council approved the budget",
    "the weather is sunny today and tomorrow",
    "click now",
    "they are vermin and must leave",
    "unknownword appears here",
]
LABELS = ["violent_extremism", "spam", "news", "hate"]


def tokenizer(cls, sep, pad, unk):
    words = sorted({w for t in TEXTS for w in t.split()} - {"unknownword"})
    vocab = {tok: i for i, tok in enumerate([pad, unk, cls, sep] + words)}
    t = Tokenizer(models.WordPiece(vocab, unk_token=unk))
    t.normalizer = normalizers.BertNormalizer(lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.post_processor = processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B {sep}",
                                                     special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    t.add_special_tokens([pad, unk, cls, sep])
    return t, vocab


def build(name, arch):
    torch.manual_seed(7)
    out = os.path.join(ROOT, "tests", "data", "models", name)
    os.makedirs(out, exist_ok=True)
    id2label = {i: l for i, l in enumerate(LABELS)}
    if arch == "bert":
        tok, vocab = tokenizer("[CLS]", "[SEP]", "[PAD]", "[UNK]")
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64, id2label=id2label,
                         label2id={l: i for i, l in id2label.items()}, pad_token_id=0)
        model = BertForSequenceClassification(cfg)
        special = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]")
    else:
        tok, vocab = tokenizer("<s>", "</s>", "<pad>", "<unk>")
        cfg = XLMRobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=66, id2label=id2label,
                               label2id={l: i for i, l in id2label.items()}, pad_token_id=0, bos_token_id=2,
                               eos_token_id=3, layer_norm_eps=1e-5, problem_type="multi_label_classification")
        model = XLMRobertaForSequenceClassification(cfg)
        special = dict(cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>")
    # random init leaves biases at zero and layer norms at one: perturb everything
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "tokenizer.json"), **special)
    fast.save_pretrained(out)
    enc = fast(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    ids = [[int(i) for i, m in zip(row, mask) if m] for row, mask in zip(enc["input_ids"], enc["attention_mask"])]
    ref = {"texts": TEXTS, "ids": ids, "logits": [[float(x) for x in row] for row in logits],
           "problem_type": cfg.problem_type, "labels": LABELS,
           "made_by": "scripts/reference/make_tiny_models.py (transformers 4.46.3, torch 2.4.1), batch padded"}
    json.dump(ref, open(os.path.join(out, "reference.json"), "w"), indent=1)
    print(name, os.path.getsize(os.path.join(out, "model.safetensors")), "bytes")


build("tiny-bert-cls", "bert")
build("tiny-xlmr-cls", "xlmr")
