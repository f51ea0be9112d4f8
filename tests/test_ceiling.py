"""benchmarks/ceiling.py on small matrices: every kind timed, the ceiling is the best median, flags read not assumed."""

from __future__ import annotations

import pytest

from benchmarks import ceiling


def test_ceiling_times_every_kind_and_keeps_the_best_median(monkeypatch):
    monkeypatch.setattr(ceiling.environment, "cpu_flags", lambda *args: ["avx2", "amx_bf16"])
    record = ceiling.measure(threads=1, torch_sizes=(64, 128), int8_sizes=(64, 128), min_seconds=0)
    assert {(r["dtype"], r["n"]) for r in record["results"]} == {
        (d, n) for d in ("float32", "bfloat16", "int8") for n in (64, 128)
    }
    for dtype, best in record["ceilings"].items():
        rates = [r["median_flop_per_s"] for r in record["results"] if r["dtype"] == dtype]
        assert best["flop_per_s"] == max(rates) > 0
    assert all(r["flop_per_call"] == 2 * r["n"] ** 3 for r in record["results"])
    assert (
        record["cpu_kernel_flags"]["amx_bf16"] is True
        and record["cpu_kernel_flags"]["avx512_bf16"] is False
    )
    assert record["machine"]["lock_held_throughout"] is False


def test_an_existing_output_is_kept_unless_force(tmp_path):
    out = tmp_path / "ceiling.json"
    out.write_text("{}")
    with pytest.raises(SystemExit) as exc:
        ceiling.main(["--out", str(out)])
    assert exc.value.code == 2 and out.read_text() == "{}"
