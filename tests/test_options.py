"""The training options are defined once (mathreport/options.py): flags, config, rules, run.json and the command."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path

import nbformat
import pytest
from cli_args import split_flags

from mathreport import artifacts, cli, models, options, search
from mathreport.options import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _subparser(command: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[command]


def _dests(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in parser._actions if a.dest != "help"]


def _parse(argv: list[str], cls=TrainConfig):
    """Flags as `mathreport` parses them: its own, and the leftover ones as Trainer's (`training_args`)."""
    args, leftover = cli.build_parser().parse_known_args(argv)
    return options.from_args(cls, argparse.Namespace(**vars(args), training_args=leftover))


def _parse_command(command: str) -> TrainConfig:
    """A run's command, parsed by the `mathreport` command itself."""
    argv = shlex.split(command)
    assert argv[:2] == ["mathreport", "train"], command
    return _parse(argv[1:])


# Values a field may take besides its default, by type; the first that its rule allows is used.
CANDIDATES = {
    int: [17, 9, 1],
    float: [0.25, 3e-4],
    str: ["cuda:1", "it's a col"],
    Path: [Path("my runs/it's.csv")],
    bool: [True, False],
}


def _other_values(cls, f) -> list:
    """Values of option `f` other than its flag's default that its rule allows (both for a --x/--no-x flag)."""
    opt = f.metadata["option"]
    kind, nargs = options.value_type(cls, f)
    found = [v for v in (opt.choices or CANDIDATES[kind]) if v != options.flag_default(f)]
    found = [[v] if nargs else v for v in found]
    return [v for v in found if opt.rule is None or opt.rule(v)]


def _base(**kw) -> TrainConfig:
    return TrainConfig(
        **{
            "model": "minilm",
            "train_path": Path("data/augmented_train.csv"),
            "val_path": Path("data/val_split.csv"),
            "test_path": Path("data/test_split.csv"),
            "output_dir": Path("results/minilm"),
            **kw,
        }
    )


def _in_command(cls=TrainConfig) -> list[dataclasses.Field]:
    return [
        f
        for f in options.option_fields(cls)
        if options.flag_name(f) is not None and f.metadata["option"].command != "never"
    ]


# --- the flags ------------------------------------------------------------------------------------------------------


def test_train_flags_are_exactly_the_option_fields():
    expected = [
        f.name for f in options.option_fields(TrainConfig) if options.flag_name(f) is not None
    ]
    assert _dests(_subparser("train")) == expected
    assert "callbacks" not in expected  # Python-only
    assert _dests(_subparser("search")) == [
        name for name in search.FLAGS if name != "training_args"
    ]
    for command in ("train", "search"):  # Trainer's flags: not declared, but said
        assert "TrainingArguments" in _subparser(command).format_help()
    assert "num_epochs" in _dests(_subparser("pipeline"))


