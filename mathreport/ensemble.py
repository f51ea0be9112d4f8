"""A run made from other runs: their class probabilities pooled with weights fitted on the validation split only.

The result is a normal run directory, so the report and `mathreport compare` treat it like any model.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from mathreport import artifacts, environment, files, metrics, record
from mathreport.errors import EnsembleError, RunExistsError
from mathreport.labels import NUM_CLASSES

# How the members' probabilities are pooled (the default, loglinear, was chosen in docs/REAL_DATA.md).
METHODS = {
    "loglinear": "weighted geometric mean of the members' class probabilities, renormalised (softmax of "
    "sum_m w_m log p_m, w_m >= 0); weights minimise the validation log-loss (scipy L-BFGS-B)",
    "linear": "weighted average of the members' class probabilities (weights on the simplex); weights minimise "
    "the validation log-loss (scipy SLSQP)",
}
# Probabilities are clipped to this before the log, so one member's exact 0 cannot make the loss infinite.
EPS = 1e-12


@dataclass
class Member:
    """What an ensemble reads of one member run."""

    name: str
    path: Path
    val: pd.DataFrame
    test: pd.DataFrame
    manifest: record.RunRecord


def resolve_run(name_or_path: str | Path, results_dir: Path = Path("results")) -> Path:
    """A member's directory: a bare name (no path separator) means results_dir/NAME, anything else is a path."""
    text = str(name_or_path)
    return Path(results_dir) / text if "/" not in text and "\\" not in text else Path(text)


def load_member(run_dir: Path) -> Member:
    """Read a member's validation and test predictions and its run.json."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EnsembleError(
            f"ensemble member {run_dir} does not exist. Make it with: "
            f"{artifacts.make_command(run_dir)}"
        )
    manifest = artifacts.read_manifest(run_dir)
    if manifest.traits.combines_runs:
        # Its validation probabilities were fitted on the validation split; a second fit there would overfit it.
        raise EnsembleError(
            f"{run_dir} is itself an ensemble; give its members instead: "
            f"{', '.join(str(artifacts.member_dir(run_dir, m)) for m in manifest.members)}"
        )
    # Only a whole run can be a member: finished, not being written, its files the ones its run.json recorded.
    artifacts.check_consistency(run_dir)
    return Member(
        name=run_dir.name,
        path=run_dir,
        val=artifacts.read_val_predictions(run_dir),
        test=artifacts.read_predictions(run_dir),
        manifest=manifest,
    )


def _rows_differ(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """Why two prediction tables are not of the same items in the same order, or None."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} rows"
    differ = np.flatnonzero(a["y_true"].to_numpy() != b["y_true"].to_numpy())
    if differ.size:
        return f"y_true differs on {differ.size} row(s), first at line {int(differ[0]) + 2}"
    if "text" in a.columns and "text" in b.columns:
        differ = np.flatnonzero(
            a["text"].astype(str).to_numpy() != b["text"].astype(str).to_numpy()
        )
        if differ.size:
            return f"the question text differs on {differ.size} row(s), first at line {int(differ[0]) + 2}"
    return None


def check_members(members: list[Member]) -> None:
    """Refuse, naming both runs, members whose validation or test rows (or recorded split files) differ."""
    if len(members) < 2:
        raise EnsembleError(
            f"an ensemble needs at least 2 runs; found {[str(m.path) for m in members]}"
        )
    seen: dict[str, Path] = {}
    for m in members:
        # A symlink or a second spelling of the same folder is the same run; two folders of one name are not.
        key = os.path.realpath(m.path)
        if key in seen:
            raise EnsembleError(
                f"{seen[key]} and {m.path} are the same run ({key}); each member must be a "
                "different run"
            )
        seen[key] = m.path
    names = [m.name for m in members]
    for m in members:
        if (
            names.count(m.name) > 1
        ):  # weights and messages are keyed by name: use the path where names repeat
            m.name = str(m.path)
    first = members[0]
    for other in members[1:]:
        for split, filename in (("val", artifacts.PREDS_VAL), ("test", artifacts.PREDICTIONS)):
            reason = _rows_differ(getattr(first, split), getattr(other, split))
            hashes = [m.manifest.split(split).sha256 for m in (first, other)]
            if reason is None and all(hashes) and hashes[0] != hashes[1]:
                reason = (
                    f"their {artifacts.MANIFEST} data.{split}.sha256 differ "
                    f"({hashes[0][:12]}… vs {hashes[1][:12]}…)"
                )
            if reason:
                what = "validation" if split == "val" else "test"
                raise EnsembleError(
                    f"runs {first.name!r} ({first.path}) and {other.name!r} ({other.path}) have "
                    f"different {what} rows in {filename}: {reason}; an ensemble's members must be "
                    "evaluated on the same split files"
                )


