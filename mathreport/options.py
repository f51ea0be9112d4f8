"""The training options, defined once: the fields of `TrainConfig`, each with its help, flag and rule.

From them come `mathreport train`'s flags (`add_flags`), the config from flags or a notebook (`from_values`), the
one-line checks (`check`), run.json's `hyperparameters` and the command that reproduces a run (`command`). Trainer's
own options are not declared again: other flags (`--report_to tensorboard`) are kept in `training_args` and parsed
by transformers' HfArgumentParser (`trainer_overrides`). Ours are not: it has no `--no-bf16` for a `bool | None`
(neither flag: decided from the hardware), makes a field without a default a required flag (the split paths have
flag defaults), fills a whole parser rather than a subcommand, and imports torch, which would slow every `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import shlex
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from mathreport import artifacts, models
from mathreport.errors import ConfigError
from mathreport.labels import NUM_CLASSES
from mathreport.presets import KINDS

# The rare classes: `class_weights` weights each class's loss by n / (8 * n_class) (scikit-learn's "balanced");
# `oversample` duplicates rows of the minority classes up to the median class count (data.oversample_minority).
IMBALANCE_METHODS = ("none", "class_weights", "oversample")
# Per model family, chosen on validation macro-F1 and accuracy on the real data (docs/REAL_DATA.md).
DEFAULT_IMBALANCE = {
    name: kind.imbalance for name, kind in KINDS.items() if kind.imbalance
}  # by kind (KINDS)

PROGRAM = "mathreport train"
NOT_SET = object()  # Option.cli_default when the flag's default is the field's own
# TrainingArguments that mathreport sets itself: refused in training_args, saying what to do instead. The epoch
# cadence and the checkpoint choice are fixed because history.csv and run.json's best_checkpoint_metric describe them.
_PER_EPOCH = f"fixed: {artifacts.HISTORY} and the kept checkpoint are per epoch, chosen on validation accuracy"
OWN_TRAINER_FIELDS = {
    "output_dir": "give --output_dir",
    "num_train_epochs": "give --num_epochs",
    "learning_rate": "give --learning_rate",
    "per_device_train_batch_size": "give --batch_size",
    "seed": "give --seed",
    "bf16": "give --bf16/--no-bf16",
    "fp16": "give --fp16/--no-fp16",
    "use_cpu": "give --device",
    "resume_from_checkpoint": "give --resume",
    **dict.fromkeys(
        (
            "eval_strategy",
            "save_strategy",
            "logging_strategy",
            "load_best_model_at_end",
            "metric_for_best_model",
            "greater_is_better",
        ),
        _PER_EPOCH,
    ),
}


@dataclass(frozen=True)
class Option:
    """What a TrainConfig field is besides its type and default (kept in the field's metadata)."""

    help: str = ""
    rule: Callable[[Any], bool] | None = None  # True when a value is allowed
    allowed: str = ""  # what the error message says is allowed
    flag: str | None = ""  # "": --<field name>; None: not a flag of its own
    choices: tuple | None = None
    cli_default: Any = NOT_SET  # the flag's default where the field has none (the split paths)
    fallback: Callable[[Mapping], str] | None = (
        None  # a path computed from the other options when None is given
    )
    command: str = (
        "changed"  # written into the run's command: "always", "changed" (from the default), "never"
    )
    hyperparameter: bool = (
        False  # one of run.json's "hyperparameters"; None there means the preset's value
    )
    transformer_only: bool = False  # does nothing for tfidf: a warning when given


def option(default=MISSING, *, factory=MISSING, **meta) -> Any:
    """A TrainConfig field: its default (or default factory) and its `Option` (help, rule, flag...)."""
    return field(default=default, default_factory=factory, metadata={"option": Option(**meta)})


def override(cls, name: str, default) -> Any:
    """Field `name` of `cls` (same help, rule and flag) with another default, for a config that extends `cls`."""
    return field(default=default, metadata={f.name: f for f in fields(cls)}[name].metadata)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


def _optional(check):
    return lambda v: v is None or check(v)


def _text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


_AT_LEAST_1 = {"rule": lambda v: _is_int(v) and v >= 1, "allowed": "an integer >= 1"}
_OPTIONAL_AT_LEAST_1 = {"rule": _optional(_AT_LEAST_1["rule"]), "allowed": "an integer >= 1"}
_PRESET_HELP = "default: the preset's"


@dataclass
class TrainConfig:
    """One training run; the field names are the command-line flags (`mathreport train --help`)."""

    model: str = option(
        help=f"preset ({', '.join(models.PRESETS)}) or HF id / local path",
        rule=_text,
        allowed="a preset name, HF id or local path",
        command="always",
    )
    train_path: Path = option(cli_default=Path("data/augmented_train.csv"), command="always")
    val_path: Path = option(cli_default=Path("data/val_split.csv"), command="always")
    test_path: Path = option(cli_default=Path("data/test_split.csv"), command="always")
    output_dir: Path = option(
        cli_default=None,
        fallback=lambda values: f"results/{Path(values['model']).name}",
        help="default: results/<model> (where the report looks)",
        command="always",
    )
    num_epochs: int | None = option(
        None, help=_PRESET_HELP, **_OPTIONAL_AT_LEAST_1, hyperparameter=True, command="always"
    )
    learning_rate: float | None = option(
        None,
        help=_PRESET_HELP,
        rule=_optional(lambda v: _is_number(v) and v > 0),
        allowed="a number > 0 (e.g. 2e-4)",
        hyperparameter=True,
        transformer_only=True,
    )
    batch_size: int | None = option(
        None, help=_PRESET_HELP, **_OPTIONAL_AT_LEAST_1, hyperparameter=True
    )
    max_length: int | None = option(
        None,
        help="tokens; default: the preset's",
        rule=_optional(lambda v: _is_int(v) and v >= 2),
        allowed="an integer >= 2 (tokens, special ones included)",
        hyperparameter=True,
        transformer_only=True,
    )
    seed: int = option(
        42,
        rule=lambda v: _is_int(v) and 0 <= v < 2**32,
        allowed="an integer in [0, 2**32 - 1]",
        hyperparameter=True,
        command="always",
    )
    resume: bool = option(
        False, help="continue an interrupted run from its last checkpoint", command="never"
    )
    force: bool = option(False, help="replace existing results in --output_dir", command="never")
    model_path: str | None = option(
        None, help="local folder (or .gguf file) with the model's weights", transformer_only=True
    )
    load_in_4bit: bool | None = option(
        None,
        help="4-bit NF4 QLoRA (bitsandbytes, on any device it runs on); "
        "default: on for qwen/mistral on CUDA",
        transformer_only=True,
    )
    lora_mlp: bool = option(False, help="LoRA on the MLP projections too (decoders)")
    top_k_layers: int | None = option(
        None,
        rule=_optional(lambda v: _is_int(v) and v >= 0),
        allowed="an integer >= 0 (0: LoRA on every layer)",
        hyperparameter=True,
        transformer_only=True,
        help="LoRA and the head on the top K layers only, trained over cached outputs of the frozen layers below "
        "(0: every layer; default: the preset's)",
    )
    allow_leakage: bool = option(False, help="train even if a question is in two splits")
    allow_missing_classes: bool = option(
        False,
        help="train even if the train split lacks a class that val/test have (a warning, not an error)",
    )
    max_train_samples: int | None = option(
        None,
        help="train on a seeded, stratified sample of this size (every "
        "class of the train split is kept)",
        rule=_optional(lambda v: _is_int(v) and v >= NUM_CLASSES),
        allowed=f"an integer >= {NUM_CLASSES} (one question per class)",
        hyperparameter=True,
    )
    train_eval_samples: int = option(
        512,
        help="train questions scored after each epoch (history's train accuracy)",
        **_AT_LEAST_1,
    )
    device: str | None = option(
        None,
        help="cpu or cuda (default: cuda when available)",
        rule=_optional(
            lambda v: isinstance(v, str) and re.fullmatch(r"cpu|mps|cuda(:\d+)?", v) is not None
        ),
        allowed="cpu, cuda, cuda:N or mps",
    )
    bench: bool = option(True, flag="--no_bench", help="skip the latency benchmark")
    bench_max_items: int = option(
        200, help="test questions the latency benchmark times", **_AT_LEAST_1
    )
    text_col: str = option("Question", rule=_text, allowed="a column name")
    label_col: str = option("label", rule=_text, allowed="a column name")
    # Left open (None), bf16 and lora_dropout are decided by train.resolve_defaults from the hardware; the
    # resolved values go into run.json and its command, so the command means the same on any machine.
    bf16: bool | None = option(
        None,
        help="bfloat16 mixed precision in training (default: on where the device computes it natively: a "
        "CPU with AVX-512 BF16 or AMX, a GPU of compute capability >= 8.0)",
    )
    fp16: bool | None = option(
        None,
        help="float16 mixed precision with loss scaling, CUDA only (default: on for GPUs without native "
        "bfloat16, e.g. a T4)",
    )
    lora_dropout: float | None = option(
        None,
        help="dropout on the LoRA input (default: 0 on CPU, where it is costly; the preset's on CUDA)",
        rule=_optional(lambda v: _is_number(v) and 0 <= v < 1),
        allowed="a number in [0, 1)",
        transformer_only=True,
    )
    model_dropout: float | None = option(
        None,
        help="dropout inside the model's own layers and head while training (default: the model's own, 0.1 "
        "for minilm and mpnet, except mpnet on the CPU: 0, which saves the random masks' cost)",
        rule=_optional(lambda v: _is_number(v) and 0 <= v < 1),
        allowed="a number in [0, 1)",
        transformer_only=True,
    )
    imbalance: str | None = option(
        None,
        choices=IMBALANCE_METHODS,
        rule=_optional(lambda v: v in IMBALANCE_METHODS),
        allowed=f"one of {', '.join(IMBALANCE_METHODS)}",
        hyperparameter=True,
        help="rare classes: weight the loss, oversample the train split, or neither "
        "(default: class_weights for tfidf, oversample for transformers; measured in docs/REAL_DATA.md)",
    )
    # Trainer's own flags as given (["--report_to", "tensorboard"]): the CLI's leftover arguments.
    training_args: list[str] = option(
        factory=list,
        flag=None,
        transformer_only=True,
        rule=lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
        allowed="a list of strings (TrainingArguments flags and values)",
    )
    callbacks: list = field(
        default_factory=list
    )  # extra transformers TrainerCallbacks (Python only, not a flag)


# --- what the fields say -------------------------------------------------------------------------------------------


def _option(f: dataclasses.Field) -> Option | None:
    return f.metadata.get("option")


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of `cls` that are options (all but Python-only ones like `callbacks`)."""
    return [f for f in fields(cls) if _option(f) is not None]


def flag_name(f: dataclasses.Field) -> str | None:
    """The field's flag (`--seed`, `--no_bench`), or None when it is not a flag."""
    opt = _option(f)
    return None if opt is None or opt.flag is None else opt.flag or f"--{f.name}"


_type_hints = functools.cache(typing.get_type_hints)


def value_type(cls, f: dataclasses.Field):
    """The field's type without `| None` (and `list[X]` -> X, with nargs "+")."""
    hint = _type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], "+"
    return hint, None


