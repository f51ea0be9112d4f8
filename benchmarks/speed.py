"""Before/after measurements of each CPU speed-up, reproducible: `python benchmarks/speed.py --run_dir ...`.

Every comparison runs both variants in this one process, interleaved round by round (A B A B ...), so that
load from other processes on a shared machine hits both; the median over rounds is reported with every
round's value and how busy the machine's CPUs were. Nothing here is used to train or to report results.

What is compared (see docs/PERFORMANCE.md for the numbers):
- inference: torch threads 1 vs all cores, LoRA adapter kept vs merged into the weights, batches in input
  order vs sorted by length, padding to max_length vs to the batch's longest, float32 vs bfloat16 vs int8
  weights (int8: ONNX Runtime, when the run was exported) and the test accuracy of each; tfidf with
  scikit-learn's per-call input checks on and off;
- training steps (forward, backward, AdamW on the LoRA model, as Trainer runs them): padding to max_length vs
  dynamic padding, random vs length-grouped batches, torch threads 1 vs all cores, float32 vs bf16 autocast,
  LoRA dropout 0.1 vs 0;
- Trainer end to end (`train.fit_transformer`, the code `mathreport train` runs): float32, `--bf16`,
  `--bf16 --lora_dropout 0`, in samples per second and validation accuracy;
- a 2048x2048 matmul in float32 vs bfloat16 (what the CPU's bf16 instructions give at best).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import TrainerCallback

from mathreport import artifacts, bench, environment, files, models, predict
from mathreport.errors import OnnxUnavailable


def _compare(
    name: str,
    metric: str,
    unit: str,
    variants: dict[str, Callable[[], float]],
    rounds: int,
    better: str = "lower",
) -> dict:
    """Run each variant once per round, interleaved; the median over rounds and every round's value."""
    values: dict[str, list[float]] = {label: [] for label in variants}
    with environment.CpuLoad() as load:
        for _ in range(rounds):
            for label, run in variants.items():
                values[label].append(float(run()))
    medians = {label: float(np.median(v)) for label, v in values.items()}
    labels = list(variants)
    before, after = medians[labels[0]], medians[labels[-1]]
    speedup = before / after if better == "lower" else after / before
    row = {
        "comparison": name,
        "metric": metric,
        "unit": unit,
        "better": better,
        "rounds": rounds,
        "median": medians,
        "values": values,
        "speedup_last_vs_first": speedup,
    }
    if load.result:
        row.update(load.result)
    print(
        f"{name} [{metric}, {unit}]: "
        + ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
        + f" -> x{speedup:.2f}",
        flush=True,
    )
    return row


def _p50_ms(classifier: predict.Classifier, texts: list[str], batch_size: int) -> float:
    return bench.median_ms({"": classifier}, texts, batch_size)[""]


def _items_per_s(classifier: predict.Classifier, texts: list[str], batch_size: int) -> float:
    times, _ = bench.time_calls({"": classifier}, bench.batches_of(texts, batch_size), batch_size)
    return len(texts) * 1000 / times[""].sum()


def _with_threads(n: int, fn: Callable[[], float]) -> Callable[[], float]:
    def run() -> float:
        import torch

        torch.set_num_threads(n)
        return fn()

    return run


