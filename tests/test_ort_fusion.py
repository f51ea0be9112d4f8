"""benchmarks/ort_fusion.py: it refuses a run without the files it times, naming the file and the command."""

from benchmarks import ort_fusion


def test_names_the_missing_onnx_file_and_the_command(tmp_path, capsys):
    (tmp_path / "preds_test.csv").write_text("y_true,y_pred\n", encoding="utf-8")
    assert ort_fusion.main([str(tmp_path), str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'model.onnx'}: missing" in err
    assert f"mathreport export-onnx --run_dir {tmp_path}" in err
    assert not (tmp_path / "out.json").exists()


def test_without_arguments_prints_usage(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        ort_fusion.main([])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err
