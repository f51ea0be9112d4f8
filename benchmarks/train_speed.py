"""Trainer speed of one training change, both arms in this one process, interleaved (A B A B ...), on real data.

    python benchmarks/train_speed.py --model minilm --data-dir DATA --rounds 2 --num_epochs 1 \
        --out docs/perf/train-speed-minilm.json [--lock /tmp/cpu-heavy.lock]

Arms: `autocast-copies` (the frozen float32 matmul weights cast to bfloat16 by autocast on every call, as before)
and `held-bf16` (the frozen matmul weights held in bfloat16 while training, `devices.frozen_linears_in`, the
default). Both compute the same numbers (tests/test_devices.py checks bit equality), so the validation scores of
the two arms of a round must be equal, and the program records whether they are. Per run: Trainer's runtime and
samples/s, the FLOP/s of `mathreport.flops` over Trainer's runtime and its share of the machine's bf16 ceiling
(`--ceiling`, docs/perf/ceiling.json by default), validation accuracy and macro-F1, and the CPU load alongside.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mathreport import devices, environment, files, search, train

ARMS = ("autocast-copies", "held-bf16")
# Further arms: the default plus Trainer's own options (torch.compile of the model Trainer trains, warm-up included),
# or plus TrainConfig fields (a larger batch: fewer, larger matmuls per sample).
EXTRA_ARMS = {"held-bf16+compile": ["--torch_compile"]}
CONFIG_ARMS = {"held-bf16+batch32": {"batch_size": 32}}


def run_once(
    model: str,
    data_dir: Path,
    arm: str,
    *,
    num_epochs: int,
    seed: int,
    max_train_samples: int | None,
    top_k_layers: int | None = None,
) -> dict:
    """One `train.fit_transformer` run of `model` in arm `arm`; Trainer's time, FLOP/s and validation scores."""
    held = devices.frozen_linears_in
    if arm == "autocast-copies":
        devices.frozen_linears_in = lambda model, dtype: contextlib.nullcontext()
    try:
        with tempfile.TemporaryDirectory(prefix="mathreport-train-speed-") as tmp:
            cfg = train.TrainConfig(
                model=model,
                train_path=data_dir / "augmented_train.csv",
                val_path=data_dir / "val_split.csv",
                test_path=None,
                output_dir=Path(tmp),
                num_epochs=num_epochs,
                seed=seed,
                bench=False,
                bf16=True,
                max_train_samples=max_train_samples,
                training_args=EXTRA_ARMS.get(arm, []),
                top_k_layers=top_k_layers,
                **CONFIG_ARMS.get(arm, {}),
            )
            cfg = train.resolve_defaults(cfg)
            splits = train.load_splits(cfg)
            start = time.perf_counter()
            classifier, _, stats = train.fit_transformer(cfg, splits, Path(tmp))
            wall = time.perf_counter() - start
            val = splits["val"]
            scores = search.validation_scores(
                val["label"].to_numpy(), classifier.predict_proba(val["Question"].tolist())
            )
    finally:
        devices.frozen_linears_in = held
    return {
        "arm": arm,
        "model": model,
        "seed": seed,
        "num_epochs": num_epochs,
        "n_train": len(splits["train"]),
        "top_k_layers": cfg.top_k_layers,
        "batch_size": cfg.batch_size,
        "train_seconds": stats["train_seconds"],
        "train_samples_per_second": stats["train_samples_per_second"],
        "flop": stats["flop"]["flop"],
        "flop_per_s": stats["flop"]["flop_per_s"],
        # the share of the ceiling measured on this machine by the run itself (mathreport.flops.ceiling)
        "ceiling_share_this_machine": stats.get("ceiling_share"),
        "fit_seconds": wall,
        **scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num_epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument(
        "--top_k_layers",
        type=int,
        default=None,
        help="default: the preset's (0: LoRA on every layer)",
    )
    parser.add_argument(
        "--ceiling", type=Path, default=Path(__file__).parent.parent / "docs/perf/ceiling.json"
    )
    parser.add_argument(
        "--lock", type=Path, default=None, help="hold an exclusive flock on this file throughout"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--arms", nargs="+", default=list(ARMS), choices=[*ARMS, *EXTRA_ARMS, *CONFIG_ARMS]
    )
    args = parser.parse_args(argv)
    ceiling = json.loads(args.ceiling.read_text())["ceilings"]["bfloat16"]["flop_per_s"]
    lock = open(args.lock, "w") if args.lock else None  # noqa: SIM115 (held for the whole run)
    if lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
    runs = []
    with environment.CpuLoad() as load:
        for round_ in range(args.rounds):
            for arm in args.arms:
                run = run_once(
                    args.model,
                    args.data_dir,
                    arm,
                    num_epochs=args.num_epochs,
                    seed=args.seed,
                    max_train_samples=args.max_train_samples,
                    top_k_layers=args.top_k_layers,
                )
                run["round"] = round_
                run["ceiling_share"] = run["flop_per_s"] / ceiling if run["flop_per_s"] else None
                print(json.dumps(run), flush=True)
                runs.append(run)
    summary = {}
    for arm in args.arms:
        mine = [r for r in runs if r["arm"] == arm]
        summary[arm] = {
            key: float(np.median([r[key] for r in mine]))
            for key in ("train_seconds", "train_samples_per_second", "flop_per_s", "ceiling_share")
        }
        shares = [r["ceiling_share_this_machine"] for r in mine if r["ceiling_share_this_machine"]]
        summary[arm]["ceiling_share_this_machine"] = float(np.median(shares)) if shares else None
    pairs = [[r for r in runs if r["round"] == k and r["arm"] in ARMS] for k in range(args.rounds)]
    same = all(len({(r["val_accuracy"], r["val_macro_f1"]) for r in pair}) == 1 for pair in pairs)
    result = {
        "what": "Trainer speed: frozen matmul weights cast by autocast on every call vs held in bf16",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "hardware": environment.hardware(),
        "versions": environment.versions(environment.RUN_PACKAGES),
        "ceiling_bf16_flop_per_s": ceiling,
        "ceiling_file": str(args.ceiling),
        "runs": runs,
        "median": summary,
        "speedup": {
            arm: summary[args.arms[0]]["train_seconds"] / summary[arm]["train_seconds"]
            for arm in args.arms
        },
        "validation_scores_equal_between_arms": same,
        "cpu_load": load.result,
    }
    files.write_json(args.out, result)
    print(
        f"speed-up over {args.arms[0]}: {result['speedup']}; the two bit-identical arms' scores equal: {same}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
