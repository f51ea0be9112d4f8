"""Learning-rate search: one short LoRA training per rate (`train.fit_transformer`), scored on the validation split.

Each rate's row is appended to `<output_dir>/lr_search.csv` as soon as it is done, so an interrupted search goes
on where it stopped; the best rate (validation macro F1, then accuracy, then lowest loss) is marked there and in
`lr_search.json`, beside the settings, and rows of a search with other settings are refused rather than mixed in.
The test split is never read: choosing a rate on it would leak it into the reported result.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from mathreport import artifacts, files, models, options, record
from mathreport.errors import SearchError
from mathreport.labels import NUM_CLASSES
from mathreport.options import TrainConfig

COLUMNS = [
    "learning_rate",
    "val_accuracy",
    "val_macro_f1",
    "val_loss",
    "seconds",
    "train_samples_per_second",
    "best_epoch",
    "best",
]
# Settings that change what a row means; a resumed search must match them.
SETTINGS = (
    "model",
    "num_epochs",
    "max_train_samples",
    "batch_size",
    "max_length",
    "seed",
    "bf16",
    "lora_dropout",
    "model_dropout",
    "training_args",
    "train_sha256",
    "val_sha256",
)


@dataclass(kw_only=True)
class SearchConfig(TrainConfig):
    """One learning-rate search: TrainConfig's options (same fields, flags, rules) plus the rates to try.

    `mathreport search` offers the options in FLAGS; the fields below are the ones whose default differs.
    """

    learning_rates: list[float] = options.option(
        flag="--lrs", help="learning rates, e.g. 1e-5 1e-4 2e-4"
    )
    test_path: Path | None = options.override(
        TrainConfig, "test_path", None
    )  # never read: see the module doc
    num_epochs: int = options.override(TrainConfig, "num_epochs", 1)
    # history's train accuracy is not used here; keep its per-epoch cost small
    train_eval_samples: int = options.override(TrainConfig, "train_eval_samples", 64)
    bench: bool = options.override(TrainConfig, "bench", False)

    def train_config(self, **changes) -> TrainConfig:
        """The TrainConfig of one of the search's trainings."""
        return TrainConfig(
            **{**{f.name: getattr(self, f.name) for f in fields(TrainConfig)}, **changes}
        )


# The flags of `mathreport search`, in --help's order, and the help texts that differ from `train`'s.
FLAGS = (
    "model",
    "learning_rates",
    "train_path",
    "val_path",
    "output_dir",
    "num_epochs",
    "max_train_samples",
    "batch_size",
    "max_length",
    "seed",
    "bf16",
    "lora_dropout",
    "model_dropout",
    "model_path",
    "device",
    "allow_leakage",
    "allow_missing_classes",
    "text_col",
    "label_col",
    "training_args",
)
HELP = {
    "model": "a transformer preset (minilm, qwen, mistral) or HF id / path",
    "bf16": "CPU: bfloat16 autocast in training (default: as `train` decides it, on where the CPU has AVX-512 BF16 "
    "or AMX), so the rate found is the rate for the way `train` trains",
    "lora_dropout": "default: as `train` decides it (0 on CPU, the preset's on CUDA)",
    "allow_leakage": "search even if a question is in both splits",
}


def validation_scores(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 (over the classes in the labels or predictions, as metrics.compute_metrics) and log-loss
    of validation probabilities."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    labels = list(range(NUM_CLASSES))
    probs = np.asarray(probs, dtype=float)
    probs = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax sums can be off by 1e-7
    y_pred = probs.argmax(axis=1)
    return {
        "val_accuracy": float(accuracy_score(y_true, y_pred)),
        "val_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "val_loss": float(log_loss(y_true, probs, labels=labels)),
    }


def mark_best(frame: pd.DataFrame) -> pd.DataFrame:
    """The table sorted by learning rate with `best` True on one row: highest macro F1, then accuracy, then loss."""
    frame = frame.sort_values("learning_rate", kind="stable").reset_index(drop=True)
    ranked = frame.sort_values(
        ["val_macro_f1", "val_accuracy", "val_loss"], ascending=[False, False, True], kind="stable"
    )
    frame["best"] = False
    if not frame.empty:
        frame.loc[ranked.index[0], "best"] = True
    return frame


def read_search(output_dir: Path) -> pd.DataFrame:
    """The rows of `<output_dir>/lr_search.csv` so far (empty when there is none)."""
    path = Path(output_dir) / artifacts.LR_SEARCH
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    return artifacts.read_lr_search(output_dir)


def _done(frame: pd.DataFrame, lr: float) -> bool:
    return any(math.isclose(lr, float(v), rel_tol=1e-9) for v in frame["learning_rate"])


def _settings(cfg: SearchConfig, preset: models.Preset) -> dict:
    """What a row means: the resolved options (as `train` resolves them) and the two split files' SHA-256."""
    from mathreport import train

    hyper = options.hyperparameters(cfg, preset)
    return {
        "model": preset.key,
        **{
            k: hyper[k]
            for k in ("num_epochs", "max_train_samples", "batch_size", "max_length", "seed")
        },
        "bf16": cfg.bf16,
        "lora_dropout": train.preset_for(cfg).lora_dropout,
        "model_dropout": cfg.model_dropout,
        "training_args": cfg.training_args or None,  # None: as searches written before the option
        "train_sha256": files.file_sha256(cfg.train_path),
        "val_sha256": files.file_sha256(cfg.val_path),
    }


def _check_same_settings(output_dir: Path, settings: dict) -> None:
    path = Path(output_dir) / artifacts.LR_SEARCH_JSON
    if not path.is_file():
        raise SearchError(
            f"{output_dir}/{artifacts.LR_SEARCH} exists without "
            f"{artifacts.LR_SEARCH_JSON}, so its settings are unknown; move it away "
            "to start a new search"
        )
    previous = artifacts.read_json(path).get("settings", {})
    differ = {k: (previous.get(k), settings[k]) for k in SETTINGS if previous.get(k) != settings[k]}
    if differ:
        shown = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differ.items())
        raise SearchError(
            f"{output_dir}/{artifacts.LR_SEARCH} was made with other settings ({shown}); rows of "
            "different searches are not comparable. Use another --output_dir or the same settings."
        )


