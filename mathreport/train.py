"""Fine-tuning: transformers `Trainer` + peft LoRA for transformer models, scikit-learn for `tfidf`.

`train(TrainConfig(...))` reads the three split files, trains, evaluates on the test split and writes every file of
the run directory (see `artifacts`). The loop, checkpoints, resume, mixed precision and distribution are Trainer's;
this module only wires them.
"""

from __future__ import annotations

import dataclasses
import os
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
    modelcard,
    models,
    options,
    predict,
    record,
)
from mathreport.errors import ConfigError, RunExistsError
from mathreport.labels import NUM_CLASSES
from mathreport.options import DEFAULT_IMBALANCE, IMBALANCE_METHODS, TrainConfig  # noqa: F401 (re-exported)
from mathreport.record import RunRecord

TEXT_PROGRESS_ENV = "MATHREPORT_TEXT_PROGRESS"
# LoRA dropout for CPU training when --lora_dropout is not given: on the CPU each dropout draws a random mask per
# element for every LoRA module; pass --lora_dropout 0.1 --no-bf16 for the float32 settings (docs/PERFORMANCE.md).
CPU_LORA_DROPOUT = 0.0
# Validation questions every inference backend's answers are compared on (paired, with the reference's): the
# whole split up to this cap; the check costs seconds per backend, and more questions give McNemar's test power.
BACKEND_CHOICE_ITEMS = 1000
cli_command = options.command  # the `mathreport train` command that reproduces a config, from the CLI or a notebook


def validate_config(cfg: TrainConfig) -> None:
    """Check every option (and max_length against the tokenizer) before anything is written; ConfigError if not."""
    options.check(cfg)
    if cfg.top_k_layers and cfg.load_in_4bit:
        raise ConfigError(f"--top_k_layers {cfg.top_k_layers} with --load_in_4bit: not supported together (the "
                          "frozen layers' states are cached in bfloat16 and the top layers are merged into full "
                          "weights); pass --top_k_layers 0 for 4-bit QLoRA, or drop --load_in_4bit")
    if Path(cfg.output_dir).exists() and not Path(cfg.output_dir).is_dir():
        raise ConfigError(f"--output_dir {cfg.output_dir}: is a file, not a directory")
    preset = models.get_preset(cfg.model)
    if preset.kind == "tfidf" and cfg.training_args:  # no Trainer here: a leftover flag is a typo, not an option
        raise ConfigError(f"{' '.join(cfg.training_args)}: not an option of {options.PROGRAM} for {preset.key} "
                          "(the flags of transformers' TrainingArguments apply to transformer models only)")
    if preset.kind == "tfidf":
        ignored = [f"--{name} {value}" for name in options.transformer_only(TrainConfig)
                   if (value := getattr(cfg, name)) is not None and value != []]
        if ignored:
            print(f"warning: {', '.join(ignored)}: not used by {preset.key} (TF-IDF reads whole questions, "
                  "logistic regression has no learning rate); ignored", file=sys.stderr)
        return
    options.trainer_overrides(cfg.training_args)
    if cfg.max_length is not None:
        least = models.load_tokenizer(models.resolve_weights(preset, cfg.model_path)).num_special_tokens_to_add() + 1
        if cfg.max_length < least:
            raise ConfigError(f"--max_length {cfg.max_length}: must be >= {least} for {preset.key} (its tokenizer "
                              f"adds {least - 1} special token(s), and at least one token of the question must remain)")
    if cfg.top_k_layers:
        from transformers import AutoConfig

        from mathreport import partial

        layers = AutoConfig.from_pretrained(models.resolve_weights(preset, cfg.model_path)).num_hidden_layers
        partial.check_k(cfg.top_k_layers, layers, f" of {preset.key}")


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
            f"replace it. To train it again: {cli_command(cfg)} --force (or choose another --output_dir)")
    if state == "unfinished" and not cfg.force:
        raise RunExistsError(f"{run_dir} holds an unfinished run (a checkpoint, or a finished training); continue it "
                             f"with: {cli_command(cfg)} --resume (or start it over with --force)")
    if (run_dir / artifacts.CHECKPOINTS).is_dir():
        shutil.rmtree(run_dir / artifacts.CHECKPOINTS)
    return run_dir


