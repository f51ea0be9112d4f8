"""The two ways a model is trained, behind one interface: `TrainerPath` (transformers' Trainer + peft LoRA) and
`ScikitLearnPath` (TF-IDF + logistic regression). `train` asks `training_path(preset)` for the one its kind uses and
calls `check`, `defaults`, `base` and `fit`; nothing else in the package branches on a preset's kind to train.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from mathreport import artifacts, devices, models, options, predict
from mathreport.errors import ConfigError
from mathreport.labels import NUM_CLASSES
from mathreport.options import TrainConfig

TEXT_PROGRESS_ENV = "MATHREPORT_TEXT_PROGRESS"
# LoRA dropout for CPU training when --lora_dropout is not given: on the CPU each dropout draws a random mask per
# element for every LoRA module; pass --lora_dropout 0.1 --no-bf16 for the float32 settings (docs/PERFORMANCE.md).
CPU_LORA_DROPOUT = 0.0


def base_model(cfg: TrainConfig, preset: models.Preset) -> tuple[str, bool]:
    """The base weights and whether they load in 4-bit; fails at once where either cannot be had (no weights, no
    bitsandbytes for the device), so callers call it before writing anything."""
    weights = models.resolve_weights(preset, cfg.model_path)
    return weights, models.resolve_load_in_4bit(
        preset, models.pick_device(cfg.device), cfg.load_in_4bit
    )


class ScikitLearnPath:
    """tfidf: TF-IDF features and logistic regression, fitted by scikit-learn. No Trainer, no base weights, no
    backends to choose."""

    resumes_after_training = False  # a fit takes seconds: a stopped run starts over

    def check(self, cfg: TrainConfig, preset: models.Preset) -> None:
        if cfg.training_args:  # no Trainer here: a leftover flag is a typo, not an option
            raise ConfigError(
                f"{' '.join(cfg.training_args)}: not an option of {options.PROGRAM} for "
                f"{preset.key} (the flags of transformers' TrainingArguments apply to transformer "
                "models only)"
            )
        ignored = [
            f"--{name} {value}"
            for name in options.transformer_only(TrainConfig)
            if (value := getattr(cfg, name)) is not None and value != []
        ]
        if ignored:
            print(
                f"warning: {', '.join(ignored)}: not used by {preset.key} (TF-IDF reads whole questions, "
                "logistic regression has no learning rate); ignored",
                file=sys.stderr,
            )

    def defaults(self, cfg: TrainConfig, preset: models.Preset) -> TrainConfig:
        return cfg

    def base(self, cfg: TrainConfig, preset: models.Preset) -> tuple[str | None, bool]:
        return None, False

    def fit(self, cfg, preset, base, splits, hyper, writer, precision) -> Fitted:
        classifier, history, training = train_tfidf(splits, hyper, writer)
        return Fitted(classifier, history, training, {}, "cpu", "float64")


class TrainerPath:
    """Transformer models: transformers' Trainer with peft LoRA, on every layer or the top k over cached states."""

    resumes_after_training = (
        True  # the adapter is saved: a stop after training redoes only what follows
    )

    def check(self, cfg: TrainConfig, preset: models.Preset) -> None:
        options.trainer_overrides(cfg.training_args)
        if cfg.max_length is not None:
            tokenizer = models.load_tokenizer(models.resolve_weights(preset, cfg.model_path))
            least = tokenizer.num_special_tokens_to_add() + 1
            if cfg.max_length < least:
                raise ConfigError(
                    f"--max_length {cfg.max_length}: must be >= {least} for {preset.key} (its "
                    f"tokenizer adds {least - 1} special token(s), and at least one token of the "
                    "question must remain)"
                )
        if cfg.top_k_layers:
            from transformers import AutoConfig

            from mathreport import partial

            layers = AutoConfig.from_pretrained(
                models.resolve_weights(preset, cfg.model_path)
            ).num_hidden_layers
            partial.check_k(cfg.top_k_layers, layers, f" of {preset.key}")

    def defaults(self, cfg: TrainConfig, preset: models.Preset) -> TrainConfig:
        device = models.pick_device(cfg.device)
        on_cpu = not device.startswith("cuda")
        mixed, _ = devices.choose_precision(device, cfg.bf16, cfg.fp16)
        dropout = (
            cfg.lora_dropout if cfg.lora_dropout is not None or not on_cpu else CPU_LORA_DROPOUT
        )
        top_k = (
            cfg.top_k_layers
            if cfg.top_k_layers is not None
            else (0 if cfg.load_in_4bit else preset.top_k_layers)
        )
        load_in_4bit = False if top_k and cfg.load_in_4bit is None else cfg.load_in_4bit
        model_dropout = (
            cfg.model_dropout
            if cfg.model_dropout is not None or not on_cpu
            else preset.cpu_model_dropout
        )
        return dataclasses.replace(
            cfg,
            bf16=mixed == "bfloat16",
            fp16=mixed == "float16",
            lora_dropout=dropout,
            top_k_layers=top_k,
            load_in_4bit=load_in_4bit,
            num_epochs=cfg.num_epochs or preset.num_epochs,
            model_dropout=model_dropout,
        )

    def base(self, cfg: TrainConfig, preset: models.Preset) -> tuple[str | None, bool]:
        return base_model(cfg, preset)

    def fit(self, cfg, preset, base, splits, hyper, writer, precision) -> Fitted:
        classifier, history, training, fields = train_transformer(
            preset, *base, splits, hyper, writer.run_dir, cfg, precision, writer
        )
        return Fitted(
            classifier, history, training, fields, fields.get("device"), fields.get("dtype")
        )