def measure_inference(run_dir: Path, *, rounds: int = 3, max_items: int = 200) -> list[dict]:
    """Inference comparisons on a transformer run's own test questions (real lengths)."""
    import dataclasses

    import torch

    texts = bench.test_questions(run_dir)[:max_items]
    merged = predict.load_classifier(run_dir, backend="torch")
    rows = []
    for bs, metric, fn, better in (
        (1, "p50 per item, batch 1", _p50_ms, "lower"),
        (32, "throughput, batch 32", _items_per_s, "higher"),
    ):
        unit = "ms" if better == "lower" else "items/s"
        merged.predict_proba(texts[:8], batch_size=bs)  # warm-up
        rows.append(
            _compare(
                "torch threads",
                metric,
                unit,
                {
                    f"{n} thread{'s' if n > 1 else ''}": _with_threads(
                        n, lambda b=bs, f=fn: f(merged, texts, b)
                    )
                    for n in bench.thread_candidates()
                },
                rounds,
                better,
            )
        )
    # The other comparisons run at the thread count that was fastest at batch size 1.
    best = min(rows[0]["median"], key=rows[0]["median"].get)
    threads = int(best.split()[0])
    torch.set_num_threads(threads)

    adapter = predict.load_classifier(run_dir, merge_lora=False, backend="torch")
    bf16 = predict.load_classifier(run_dir, dtype="bfloat16", backend="torch")
    # int8 is ONNX Runtime's (`mathreport export-onnx`); torch.ao's dynamic quantization is deprecated and gone here.
    try:
        int8 = predict.load_onnx(run_dir, "int8", artifacts.read_manifest(run_dir), threads=threads)
    except OnnxUnavailable as exc:
        print(f"int8 not measured: {exc}", flush=True)
        int8 = None
    reduced = {"bfloat16": bf16, **({"int8 (ONNX Runtime)": int8} if int8 else {})}
    unsorted = dataclasses.replace(merged, sort_by_length=False)
    padded = dataclasses.replace(merged, padding="max_length")
    for bs, metric, fn, better in (
        (1, "p50 per item, batch 1", _p50_ms, "lower"),
        (32, "throughput, batch 32", _items_per_s, "higher"),
    ):
        unit = "ms" if better == "lower" else "items/s"
        for clf in (adapter, *reduced.values()):
            clf.predict_proba(texts[:8], batch_size=bs)
        rows.append(
            _compare(
                "LoRA merged into the weights",
                metric,
                unit,
                {
                    "adapter kept": lambda c=adapter, b=bs, f=fn: f(c, texts, b),
                    "merged": lambda b=bs, f=fn: f(merged, texts, b),
                },
                rounds,
                better,
            )
        )
        rows.append(
            _compare(
                "dynamic padding",
                metric,
                unit,
                {
                    f"padded to max_length={merged.max_length}": lambda b=bs, f=fn: f(
                        padded, texts, b
                    ),
                    "padded to the batch's longest": lambda b=bs, f=fn: f(merged, texts, b),
                },
                rounds,
                better,
            )
        )
        rows.append(
            _compare(
                "reduced-precision weights",
                metric,
                unit,
                {
                    "float32": lambda b=bs, f=fn: f(merged, texts, b),
                    **{
                        label: lambda c=clf, b=bs, f=fn: f(c, texts, b)
                        for label, clf in reduced.items()
                    },
                },
                rounds,
                better,
            )
        )
    # Sorting only matters when a batch holds several questions; a shuffled copy stands for arbitrary input order.
    shuffled = list(pd.Series(texts).sample(frac=1.0, random_state=0))
    rows.append(
        _compare(
            "length-sorted batches",
            "throughput, batch 32, shuffled questions",
            "items/s",
            {
                "input order": lambda: _items_per_s_sorted(unsorted, shuffled),
                "sorted by length": lambda: _items_per_s_sorted(merged, shuffled),
            },
            rounds,
            "higher",
        )
    )
    for row in rows:
        row["threads"] = None if row["comparison"] == "torch threads" else threads
    rows.append(_precision_agreement(run_dir, merged, bf16, threads))
    if int8 is not None:
        rows.append(_precision_agreement(run_dir, merged, int8, threads, label="int8"))
    return rows


def _items_per_s_sorted(classifier: predict.TransformerClassifier, texts: list[str]) -> float:
    # One call with all questions: the classifier forms the batches of 32 itself (sorted or in input order).
    times, _ = bench.time_calls({"": classifier}, [texts], 32)
    return len(texts) * 1000 / times[""].sum()