def hyperparameters(cfg: TrainConfig, preset: models.Preset) -> dict:
    """The hyperparameters of a run: the flags given, the preset's values for the others."""
    hyper = options.hyperparameters(cfg, preset)
    if hyper["imbalance"] not in IMBALANCE_METHODS:  # refused here too: fit_transformer is called without checks
        raise ValueError(f"imbalance must be one of {IMBALANCE_METHODS}, found {hyper['imbalance']!r}")
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
    paths = {name: path for name, path in (("train", cfg.train_path), ("val", cfg.val_path),
                                           ("test", cfg.test_path)) if path is not None}
    splits = {name: data.read_split(path, text_col=cfg.text_col, label_col=cfg.label_col)
              for name, path in paths.items()}
    data.assert_no_leakage({f"{name} ({paths[name]})": frame for name, frame in splits.items()},
                           allow=cfg.allow_leakage)
    where = {name: f"the {name} split ({paths[name]})" for name in paths}
    if cfg.max_train_samples and len(splits["train"]) > cfg.max_train_samples:
        # Stratified, so the sample has every class the full split has: nothing to refuse that the split has.
        splits["train"] = data.stratified_sample(splits["train"], cfg.max_train_samples, cfg.seed, where["train"])
    if cfg.max_train_samples:
        where["train"] += f" sampled to --max_train_samples {cfg.max_train_samples}"
    for warning in data.check_class_coverage(splits, allow_missing=cfg.allow_missing_classes, where=where):
        print(f"warning: {warning}", file=sys.stderr)
    return splits


def preset_for(cfg: TrainConfig) -> models.Preset:
    """The model's preset with the LoRA settings the config overrides."""
    preset = models.get_preset(cfg.model)
    return preset if cfg.lora_dropout is None else dataclasses.replace(preset, lora_dropout=cfg.lora_dropout)


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
    if preset.kind != "transformer":
        return cfg
    device = models.pick_device(cfg.device)
    on_cpu = not device.startswith("cuda")
    mixed, _ = devices.choose_precision(device, cfg.bf16, cfg.fp16)
    dropout = cfg.lora_dropout if cfg.lora_dropout is not None or not on_cpu else CPU_LORA_DROPOUT
    top_k = cfg.top_k_layers if cfg.top_k_layers is not None else (0 if cfg.load_in_4bit else preset.top_k_layers)
    load_in_4bit = False if top_k and cfg.load_in_4bit is None else cfg.load_in_4bit
    model_dropout = cfg.model_dropout if cfg.model_dropout is not None or not on_cpu else preset.cpu_model_dropout
    return dataclasses.replace(cfg, bf16=mixed == "bfloat16", fp16=mixed == "float16", lora_dropout=dropout,
                               top_k_layers=top_k,
                               load_in_4bit=load_in_4bit, num_epochs=cfg.num_epochs or preset.num_epochs,
                               model_dropout=model_dropout)


def base_model(cfg: TrainConfig, preset: models.Preset) -> tuple[str, bool]:
    """The base weights and whether they load in 4-bit; fails at once where either cannot be had (no weights, no
    bitsandbytes for the device), so callers call it before writing anything."""
    weights = models.resolve_weights(preset, cfg.model_path)
    return weights, models.resolve_load_in_4bit(preset, models.pick_device(cfg.device), cfg.load_in_4bit)


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
    transformer = models.get_preset(cfg.model).kind == "transformer"
    precision = devices.choose_precision(device, cfg.bf16, cfg.fp16) if transformer else None
    cfg = resolve_defaults(cfg)
    state = devices.processes(device, transformer)
    writer = artifacts.RunWriter(cfg.output_dir, f"mathreport train --model {cfg.model}",
                                 is_main=state is None or state.is_main_process)
    with writer.locked():
        if devices.from_main(state, lambda: cfg.resume and not cfg.force
                      and artifacts.run_state(cfg.output_dir) == "complete"):
            if writer.is_main:
                print(f"{cfg.output_dir} holds a finished run; --resume has nothing to continue, its files are "
                      f"unchanged (to train it again: {cli_command(cfg)} --force)", file=sys.stderr)
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
    except Exception:  # a full disk refuses this write too: run.json stays "running", which no lock holds, and
        pass  # every reader calls such a run incomplete (artifacts.check_consistency); the first error is the one