class Fitted(NamedTuple):
    """What a training path hands back: the classifier (None off the main process), the per-epoch history,
    run.json's `training` section and its fields about the model, and where and in what dtype it predicts."""

    classifier: object
    history: pd.DataFrame
    training: dict
    fields: dict
    device: str | None
    dtype: str | None


# The one dispatch on a preset's kind: every kind-specific step of `train` is a method of its path.
TRAINING_PATHS = {"transformer": TrainerPath(), "tfidf": ScikitLearnPath()}


def training_path(preset: models.Preset) -> TrainerPath | ScikitLearnPath:
    """The training path of a preset's kind (`TRAINING_PATHS`)."""
    if preset.kind not in TRAINING_PATHS:
        raise ConfigError(
            f"--model {preset.key}: its kind {preset.kind!r} has no training path (known: "
            f"{', '.join(TRAINING_PATHS)})"
        )
    return TRAINING_PATHS[preset.kind]


# --- scikit-learn baseline -------------------------------------------------------------------------


def train_tfidf(splits, hyper, writer: artifacts.RunWriter):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
                ),
            ),
        ]
    )
    pipeline = make_pipeline(
        features,
        LogisticRegression(
            C=10.0,
            max_iter=2000,
            random_state=hyper["seed"],
            class_weight="balanced" if hyper["imbalance"] == "class_weights" else None,
        ),
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
        return log_loss(frame["label"], probs, labels=labels), accuracy_score(
            frame["label"], probs.argmax(1)
        )

    train_loss, train_acc = score(train)
    val_loss, val_acc = score(val)
    history = pd.DataFrame(
        [
            {
                "epoch": 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "train_accuracy": train_acc,
                "val_accuracy": val_acc,
            }
        ]
    )
    writer.save_model(pipeline)
    stats = {"train_seconds": seconds, "train_samples_per_second": len(train) / seconds}
    return classifier, history, stats


# --- transformers + peft ---------------------------------------------------------------------------


def _encode(tokenizer, frame: pd.DataFrame, max_length: int) -> list[dict]:
    """Pre-tokenised rows, a dataset for Trainer; DataCollatorWithPadding pads each batch to its own longest row."""
    enc = tokenizer(frame["Question"].tolist(), truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": int(label)}
        for ids, mask, label in zip(
            enc["input_ids"], enc["attention_mask"], frame["label"], strict=True
        )
    ]


def _accuracy(eval_pred) -> dict:
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == labels).mean())}


LOSS_LOGS_PER_EPOCH = 20


