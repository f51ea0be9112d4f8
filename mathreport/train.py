"""Fine-tuning: transformers `Trainer` + peft LoRA for transformer models, scikit-learn for `tfidf`.

`train(TrainConfig(...))` reads the three split files, trains, evaluates on the test split and writes every file of
the run directory (see `artifacts`). The loop, checkpoints, resume, mixed precision and distribution are Trainer's;
this module only wires them.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mathreport import (
    artifacts,
    bench,
    data,
    devices,
    environment,
    files,
    fitting,
    modelcard,
    models,
    options,
    predict,
    record,
)
from mathreport.errors import ConfigError, RunExistsError
from mathreport.fitting import (  # noqa: F401 (re-exported: callers and tests name them train.*)
    CPU_LORA_DROPOUT,
    TEXT_PROGRESS_ENV,
    base_model,
    class_weighted_loss,
    history_from_log,
    training_path,
)
from mathreport.options import DEFAULT_IMBALANCE, IMBALANCE_METHODS, TrainConfig  # noqa: F401 (re-exported)
from mathreport.record import RunRecord

# Validation questions every inference backend's answers are compared on (paired, with the reference's): the
# whole split up to this cap; the check costs seconds per backend, and more questions give McNemar's test power.
BACKEND_CHOICE_ITEMS = 1000
cli_command = (
    options.command
)  # the `mathreport train` command that reproduces a config, from the CLI or a notebook


def validate_config(cfg: TrainConfig) -> None:
    """Check every option (and max_length against the tokenizer) before anything is written; ConfigError if not."""
    options.check(cfg)
    if cfg.top_k_layers and cfg.load_in_4bit:
        raise ConfigError(
            f"--top_k_layers {cfg.top_k_layers} with --load_in_4bit: not supported together (the "
            "frozen layers' states are cached in bfloat16 and the top layers are merged into full "
            "weights); pass --top_k_layers 0 for 4-bit QLoRA, or drop --load_in_4bit"
        )
    if Path(cfg.output_dir).exists() and not Path(cfg.output_dir).is_dir():
        raise ConfigError(f"--output_dir {cfg.output_dir}: is a file, not a directory")
    preset = models.get_preset(cfg.model)
    training_path(preset).check(cfg, preset)


def _check_output_dir(cfg: TrainConfig) -> Path:
    """Refuse to replace finished results or an unfinished run's checkpoints unless told; clear what a rerun redoes.

    Called with the run directory's lock held. The hints are complete commands that work.
    """
    run_dir = Path(cfg.output_dir)
    state = artifacts.run_state(run_dir)
    if cfg.resume and state == "unfinished":
        return run_dir
    if state == "complete" and not cfg.force:
        raise RunExistsError(
            f"{run_dir} already holds a finished run ({artifacts.MANIFEST}/{artifacts.METRICS}); refusing to "
            f"replace it. To train it again: {cli_command(cfg)} --force (or choose another --output_dir)"
        )
    if state == "unfinished" and not cfg.force:
        raise RunExistsError(
            f"{run_dir} holds an unfinished run (a checkpoint, or a finished training); continue it "
            f"with: {cli_command(cfg)} --resume (or start it over with --force)"
        )
    if (run_dir / artifacts.CHECKPOINTS).is_dir():
        shutil.rmtree(run_dir / artifacts.CHECKPOINTS)
    return run_dir


def hyperparameters(cfg: TrainConfig, preset: models.Preset) -> dict:
    """The hyperparameters of a run: the flags given, the preset's values for the others."""
    hyper = options.hyperparameters(cfg, preset)
    if (
        hyper["imbalance"] not in IMBALANCE_METHODS
    ):  # refused here too: fit_transformer is called without checks
        raise ValueError(
            f"imbalance must be one of {IMBALANCE_METHODS}, found {hyper['imbalance']!r}"
        )
    return hyper


def balance_train_split(splits: dict[str, pd.DataFrame], method: str, seed: int) -> dict | None:
    """Oversample the train split in place when `method` is "oversample"; the oversampling report, else None."""
    if method != "oversample":
        return None
    rows = len(splits["train"])
    splits["train"], report = data.oversample_minority(splits["train"], seed=seed)
    return {**report, "train_rows_before": rows}