def test_defaults_of_the_flags_are_the_ones_documented():
    """`mathreport train --model X` means what it always meant (expectations written out, not derived).

    num_epochs and top_k_layers are None: the preset's (issue 21: a preset carries its epochs and its k).
    """
    cfg = options.from_args(
        TrainConfig, cli.build_parser().parse_args(["train", "--model", "org/some-model"])
    )
    assert cfg == TrainConfig(
        model="org/some-model",
        train_path=Path("data/augmented_train.csv"),
        val_path=Path("data/val_split.csv"),
        test_path=Path("data/test_split.csv"),
        output_dir=Path("results/some-model"),
        num_epochs=None,
        learning_rate=None,
        batch_size=None,
        max_length=None,
        seed=42,
        resume=False,
        force=False,
        model_path=None,
        load_in_4bit=None,
        lora_mlp=False,
        top_k_layers=None,
        allow_leakage=False,
        allow_missing_classes=False,
        max_train_samples=None,
        train_eval_samples=512,
        device=None,
        bench=True,
        bench_max_items=200,
        text_col="Question",
        label_col="label",
        bf16=None,
        lora_dropout=None,
        model_dropout=None,
        imbalance=None,
        training_args=[],
    )
    flags = cli.build_parser().parse_args(
        [
            "train",
            "--model",
            "m",
            "--no_bench",
            "--no-bf16",
            "--load_in_4bit",
            "--imbalance",
            "oversample",
            "--lora_dropout",
            "0",
        ]
    )
    cfg = options.from_args(TrainConfig, flags)
    assert (cfg.bench, cfg.bf16, cfg.load_in_4bit, cfg.imbalance, cfg.lora_dropout) == (
        False,
        False,
        True,
        "oversample",
        0.0,
    )
    searched = options.from_args(
        search.SearchConfig,
        cli.build_parser().parse_args(["search", "--model", "minilm", "--lrs", "1e-4", "2e-4"]),
    )
    assert isinstance(searched, TrainConfig) and searched.learning_rates == [1e-4, 2e-4]
    assert (
        searched.num_epochs,
        searched.bf16,
        searched.train_eval_samples,
        searched.test_path,
        searched.bench,
    ) == (1, None, 64, None, False)  # bf16 None: decided as `train` decides it
    assert searched.output_dir == Path("results/minilm")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["search", "--model", "minilm"])  # --lrs is required


# --- the reproducible command ---------------------------------------------------------------------------------------


def test_default_config_round_trips_through_its_command():
    cfg = _base()
    assert _parse_command(options.command(cfg)) == cfg


@pytest.mark.parametrize("name", [f.name for f in _in_command()])
def test_each_option_round_trips_with_every_other_value(name):
    f = {f.name: f for f in options.option_fields(TrainConfig)}[name]
    values = _other_values(TrainConfig, f)
    assert values, f"no value other than the default found for {name}: add one to CANDIDATES"
    for value in values:
        cfg = _base(**{name: value})
        command = options.command(cfg)
        assert options.flag_name(f).lstrip("-") in command, command
        assert _parse_command(command) == cfg, command


def test_all_options_changed_at_once_round_trip():
    changed = {f.name: _other_values(TrainConfig, f)[0] for f in _in_command()}
    cfg = TrainConfig(**changed)
    assert _parse_command(options.command(cfg)) == cfg


def test_resume_and_force_are_not_part_of_the_command():
    command = options.command(_base(resume=True, force=True))
    assert "--resume" not in command and "--force" not in command
    assert options.command(_base()) == options.command(_base(resume=True, force=True))


@pytest.mark.slow  # trains a model
def test_a_trained_runs_command_gives_back_its_config(small_data, tmp_path):
    argv = [
        "train",
        "--model",
        "tfidf",
        *split_flags(small_data),
        "--output_dir",
        str(tmp_path / "a run"),
        "--no_bench",
        "--seed",
        "3",
        "--imbalance",
        "none",
        "--max_train_samples",
        "200",
        "--allow_leakage",
    ]
    assert cli.main(argv) == 0
    manifest = artifacts.read_manifest(tmp_path / "a run")
    given = options.from_args(TrainConfig, cli.build_parser().parse_args(argv))
    assert _parse_command(manifest.command) == given
    assert manifest.hyperparameters == {
        "num_epochs": models.get_preset("tfidf").num_epochs,
        "learning_rate": models.get_preset("tfidf").learning_rate,
        "batch_size": models.get_preset("tfidf").batch_size,
        "max_length": models.get_preset("tfidf").max_length,
        "seed": 3,
        "max_train_samples": 200,
        "imbalance": "none",
        "top_k_layers": 0,
    }


# --- Trainer's own options (TrainingArguments) ---------------------------------------------------------------------