def loss_logger(user_steps: bool = False):
    """A TrainerCallback that logs the training loss about 20 times an epoch, and at each epoch's end.

    Trainer logs every `logging_steps` (500 unless given), which in a one-epoch run of a few hundred steps is
    never before the end. The epoch's last window is closed at its end, so each log covers steps of one
    epoch, and history_from_log's step-weighted mean of them is the epoch's mean loss. With `user_steps`
    (`--logging_steps N`, a Trainer flag), the user's N stays.
    """
    from transformers import TrainerCallback

    class LossEveryTwentieth(TrainerCallback):
        logged_at = -1

        def on_train_begin(self, args, state, control, **kwargs):
            if not user_steps and state.max_steps > 0:
                per_epoch = state.max_steps / max(args.num_train_epochs, 1)
                state.logging_steps = max(1, int(per_epoch // LOSS_LOGS_PER_EPOCH))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.logged_at = state.global_step

        def on_epoch_end(self, args, state, control, **kwargs):
            # Trainer divides a window's loss by its steps since the last log: never log an empty one.
            if state.global_step > self.logged_at and state.global_step % state.logging_steps:
                control.should_log = True

    return LossEveryTwentieth()


def history_from_log(log_history: list[dict]) -> pd.DataFrame:
    """One row per epoch from Trainer's log: train loss, and loss/accuracy on val and a train sample.

    Each loss entry is the mean over the steps since the entry before (loss_logger closes an epoch's
    last one at its end): an epoch's train loss is their mean weighted by those steps.
    """
    rows: dict[int, dict] = {}
    losses: dict[int, list[tuple[float, int]]] = {}
    last_step = 0
    for entry in log_history:
        if "epoch" not in entry:
            continue
        # An entry in the middle of epoch e has epoch in (e - 1, e); the epoch's end ones have exactly e.
        epoch = max(1, math.ceil(entry["epoch"] - 1e-6)) if entry["epoch"] > 0 else 0
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            losses.setdefault(epoch, []).append((entry["loss"], entry["step"] - last_step))
            last_step = entry["step"]
        for src, dst in (
            ("eval_val_loss", "val_loss"),
            ("eval_val_accuracy", "val_accuracy"),
            ("eval_train_accuracy", "train_accuracy"),
            ("eval_train_loss", "train_eval_loss"),
        ):
            if src in entry:
                row[dst] = entry[src]
    for epoch, pairs in losses.items():
        rows[epoch]["train_loss"] = float(
            np.average([p[0] for p in pairs], weights=[p[1] for p in pairs])
        )
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
    weights = torch.tensor(
        compute_class_weight("balanced", classes=np.arange(NUM_CLASSES), y=labels),
        dtype=torch.float32,
    )

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = torch.nn.functional.cross_entropy(
            logits.float(),
            labels.to(logits.device),
            weight=weights.to(logits.device),
            reduction="sum",
        )
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        return total / count

    loss.class_weights = weights.tolist()
    return loss


def train_transformer(
    preset,
    weights: str,
    load_in_4bit: bool,
    splits,
    hyper,
    run_dir: Path,
    cfg: TrainConfig,
    precision: tuple[str | None, str] | None = None,
    writer: artifacts.RunWriter | None = None,
):
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
    top_k = (
        hyper.get("top_k_layers") or 0
    )  # never with 4-bit: validate_config and resolve_defaults see to it
    overrides = options.trainer_overrides(cfg.training_args)
    sharded = devices.sharded(overrides)
    if top_k and sharded:
        raise ConfigError(
            f"--top_k_layers {top_k} with {sharded}: the top-k path trains a small top model over "
            "cached states, which FSDP / DeepSpeed do not shard; pass --top_k_layers 0"
        )
    # Our defaults; any TrainingArguments flag the user gave (training_args) replaces the one here. Made first:
    # under torchrun it joins the processes' group, which the frozen-layer cache below waits on.
    args = TrainingArguments(
        **{
            "output_dir": str(run_dir / artifacts.CHECKPOINTS),
            "num_train_epochs": hyper["num_epochs"],
            "learning_rate": hyper["learning_rate"],
            "per_device_train_batch_size": hyper["batch_size"],
            "per_device_eval_batch_size": max(hyper["batch_size"], 32),
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            # A loss line about every 5 % of an epoch (loss_logger), so a diverging run shows in
            # minutes, not at the epoch's end; history.csv stays per epoch (history_from_log).
            "logging_strategy": "steps",
            "save_total_limit": 1,
            "load_best_model_at_end": True,
            "metric_for_best_model": "val_accuracy",
            "warmup_steps": 0.06,
            "weight_decay": 0.01,
            "seed": hyper["seed"],
            "report_to": [],
            "train_sampling_strategy": "group_by_length",
            "bf16": mixed == "bfloat16",
            "fp16": mixed == "float16",
            "use_cpu": not on_cuda,
            "dataloader_num_workers": 0,
            "save_only_model": False,
            # transformers' decoder classification heads accept **kwargs but drop num_items_in_batch, so with this on,
            # Trainer would multiply their loss by the number of processes under torchrun.
            "average_tokens_across_devices": False,
            # Every LoRA parameter takes part in each step; DDP's search for unused ones is a wasted pass per step.
            "ddp_find_unused_parameters": False,
            **(
                {
                    "gradient_checkpointing": True,
                    "gradient_checkpointing_kwargs": {"use_reentrant": False},
                }
                if load_in_4bit
                else {}
            ),
            **overrides,
        }
    )
    device = devices.one_device(args, device)
    if (
        on_cuda
    ):  # before minutes of loading: refuse a run that cannot fit, naming settings that would
        check_memory(weights, device, cfg, preset, hyper, load_in_4bit, args, mixed, top_k)
    tokenizer = models.load_tokenizer(weights)
    model = models.load_base_model(
        weights,
        tokenizer,
        device=device,
        load_in_4bit=load_in_4bit,
        compute_dtype=devices.compute_dtype(mixed, on_cuda),
        quant_storage=sharded is not None,
    )
    quantization = models.quantization_record(model)
    if cfg.model_dropout is not None:
        models.set_dropout(model, cfg.model_dropout)
    if top_k:  # LoRA on the top k layers, trained over cached states of the frozen ones (mathreport.partial)
        model, lora = partial.add_top_lora(model, preset, top_k, mlp=cfg.lora_mlp)
    else:
        model, lora = models.add_lora(model, preset, load_in_4bit=load_in_4bit, mlp=cfg.lora_mlp)
    if (
        mixed is not None
    ):  # Trainer's loss scaling refuses float16 trainable weights; bf16 ones lose updates
        models.upcast_trainable(model)
    trainable, total = model.get_nb_trainable_parameters()

    max_length = hyper["max_length"]
    sample = splits["train"].sample(
        n=min(cfg.train_eval_samples, len(splits["train"])), random_state=hyper["seed"]
    )
    frames = {
        "train": (splits["train"], cfg.train_path),
        "val": (splits["val"], cfg.val_path),
        "train_eval": (sample, cfg.train_path),
    }
    rows = {name: _encode(tokenizer, frame, max_length) for name, (frame, _) in frames.items()}
    # On the CPU, the frozen matmul weights are held in the autocast dtype while training: the same numbers as
    # autocast's per-call casts, without the copies (devices.frozen_linears_in). GPUs load them in it already.
    with devices.frozen_linears_in(model, None if on_cuda else mixed):
        trained, collator, datasets, setup = model, DataCollatorWithPadding(tokenizer), rows, None
        if top_k:
            # One process per machine computes the frozen layers' states and caches them; the others then read them.
            with args.main_process_first(local=True, desc="caching frozen layers"):
                setup = partial.prepare(
                    model,
                    tokenizer,
                    top_k,
                    {name: (rows[name], path) for name, (_, path) in frames.items()},
                    weights=weights,
                    max_length=max_length,
                    autocast=mixed,
                )
            trained, collator, datasets = setup.model, setup.collator, setup.datasets
        loss_func = (
            class_weighted_loss(splits["train"]["label"])
            if hyper["imbalance"] == "class_weights"
            else None
        )
        trainer = Trainer(
            model=trained,
            compute_loss_func=loss_func,
            args=args,
            data_collator=collator,
            train_dataset=datasets["train"],
            eval_dataset={"val": datasets["val"], "train": datasets["train_eval"]},
            processing_class=tokenizer,
            compute_metrics=_accuracy,
            callbacks=[loss_logger("logging_steps" in overrides), *cfg.callbacks],
        )
        if os.environ.get(TEXT_PROGRESS_ENV) == "1":
            # Run by `mathreport pipeline` through papermill: Trainer's HTML notebook bar would only land in the kept
            # notebook, so use its text bar, which papermill streams to the terminal.
            from transformers import ProgressCallback
            from transformers.utils.notebook import NotebookProgressCallback

            trainer.remove_callback(NotebookProgressCallback)
            trainer.add_callback(ProgressCallback)
        resume = cfg.resume and artifacts.has_checkpoints(run_dir)
        if cfg.resume and not resume:
            print(
                f"--resume: no checkpoint under {run_dir}/checkpoints; starting from scratch",
                file=sys.stderr,
            )
        output = trainer.train(resume_from_checkpoint=True if resume else None)
    history = history_from_log(trainer.state.log_history)
    # A top-k run trained the whole model's top layers through the top model; the adapter saved is the whole one's.
    # Otherwise Trainer saves it, on every process: FSDP and DeepSpeed gather the shards, and only rank 0 writes.
    writer.save_model(model, tokenizer, trainer=None if setup else trainer)
    # The checkpoints stay until run.json says complete (`train` removes them then): a stop before that resumes.
    stats = {
        "train_seconds": output.metrics.get("train_runtime"),
        "train_samples_per_second": output.metrics.get("train_samples_per_second"),
        "train_loss": output.metrics.get("train_loss"),
        "best_checkpoint_metric": args.metric_for_best_model,
        "train_accuracy_sample": len(sample),
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "resumed": bool(resume),
        # Trainer's runtime of a resumed run covers only the rest of it, so no FLOP/s for it.
        "flop": flops.training_record(
            partial.layer_list(model),
            partial.unwrap(model).config.hidden_size,
            trained=top_k or partial.num_layers(model),
            train_lengths=[len(r["input_ids"]) for r in rows["train"]],
            eval_lengths=[len(r["input_ids"]) for r in (*rows["val"], *rows["train_eval"])],
            epochs=hyper["num_epochs"],
            seconds=None if resume else output.metrics.get("train_runtime"),
        ),
    }
    if (
        writer.is_main
    ):  # the achieved rate as a share of this machine's ceiling in the precision that ran
        ran = devices.compute_dtype(mixed, on_cuda) if load_in_4bit else mixed or "float32"
        stats.update(flops.training_rate(stats["flop"], ran, device))
    if loss_func is not None:  # the validation loss in history.csv is weighted the same way
        stats.update(loss="class-weighted cross-entropy", class_weights=loss_func.class_weights)
    extra = {
        "weights": weights,
        "device": device,
        "load_in_4bit": bool(load_in_4bit),
        "quantization": quantization,
        "dtype": devices.weights_dtype(load_in_4bit, on_cuda, mixed),
        # The weights stay float32 on CPU (NF4 in 4-bit); mixed precision runs the training matmuls under autocast,
        # 4-bit runs included (Trainer's bf16 / fp16 flag is the same).
        "train_autocast": mixed,
        "precision": {"dtype": mixed, "reason": why},
        "world_size": args.world_size,
        "global_batch_size": devices.global_batch_size(args),
        "lora": {
            k: (list(v) if isinstance(v, (set, tuple)) else v)
            for k, v in lora.to_dict().items()
            if k
            in (
                "r",
                "lora_alpha",
                "lora_dropout",
                "target_modules",
                "task_type",
                "modules_to_save",
                "layers_to_transform",
            )
        },
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
        return (
            predict.TopKClassifier(
                final,
                tokenizer,
                max_length,
                top_k,
                extra["train_autocast"],
                device,
                known_states=setup.datasets["val"].states,
            ),
            history,
            stats,
            extra,
        )
    return (
        predict.TransformerClassifier(final, tokenizer, max_length, device),
        history,
        stats,
        extra,
    )


def check_memory(
    weights: str,
    device: str,
    cfg: TrainConfig,
    preset,
    hyper: dict,
    load_in_4bit: bool,
    args,
    mixed: str | None,
    top_k: int,
) -> None:
    """Refuse, before loading, a run whose estimated peak GPU memory exceeds what the GPU has free (memplan), in one
    line naming settings that fit."""
    from mathreport import memplan

    checkpointing = getattr(args, "activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = args.gradient_checkpointing
    show = (
        f"mathreport plan --model {cfg.model}"
        + (f" --model_path {cfg.model_path}" if cfg.model_path else "")
        + f" --batch_size {hyper['batch_size']} --max_length {hyper['max_length']}"
    )
    memplan.check_cuda(
        weights,
        device,
        batch_size=hyper["batch_size"],
        max_length=hyper["max_length"],
        load_in_4bit=load_in_4bit,
        gradient_checkpointing=bool(checkpointing),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        eval_batch_size=args.per_device_eval_batch_size,
        lora_r=preset.lora_r,
        lora_dropout=preset.lora_dropout,
        lora_targets=tuple(models.lora_config(preset, mlp=cfg.lora_mlp).target_modules),
        trainable_top_k=top_k or None,
        optimizer=str(getattr(args.optim, "value", args.optim)),
        compute_dtype=devices.compute_dtype(mixed, on_cuda=True),
        show=show,
    )
