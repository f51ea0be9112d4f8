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
from pathlib import Path

import numpy as np

THREADS = 2


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
            print(
                f"{run / name}: missing; make it with `mathreport {how} --run_dir {run}`"
                if how == "export-onnx"
                else f"{run / name}: missing; this is not a finished run",
                file=sys.stderr,
            )
            return 2

    import pandas as pd
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from mathreport import artifacts, bench, files, onnx_backend, predict

    clf = predict.load_classifier(run, backend="torch")
    model = clf.model
    model.config._attn_implementation = "eager"
    for module in model.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = "eager"
    cfg = model.config
    tmp = Path(tempfile.mkdtemp(prefix="ort-fusion-"))
    onnx_backend.export_onnx(model, clf.tokenizer, tmp / "eager.onnx")
    fused = optimizer.optimize_model(
        str(tmp / "eager.onnx"),
        model_type="bert",
        num_heads=cfg.num_attention_heads,
        hidden_size=cfg.hidden_size,
    )
    fused_ops = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    fused.save_model_to_file(str(tmp / "fused.onnx"))
    quantize_dynamic(
        str(tmp / "fused.onnx"),
        str(tmp / "fused-int8.onnx"),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        extra_options={"DefaultTensorType": 1},
    )
    paths = {
        "onnx-float32": run / "model.onnx",
        "onnx-int8": run / "model-int8.onnx",
        "fused-float32": tmp / "fused.onnx",
        "fused-int8": tmp / "fused-int8.onnx",
    }
    max_length = int(artifacts.read_manifest(run).hyperparameters["max_length"])
    graphs = {
        k: predict.OnnxClassifier(
            predict.make_session(p.read_bytes(), THREADS),
            clf.tokenizer,
            max_length,
            k.split("-")[1],
            THREADS,
        )
        for k, p in paths.items()
    }

    preds = pd.read_csv(
        run / "preds_test.csv"
    )  # written by train: the test questions and their true labels
    texts, y = preds["text"].astype(str).tolist(), preds["y_true"].to_numpy()
    answers = {k: g.predict_proba(texts).argmax(1) for k, g in graphs.items()}
    batch1 = bench.median_ms(graphs, texts[: args.items], 1, rounds=args.rounds)
    # One call per round over the whole test split: the classifier sorts it by length into batches of 32.
    sorted32, _ = bench.time_calls(graphs, [texts], 32, rounds=args.rounds)
    result = {
        "run_dir": str(run),
        "n_test": len(texts),
        "rounds": args.rounds,
        "batch1_items": args.items,
        "fused_operators": fused_ops,
        "threads": THREADS,
        "graphs": {
            k: {
                "accuracy": float((answers[k] == y).mean()),
                "argmax_agreement_vs_onnx_float32": float(
                    (answers[k] == answers["onnx-float32"]).mean()
                ),
                "batch1_p50_ms": batch1[k],
                "sorted_batch32_items_per_s_median": 1000 / float(np.median(sorted32[k])),
            }
            for k in graphs
        },
    }
    files.write_json(args.output, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
