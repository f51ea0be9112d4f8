"""environment: package versions and the CPU's flags, read the way run.json and latency.json record them."""

from __future__ import annotations

import importlib.metadata as md

from mathreport import environment


def test_cpu_bf16_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert environment.cpu_bf16_flags(cpuinfo) == [] and not environment.cpu_has_fast_bf16(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert environment.cpu_bf16_flags(cpuinfo) == [
        "avx512_bf16",
        "amx_bf16",
    ] and environment.cpu_has_fast_bf16(cpuinfo)
    assert environment.cpu_bf16_flags(tmp_path / "missing") == []  # not Linux: bf16 is not assumed


def test_cpu_model_and_flags_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu sse2 avx2\n\n"
        "processor\t: 1\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu sse2 avx2\n"
    )
    assert environment.cpu_model(cpuinfo) == "Some CPU @ 2.0GHz"
    assert environment.cpu_flags(cpuinfo) == ["fpu", "sse2", "avx2"]
    assert (
        environment.cpu_model(tmp_path / "missing") is None
        and environment.cpu_flags(tmp_path / "missing") == []
    )


def test_versions_name_installed_packages_and_mark_missing_ones():
    found = environment.versions(["numpy", "no-such-package-mathreport"], python=True)
    assert list(found) == ["python", "numpy"] and found["numpy"] == md.version("numpy")
    marked = environment.versions(["no-such-package-mathreport"], missing="not installed")
    assert marked == {"no-such-package-mathreport": "not installed"}
