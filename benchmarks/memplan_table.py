"""The memory plan of both 7B models at the settings docs/GPU.md discusses: estimates, not measurements.

    python benchmarks/memplan_table.py --out docs/perf/memplan.json

Each row is `mathreport plan --model M --json` with the row's flags (mathreport.memplan, no weights loaded);
`make perf-doc` renders the table `memplan` in docs/GPU.md from the file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from mathreport import cli, environment, files

MODELS = ("qwen", "mistral")
SETTINGS = {
    "4-bit, batch 8 x 512 (the preset)": [],
    "4-bit, batch 16 x 512": ["--batch_size", "16"],
    "4-bit, batch 8 x 1024": ["--max_length", "1024"],
    "4-bit, batch 4 x 512, evaluation batch 4": ["--batch_size", "4", "--eval_batch_size", "4"],
    "bf16, batch 8 x 512, no checkpointing": ["--no-load_in_4bit", "--no-gradient_checkpointing"],
    "bf16, batch 8 x 512, checkpointing": ["--no-load_in_4bit", "--gradient_checkpointing"],
}


def plan(model: str, flags: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["plan", "--model", model, "--json", *flags])
    if status != 0:
        raise SystemExit(f"mathreport plan --model {model} {' '.join(flags)} exited {status}")
    return json.loads(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = [
        {"settings": label, "flags": flags, "model": model, "plan": plan(model, flags)}
        for label, flags in SETTINGS.items()
        for model in MODELS
    ]
    files.write_json(
        args.out,
        {
            "what": "estimated peak GPU memory of training (mathreport plan), not measured",
            "command": "python benchmarks/memplan_table.py --out " + str(args.out),
            "versions": environment.versions(["mathreport", "transformers", "peft"]),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