def _precision_agreement(
    run_dir: Path,
    fp32: predict.Classifier,
    reduced: predict.Classifier,
    threads: int,
    label: str = "bfloat16",
) -> dict:
    """Test accuracy with float32 and reduced-precision weights, and how often their answers agree."""
    frame = artifacts.read_predictions(run_dir)
    texts = bench.test_questions(run_dir)
    y = frame["y_true"].to_numpy()[: len(texts)]
    p32 = fp32.predict_proba(texts)
    p16 = reduced.predict_proba(texts)
    row = {
        "comparison": f"{label} weights",
        "metric": "test accuracy",
        "unit": "fraction",
        "rounds": 1,
        "threads": threads,
        "n_test": len(texts),
        "median": {
            "float32": float((p32.argmax(1) == y).mean()),
            label: float((p16.argmax(1) == y).mean()),
        },
        "argmax_agreement": float((p32.argmax(1) == p16.argmax(1)).mean()),
        "max_abs_prob_diff": float(np.abs(p32 - p16).max()),
    }
    print(
        f"{label} weights [test accuracy]: {row['median']}, argmax agreement {row['argmax_agreement']:.4f}",
        flush=True,
    )
    return row


def measure_tfidf(run_dir: Path, *, rounds: int = 3, max_items: int = 200) -> list[dict]:
    """Batch-1 latency of the scikit-learn baseline, with scikit-learn's per-call input checks on and off."""
    import dataclasses

    clf = predict.load_classifier(run_dir)
    checked = dataclasses.replace(clf, skip_checks=False)
    texts = bench.test_questions(run_dir)[:max_items]
    clf.predict_proba(texts[:8])
    checked.predict_proba(texts[:8])
    return [
        _compare(
            "tfidf: scikit-learn input checks",
            "p50 per item, batch 1",
            "ms",
            {
                "checks on (sklearn default)": lambda: _p50_ms(checked, texts, 1),
                "assume_finite, skip_parameter_validation": lambda: _p50_ms(clf, texts, 1),
            },
            rounds,
        )
    ]


# --- training ------------------------------------------------------------------------------------------


def _lora_model(seed: int = 0, lora_dropout: float | None = None):
    import dataclasses

    import torch
    from peft import get_peft_model

    from mathreport import models

    torch.manual_seed(seed)
    preset = models.get_preset("minilm")
    if lora_dropout is not None:
        preset = dataclasses.replace(preset, lora_dropout=lora_dropout)
    weights = str(models.minilm_path())
    tokenizer = models.load_tokenizer(weights)
    model = models.load_base_model(weights, tokenizer, device="cpu")
    model = get_peft_model(model, models.lora_config(preset, model))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, optimizer, tokenizer, preset


def _step_rate(model, optimizer, batches: list[dict], bf16: bool = False) -> float:
    """Samples per second of forward + backward + AdamW steps on ready batches (what Trainer times per step)."""
    import torch

    start = time.perf_counter()
    n = 0
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        n += len(batch["labels"])
    return n / (time.perf_counter() - start)


