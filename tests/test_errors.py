"""errors: one family the command line catches, each error carrying the file at fault and the fix."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mathreport import cli, errors

FAMILY = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.MathreportError)
    ),
    key=lambda cls: cls.__name__,
)


def test_the_family_is_every_class_of_the_module():
    others = [
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__ and cls not in FAMILY
    ]
    assert others == [] and len(FAMILY) > 10


@pytest.mark.parametrize("cls", FAMILY, ids=lambda cls: cls.__name__)
def test_each_error_keeps_its_message_file_and_fix(cls):
    error = cls(
        "results/x/run.json: broken", path="results/x/run.json", fix="mathreport train --force"
    )
    assert str(error) == "results/x/run.json: broken"
    assert error.path == Path("results/x/run.json") and error.fix == "mathreport train --force"
    assert cls("no file").path is None and cls.__doc__ and cls.__doc__.strip()


@pytest.mark.parametrize("cls", FAMILY, ids=lambda cls: cls.__name__)
def test_the_command_line_prints_any_of_them_as_one_line_and_exits_2(cls, monkeypatch, capsys):
    def fail(args):
        raise cls("data/x.csv: line 3: column 'label' is empty")

    monkeypatch.setattr(cli, "cmd_compare", fail)  # any subcommand: the handler is main's
    assert cli.main(["compare"]) == 2
    captured = capsys.readouterr()
    assert (
        captured.err == "mathreport compare: error: data/x.csv: line 3: column 'label' is empty\n"
    )
    assert captured.out == ""


def test_an_error_that_is_not_the_users_is_not_swallowed(monkeypatch):
    def bug(args):
        raise ZeroDivisionError("a programming error keeps its traceback")

    monkeypatch.setattr(cli, "cmd_compare", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["compare"])


def test_the_subclasses_callers_catch_by_their_parent():
    # train, the report and predict catch these by the parent class; a change of parent changes their behaviour.
    assert issubclass(errors.LeakageError, errors.DataError)
    assert all(
        issubclass(c, errors.ArtifactError)
        for c in (
            errors.RunLockedError,
            errors.RunExistsError,
            errors.EnsembleError,
            errors.MissingResultsError,
        )
    )
    assert all(
        issubclass(c, errors.ModelUnavailableError)
        for c in (errors.NeedsCudaError, errors.FourBitUnavailableError, errors.WeightSourceError)
    )


def test_a_write_error_carries_the_space_free_and_needed():
    error = errors.WriteError("cannot write x", path="x", free=10, needed=20)
    assert (error.free, error.needed, error.path) == (10, 20, Path("x"))
    assert errors.WriteError("cannot write y").free is None
