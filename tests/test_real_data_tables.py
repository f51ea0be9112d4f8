"""benchmarks/real_data_tables.py: the numbers of docs/REAL_DATA.md from run directories, checked by hand."""

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import real_data_tables

FIXTURE = Path(__file__).parent / "fixtures" / "team_results" / "qwen_math"


def _preds(y_true, y_pred) -> str:
    lines = ["y_true,y_pred," + ",".join(f"prob_class_{k}" for k in range(8))]
    for t, p in zip(y_true, y_pred, strict=True):
        lines.append(f"{t},{p}," + ",".join("1.0" if k == p else "0.0" for k in range(8)))
    return "\n".join(lines) + "\n"


def _run(tmp_path: Path, name: str, test_pred: list[int], seconds: float) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURE, run)
    (run / "preds_test.csv").write_text(_preds([0, 1, 6, 7], test_pred), encoding="utf-8")
    (run / "preds_val.csv").write_text(_preds([0, 1, 2, 3], [0, 1, 2, 2]), encoding="utf-8")
    manifest = json.loads((run / "run.json").read_text(encoding="utf-8"))
    manifest["training"] = {"train_seconds": seconds}
    manifest.pop("outputs", None)
    (run / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run


def test_models_rows_are_computed_from_the_predictions(tmp_path):
    run = _run(tmp_path, "a", [0, 1, 6, 0], 10.0)
    (row,) = real_data_tables.models_rows([str(run)])
    # test: 3 of 4 right. Per-class F1 over all 8 labels: class 0 predicted twice, right once -> P 1/2, R 1,
    # F1 2/3; classes 1 and 6 F1 1; class 7 F1 0; the other four 0. Macro = (2/3 + 1 + 1) / 8 = 1/3.
    assert row["test_acc"] == pytest.approx(3 / 4)
    assert row["test_f1"] == pytest.approx(1 / 3)
    assert row["f1_rare"] == pytest.approx((1 + 0) / 2)  # Lineer Cebir right, Soyut Cebir missed
    # validation: 3 of 4; classes 0, 1 F1 1; class 2 P 1/2 R 1 -> 2/3; class 3 F1 0 -> (1 + 1 + 2/3) / 8 = 1/3
    assert row["val_acc"] == pytest.approx(3 / 4)
    assert row["val_f1"] == pytest.approx(1 / 3)
    assert row["train_s"] == 10.0
    (perfect,) = real_data_tables.models_rows([str(_run(tmp_path, "b", [0, 1, 6, 7], 1.0))])
    assert perfect["f1_rare"] == 1.0 and perfect["test_f1"] == pytest.approx(
        4 / 8
    )  # 4 classes present, all right


def test_arms_give_mean_and_sample_sd_and_the_json_is_written(tmp_path):
    a = _run(tmp_path, "a", [0, 1, 6, 0], 10.0)  # test accuracy 3/4
    b = _run(tmp_path, "b", [0, 1, 6, 7], 20.0)  # test accuracy 1
    out = tmp_path / "arms.json"
    assert real_data_tables.main(["arms", str(out), f"x={a},{b}", f"y={b}"]) == 0
    x, y = json.loads(out.read_text(encoding="utf-8"))["rows"]
    assert x["arm"] == "x" and x["n_runs"] == 2
    assert x["test_acc"]["mean"] == pytest.approx(7 / 8)
    assert x["test_acc"]["sd"] == pytest.approx(
        ((1 / 8) ** 2 * 2 / 1) ** 0.5
    )  # sample sd of 3/4 and 1
    assert x["train_s"] == {"mean": 15.0, "sd": pytest.approx(50**0.5)}
    assert y["n_runs"] == 1 and y["test_acc"] == {"mean": 1.0, "sd": None}


def test_without_arguments_prints_usage(capsys):
    assert real_data_tables.main([]) == 2
    assert "python benchmarks/real_data_tables.py models OUT.json" in capsys.readouterr().err


def test_an_ensembles_mcnemar_test_is_carried_and_a_plain_run_has_none(tmp_path):
    plain = _run(tmp_path, "plain", [0, 1, 6, 0], 1.0)
    ens = _run(tmp_path, "ens", [0, 1, 6, 7], 1.0)
    manifest = json.loads((ens / "run.json").read_text(encoding="utf-8"))
    manifest["vs_best_member"] = {
        "member": "plain",
        "accuracy_member": 0.75,
        "accuracy_ensemble": 1.0,
        "b": 1,
        "c": 0,
        "n_discordant": 1,
        "p_value": 1.0,
        "n": 4,
        "method": "exact",
    }
    (ens / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    first, second = real_data_tables.models_rows([str(plain), str(ens)])
    assert first["vs_best_member"] is None
    assert second["vs_best_member"] == {
        "member": "plain",
        "accuracy_member": 0.75,
        "accuracy_ensemble": 1.0,
        "b": 1,
        "c": 0,
        "p_value": 1.0,
    }


def test_length_row_gives_percentiles_and_the_share_each_cut_truncates():
    # 10 questions of 10, 20, ..., 100 tokens, then 4 longer ones: 127, 128 (not cut), 129 (cut by 128) and 300.
    counts = list(range(10, 101, 10)) + [127, 128, 129, 300]
    row = real_data_tables.length_row("val_split.csv", counts)
    assert row["split"] == "val_split.csv" and row["n"] == 14
    assert row["share_longer"] == {"128": pytest.approx(2 / 14), "256": pytest.approx(1 / 14)}
    # numpy's linear percentile: the median of 14 sorted values is the mean of the 7th and 8th (70 and 80)
    assert row["percentiles"]["50"] == 75.0
    with pytest.raises(ValueError, match="val_split.csv: no questions"):
        real_data_tables.length_row("val_split.csv", [])


def test_lengths_needs_a_preset_and_at_least_one_file(capsys):
    assert real_data_tables.main(["lengths", "out.json", "minilm"]) == 2
    assert "lengths OUT.json PRESET CSV" in capsys.readouterr().err
