"""Compute (or find) the frozen-layer caches of a top-k run and time them, then stop before Trainer trains.

    python benchmarks/precache.py --model mpnet --top_k_layers 2 --data_dir /work/realdata \\
        --scratch_dir /work/realruns/precache-mpnet-k2 --out precache-mpnet-k2.json

It goes through `mathreport.train.train` itself (same splits, oversampling, tokenization and cache key as the
real run), so the real runs that follow read these caches from disk; what a first run of that arm spends on
caching is what this records. The scratch run directory is left marked "failed" (it never trained).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mathreport import environment, files, partial
from mathreport.train import TrainConfig, train


class _Stop(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    from transformers import TrainerCallback

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--top_k_layers", type=int, required=True)
    parser.add_argument(
        "--data_dir",
        type=Path,
        required=True,
        help="holds augmented_train/val_split/test_split.csv",
    )
    parser.add_argument(
        "--scratch_dir", type=Path, required=True, help="a run directory to leave unfinished"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    class Stop(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            raise _Stop

    timings: list[dict] = []
    inner = partial.load_or_compute

    def timed(bottom, sequences, key, **kw):
        start = time.perf_counter()
        out = inner(bottom, sequences, key, **kw)
        timings.append(
            {
                "file": partial.key_name(key),
                "questions": len(sequences),
                "loaded": out[1],
                "seconds": time.perf_counter() - start,
                "key": key,
            }
        )
        return out

    partial.load_or_compute = timed
    d = args.data_dir
    try:
        train(
            TrainConfig(
                model=args.model,
                top_k_layers=args.top_k_layers,
                train_path=d / "augmented_train.csv",
                val_path=d / "val_split.csv",
                test_path=d / "test_split.csv",
                output_dir=args.scratch_dir,
                bench=False,
                force=True,
                callbacks=[Stop()],
            )
        )
    except _Stop:
        pass
    finally:
        partial.load_or_compute = inner
    files.write_json(
        args.out,
        {
            "command": "python benchmarks/precache.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "model": args.model,
            "top_k_layers": args.top_k_layers,
            "caches": timings,
            "seconds": sum(t["seconds"] for t in timings if not t["loaded"]),
            "hardware": environment.hardware(),
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