def load_splits(cfg: TrainConfig) -> dict[str, pd.DataFrame]:
    """Read and validate the split files (test may be None), refusing leaking splits unless allowed."""
    paths = {
        name: path
        for name, path in (
            ("train", cfg.train_path),
            ("val", cfg.val_path),
            ("test", cfg.test_path),
        )
        if path is not None
    }
    splits = {
        name: data.read_split(path, text_col=cfg.text_col, label_col=cfg.label_col)
        for name, path in paths.items()
    }
    data.assert_no_leakage(
        {f"{name} ({paths[name]})": frame for name, frame in splits.items()},
        allow=cfg.allow_leakage,
    )
    where = {name: f"the {name} split ({paths[name]})" for name in paths}
    if cfg.max_train_samples and len(splits["train"]) > cfg.max_train_samples:
        # Stratified, so the sample has every class the full split has: nothing to refuse that the split has.
        splits["train"] = data.stratified_sample(
            splits["train"], cfg.max_train_samples, cfg.seed, where["train"]
        )
    if cfg.max_train_samples:
        where["train"] += f" sampled to --max_train_samples {cfg.max_train_samples}"
    for warning in data.check_class_coverage(
        splits, allow_missing=cfg.allow_missing_classes, where=where
    ):
        print(f"warning: {warning}", file=sys.stderr)
    return splits


def preset_for(cfg: TrainConfig) -> models.Preset:
    """The model's preset with the LoRA settings the config overrides."""
    preset = models.get_preset(cfg.model)
    return (
        preset
        if cfg.lora_dropout is None
        else dataclasses.replace(preset, lora_dropout=cfg.lora_dropout)
    )


def resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """The config with `bf16`, `fp16`, `lora_dropout`, `top_k_layers`, `num_epochs` decided where the flags leave
    them open.

    bf16 / fp16: the mixed precision `devices.choose_precision` picks for the device (bfloat16 where it is
    native: AVX-512 BF16 or AMX CPUs, GPUs of compute capability >= 8.0; float16 on older GPUs).
    lora_dropout: CPU_LORA_DROPOUT on the CPU, the preset's on CUDA. model_dropout: the preset's
    `cpu_model_dropout` on the CPU (None: the model's own).
    top_k_layers and num_epochs: the preset's; an explicit --load_in_4bit means full QLoRA
    (the two don't mix), and a top-k run is not loaded in 4-bit by default.
    """
    preset = models.get_preset(cfg.model)
    return training_path(preset).defaults(cfg, preset)


def train(cfg: TrainConfig) -> Path:
    """Train, evaluate on the test split and write the run directory. Returns its path.

    Options are validated before anything is written; the run directory's lock is held throughout, so a second
    process writing into it fails at once. `--resume` of a finished run does nothing (unless `force`). A run that
    fails is marked "failed" in run.json and leaves no empty checkpoint folder, so the same command starts it over.
    Under torchrun or `accelerate launch` every process trains (Trainer's DDP, FSDP or DeepSpeed) and only the
    main one (rank 0) holds the lock and writes (`artifacts.RunWriter`); the steps after training run there once.
    """
    validate_config(cfg)
    device = models.pick_device(cfg.device)
    transformer = models.get_preset(cfg.model).traits.neural
    precision = devices.choose_precision(device, cfg.bf16, cfg.fp16) if transformer else None
    cfg = resolve_defaults(cfg)
    state = devices.processes(device, transformer)
    writer = artifacts.RunWriter(
        cfg.output_dir,
        f"mathreport train --model {cfg.model}",
        is_main=state is None or state.is_main_process,
    )
    with writer.locked():
        if devices.from_main(
            state,
            lambda: (
                cfg.resume and not cfg.force and artifacts.run_state(cfg.output_dir) == "complete"
            ),
        ):
            if writer.is_main:
                print(
                    f"{cfg.output_dir} holds a finished run; --resume has nothing to continue, its files are "
                    f"unchanged (to train it again: {cli_command(cfg)} --force)",
                    file=sys.stderr,
                )
            return Path(cfg.output_dir)
        try:
            run_dir = _train_run(cfg, writer, state, precision)
        except BaseException as exc:
            if writer.is_main:
                _mark_failed(writer, exc)
            raise
        # Checkpoints exist to resume a stopped run; only now that run.json says complete is nothing left to redo.
        writer.drop_checkpoints()
        return run_dir