def _write(
    output_dir: Path, frame: pd.DataFrame, settings: dict, cfg: SearchConfig
) -> pd.DataFrame:
    frame = mark_best(frame)[COLUMNS]
    best = frame.loc[frame["best"]].iloc[0]
    artifacts.RunWriter(output_dir).lr_search(
        frame,
        {
            "best_learning_rate": float(best["learning_rate"]),
            "selected_by": "val_macro_f1, then val_accuracy, then lowest val_loss",
            "scored_on": str(cfg.val_path),
            "settings": settings,
            "rows": frame.astype(object).where(frame.notna(), None).to_dict(orient="records"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
            "updated": record.now(),
        },
    )
    return frame


@artifacts.locked("mathreport search", "cfg.output_dir")
def search(cfg: SearchConfig, log=print) -> pd.DataFrame:
    """Train once per learning rate not yet in `lr_search.csv`, appending each row when done. Returns the table."""
    from mathreport import train

    preset = models.get_preset(cfg.model)
    if not preset.traits.neural:
        raise SearchError(
            f"model {preset.key!r} has no learning rate: its logistic regression is solved to "
            "convergence by L-BFGS. Search a transformer model (e.g. --model minilm)."
        )
    if not cfg.learning_rates:
        raise SearchError("no learning rates given (--lrs 1e-5 1e-4 2e-4)")
    bad = [lr for lr in cfg.learning_rates if not (math.isfinite(lr) and lr > 0)]
    if bad:
        raise SearchError(f"learning rates must be positive numbers, found {bad}")
    train.validate_config(
        cfg.train_config()
    )  # the same rules and one-line errors as `mathreport train`
    # bf16 and LoRA dropout left open are decided as `train` decides them, so the rate found is the rate for the
    # trainings `train` runs (and the settings recorded below are the resolved ones).
    cfg = train.resolve_defaults(cfg)
    train.base_model(
        cfg, preset
    )  # fail before anything is written when the weights (or 4-bit) cannot be had
    output_dir = Path(cfg.output_dir)
    settings = _settings(cfg, preset)
    frame = read_search(output_dir)
    if not frame.empty:
        _check_same_settings(output_dir, settings)
    todo = [lr for lr in dict.fromkeys(cfg.learning_rates) if not _done(frame, lr)]
    for lr in cfg.learning_rates:
        if _done(frame, lr):
            log(f"lr {lr:g}: already in {output_dir / artifacts.LR_SEARCH}; skipped")
    if not todo:
        return mark_best(frame)

    base = cfg.train_config(test_path=None, bench=False)
    splits = train.load_splits(base)
    val = splits["val"]
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(f"{artifacts.LR_SCRATCH}*"):
        # Scratch folder of a training that was killed (SIGTERM/SIGKILL skip the cleanup below).
        shutil.rmtree(stale, ignore_errors=True)
    for lr in todo:
        start = time.perf_counter()
        # Checkpoints and the adapter go to a scratch folder: output_dir may hold a finished run (results/minilm).
        work = Path(tempfile.mkdtemp(prefix=artifacts.LR_SCRATCH, dir=output_dir))
        try:
            cfg_lr = cfg.train_config(
                test_path=None, bench=False, learning_rate=lr, output_dir=work
            )
            classifier, history, stats = train.fit_transformer(cfg_lr, splits, work)
            probs = classifier.predict_proba(
                val["Question"].tolist(), batch_size=max(base.batch_size or 32, 32)
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        scores = validation_scores(val["label"].to_numpy(), probs)
        # Trainer keeps the epoch with the best validation accuracy (load_best_model_at_end); say which it was.
        accuracy = history["val_accuracy"]
        best_epoch = (
            int(history.loc[accuracy.idxmax(), "epoch"]) if accuracy.notna().any() else None
        )
        row = {
            "learning_rate": lr,
            **scores,
            "seconds": time.perf_counter() - start,
            "train_samples_per_second": stats.get("train_samples_per_second"),
            "best_epoch": best_epoch,
        }
        rows = (
            pd.DataFrame([row])
            if frame.empty
            else pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
        )
        frame = _write(output_dir, rows, settings, cfg)
        log(
            f"lr {lr:g}: val accuracy {scores['val_accuracy']:.3f}, macro F1 {scores['val_macro_f1']:.3f}, "
            f"loss {scores['val_loss']:.3f} ({row['seconds']:.0f} s)"
        )
    return frame