def test_trainer_flags_are_kept_parsed_by_transformers_and_written_into_the_command():
    cfg = _parse(
        [
            "train",
            "--model",
            "minilm",
            "--report_to",
            "tensorboard",
            "--seed",
            "3",
            "--gradient_accumulation_steps",
            "4",
            "--lr_scheduler_type=cosine",
        ]
    )
    assert cfg.seed == 3
    assert cfg.training_args == [
        "--report_to",
        "tensorboard",
        "--gradient_accumulation_steps",
        "4",
        "--lr_scheduler_type=cosine",
    ]
    assert options.trainer_overrides(cfg.training_args) == {
        "report_to": "tensorboard",
        "gradient_accumulation_steps": 4,
        "lr_scheduler_type": "cosine",
    }
    command = options.command(cfg)
    assert command.endswith(
        " --report_to tensorboard --gradient_accumulation_steps 4 --lr_scheduler_type=cosine"
    )
    assert _parse_command(command) == cfg
    assert options.trainer_overrides([]) == {}


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (
            ["--warmup_ratio", "0.1"],
            r"^--warmup_ratio 0\.1: not an option of mathreport train nor of transformers' ",
        ),
        (["--gradient_accumulation_steps", "x"], r"invalid int value: 'x'"),
        (["--optim", "sgdd"], r"invalid choice: 'sgdd'"),
        (
            ["--num_train_epochs", "2", "--per_device_train_batch_size", "4"],
            r"^--num_train_epochs \(give --num_epochs\), --per_device_train_batch_size \(give --batch_size\): set by ",
        ),
        (
            ["--save_strategy", "no"],
            rf"^--save_strategy \(fixed: {re.escape(artifacts.HISTORY)} and the kept checkpoint are per epoch",
        ),
    ],
)
def test_trainer_flags_transformers_refuses_are_one_line_config_errors(tokens, message):
    with pytest.raises(options.ConfigError, match=message) as err:
        options.trainer_overrides(tokens)
    assert "\n" not in str(err.value)


def test_a_refused_trainer_flag_stops_train_before_anything_is_written(
    small_data, tmp_path, capsys
):
    out = tmp_path / "run"
    cfg = _parse(
        [
            "train",
            "--model",
            "minilm",
            "--output_dir",
            str(out),
            *split_flags(small_data),
            "--logging_strategy",
            "sometimes",
        ]
    )
    from mathreport import train

    with pytest.raises(options.ConfigError, match="invalid choice: 'sometimes'"):
        train.train(cfg)
    assert not out.exists()


# --- run.json's hyperparameters -------------------------------------------------------------------------------------


def test_hyperparameters_are_the_marked_options_with_the_presets_values_for_none():
    preset = models.Preset(
        key="p", kind="transformer", learning_rate=0.5, batch_size=7, max_length=11
    )
    assert options.hyperparameters(_base(), preset) == {
        "num_epochs": 3,
        "learning_rate": 0.5,
        "batch_size": 7,
        "max_length": 11,
        "seed": 42,
        "max_train_samples": None,
        "imbalance": "oversample",  # transformers' default (docs/REAL_DATA.md)
        "top_k_layers": 0,
    }
    given = _base(
        learning_rate=0.01,
        batch_size=2,
        max_length=9,
        seed=5,
        max_train_samples=80,
        imbalance="oversample",
    )
    assert options.hyperparameters(given, dataclasses.replace(preset, kind="tfidf")) == {
        "num_epochs": 3,
        "learning_rate": 0.01,
        "batch_size": 2,
        "max_length": 9,
        "seed": 5,
        "max_train_samples": 80,
        "imbalance": "oversample",
        "top_k_layers": 0,
    }
    assert (
        options.hyperparameters(_base(), dataclasses.replace(preset, kind="tfidf"))["imbalance"]
        == "class_weights"
    )


# --- one place: a new field is everywhere ---------------------------------------------------------------------------


@dataclasses.dataclass
class _WithWarmup(TrainConfig):
    warmup_ratio: float = options.option(
        0.06,
        help="share of the steps spent warming up",
        rule=lambda v: options._is_number(v) and 0 <= v < 1,
        allowed="a number in [0, 1)",
        hyperparameter=True,
    )


