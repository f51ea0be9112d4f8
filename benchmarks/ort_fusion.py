"""Does ONNX Runtime's transformer optimizer (fused Attention / EmbedLayerNorm / SkipLayerNorm / BiasGelu) make a
minilm run faster than mathreport's export (plain graph, ORT_ENABLE_ALL at load)?

Usage: python benchmarks/ort_fusion.py RUN_DIR OUTPUT.json [--rounds 3] [--items 200]

RUN_DIR is an exported transformer run (model.onnx and model-int8.onnx from `mathreport export-onnx`). The program
re-exports the run's model with eager attention (the attention pattern the optimizer can fuse), fuses it with
`onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`, quantizes the fused graph the same way as
mathreport (`quantize_dynamic`, MatMul, per channel), and times the four graphs in one process, interleaved:
batch-1 p50 over the first ITEMS test questions, ROUNDS rounds; items/s over the whole test split in length-sorted
batches of 32; accuracy and argmax agreement with the float32 graph on the whole test split. Nothing in the run
directory is changed; the fused graphs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args(argv)
    run = args.run_dir
    for name in ("model.onnx", "model-int8.onnx", "preds_test.csv"):
        if not (run / name).is_file():
            how = "train" if name == "preds_test.csv" else "export-onnx"
            print(f"{run / name}: missing; make it with `mathreport {how} --run_dir {run}`"
                  if how == "export-onnx" else f"{run / name}: missing; this is not a finished run", file=sys.stderr)
            return 2

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from mathreport import artifacts, files, onnx_backend, predict

    clf = predict.load_classifier(run, backend="torch")
    model = clf.model
    model.config._attn_implementation = "eager"
    for module in model.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = "eager"
    cfg = model.config
    tmp = Path(tempfile.mkdtemp(prefix="ort-fusion-"))
    onnx_backend.export_onnx(model, clf.tokenizer, tmp / "eager.onnx")
    fused = optimizer.optimize_model(str(tmp / "eager.onnx"), model_type="bert",
                                     num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size)
    fused_ops = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fused.save_model_to_file(str(tmp / "fused.onnx"))
    quantize_dynamic(str(tmp / "fused.onnx"), str(tmp / "fused-int8.onnx"), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], per_channel=True, extra_options={"DefaultTensorType": 1})
    paths = {"onnx-float32": run / "model.onnx", "onnx-int8": run / "model-int8.onnx",
             "fused-float32": tmp / "fused.onnx", "fused-int8": tmp / "fused-int8.onnx"}

    def session(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads = 2, 1
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.log_severity_level = 3
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

    sessions = {k: session(p) for k, p in paths.items()}
    import pandas as pd

    preds = pd.read_csv(run / "preds_test.csv")  # written by train: the test questions and their true labels
    texts, y = preds["text"].astype(str).tolist(), preds["y_true"].to_numpy()
    manifest = artifacts.read_manifest(run)
    tok, max_length = clf.tokenizer, manifest["hyperparameters"]["max_length"]

    def run1(s, batch):
        enc = tok(batch, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
        return s.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                            "attention_mask": enc["attention_mask"].astype(np.int64)})[0]

    order = np.argsort([len(t) for t in texts], kind="stable")
    logits = {}
    for k, s in sessions.items():
        out = np.empty((len(texts), 8))
        for i in range(0, len(texts), 32):
            idx = order[i:i + 32]
            out[idx] = run1(s, [texts[j] for j in idx])
        logits[k] = out
    lat = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for k, s in sessions.items():
            for t in texts[:args.items]:
                t0 = time.perf_counter()
                run1(s, [t])
                lat[k].append((time.perf_counter() - t0) * 1000)
    thr = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            for i in range(0, len(texts), 32):
                run1(s, [texts[j] for j in order[i:i + 32]])
            thr[k].append(len(texts) / (time.perf_counter() - t0))
    ref = logits["onnx-float32"].argmax(1)
    result = {"run_dir": str(run), "n_test": len(texts), "rounds": args.rounds, "batch1_items": args.items,
              "fused_operators": fused_ops, "threads": 2,
              "graphs": {k: {"accuracy": float((logits[k].argmax(1) == y).mean()),
                             "argmax_agreement_vs_onnx_float32": float((logits[k].argmax(1) == ref).mean()),
                             "batch1_p50_ms": float(np.median(lat[k])),
                             "sorted_batch32_items_per_s_median": float(np.median(thr[k]))} for k in sessions}}
    files.write_json(args.output, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
