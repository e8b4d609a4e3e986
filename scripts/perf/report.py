#!/usr/bin/env python3
"""Tabulates scripts/perf/bench.sh's runs: best records/s and tokens/s of each engine over the
repetitions, peak memory, the ratio to Python sentence-transformers f32, the encoder's FLOP/s
against the matrix-multiply peak, and, for triage's faster configurations, label agreement with
triage candle f32, the largest score difference and the root mean square of all of them.

Usage: report.py <runs.jsonl> <matmul.txt> <config.json> [--md out] [--json out] [--command c]
       [--base engine] [--peak-note text]
(--base: the engine the ratios are to, Python sentence-transformers f32 unless given; with
several, comma-separated, the fastest of them;
--peak-note: the sentence before the peaks, for a GPU's report.)
"""
import json
import os
import re
import subprocess
import sys


def main(argv):
    runs_path, matmul_path, config_path = argv[:3]
    opt = lambda k: argv[argv.index(k) + 1] if k in argv else None
    runs = [json.loads(l) for l in open(runs_path)]
    cfg = json.load(open(config_path))
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    linear = 2 * layers * (4 * h * h + 2 * h * inter)
    peaks = {"f32": 0.0, "bf16": 0.0, "int8": 0.0}
    for line in open(matmul_path):
        m = re.match(r"(candle f32|libtorch f32|libtorch bf16|onnxruntime f32|onnxruntime int8)\s+\S+\s+([\d.]+)", line)
        if m:
            kind = m[1].split()[-1]
            peaks[kind] = max(peaks[kind], float(m[2]))
    best = {}
    for r in runs:
        e = r["engine"]
        if e not in best or r["records_per_s"] > best[e]["records_per_s"]:
            best[e] = dict(r, peak_mib=max(r["peak_mib"], best.get(e, {}).get("peak_mib", 0)))
    bases = (opt("--base") or "python sentence-transformers").split(",")
    base = max((best[b]["records_per_s"] for b in bases if b in best), default=None)
    ref = best.get("triage candle f32", {}).get("output")
    here = os.path.dirname(__file__)
    rows = []
    for e, r in best.items():
        window = r["tokens"] / r.get("windows", r["records"])
        flops = r["tokens_per_s"] * (linear + 4 * layers * h * window) / 1e9
        peak = peaks[next((k for k in ("bf16", "int8") if k in e), "f32")]
        row = {"engine": e, "records_per_s": r["records_per_s"], "tokens_per_s": r["tokens_per_s"],
               "peak_mib": r["peak_mib"], "vs_python_st_f32": r["records_per_s"] / base if base else None,
               "encoder_gflops": flops, "matmul_peak_gflops": peak, "share_of_peak": flops / peak if peak else None}
        if e.startswith("triage") and ref and r.get("output") != ref:
            cmp = subprocess.run([sys.executable, os.path.join(here, "..", "compare_outputs.py"), ref, r["output"], "--json"],
                                 capture_output=True, text=True, check=True)
            c = json.loads(cmp.stdout)
            row["top_label_agreement"] = c["top_label_agreement"]
            row["flag_agreement"] = c["flag_agreement"]
            row["max_score_difference"] = c["max_score_difference"]
            row["rms_score_difference"] = c["rms_score_difference"]
        rows.append(row)
    order = ["python sentence-transformers", "python transformers", "triage candle f32", "triage tch f32",
             "triage ort f32", "triage tch bf16", "triage ort int8+refine", "triage ort int8"]

    def place(engine):
        # refined rows by margin, widest first, before int8 alone
        if engine.startswith("triage ort int8+refine"):
            margin = engine.split("refine")[1]
            # the measured bound ("auto", the default) first
            return (order.index("triage ort int8+refine"), -float(margin) if margin != "auto" else -1.0)
        return (order.index(engine) if engine in order else 99, 0.0)
    rows.sort(key=lambda r: place(r["engine"]))
    lines = [f"Command: `{opt('--command') or 'scripts/perf/bench.sh'}`; {len(runs)} runs, best of each engine.",
             (opt("--peak-note") or "Matrix-multiply peak on these cores (best engine and shape of the `matmul_peak` example): ") +
             f"f32 {peaks['f32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f}" +
             (f", int8 {peaks['int8']:.0f} (ONNX Runtime, quantization of the activations included)" if peaks["int8"] else "") +
             ". Each engine's share is of the peak of its number format.", "",
             "| engine | records/s | tokens/s | peak MiB | vs Python ST f32 | encoder GFLOP/s | of matmul peak | top label = candle f32 | flagged labels = candle f32 | largest score diff | RMS score diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        agree = f"{100 * r['top_label_agreement']:.2f}%" if "top_label_agreement" in r else "-"
        flags = f"{100 * r['flag_agreement']:.2f}%" if "flag_agreement" in r else "-"
        diff = f"{r['max_score_difference']:.5f}" if "max_score_difference" in r else "-"
        rms = f"{r['rms_score_difference']:.5f}" if "rms_score_difference" in r else "-"
        ratio = f"{r['vs_python_st_f32']:.2f}x" if r["vs_python_st_f32"] else "-"
        share = f"{100 * r['share_of_peak']:.0f}%" if r["share_of_peak"] else "-"
        mib = f"{r['peak_mib']:,.0f}" if r["peak_mib"] else "-"
        lines.append(f"| {r['engine']} | {r['records_per_s']:.1f} | {r['tokens_per_s']:,.0f} | {mib} | "
                     f"{ratio} | {r['encoder_gflops']:.0f} | {share} | {agree} | {flags} | {diff} | {rms} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if opt("--md"):
        open(opt("--md"), "w").write(text)
    if opt("--json"):
        json.dump({"rows": rows, "peaks": peaks, "runs": runs}, open(opt("--json"), "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
