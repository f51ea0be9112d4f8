"""The training paths: one per kind of preset, chosen in one place (`fitting.TRAINING_PATHS`)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from mathreport import fitting, presets, train
from mathreport.errors import ConfigError

PACKAGE = Path(fitting.__file__).parent


@pytest.mark.parametrize("key", sorted(presets.PRESETS))
def test_every_preset_has_the_path_of_its_kind(key):
    preset = presets.PRESETS[key]
    path = fitting.training_path(preset)
    # A neural kind trains with Trainer and can resume after training; the scikit-learn one can do neither.
    assert isinstance(path, fitting.TrainerPath) is preset.traits.neural
    assert path.resumes_after_training is preset.traits.neural


def test_a_kind_without_a_path_is_one_clear_error():
    odd = dataclasses.replace(presets.PRESETS["tfidf"], key="odd", kind="setfit")
    with pytest.raises(
        ConfigError, match=r"--model odd: its kind 'setfit' has no training path \(known: "
    ):
        fitting.training_path(odd)


def test_a_new_kind_is_one_entry_in_the_dispatch(monkeypatch, small_data, tmp_path):
    """A kind added to TRAINING_PATHS (and KINDS) is trained by `train` with no other edit."""
    calls = []

    class Recorded(fitting.ScikitLearnPath):
        def fit(self, cfg, preset, base, splits, hyper, writer, precision):
            calls.append(preset.key)
            return super().fit(cfg, preset, base, splits, hyper, writer, precision)

    monkeypatch.setitem(fitting.TRAINING_PATHS, "bag", Recorded())
    monkeypatch.setitem(presets.KINDS, "bag", presets.Kind("bag", neural=False, imbalance="none"))
    monkeypatch.setitem(
        presets.PRESETS,
        "bag-of-words",
        dataclasses.replace(presets.PRESETS["tfidf"], key="bag-of-words", kind="bag"),
    )
    out = tmp_path / "bag"
    train.train(
        train.TrainConfig(
            model="bag-of-words",
            train_path=small_data / "augmented_train.csv",
            val_path=small_data / "val_split.csv",
            test_path=small_data / "test_split.csv",
            output_dir=out,
            bench=False,
        )
    )
    assert calls == ["bag-of-words"]
    assert (out / "metrics.json").is_file()


def test_train_reads_no_kind_by_name():
    """train.py and fitting.py branch on a kind only through TRAINING_PATHS and the kinds' traits."""
    for module in ("train.py", "fitting.py"):
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        compares = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Compare)
            and any(
                isinstance(side, ast.Attribute) and side.attr in ("kind", "key")
                for side in (node.left, *node.comparators)
            )
            and any(
                isinstance(side, ast.Constant) and isinstance(side.value, str)
                for side in (node.left, *node.comparators)
            )
        ]
        assert compares == [], f"{module}: a kind or key compared with a string at lines {compares}"