def measure_training_steps(
    train_path: Path,
    *,
    rounds: int = 3,
    n_batches: int = 8,
    batch_size: int = 32,
    max_length: int = 128,
) -> list[dict]:
    """Training-step comparisons on real training questions: padding, batch grouping, threads, bf16."""
    import torch

    from mathreport import data

    frame = data.read_split(train_path)
    model, optimizer, tokenizer, preset = _lora_model()
    enc = tokenizer(frame["Question"].tolist(), truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    rng = np.random.default_rng(0)

    def collate(idx, padding):
        batch = tokenizer.pad(
            {
                "input_ids": [enc["input_ids"][i] for i in idx],
                "attention_mask": [enc["attention_mask"][i] for i in idx],
            },
            padding=padding,
            max_length=max_length,
            return_tensors="pt",
        )
        batch["labels"] = torch.tensor(frame["label"].to_numpy()[idx])
        return batch

    random_idx = [rng.permutation(len(frame))[:batch_size] for _ in range(n_batches)]
    # Like Trainer's group_by_length: batches of similar lengths, a random choice of them.
    order = np.argsort(lengths, kind="stable")
    groups = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    grouped_idx = [groups[i] for i in rng.choice(len(groups), n_batches, replace=False)]
    padded = [collate(i, "max_length") for i in random_idx]
    dynamic = [collate(i, "longest") for i in random_idx]
    grouped = [collate(i, "longest") for i in grouped_idx]
    _step_rate(model, optimizer, grouped[:2])
    _step_rate(model, optimizer, grouped[:2], bf16=True)
    info = {
        "tokens_per_batch": {
            "padded": max_length,
            "dynamic_random": float(np.mean([b["input_ids"].shape[1] for b in dynamic])),
            "dynamic_grouped": float(np.mean([b["input_ids"].shape[1] for b in grouped])),
        },
        "mean_question_tokens": float(lengths.mean()),
        "batch_size": batch_size,
        "n_batches": n_batches,
    }
    rows = []
    cores = bench.thread_candidates()[-1]
    rows.append(
        _compare(
            "torch threads (training steps)",
            "samples/s",
            "samples/s",
            {
                f"{n} thread{'s' if n > 1 else ''}": _with_threads(
                    n, lambda: _step_rate(model, optimizer, grouped)
                )
                for n in bench.thread_candidates()
            },
            rounds,
            "higher",
        )
    )
    torch.set_num_threads(cores)
    rows.append(
        _compare(
            "dynamic padding (training steps)",
            "samples/s",
            "samples/s",
            {
                f"padded to max_length={max_length}": lambda: _step_rate(model, optimizer, padded),
                "padded to the batch's longest": lambda: _step_rate(model, optimizer, dynamic),
            },
            rounds,
            "higher",
        )
    )
    rows.append(
        _compare(
            "length-grouped batches (training steps)",
            "samples/s",
            "samples/s",
            {
                "random batches": lambda: _step_rate(model, optimizer, dynamic),
                "grouped by length": lambda: _step_rate(model, optimizer, grouped),
            },
            rounds,
            "higher",
        )
    )
    rows.append(
        _compare(
            "bfloat16 autocast (training steps)",
            "samples/s",
            "samples/s",
            {
                "float32": lambda: _step_rate(model, optimizer, grouped),
                "bfloat16 autocast": lambda: _step_rate(model, optimizer, grouped, bf16=True),
            },
            rounds,
            "higher",
        )
    )
    # CPU dropout draws a random mask per element; peft draws one per LoRA module (36 in minilm) on its input.
    no_dropout, no_dropout_opt, _, _ = _lora_model(lora_dropout=0.0)
    _step_rate(no_dropout, no_dropout_opt, grouped[:2], bf16=True)
    rows.append(
        _compare(
            "LoRA dropout (training steps, bf16 autocast)",
            "samples/s",
            "samples/s",
            {
                f"lora_dropout={preset.lora_dropout}": lambda: _step_rate(
                    model, optimizer, grouped, bf16=True
                ),
                "lora_dropout=0": lambda: _step_rate(
                    no_dropout, no_dropout_opt, grouped, bf16=True
                ),
            },
            rounds,
            "higher",
        )
    )
    for row in rows:
        row.update(info)
        row["threads"] = None if row["comparison"].startswith("torch threads") else cores
    return rows


class StepTimer(TrainerCallback):
    """A TrainerCallback timing the training steps of each epoch (data loading included, evaluation and saving
    excluded), so that throughput can be told apart from the per-epoch evaluation Trainer also runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._epoch_start = None
        self._last_step_end = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_start = time.perf_counter()
        self._last_step_end = None

    def on_step_end(self, args, state, control, **kwargs):
        self._last_step_end = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._epoch_start is not None and self._last_step_end is not None:
            self.seconds += self._last_step_end - self._epoch_start


def trainer_run(
    train_path: Path,
    val_path: Path,
    *,
    bf16: bool,
    lora_dropout: float | None = None,
    num_epochs: int = 1,
    max_train_samples: int | None = None,
    seed: int = 42,
    work_dir: Path | None = None,
) -> dict:
    """One `train.fit_transformer` run of minilm: Trainer's samples/s, step-only samples/s, validation scores."""
    import tempfile

    from mathreport import search, train

    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="mathreport-speed-", dir=work_dir) as tmp:
        cfg = train.TrainConfig(
            model="minilm",
            train_path=train_path,
            val_path=val_path,
            test_path=None,
            output_dir=Path(tmp),
            num_epochs=num_epochs,
            max_train_samples=max_train_samples,
            seed=seed,
            bench=False,
            bf16=bf16,
            lora_dropout=lora_dropout,
            callbacks=[timer],
        )
        splits = train.load_splits(cfg)
        start = time.perf_counter()
        classifier, history, stats = train.fit_transformer(cfg, splits, Path(tmp))
        wall = time.perf_counter() - start
        val = splits["val"]
        scores = search.validation_scores(
            val["label"].to_numpy(), classifier.predict_proba(val["Question"].tolist())
        )
    n = len(splits["train"]) * num_epochs
    return {
        "bf16": bf16,
        "lora_dropout": lora_dropout,
        "n_train": len(splits["train"]),
        "num_epochs": num_epochs,
        "trainer_samples_per_second": stats["train_samples_per_second"],
        "step_samples_per_second": n / timer.seconds if timer.seconds else None,
        "fit_seconds": wall,
        **scores,
    }