def _mark_failed(writer: artifacts.RunWriter, exc: BaseException) -> None:
    """After a failure: say so in run.json (if this run wrote one) and drop a checkpoint folder with no checkpoint."""
    run_dir = writer.run_dir
    if (run_dir / artifacts.CHECKPOINTS).is_dir() and not artifacts.has_checkpoints(run_dir):
        writer.drop_checkpoints()
    try:
        rec = record.read_if_present(run_dir)
    except artifacts.ArtifactError:
        return
    # With the lock held, a "running" run.json is this run's (or one of a process that was killed).
    if rec is None or rec.status != "running":
        return
    rec.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
    rec.stamp("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
    try:
        writer.record(rec)
    except (
        Exception
    ):  # a full disk refuses this write too: run.json stays "running", which no lock holds, and
        pass  # every reader calls such a run incomplete (artifacts.check_consistency); the first error is the one


def _train_run(cfg: TrainConfig, writer: artifacts.RunWriter, state=None, precision=None) -> Path:
    """The steps of `train`, with the run directory's lock held (by the main process)."""
    preset = preset_for(cfg)
    path = training_path(preset)
    base = path.base(
        cfg, preset
    )  # fails here, before anything is written, where the weights cannot be had
    run_dir = Path(cfg.output_dir)
    # Rank 0 checks the folder (and clears what a rerun redoes) before any process reads it.
    finished = devices.from_main(
        state,
        lambda: (
            bool(_check_output_dir(cfg))
            and cfg.resume
            and path.resumes_after_training
            and artifacts.training_finished(run_dir)
        ),
    )
    if finished:  # only the steps after training are left: one process does them
        return _finish_trained_run(cfg, writer) if writer.is_main else run_dir
    hyper = hyperparameters(cfg, preset)
    splits = load_splits(cfg)
    oversampling = balance_train_split(splits, hyper["imbalance"], cfg.seed)
    if writer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": cfg.train_path, "val": cfg.val_path, "test": cfg.test_path}
    rec = RunRecord(
        model=preset.key,
        kind=preset.kind,
        hf_id=preset.hf_id,
        description=preset.description,
        command=cli_command(cfg),
        argv=list(sys.argv),
        config={
            f.name: str(v) if isinstance(v := getattr(cfg, f.name), Path) else v
            for f in dataclasses.fields(cfg)
            if f.name != "callbacks"
        },
        hyperparameters=hyper,
        oversampling=oversampling,
        data={
            name: record.DataFile(str(path), files.file_sha256(path), len(splits[name]))
            for name, path in paths.items()
        },
        versions=environment.versions(environment.RUN_PACKAGES, python=True),
        hardware=environment.hardware(),
        start_time=record.now(),
        status="running",
    )
    writer.record(rec)
    fitted = path.fit(cfg, preset, base, splits, hyper, writer, precision)
    rec = dataclasses.replace(rec, training=fitted.training, **fitted.fields)
    writer.history(fitted.history)
    # Training is done and its adapter is in model/: recorded now, so a stop in the steps below (which can take
    # long on a large test split) is resumed by redoing only them (`_finish_trained_run`).
    writer.record(rec)
    if not writer.is_main:  # the other processes' part ends with the training
        return run_dir
    return _after_training(
        cfg, writer, rec, fitted.classifier, splits, hyper, fitted.device, fitted.dtype
    )


def _finish_trained_run(cfg: TrainConfig, writer: artifacts.RunWriter) -> Path:
    """`--resume` of a run stopped after its training finished: reload its final adapter and redo only the steps
    after training (predictions, metrics, ONNX export, latency), never the training."""
    run_dir = writer.run_dir
    rec = record.read(run_dir)
    for name, path in (("train", cfg.train_path), ("val", cfg.val_path), ("test", cfg.test_path)):
        recorded = rec.split(name).sha256
        if path is not None and recorded and files.file_sha256(path) != recorded:
            raise ConfigError(
                f"--resume: {path} is not the {name} split {run_dir} was trained with (SHA-256 differs from "
                f"{run_dir / artifacts.MANIFEST}'s data.{name}.sha256); give the original file, or start over with "
                f"{cli_command(cfg)} --force"
            )
    print(
        f"{run_dir}: training finished before the run stopped; reloading its adapter from "
        f"{artifacts.model_dir(run_dir)} and redoing only predictions, metrics, export and latency",
        file=sys.stderr,
    )
    splits = load_splits(cfg)
    hyper = rec.hyperparameters or hyperparameters(cfg, preset_for(cfg))
    # A 4-bit run reloads in 4-bit (its only weights); a top-k run computes as it trained (torch-topk).
    classifier = predict.load_torch(
        run_dir,
        rec,
        cfg.device,
        True,
        predict.TORCH_NF4.dtype
        if rec.load_in_4bit
        else predict.TORCH_TOPK.dtype
        if rec.partial
        else "float32",
    )
    rec.stamp("running")
    rec.resumed_after_training = record.now()
    writer.record(rec)
    return _after_training(
        cfg, writer, rec, classifier, splits, hyper, classifier.device, rec.dtype or "float32"
    )


def _after_training(
    cfg: TrainConfig,
    writer: artifacts.RunWriter,
    rec: RunRecord,
    classifier,
    splits: dict[str, pd.DataFrame],
    hyper: dict,
    device: str,
    dtype: str,
) -> Path:
    """The steps after training, on the main process: test and validation predictions, metrics, ONNX export,
    latency; run.json."""
    run_dir = writer.run_dir
    progress = (
        {"progress": True}
        if isinstance(classifier, (predict.TransformerClassifier, predict.TopKClassifier))
        else {}
    )
    test, val = splits["test"], splits["val"]
    started = (
        time.perf_counter()
    )  # post-training work is timed so its share of the training time can be stated
    # Which backend writes the predictions (predict.reference_backend reads it back; a 4-bit run's is torch-nf4).
    rec.predictions_backend = (
        predict.TORCH_TOPK.name if isinstance(classifier, predict.TopKClassifier) else None
    )
    probs = classifier.predict_proba(
        test["Question"].tolist(), batch_size=hyper["batch_size"] or 64, **progress
    )
    writer.predictions("test", test["label"].to_numpy(), probs, test["Question"].tolist())
    val_probs = classifier.predict_proba(
        val["Question"].tolist(), batch_size=hyper["batch_size"] or 64, **progress
    )
    writer.predictions("val", val["label"].to_numpy(), val_probs, val["Question"].tolist())
    if isinstance(
        classifier, predict.TopKClassifier
    ):  # from here on (timing), every state is computed, as on reload
        classifier.known_states = None
    evaluate_run(run_dir)
    rec.post_training_seconds = {"predict_test_and_val_s": time.perf_counter() - started}
    chosen = None  # {batch size: (backend, classifier)} the run chose, for its latency.json
    if rec.traits.neural:  # the backends, chosen per batch size on validation, never on test
        from mathreport import onnx_backend

        take = np.sort(np.random.default_rng(0).permutation(len(val))[:BACKEND_CHOICE_ITEMS])
        sample = (
            f"all {len(val)} questions"
            if len(take) == len(val)
            else f"{len(take)} of {len(val)} questions, seeded sample"
        )
        rec.inference, by_purpose = onnx_backend.export_and_choose(
            run_dir,
            classifier,
            val["Question"].iloc[take].tolist(),
            val["label"].to_numpy()[take],
            np.asarray(val_probs)[take],
            batch_size=hyper["batch_size"],
            split=f"validation split ({sample})",
        )
        chosen = {
            c["batch_size"]: (c["backend"], by_purpose[purpose])
            for purpose, c in rec.inference["choices"].items()
        }
        rec.post_training_seconds["export_and_backend_choice_s"] = (
            time.perf_counter() - started - rec.post_training_seconds["predict_test_and_val_s"]
        )
    if (
        cfg.bench and chosen
    ):  # one question with the latency choice, batches with the throughput choice
        writer.latency(
            bench.benchmark_choices(
                chosen,
                test["Question"].tolist(),
                device=device,
                max_items=cfg.bench_max_items,
                threads=bench.thread_candidates(),
            )
        )
    elif cfg.bench:
        writer.latency(
            bench.benchmark_latency(
                classifier,
                test["Question"].tolist(),
                device=device,
                dtype=dtype,
                max_items=cfg.bench_max_items,
                threads=bench.thread_candidates(),
            )
        )
    writer.finish(rec)
    if artifacts.has_adapter(
        run_dir
    ):  # the folder a user shares: its card, from the files just written
        modelcard.write_model_card(run_dir)
    return run_dir


def fit_transformer(cfg: TrainConfig, splits: dict[str, pd.DataFrame], work_dir: Path):
    """Train a transformer on splits["train"] (checkpoints chosen on splits["val"]) into `work_dir`; no run files.

    Returns (classifier, history, stats). The learning-rate search uses it; `train` adds the test evaluation and the
    run files around the same steps.
    """
    preset = preset_for(cfg)
    hyper = hyperparameters(cfg, preset)
    splits = dict(splits)
    balance_train_split(splits, hyper["imbalance"], cfg.seed)
    classifier, history, stats, _ = fitting.train_transformer(
        preset, *base_model(cfg, preset), splits, hyper, Path(work_dir), cfg
    )
    return classifier, history, stats


def evaluate_run(run_dir: Path, n_bootstrap: int = 1000) -> dict:
    """Compute `metrics.json` and `class_report.json` from the run's `preds_test.csv` and write them."""
    from mathreport import metrics

    if not Path(run_dir).is_dir():
        raise artifacts.ArtifactError(
            f"run directory {run_dir} does not exist; make it with: "
            f"{artifacts.make_command(run_dir)}"
        )
    with artifacts.run_lock(run_dir, "mathreport evaluate"):
        frame = artifacts.read_predictions(run_dir)
        probs = frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)
        y_true, y_pred = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
        result = metrics.compute_metrics(y_true, probs, y_pred=y_pred, n_bootstrap=n_bootstrap)
        artifacts.RunWriter(run_dir).metrics(
            result, metrics.per_class_report(y_true, probs, y_pred)
        )
        # A finished run's adapter card holds these metrics; while training, train writes it once the run is whole.
        # A folder made elsewhere (the team's Colab run: an adapter and predictions, no run.json) has no card to
        # refresh: the card is made from run.json.
        rec = record.read_if_present(run_dir)
        if artifacts.has_adapter(run_dir) and rec is not None and rec.status == "complete":
            modelcard.write_model_card(run_dir)
    return result