def _train_run(cfg: TrainConfig, writer: artifacts.RunWriter, state=None, precision=None) -> Path:
    """The steps of `train`, with the run directory's lock held (by the main process)."""
    preset = preset_for(cfg)
    weights, load_in_4bit = base_model(cfg, preset) if preset.kind == "transformer" else (None, False)
    run_dir = Path(cfg.output_dir)
    # Rank 0 checks the folder (and clears what a rerun redoes) before any process reads it.
    finished = devices.from_main(state, lambda: bool(_check_output_dir(cfg)) and cfg.resume
                          and preset.kind == "transformer" and artifacts.training_finished(run_dir))
    if finished:  # only the steps after training are left: one process does them
        return _finish_trained_run(cfg, writer) if writer.is_main else run_dir
    hyper = hyperparameters(cfg, preset)
    splits = load_splits(cfg)
    oversampling = balance_train_split(splits, hyper["imbalance"], cfg.seed)
    if writer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": cfg.train_path, "val": cfg.val_path, "test": cfg.test_path}
    rec = RunRecord(
        model=preset.key, kind=preset.kind, hf_id=preset.hf_id, description=preset.description,
        command=cli_command(cfg), argv=list(sys.argv),
        config={f.name: str(v) if isinstance(v := getattr(cfg, f.name), Path) else v
                for f in dataclasses.fields(cfg) if f.name != "callbacks"},
        hyperparameters=hyper, oversampling=oversampling,
        data={name: record.DataFile(str(path), files.file_sha256(path), len(splits[name]))
              for name, path in paths.items()},
        versions=environment.versions(environment.RUN_PACKAGES, python=True), hardware=environment.hardware(),
        start_time=record.now(), status="running")
    writer.record(rec)
    if preset.kind == "tfidf":
        classifier, history, rec.training = _train_tfidf(splits, hyper, writer)
        device, dtype = "cpu", "float64"
    else:
        classifier, history, rec.training, extra = _train_transformer(preset, weights, load_in_4bit, splits, hyper,
                                                                      run_dir, cfg, precision, writer)
        rec = dataclasses.replace(rec, **extra)
        device, dtype = rec.device, rec.dtype
    writer.history(history)
    # Training is done and its adapter is in model/: recorded now, so a stop in the steps below (which can take
    # long on a large test split) is resumed by redoing only them (`_finish_trained_run`).
    writer.record(rec)
    if not writer.is_main:  # the other processes' part ends with the training
        return run_dir
    return _after_training(cfg, writer, rec, classifier, splits, hyper, device, dtype)


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
                f"{cli_command(cfg)} --force")
    print(f"{run_dir}: training finished before the run stopped; reloading its adapter from {run_dir / 'model'} "
          "and redoing only predictions, metrics, export and latency", file=sys.stderr)
    splits = load_splits(cfg)
    hyper = rec.hyperparameters or hyperparameters(cfg, preset_for(cfg))
    # A 4-bit run reloads in 4-bit (its only weights); a top-k run computes as it trained (torch-topk).
    classifier = predict.load_torch(run_dir, rec, cfg.device, True, predict.TORCH_NF4.dtype if rec.load_in_4bit
                                    else predict.TORCH_TOPK.dtype if rec.partial else "float32")
    rec.stamp("running")
    rec.resumed_after_training = record.now()
    writer.record(rec)
    return _after_training(cfg, writer, rec, classifier, splits, hyper, classifier.device, rec.dtype or "float32")