def _is_tristate(cls, f) -> bool:
    return _type_hints(cls)[f.name] is not bool and value_type(cls, f)[0] is bool


def flag_default(f: dataclasses.Field):
    """The value the flag has when it is not given."""
    if _option(f).cli_default is not NOT_SET:
        return _option(f).cli_default
    return f.default_factory() if f.default_factory is not MISSING else f.default


def rules(cls=TrainConfig) -> dict[str, tuple[Callable, str]]:
    """{field name: (check, what the message says is allowed)} for every field of `cls` that has a rule."""
    return {
        f.name: (_option(f).rule, _option(f).allowed)
        for f in option_fields(cls)
        if _option(f).rule is not None
    }


def transformer_only(cls=TrainConfig) -> tuple[str, ...]:
    """The options that change nothing for the scikit-learn baseline."""
    return tuple(f.name for f in option_fields(cls) if _option(f).transformer_only)


# --- argparse ------------------------------------------------------------------------------------------------------


def add_flags(
    parser: argparse.ArgumentParser,
    cls=TrainConfig,
    names: tuple[str, ...] | None = None,
    help_texts: Mapping[str, str] | None = None,
) -> None:
    """Add the flags of `cls`'s option fields to `parser` (only `names`, in that order, when given).

    help_texts: a field's help where a command means it differently (search: "search even if ...").
    """
    by_name = {f.name: f for f in option_fields(cls)}
    names = list(by_name) if names is None else names
    if "training_args" in names:
        parser.epilog = (
            "Any other flag is one of transformers' TrainingArguments (e.g. --report_to tensorboard "
            "--gradient_accumulation_steps 4), passed to Trainer and checked by it."
        )
    for name in names:
        f = by_name[name]
        flag = flag_name(f)
        if flag is None:
            continue
        text = (help_texts or {}).get(name, _option(f).help) or None
        default = flag_default(f)
        kind, nargs = value_type(cls, f)
        if kind is bool and _is_tristate(cls, f):
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        elif kind is bool:
            parser.add_argument(
                flag, dest=name, action="store_false" if default else "store_true", help=text
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                type=kind,
                nargs=nargs,
                choices=_option(f).choices,
                default=None if default is MISSING else default,
                required=default is MISSING,
                help=text,
            )