def test_a_new_field_is_a_flag_a_hyperparameter_and_part_of_the_command():
    parser = argparse.ArgumentParser()
    options.add_flags(parser, _WithWarmup)
    assert "--warmup_ratio" in parser.format_help() and "share of the steps" in parser.format_help()
    cfg = options.from_args(
        _WithWarmup, parser.parse_args(["--model", "minilm", "--warmup_ratio", "0.1"])
    )
    assert cfg.warmup_ratio == 0.1
    assert "--warmup_ratio 0.1" in options.command(cfg)
    assert (
        options.from_args(_WithWarmup, parser.parse_args(shlex.split(options.command(cfg))[2:]))
        == cfg
    )
    assert options.hyperparameters(cfg, models.get_preset("minilm"))["warmup_ratio"] == 0.1
    with pytest.raises(
        options.ConfigError, match=r"^--warmup_ratio 1\.5: must be a number in \[0, 1\)$"
    ):
        options.check(dataclasses.replace(cfg, warmup_ratio=1.5))


# --- validation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flag", "value", "message"),
    [
        ("train", "--num_epochs", "0", "--num_epochs 0: must be an integer >= 1"),
        ("train", "--lora_dropout", "1.0", "--lora_dropout 1.0: must be a number in [0, 1)"),
        ("train", "--model_dropout", "-0.1", "--model_dropout -0.1: must be a number in [0, 1)"),
        ("train", "--device", "gpu", "--device 'gpu': must be cpu, cuda, cuda:N or mps"),
        ("train", "--train_eval_samples", "0", "--train_eval_samples 0: must be an integer >= 1"),
        ("search", "--num_epochs", "0", "--num_epochs 0: must be an integer >= 1"),
        ("search", "--batch_size", "0", "--batch_size 0: must be an integer >= 1"),
    ],
)
def test_out_of_range_flag_is_one_line_and_writes_nothing(
    small_data, tmp_path, capsys, command, flag, value, message
):
    out = tmp_path / "run"
    argv = [
        command,
        "--model",
        "tfidf" if command == "train" else "minilm",
        "--output_dir",
        str(out),
        "--train_path",
        str(small_data / "augmented_train.csv"),
        "--val_path",
        str(small_data / "val_split.csv"),
        flag,
        value,
    ]
    if command == "search":
        argv += ["--lrs", "1e-4"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"mathreport {command}: error: {message}\n"
    assert not out.exists()


def test_search_config_keeps_the_rules_of_its_fields():
    cfg = search.SearchConfig(
        model="minilm",
        learning_rates=[1e-4],
        train_path=Path("t.csv"),
        val_path=Path("v.csv"),
        output_dir=Path("o"),
        num_epochs=0,
    )
    with pytest.raises(options.ConfigError, match="^--num_epochs 0: must be an integer >= 1$"):
        options.check(cfg)


# --- the training notebook ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", [ROOT / "mathreport" / "notebooks", ROOT / "notebooks"])
def test_train_notebook_builds_the_config_the_command_line_would(folder, monkeypatch):
    from mathreport import sections

    nb = nbformat.read(str(folder / "train_model.ipynb"), as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    namespace: dict = {}
    exec(params.source, namespace)
    names = {f.name for f in options.option_fields(TrainConfig)}
    assert set(namespace) - {"__builtins__"} <= names
    (build,) = [c for c in nb.cells if "train(cfg)" in c.source]
    assert (
        "options.from_values(TrainConfig, globals()" in build.source
        and "TrainConfig(model" not in build.source
    )
    monkeypatch.setattr(sections, "project_root", lambda: Path("/project"))
    cfg = options.from_values(TrainConfig, {**namespace, "seed": 7}, path=sections.project_path)
    flags = cli.build_parser().parse_args(["train", "--model", namespace["model"], "--seed", "7"])
    expected = options.from_args(TrainConfig, flags)
    expected = dataclasses.replace(
        expected,
        **{
            name: Path("/project") / getattr(expected, name)
            for name in ("train_path", "val_path", "test_path", "output_dir")
        },
    )
    assert cfg == expected