# Explicit dropout: left open, train.resolve_defaults would give every variant the CPU default.
_PRESET_DROPOUT = models.get_preset("minilm").lora_dropout
TRAINER_VARIANTS = {
    "float32": {"bf16": False, "lora_dropout": _PRESET_DROPOUT},
    "bfloat16 autocast": {"bf16": True, "lora_dropout": _PRESET_DROPOUT},
    "bfloat16 autocast, lora_dropout=0": {"bf16": True, "lora_dropout": 0.0},
}


def measure_trainer(
    train_path: Path,
    val_path: Path,
    *,
    rounds: int = 2,
    num_epochs: int = 1,
    max_train_samples: int | None = None,
) -> list[dict]:
    """Trainer end to end (float32, --bf16, --bf16 --lora_dropout 0), interleaved rounds."""
    runs: dict[str, list[dict]] = {label: [] for label in TRAINER_VARIANTS}
    with environment.CpuLoad() as load:
        for _ in range(rounds):
            for label, options in TRAINER_VARIANTS.items():
                run = trainer_run(
                    train_path,
                    val_path,
                    num_epochs=num_epochs,
                    max_train_samples=max_train_samples,
                    **options,
                )
                print(f"Trainer {label}: {json.dumps(run)}", flush=True)
                runs[label].append(run)
    rows = []
    first, last = next(iter(TRAINER_VARIANTS)), list(TRAINER_VARIANTS)[-1]
    for metric in (
        "step_samples_per_second",
        "trainer_samples_per_second",
        "val_accuracy",
        "val_macro_f1",
    ):
        values = {label: [r[metric] for r in rs] for label, rs in runs.items()}
        medians = {k: float(np.median(v)) for k, v in values.items()}
        row = {
            "comparison": "Trainer end to end (train.fit_transformer)",
            "metric": metric,
            "unit": "samples/s" if "samples" in metric else "fraction",
            "better": "higher",
            "rounds": rounds,
            "median": medians,
            "values": values,
            "speedup_last_vs_first": medians[last] / medians[first],
            "n_train": runs[first][0]["n_train"],
            "num_epochs": num_epochs,
        }
        if load.result:
            row.update(load.result)
        rows.append(row)
    return rows