def backfill_val_predictions(
    run_dir: Path, val_path: Path | None = None, device: str | None = None, batch_size: int = 64
) -> Path:
    """Write `preds_val.csv` for a run made before runs wrote it, by reloading its saved model.

    The validation split is the file named in run.json (or `val_path`); its SHA-256 must match the one the run
    recorded, so the predictions are for the rows the run was trained beside.
    """
    run_dir = Path(run_dir)
    rec = artifacts.read_manifest(run_dir)
    recorded = rec.split("val")
    path = Path(val_path) if val_path is not None else Path(recorded.path)
    if not recorded.sha256:
        raise artifacts.ArtifactError(
            f"{run_dir / artifacts.MANIFEST}: no data.val.sha256; cannot tell which "
            "validation rows the run saw"
        )
    if not path.is_file():
        raise artifacts.ArtifactError(
            f"{run_dir}: its validation split {path} is missing; give it with --val_path"
        )
    if files.file_sha256(path) != recorded.sha256:
        raise artifacts.ArtifactError(
            f"{path} is not the validation split {run_dir} was trained with (SHA-256 differs from "
            f"{run_dir / artifacts.MANIFEST}'s data.val.sha256); give the original file with --val_path"
        )
    val = data.read_split(
        path,
        text_col=rec.config.get("text_col", "Question"),
        label_col=rec.config.get("label_col", "label"),
    )
    with artifacts.run_lock(run_dir, "mathreport evaluate --write_val_preds"):
        # The backend that wrote the run's test predictions, so both files come from the same model.
        wrote = predict.reference_backend(rec) if rec.traits.neural else None
        classifier = predict.load_classifier(
            run_dir,
            device=device,
            dtype=wrote and wrote.dtype,
            backend=wrote.engine if wrote else "auto",
        )
        probs = classifier.predict_proba(val["Question"].tolist(), batch_size=batch_size)
        written = artifacts.write_val_predictions(
            run_dir, val["label"].to_numpy(), probs, val["Question"].tolist()
        )
        rec = record.read(run_dir)
        if rec.outputs:  # readers check the run's files against this record (check_consistency)
            artifacts.RunWriter(run_dir).record_outputs(rec)
        return written