def _after_training(cfg: TrainConfig, writer: artifacts.RunWriter, rec: RunRecord, classifier,
                    splits: dict[str, pd.DataFrame], hyper: dict, device: str, dtype: str) -> Path:
    """The steps after training, on the main process: test and validation predictions, metrics, ONNX export,
    latency; run.json."""
    run_dir = writer.run_dir
    progress = {"progress": True} if isinstance(classifier, (predict.TransformerClassifier, predict.TopKClassifier)) \
        else {}
    test, val = splits["test"], splits["val"]
    started = time.perf_counter()  # post-training work is timed so its share of the training time can be stated
    # Which backend writes the predictions (predict.reference_backend reads it back; a 4-bit run's is torch-nf4).
    rec.predictions_backend = predict.TORCH_TOPK.name if isinstance(classifier, predict.TopKClassifier) else None
    probs = classifier.predict_proba(test["Question"].tolist(), batch_size=hyper["batch_size"] or 64, **progress)
    writer.predictions("test", test["label"].to_numpy(), probs, test["Question"].tolist())
    val_probs = classifier.predict_proba(val["Question"].tolist(), batch_size=hyper["batch_size"] or 64, **progress)
    writer.predictions("val", val["label"].to_numpy(), val_probs, val["Question"].tolist())
    if isinstance(classifier, predict.TopKClassifier):  # from here on (timing), every state is computed, as on reload
        classifier.known_states = None
    evaluate_run(run_dir)
    rec.post_training_seconds = {"predict_test_and_val_s": time.perf_counter() - started}
    chosen = None  # {batch size: (backend, classifier)} the run chose, for its latency.json
    if rec.kind == "transformer":  # the backends, chosen per batch size on validation, never on test
        from mathreport import onnx_backend

        take = np.sort(np.random.default_rng(0).permutation(len(val))[:BACKEND_CHOICE_ITEMS])
        sample = (f"all {len(val)} questions" if len(take) == len(val)
                  else f"{len(take)} of {len(val)} questions, seeded sample")
        rec.inference, by_purpose = onnx_backend.export_and_choose(
            run_dir, classifier, val["Question"].iloc[take].tolist(), val["label"].to_numpy()[take],
            np.asarray(val_probs)[take], batch_size=hyper["batch_size"], split=f"validation split ({sample})")
        chosen = {c["batch_size"]: (c["backend"], by_purpose[purpose])
                  for purpose, c in rec.inference["choices"].items()}
        rec.post_training_seconds["export_and_backend_choice_s"] = (
            time.perf_counter() - started - rec.post_training_seconds["predict_test_and_val_s"])
    if cfg.bench and chosen:  # one question with the latency choice, batches with the throughput choice
        writer.latency(bench.benchmark_choices(
            chosen, test["Question"].tolist(), device=device, max_items=cfg.bench_max_items,
            threads=bench.thread_candidates()))
    elif cfg.bench:
        writer.latency(bench.benchmark_latency(
            classifier, test["Question"].tolist(), device=device, dtype=dtype, max_items=cfg.bench_max_items,
            threads=bench.thread_candidates()))
    writer.finish(rec)
    if modelcard.has_adapter(run_dir):  # the folder a user shares: its card, from the files just written
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
    classifier, history, stats, _ = _train_transformer(preset, *base_model(cfg, preset), splits, hyper,
                                                       Path(work_dir), cfg)
    return classifier, history, stats


def evaluate_run(run_dir: Path, n_bootstrap: int = 1000) -> dict:
    """Compute `metrics.json` and `class_report.json` from the run's `preds_test.csv` and write them."""
    from mathreport import metrics

    if not Path(run_dir).is_dir():
        raise artifacts.ArtifactError(f"run directory {run_dir} does not exist; make it with: "
                                      f"{artifacts.make_command(run_dir)}")
    with artifacts.run_lock(run_dir, "mathreport evaluate"):
        frame = artifacts.read_predictions(run_dir)
        probs = frame[artifacts.PROB_COLUMNS].to_numpy(dtype=float)
        y_true, y_pred = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
        result = metrics.compute_metrics(y_true, probs, y_pred=y_pred, n_bootstrap=n_bootstrap)
        files.write_json(Path(run_dir) / artifacts.METRICS, result)
        files.write_json(Path(run_dir) / artifacts.CLASS_REPORT, metrics.per_class_report(y_true, probs, y_pred))
        # A finished run's adapter card holds these metrics; while training, train writes it once the run is whole.
        # A folder made elsewhere (the team's Colab run: an adapter and predictions, no run.json) has no card to
        # refresh: the card is made from run.json.
        rec = record.read_if_present(run_dir)
        if modelcard.has_adapter(run_dir) and rec is not None and rec.status == "complete":
            modelcard.write_model_card(run_dir)
    return result