def _default_path(path: str | None, default: str) -> Path:
    return Path(path) if path not in (None, "") else Path(default)


def from_values(cls, values: Mapping, path: Callable[[Any, str], Path] = _default_path):
    """A `cls` from option values by field name (parsed flags, `vars(args)`, or a notebook's `globals()`).

    Names that are not options of `cls` are ignored; options not in `values` keep the field's default. A path
    option given as None gets the flag's default (or its fallback, `results/<model>` for output_dir) through
    `path(value, default)`: relative to the working directory on the command line, to the project root in a
    notebook (`notebook.project_path`).
    """
    kwargs = {}
    for f in option_fields(cls):
        if f.name not in values:
            continue
        value, opt = values[f.name], _option(f)
        if value_type(cls, f)[0] is Path and (value is not None or opt.cli_default is not NOT_SET):
            default = opt.fallback(values) if opt.fallback is not None else flag_default(f)
            value = path(value, str(default) if default is not None else None)
        kwargs[f.name] = value
    return cls(**kwargs)


def from_args(cls, args: argparse.Namespace):
    """A `cls` from parsed flags (`add_flags`'s; `args.training_args`: the leftover ones, if any)."""
    return from_values(cls, vars(args))


# --- validation, hyperparameters, the command ----------------------------------------------------------------------