def _probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)


def combine(probs: list[np.ndarray], weights: np.ndarray, method: str = "loglinear") -> np.ndarray:
    """The members' (n, 8) probability matrices pooled with `weights` (see METHODS), rows summing to 1."""
    stacked = np.stack([np.asarray(p, dtype=float) for p in probs])
    weights = np.asarray(weights, dtype=float)
    if method == "linear":
        mixed = np.tensordot(weights, stacked, axes=1)
        return mixed / mixed.sum(axis=1, keepdims=True)
    if method != "loglinear":
        raise ValueError(f"method must be one of {list(METHODS)}, found {method!r}")
    return softmax(np.tensordot(weights, np.log(np.clip(stacked, EPS, None)), axes=1), axis=1)


def log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-probability of the true class."""
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], EPS, None)).mean())


def fit_weights(val_probs: list[np.ndarray], y_val, method: str = "loglinear") -> np.ndarray:
    """Weights (>= 0) minimising the validation log-loss of the pooled probabilities (see `combine`)."""
    # The log-loss is convex in the weights for both methods, so a local optimiser finds the optimum.
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, found {method!r}")
    y_val = metrics.check_class_ids(y_val, "y_val")
    stacked = np.stack([np.asarray(p, dtype=float) for p in val_probs])  # (members, n, classes)
    if stacked.ndim != 3 or stacked.shape[2] != NUM_CLASSES or stacked.shape[1] != len(y_val):
        raise ValueError(
            f"val_probs must be (n, {NUM_CLASSES}) arrays of {len(y_val)} rows; found {stacked.shape}"
        )
    rows = np.arange(len(y_val))
    k = len(val_probs)
    if method == "loglinear":
        logs = np.log(np.clip(stacked, EPS, None))
        true_logs = logs[:, rows, y_val].T  # (n, members)

        def loss_and_grad(w):
            z = np.tensordot(w, logs, axes=1)
            pooled = softmax(z, axis=1)
            loss = logsumexp(z, axis=1) - z[rows, y_val]
            expected = np.einsum("nc,mnc->nm", pooled, logs)
            return loss.mean(), (expected - true_logs).mean(axis=0)

        result = minimize(
            loss_and_grad,
            np.full(k, 1.0 / k),
            jac=True,
            method="L-BFGS-B",
            bounds=[(0.0, None)] * k,
        )
    else:
        true_probs = stacked[:, rows, y_val].T  # (n, members): each member's p(true class)

        def loss_and_grad(w):
            mixed = np.clip(true_probs @ w, EPS, None)
            return -np.log(mixed).mean(), -(true_probs / mixed[:, None]).mean(axis=0)

        result = minimize(
            loss_and_grad,
            np.full(k, 1.0 / k),
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * k,
            constraints=[
                {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}
            ],
        )
    if not result.success:
        raise RuntimeError(f"fitting the ensemble weights failed: {result.message}")
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum() if method == "linear" else weights


def summed_latency(members: list[Member]) -> dict | None:
    """The ensemble's latency as the sum of its members' (they run one after another); None if one lacks it."""
    latencies = {}
    for m in members:
        if not (m.path / artifacts.LATENCY).is_file():
            return None
        latencies[m.name] = artifacts.read_latency(m.path)
    by_size = [{r["batch_size"]: r for r in lat["results"]} for lat in latencies.values()]
    sizes = sorted(set.intersection(*(set(b) for b in by_size)))
    if not sizes:
        return None
    results = []
    for size in sizes:
        entries = [b[size] for b in by_size]
        results.append(
            {
                "batch_size": size,
                # A sum of percentiles is not the percentile of the sum; it is the latency if the slow items coincide.
                **{
                    key: float(sum(e[key] for e in entries))
                    for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")
                    if all(key in e for e in entries)
                },
                "items_per_s": float(1.0 / sum(1.0 / e["items_per_s"] for e in entries)),
                "threads": {
                    name: e.get("threads") for name, e in zip(latencies, entries, strict=True)
                },
            }
        )
    return {
        "method": "sum of the members' measured latencies (members run one after another); not measured itself",
        "device": "; ".join(f"{name}: {lat['device']}" for name, lat in latencies.items()),
        "dtype": {name: lat.get("dtype") for name, lat in latencies.items()},
        "members": {
            name: str(m.path / artifacts.LATENCY)
            for name, m in zip(latencies, members, strict=True)
        },
        "results": results,
    }


@artifacts.locked("mathreport ensemble", "output_dir")
def build_ensemble(
    run_dirs: list[Path], output_dir: Path, force: bool = False, method: str = "loglinear"
) -> Path:
    """Fit the weights on the members' validation predictions and write the ensemble's run directory (locked)."""
    from mathreport import train

    output_dir = Path(output_dir)
    if (output_dir / artifacts.METRICS).exists() and not force:
        raise RunExistsError(
            f"{output_dir} already holds results ({artifacts.METRICS}); refusing to "
            "overwrite them. Pass --force to replace them, or choose another --output_dir."
        )
    if any(output_dir.resolve() == Path(r).resolve() for r in run_dirs):
        raise EnsembleError(
            f"--output_dir {output_dir} is one of the members; write the ensemble elsewhere"
        )
    start_time = record.now()
    members = [load_member(r) for r in run_dirs]
    check_members(members)
    writer = artifacts.RunWriter(output_dir)  # the lock is held (build_ensemble is `locked`)
    writer.remove(*artifacts.TRAINED_ONLY)

    val, test = members[0].val, members[0].test
    y_val, y_test = val["y_true"].to_numpy(), test["y_true"].to_numpy()
    val_probs = [_probs(m.val) for m in members]
    started = time.perf_counter()
    weights = fit_weights(val_probs, y_val, method)
    fit_seconds = time.perf_counter() - started
    val_mixed = combine(val_probs, weights, method)
    test_mixed = combine([_probs(m.test) for m in members], weights, method)

    output_dir.mkdir(parents=True, exist_ok=True)
    writer.predictions("val", y_val, val_mixed, val["text"].tolist() if "text" in val else None)
    writer.predictions(
        "test", y_test, test_mixed, test["text"].tolist() if "text" in test else None
    )
    result = train.evaluate_run(output_dir)
    # Fitted on validation, so its validation loss and accuracy are in-sample; there is no training split.
    history = pd.DataFrame(
        [
            {
                "epoch": 1,
                "train_loss": np.nan,
                "val_loss": log_loss(y_val, val_mixed),
                "train_accuracy": np.nan,
                "val_accuracy": float((val_mixed.argmax(1) == y_val).mean()),
            }
        ]
    )
    writer.history(history)
    latency = summed_latency(members)
    if latency is not None:
        writer.latency(latency)
    else:
        writer.remove(artifacts.LATENCY)  # a stale one from a previous ensemble would be wrong

    member_pred = {m.name: _probs(m.test).argmax(1) for m in members}
    member_acc = {name: float((pred == y_test).mean()) for name, pred in member_pred.items()}
    best = max(member_acc, key=member_acc.get)
    manifest = record.RunRecord(
        model="ensemble",
        kind="ensemble",
        method=method,
        method_description=METHODS[method],
        description=f"{method} pool of {', '.join(m.name for m in members)}, weights fitted on validation",
        command="mathreport ensemble --runs "
        + " ".join(str(m.path.resolve()) for m in members)
        + f" --method {method} --output_dir {output_dir}",
        argv=list(sys.argv),
        members=[
            {
                "name": m.name,
                "path": str(m.path.resolve()),
                "relative_path": os.path.relpath(m.path, output_dir),
                "model": m.manifest.model,
                "weight": float(w),
                "command": m.manifest.command,
                "data": {
                    split: dataclasses.asdict(info) for split, info in m.manifest.data.items()
                },
                "preds_val_sha256": files.file_sha256(m.path / artifacts.PREDS_VAL),
                "preds_test_sha256": files.file_sha256(m.path / artifacts.PREDICTIONS),
                "val_log_loss": log_loss(y_val, p),
                "test_accuracy": member_acc[m.name],
            }
            for m, w, p in zip(members, weights, val_probs, strict=True)
        ],
        member_weights={m.name: float(w) for m, w in zip(members, weights, strict=True)},
        validation={
            "rows": len(y_val),
            "log_loss_fitted": log_loss(y_val, val_mixed),
            "log_loss_plain_average": log_loss(
                y_val, combine(val_probs, np.ones(len(members)), "linear")
            ),
        },
        vs_best_member={
            "member": best,
            "accuracy_member": member_acc[best],
            "accuracy_ensemble": result["Accuracy"],
            **metrics.mcnemar_test(y_test, test_mixed.argmax(1), member_pred[best]),
        },
        data={
            split: members[0].manifest.data[split]
            for split in ("val", "test")
            if split in members[0].manifest.data
        },
        training={
            "train_seconds": fit_seconds,
            "members_train_seconds": {m.name: m.manifest.train_seconds for m in members},
        },
        latency_note="an ensemble runs every member: its latency is the sum of theirs"
        if latency
        else f"a member has no {artifacts.LATENCY}, so the ensemble has none",
        versions=environment.versions(environment.RUN_PACKAGES, python=True),
        hardware=environment.hardware(),
        start_time=start_time,
    )
    writer.finish(manifest)
    return output_dir


def is_current(run_dir: Path) -> bool:
    """Whether an ensemble's run is complete and its members' predictions are still the ones it was fitted on."""
    run_dir = Path(run_dir)
    if artifacts.missing_files(
        run_dir, (*artifacts.REQUIRED, artifacts.PREDS_VAL, artifacts.MANIFEST)
    ):
        return False
    try:
        artifacts.check_members_current(run_dir, artifacts.read_manifest(run_dir))
    except artifacts.ArtifactError:
        return False
    return True


def summary_line(run_dir: Path) -> str:
    """One line for the terminal: the ensemble's weights, accuracy and McNemar's test against its best member."""
    manifest = artifacts.read_manifest(run_dir)
    m = artifacts.read_metrics(run_dir)
    vs = manifest.vs_best_member
    weights = ", ".join(f"{name} {w:.3f}" for name, w in manifest.member_weights.items())
    return (
        f"{run_dir}: weights {weights}; Accuracy {m['Accuracy']:.4f}, F1_macro {m['F1_macro']:.4f} "
        f"(best member {vs['member']}: Accuracy {vs['accuracy_member']:.4f}; McNemar exact p = "
        f"{vs['p_value']:.4g}, {vs['b']} vs {vs['c']} discordant)"
    )


def is_ensemble(run_dir: Path) -> bool:
    """Whether a run directory holds an ensemble (its run.json's kind combines runs)."""
    return record.exists(run_dir) and record.read(run_dir).traits.combines_runs


@dataclass
class EnsembleClassifier:
    """The members' classifiers and the fitted weights: probabilities for new questions."""

    members: list
    weights: np.ndarray
    method: str = "loglinear"

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return combine(
            [m.predict_proba(texts, batch_size=batch_size) for m in self.members],
            self.weights,
            self.method,
        )


def load_classifier(
    run_dir: Path, device: str | None = None, dtype: str | None = None
) -> EnsembleClassifier:
    """Load every member's saved model (predict.load_classifier) with the ensemble's weights.

    dtype None: each member as it wrote the probabilities the weights were fitted on (its reference backend).
    """
    from mathreport import predict

    # A stale ensemble (a member retrained since) would apply old weights to a new member: refused here.
    artifacts.check_consistency(Path(run_dir))
    manifest = artifacts.read_manifest(Path(run_dir))
    members = []
    for m in manifest.members:
        member = artifacts.member_dir(run_dir, m)
        member_record = artifacts.read_manifest(member)
        if dtype is None and member_record.traits.neural:
            wrote = predict.reference_backend(member_record)
            members.append(
                predict.load_classifier(
                    member, device=device, dtype=wrote.dtype, backend=wrote.engine
                )
            )
        else:
            members.append(predict.load_classifier(member, device=device, dtype=dtype))
    return EnsembleClassifier(
        members, np.array([m["weight"] for m in manifest.members], dtype=float), manifest.method
    )