def backfill_val_predictions(run_dir: Path, val_path: Path | None = None, device: str | None = None,
                             batch_size: int = 64) -> Path:
    """Write `preds_val.csv` for a run made before runs wrote it, by reloading its saved model.

    The validation split is the file named in run.json (or `val_path`); its SHA-256 must match the one the run
    recorded, so the predictions are for the rows the run was trained beside.
    """
    run_dir = Path(run_dir)
    rec = artifacts.read_manifest(run_dir)
    recorded = rec.split("val")
    path = Path(val_path) if val_path is not None else Path(recorded.path)
    if not recorded.sha256:
        raise artifacts.ArtifactError(f"{run_dir / artifacts.MANIFEST}: no data.val.sha256; cannot tell which "
                                      "validation rows the run saw")
    if not path.is_file():
        raise artifacts.ArtifactError(f"{run_dir}: its validation split {path} is missing; give it with --val_path")
    if files.file_sha256(path) != recorded.sha256:
        raise artifacts.ArtifactError(
            f"{path} is not the validation split {run_dir} was trained with (SHA-256 differs from "
            f"{run_dir / artifacts.MANIFEST}'s data.val.sha256); give the original file with --val_path")
    val = data.read_split(path, text_col=rec.config.get("text_col", "Question"),
                          label_col=rec.config.get("label_col", "label"))
    with artifacts.run_lock(run_dir, "mathreport evaluate --write_val_preds"):
        # The backend that wrote the run's test predictions, so both files come from the same model.
        wrote = predict.reference_backend(rec) if rec.kind == "transformer" else None
        classifier = predict.load_classifier(run_dir, device=device, dtype=wrote and wrote.dtype,
                                             backend=wrote.engine if wrote else "auto")
        probs = classifier.predict_proba(val["Question"].tolist(), batch_size=batch_size)
        written = artifacts.write_val_predictions(run_dir, val["label"].to_numpy(), probs, val["Question"].tolist())
        rec = record.read(run_dir)
        if rec.outputs:  # readers check the run's files against this record (check_consistency)
            rec.outputs = artifacts.outputs_record(run_dir)
            record.write(run_dir, rec)
        return written


# --- scikit-learn baseline -------------------------------------------------------------------------


def _train_tfidf(splits, hyper, writer: artifacts.RunWriter):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
    ])
    pipeline = make_pipeline(
        features, LogisticRegression(C=10.0, max_iter=2000, random_state=hyper["seed"],
                                     class_weight="balanced" if hyper["imbalance"] == "class_weights" else None)
    )
    start = time.perf_counter()
    train, val = splits["train"], splits["val"]
    # Classes the train split lacks were refused (or allowed) by data.check_class_coverage in load_splits;
    # SklearnClassifier gives them probability 0.
    pipeline.fit(train["Question"].tolist(), train["label"].to_numpy())
    seconds = time.perf_counter() - start
    classifier = predict.SklearnClassifier(pipeline)
    labels = list(range(NUM_CLASSES))

    def score(frame):
        probs = classifier.predict_proba(frame["Question"].tolist())
        return log_loss(frame["label"], probs, labels=labels), accuracy_score(frame["label"], probs.argmax(1))

    train_loss, train_acc = score(train)
    val_loss, val_acc = score(val)
    history = pd.DataFrame([{"epoch": 1, "train_loss": train_loss, "val_loss": val_loss,
                             "train_accuracy": train_acc, "val_accuracy": val_acc}])
    writer.save_model(pipeline)
    stats = {"train_seconds": seconds, "train_samples_per_second": len(train) / seconds}
    return classifier, history, stats


# --- transformers + peft ---------------------------------------------------------------------------


def _encode(tokenizer, frame: pd.DataFrame, max_length: int) -> list[dict]:
    """Pre-tokenised rows, a dataset for Trainer; DataCollatorWithPadding pads each batch to its own longest row."""
    enc = tokenizer(frame["Question"].tolist(), truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": int(label)}
            for ids, mask, label in zip(enc["input_ids"], enc["attention_mask"], frame["label"], strict=True)]


def _accuracy(eval_pred) -> dict:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == labels).mean())}