def matmul_gflops(n: int = 2048, repeats: int = 10) -> list[dict]:
    """GFLOP/s of an n x n matmul in float32 and bfloat16 at each thread count."""
    import torch

    rows = []
    for threads in bench.thread_candidates():
        torch.set_num_threads(threads)
        variants = {}
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)

            def run(a=a, b=b) -> float:
                a @ b
                start = time.perf_counter()
                for _ in range(repeats):
                    a @ b
                return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9

            variants[str(dtype).replace("torch.", "")] = run
        row = _compare(
            f"matmul {n}x{n}",
            f"GFLOP/s, {threads} thread{'s' if threads > 1 else ''}",
            "GFLOP/s",
            variants,
            3,
            "higher",
        )
        row["threads"] = threads
        rows.append(row)
    return rows


def cpu_flags() -> list[str]:
    """The CPU's bf16/AMX/AVX-512 flags (what the matmul numbers depend on)."""
    return sorted(
        f
        for f in environment.cpu_flags()
        if f.startswith(("amx", "avx512_bf16", "avx512f", "avx512_vnni"))
    )


def seed_arms(arms: dict[str, list[Path]]) -> dict:
    """Macro-F1 (validation and test) and Trainer samples/s of finished runs grouped in arms (one run per seed).

    Validation macro-F1 is computed here from each run's float32 torch model on the validation split named in its
    run.json: the defaults are chosen on validation, the test split only reports. Per arm: the mean and the
    sample standard deviation over seeds.
    """
    from mathreport import data, search

    out: dict = {"arms": {}}
    for arm, run_dirs in arms.items():
        runs = []
        for run_dir in run_dirs:
            manifest = artifacts.read_manifest(run_dir)
            test = artifacts.read_metrics(run_dir)
            val_split = data.read_split(manifest.split("val").path)
            probs = predict.load_classifier(run_dir, backend="torch").predict_proba(
                val_split["Question"].tolist()
            )
            val = search.validation_scores(val_split["label"].to_numpy(), probs)
            runs.append(
                {
                    "run_dir": str(run_dir),
                    "seed": manifest.hyperparameters["seed"],
                    "bf16_autocast": manifest.train_autocast,
                    "lora_dropout": manifest.lora["lora_dropout"],
                    "val_macro_f1": val["val_macro_f1"],
                    "val_accuracy": val["val_accuracy"],
                    "test_macro_f1": test["F1_macro"],
                    "test_accuracy": test["Accuracy"],
                    "train_samples_per_second": manifest.training["train_samples_per_second"],
                    "train_seconds": manifest.train_seconds,
                }
            )
        summary = {}
        for key in (
            "val_macro_f1",
            "val_accuracy",
            "test_macro_f1",
            "test_accuracy",
            "train_samples_per_second",
        ):
            values = [r[key] for r in runs]
            summary[key] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            }
        out["arms"][arm] = {"runs": runs, "summary": summary}
    return out