def check(cfg) -> None:
    """Raise ConfigError (one line: flag, value given, what is allowed) for the first option out of its range."""
    for name, (rule, allowed) in rules(type(cfg)).items():
        value = getattr(cfg, name, None)
        if not rule(value):
            raise ConfigError(f"--{name} {value!r}: must be {allowed}")


def trainer_overrides(tokens: list[str]) -> dict[str, Any]:
    """The TrainingArguments fields that `tokens` (`["--report_to", "tensorboard"]`) set, parsed by transformers.

    Raises ConfigError for a flag TrainingArguments lacks, a value it refuses, or a field set by our own options.
    """
    if not tokens:
        return {}
    from transformers import HfArgumentParser, TrainingArguments

    class Parser(HfArgumentParser):
        def error(self, message):
            raise ConfigError(f"{' '.join(tokens)}: {message} (transformers' TrainingArguments)")

    parser = Parser(TrainingArguments, prog=PROGRAM)
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # so that only the fields given come back
    given, unknown = parser.parse_known_args(tokens)
    if unknown:
        raise ConfigError(
            f"{' '.join(unknown)}: not an option of {PROGRAM} nor of transformers' TrainingArguments"
        )
    own = [
        f"--{name} ({OWN_TRAINER_FIELDS[name]})"
        for name in vars(given)
        if name in OWN_TRAINER_FIELDS
    ]
    if own:
        raise ConfigError(f"{', '.join(own)}: set by {PROGRAM}")
    return vars(given)


def hyperparameters(cfg, preset: models.Preset) -> dict:
    """run.json's hyperparameters: the marked options as given, where None the preset's value of the same name."""
    out = {}
    for f in option_fields(type(cfg)):
        if _option(f).hyperparameter:
            value = getattr(cfg, f.name)
            if value is None:
                value = (
                    preset.traits.imbalance
                    if f.name == "imbalance"
                    else getattr(preset, f.name, None)
                )
            out[f.name] = value
    return out


def command(cfg, program: str = PROGRAM) -> str:
    """The command line that reproduces `cfg`: parsing it with `add_flags`'s parser gives `cfg` back.

    Options marked "always" are written (unless None), the others when they differ from their flag's default;
    `--resume` / `--force` never (they say what to do with the folder, not what to train). Trainer's flags
    (`training_args`) come last, as given.
    """
    parts = [program]
    for f in option_fields(type(cfg)):
        opt, flag = _option(f), flag_name(f)
        value = getattr(cfg, f.name)
        if flag is None or opt.command == "never" or value is None:
            continue
        if opt.command != "always" and value == flag_default(f):
            continue
        kind, _ = value_type(type(cfg), f)
        if kind is bool and _is_tristate(type(cfg), f):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif kind is bool:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(" ".join([flag, *(shlex.quote(str(v)) for v in value)]))
        else:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join([*parts, *(shlex.quote(t) for t in getattr(cfg, "training_args", ()))])