def history_from_log(log_history: list[dict]) -> pd.DataFrame:
    """One row per epoch from Trainer's log: train loss, and loss/accuracy on val and a train sample."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        epoch = int(round(entry["epoch"]))
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        for src, dst in (("eval_val_loss", "val_loss"), ("eval_val_accuracy", "val_accuracy"),
                         ("eval_train_accuracy", "train_accuracy"), ("eval_train_loss", "train_eval_loss")):
            if src in entry:
                row[dst] = entry[src]
    frame = pd.DataFrame([rows[e] for e in sorted(rows) if e > 0])
    columns = artifacts.HISTORY_COLUMNS
    return frame.reindex(columns=[*columns, *(c for c in frame if c not in columns)])


def class_weighted_loss(train_labels):
    """A Trainer `compute_loss_func`: cross-entropy with each class weighted by n / (8 * n_class).

    The sum is divided by the number of labelled items Trainer counted in the (accumulated) batch, as
    transformers' own losses do; balanced weights average 1 per item, so the scale matches the plain loss.
    """
    import torch
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(train_labels)
    weights = torch.tensor(compute_class_weight("balanced", classes=np.arange(NUM_CLASSES), y=labels),
                           dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = torch.nn.functional.cross_entropy(logits.float(), labels.to(logits.device),
                                                  weight=weights.to(logits.device), reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        return total / count

    loss.class_weights = weights.tolist()
    return loss


def _train_transformer(preset, weights: str, load_in_4bit: bool, splits, hyper, run_dir: Path, cfg: TrainConfig,
                       precision: tuple[str | None, str] | None = None, writer: artifacts.RunWriter | None = None):
    """Trainer + peft LoRA (on every layer, or the top k over cached states); (classifier, history, stats, record).

    weights, load_in_4bit: from `base_model`. precision: `devices.choose_precision`'s answer for the flags as
    given (None: from the resolved config). The returned record holds run.json's fields about the model; the
    classifier is None on the processes other than the main one, which predict nothing.
    """
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from mathreport import flops, partial

    writer = writer or artifacts.RunWriter(run_dir)
    set_seed(hyper["seed"])
    device = models.pick_device(cfg.device)
    on_cuda = device.startswith("cuda")
    mixed, why = precision or devices.choose_precision(device, cfg.bf16, cfg.fp16)
    top_k = hyper.get("top_k_layers") or 0  # never with 4-bit: validate_config and resolve_defaults see to it
    overrides = options.trainer_overrides(cfg.training_args)
    sharded = devices.sharded(overrides)
    if top_k and sharded:
        raise ConfigError(f"--top_k_layers {top_k} with {sharded}: the top-k path trains a small top model over "
                          "cached states, which FSDP / DeepSpeed do not shard; pass --top_k_layers 0")
    # Our defaults; any TrainingArguments flag the user gave (training_args) replaces the one here. Made first:
    # under torchrun it joins the processes' group, which the frozen-layer cache below waits on.
    args = TrainingArguments(**{
        "output_dir": str(run_dir / "checkpoints"), "num_train_epochs": hyper["num_epochs"],
        "learning_rate": hyper["learning_rate"], "per_device_train_batch_size": hyper["batch_size"],
        "per_device_eval_batch_size": max(hyper["batch_size"], 32), "eval_strategy": "epoch",
        "save_strategy": "epoch", "logging_strategy": "epoch", "save_total_limit": 1, "load_best_model_at_end": True,
        "metric_for_best_model": "val_accuracy", "warmup_steps": 0.06, "weight_decay": 0.01, "seed": hyper["seed"],
        "report_to": [], "train_sampling_strategy": "group_by_length",
        "bf16": mixed == "bfloat16", "fp16": mixed == "float16",
        "use_cpu": not on_cuda, "dataloader_num_workers": 0, "save_only_model": False,
        # transformers' decoder classification heads accept **kwargs but drop num_items_in_batch, so with this on,
        # Trainer would multiply their loss by the number of processes under torchrun.
        "average_tokens_across_devices": False,
        # Every LoRA parameter takes part in each step; DDP's search for unused ones is a wasted pass per step.
        "ddp_find_unused_parameters": False,
        **({"gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
           if load_in_4bit else {}),
        **overrides})
    device = devices.one_device(args, device)
    if on_cuda:  # before minutes of loading: refuse a run that cannot fit, naming settings that would
        _check_memory(weights, device, cfg, preset, hyper, load_in_4bit, args, mixed, top_k)
    tokenizer = models.load_tokenizer(weights)
    model = models.load_base_model(weights, tokenizer, device=device, load_in_4bit=load_in_4bit,
                                   compute_dtype=devices.compute_dtype(mixed, on_cuda),
                                   quant_storage=sharded is not None)
    quantization = models.quantization_record(model)
    if cfg.model_dropout is not None:
        models.set_dropout(model, cfg.model_dropout)
    if top_k:  # LoRA on the top k layers, trained over cached states of the frozen ones (mathreport.partial)
        model, lora = partial.add_top_lora(model, preset, top_k, mlp=cfg.lora_mlp)
    else:
        model, lora = models.add_lora(model, preset, load_in_4bit=load_in_4bit, mlp=cfg.lora_mlp)
    if mixed is not None:  # Trainer's loss scaling refuses float16 trainable weights; bf16 ones lose updates
        models.upcast_trainable(model)
    trainable, total = model.get_nb_trainable_parameters()

    max_length = hyper["max_length"]
    sample = splits["train"].sample(n=min(cfg.train_eval_samples, len(splits["train"])), random_state=hyper["seed"])
    frames = {"train": (splits["train"], cfg.train_path), "val": (splits["val"], cfg.val_path),
              "train_eval": (sample, cfg.train_path)}
    rows = {name: _encode(tokenizer, frame, max_length) for name, (frame, _) in frames.items()}
    # On the CPU, the frozen matmul weights are held in the autocast dtype while training: the same numbers as
    # autocast's per-call casts, without the copies (devices.frozen_linears_in). GPUs load them in it already.
    with devices.frozen_linears_in(model, None if on_cuda else mixed):
        trained, collator, datasets, setup = model, DataCollatorWithPadding(tokenizer), rows, None
        if top_k:
            # One process per machine computes the frozen layers' states and caches them; the others then read them.
            with args.main_process_first(local=True, desc="caching frozen layers"):
                setup = partial.prepare(model, tokenizer, top_k, {name: (rows[name], path) for name, (_, path) in
                                                                  frames.items()}, weights=weights,
                                        max_length=max_length, autocast=mixed)
            trained, collator, datasets = setup.model, setup.collator, setup.datasets
        loss_func = class_weighted_loss(splits["train"]["label"]) if hyper["imbalance"] == "class_weights" else None
        trainer = Trainer(model=trained, compute_loss_func=loss_func, args=args, data_collator=collator,
                          train_dataset=datasets["train"],
                          eval_dataset={"val": datasets["val"], "train": datasets["train_eval"]},
                          processing_class=tokenizer, compute_metrics=_accuracy, callbacks=list(cfg.callbacks))
        if os.environ.get(TEXT_PROGRESS_ENV) == "1":
            # Run by `mathreport pipeline` through papermill: Trainer's HTML notebook bar would only land in the kept
            # notebook, so use its text bar, which papermill streams to the terminal.
            from transformers import ProgressCallback
            from transformers.utils.notebook import NotebookProgressCallback

            trainer.remove_callback(NotebookProgressCallback)
            trainer.add_callback(ProgressCallback)
        resume = cfg.resume and artifacts.has_checkpoints(run_dir)
        if cfg.resume and not resume:
            print(f"--resume: no checkpoint under {run_dir}/checkpoints; starting from scratch", file=sys.stderr)
        output = trainer.train(resume_from_checkpoint=True if resume else None)
    history = history_from_log(trainer.state.log_history)
    # A top-k run trained the whole model's top layers through the top model; the adapter saved is the whole one's.
    # Otherwise Trainer saves it, on every process: FSDP and DeepSpeed gather the shards, and only rank 0 writes.
    writer.save_model(model, tokenizer, trainer=None if setup else trainer)
    # The checkpoints stay until run.json says complete (`train` removes them then): a stop before that resumes.
    stats = {
        "train_seconds": output.metrics.get("train_runtime"),
        "train_samples_per_second": output.metrics.get("train_samples_per_second"),
        "train_loss": output.metrics.get("train_loss"), "best_checkpoint_metric": args.metric_for_best_model,
        "train_accuracy_sample": len(sample), "trainable_parameters": int(trainable), "total_parameters": int(total),
        "resumed": bool(resume),
        # Trainer's runtime of a resumed run covers only the rest of it, so no FLOP/s for it.
        "flop": flops.training_record(
            partial.layer_list(model), partial.unwrap(model).config.hidden_size,
            trained=top_k or partial.num_layers(model), train_lengths=[len(r["input_ids"]) for r in rows["train"]],
            eval_lengths=[len(r["input_ids"]) for r in (*rows["val"], *rows["train_eval"])],
            epochs=hyper["num_epochs"], seconds=None if resume else output.metrics.get("train_runtime")),
    }
    if writer.is_main:  # the achieved rate as a share of this machine's ceiling in the precision that ran
        ran = devices.compute_dtype(mixed, on_cuda) if load_in_4bit else mixed or "float32"
        stats.update(flops.training_rate(stats["flop"], ran, device))
    if loss_func is not None:  # the validation loss in history.csv is weighted the same way
        stats.update(loss="class-weighted cross-entropy", class_weights=loss_func.class_weights)
    extra = {
        "weights": weights, "device": device, "load_in_4bit": bool(load_in_4bit), "quantization": quantization,
        "dtype": devices.weights_dtype(load_in_4bit, on_cuda, mixed),
        # The weights stay float32 on CPU (NF4 in 4-bit); mixed precision runs the training matmuls under autocast,
        # 4-bit runs included (Trainer's bf16 / fp16 flag is the same).
        "train_autocast": mixed, "precision": {"dtype": mixed, "reason": why},
        "world_size": args.world_size, "global_batch_size": devices.global_batch_size(args),
        "lora": {k: (list(v) if isinstance(v, (set, tuple)) else v) for k, v in lora.to_dict().items()
                 if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "task_type", "modules_to_save",
                          "layers_to_transform")},
        "partial": setup.record if setup else None,
    }
    if not writer.is_main:  # the other processes predict nothing
        return None, history, stats, extra
    # Merging LoRA into full-precision weights removes the adapter's extra matmuls at inference; a 4-bit base
    # cannot take the merge without dequantising, so it keeps the adapter.
    if load_in_4bit:
        # As a reloaded run predicts: without the bf16 autocast Trainer (accelerate) wrapped the forward in, and with
        # bitsandbytes' CPU inference kernel, which training kept off (models.add_lora).
        final = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        models.set_cpu_inference_packing(final, True)
    else:  # a top-k run's whole model holds the trained top layers (mathreport.partial)
        final = (model if setup else trainer.model).merge_and_unload()
    final.eval()
    if setup:  # it predicts as it was evaluated, reading the validation states training cached
        return (predict.TopKClassifier(final, tokenizer, max_length, top_k, extra["train_autocast"], device,
                                       known_states=setup.datasets["val"].states), history, stats, extra)
    return predict.TransformerClassifier(final, tokenizer, max_length, device), history, stats, extra


def _check_memory(weights: str, device: str, cfg: TrainConfig, preset, hyper: dict, load_in_4bit: bool, args,
                  mixed: str | None, top_k: int) -> None:
    """Refuse, before loading, a run whose estimated peak GPU memory exceeds what the GPU has free (memplan), in one
    line naming settings that fit."""
    from mathreport import memplan

    checkpointing = getattr(args, "activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = args.gradient_checkpointing
    show = (f"mathreport plan --model {cfg.model}" + (f" --model_path {cfg.model_path}" if cfg.model_path else "")
            + f" --batch_size {hyper['batch_size']} --max_length {hyper['max_length']}")
    memplan.check_cuda(
        weights, device, batch_size=hyper["batch_size"], max_length=hyper["max_length"], load_in_4bit=load_in_4bit,
        gradient_checkpointing=bool(checkpointing), gradient_accumulation_steps=args.gradient_accumulation_steps,
        eval_batch_size=args.per_device_eval_batch_size, lora_r=preset.lora_r, lora_dropout=preset.lora_dropout,
        lora_targets=tuple(models.lora_config(preset, mlp=cfg.lora_mlp).target_modules),
        trainable_top_k=top_k or None, optimizer=str(getattr(args.optim, "value", args.optim)),
        compute_dtype=devices.compute_dtype(mixed, on_cuda=True), show=show)