def _mean_sd(stat: dict, digits: int = 4) -> str:
    sd = stat["sd"]
    return f"{stat['mean']:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def seed_arms_markdown(result: dict) -> str:
    """The arms as a markdown table: one row per run, then each arm's mean ± sd."""
    lines = [
        "| arm | seed | bf16 autocast | lora_dropout | val macro-F1 | val accuracy | test macro-F1 | "
        "test accuracy | samples/s (Trainer) |",
        "| --- " * 9 + "|",
    ]
    for arm, entry in result["arms"].items():
        for r in entry["runs"]:
            lines.append(
                f"| {arm} | {r['seed']} | {r['bf16_autocast'] or 'no'} | {r['lora_dropout']} | "
                f"{r['val_macro_f1']:.4f} | {r['val_accuracy']:.4f} | {r['test_macro_f1']:.4f} | "
                f"{r['test_accuracy']:.4f} | {r['train_samples_per_second']:.1f} |"
            )
        s = entry["summary"]
        cells = [
            _mean_sd(s[key])
            for key in ("val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy")
        ]
        lines.append(
            f"| **{arm}** | mean ± sd | | | {' | '.join(cells)} | "
            f"{_mean_sd(s['train_samples_per_second'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict]) -> str:
    """The comparisons as a markdown table: each variant's median, and the speed-up of the last over the first."""
    lines = [
        "| comparison | metric | variants (median over rounds) | last vs first | threads | other CPU load |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        variants = "; ".join(f"{k}: {v:.4g} {r['unit']}" for k, v in r["median"].items())
        ratio = r.get("speedup_last_vs_first")
        load = r.get("cpu_busy_other")
        lines.append(
            f"| {r['comparison']} | {r['metric']} | {variants} | "
            f"{'' if ratio is None else f'x{ratio:.2f}'} | {r.get('threads') or ''} | "
            f"{'' if load is None else f'{load:.0%}'} |"
        )
    return "\n".join(lines) + "\n"


PROG = "python benchmarks/speed.py"
# The flags each part reads its inputs from.
PART_INPUTS = {
    "matmul": (),
    "inference": ("--run_dir",),
    "tfidf": ("--tfidf_run_dir",),
    "steps": ("--train_path",),
    "trainer": ("--train_path", "--val_path"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the comparisons asked for and write them as JSON and markdown."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--run_dir", type=Path, help="a minilm run (inference comparisons)")
    parser.add_argument("--tfidf_run_dir", type=Path, help="a tfidf run (batch-1 latency)")
    parser.add_argument("--train_path", type=Path, help="training split (training comparisons)")
    parser.add_argument("--val_path", type=Path, help="validation split (Trainer comparison)")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["matmul", "inference", "tfidf", "steps", "trainer"],
        choices=["matmul", "inference", "tfidf", "steps", "trainer"],
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trainer_rounds", type=int, default=2)
    parser.add_argument("--trainer_epochs", type=int, default=1)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("speed.json"))
    parser.add_argument(
        "--arm",
        nargs="+",
        action="append",
        metavar=("NAME", "RUN_DIR"),
        help="instead of timing: summarise finished runs, one per seed (repeat for each arm)",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # every part needs its runs or splits: say which flags, do not guess paths
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.arm:
        if any(len(arm) < 2 for arm in args.arm):
            parser.error("--arm takes a name and at least one run directory")
        result = seed_arms({arm[0]: [Path(p) for p in arm[1:]] for arm in args.arm})
        files.write_json(args.out, result)
        # The doc's tables come from the JSON (`make perf-doc`); the markdown is only printed.
        print(seed_arms_markdown(result))
        return 0

    for part in args.parts:
        missing = [flag for flag in PART_INPUTS[part] if getattr(args, flag.lstrip("-")) is None]
        if missing:
            parser.error(f"--parts {part} needs {' and '.join(missing)}")
    import torch

    default_threads = torch.get_num_threads()
    rows: list[dict] = []
    for part in args.parts:
        torch.set_num_threads(default_threads)
        if part == "matmul":
            rows += matmul_gflops()
        elif part == "inference":
            rows += measure_inference(args.run_dir, rounds=args.rounds)
        elif part == "tfidf":
            rows += measure_tfidf(args.tfidf_run_dir, rounds=args.rounds)
        elif part == "steps":
            rows += measure_training_steps(args.train_path, rounds=args.rounds)
        elif part == "trainer":
            rows += measure_trainer(
                args.train_path,
                args.val_path,
                rounds=args.trainer_rounds,
                num_epochs=args.trainer_epochs,
                max_train_samples=args.max_train_samples,
            )
    result = {
        "command": " ".join([PROG, *argv]),
        "hardware": environment.hardware(),
        "cpu_flags": cpu_flags(),
        "rows": rows,
    }
    files.write_json(args.out, result)
    print(to_markdown(rows))  # the doc's tables come from the JSON (`make perf-doc`)
    return 0


if __name__ == "__main__":
    sys.exit(main())
