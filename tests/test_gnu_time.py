"""benchmarks/gnu_time.py: the figures of a GNU time report, parsed (never typed in) into docs/perf JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gnu_time

# The shape of GNU time's `-v` report (time 1.9), with made-up figures.
REPORT = """\
\tCommand being timed: "mathreport pipeline --models tfidf minilm ensemble"
\tUser time (seconds): {user}
\tSystem time (seconds): 12.40
\tPercent of CPU this job got: 160%
\tElapsed (wall clock) time (h:mm:ss or m:ss): {wall}
\tAverage shared text size (kbytes): 0
\tMaximum resident set size (kbytes): 2770832
\tVoluntary context switches: 1
\tExit status: {status}
"""


def write_log(tmp_path: Path, *reports: str, prefix: str = "training output\n") -> Path:
    log = tmp_path / "run.log"
    log.write_text(prefix + "\n".join(reports), encoding="utf-8")
    return log


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3:20.04", 200.04), ("0:05.50", 5.5), ("1:02:03", 3723.0), ("59:59.99", 3599.99)],
)
def test_elapsed_time_in_both_of_gnu_times_formats(text: str, seconds: float) -> None:
    assert gnu_time.clock_seconds(text) == seconds


@pytest.mark.parametrize("text", ["200.04", "1:2:3:4", ":05"])
def test_an_elapsed_time_of_another_shape_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected m:ss.cc or h:mm:ss"):
        gnu_time.clock_seconds(text)


def test_parse_reads_every_figure(tmp_path: Path) -> None:
    log = write_log(tmp_path, REPORT.format(user="309.60", wall="3:20.04", status=0))
    assert gnu_time.parse(log) == {
        "command": "mathreport pipeline --models tfidf minilm ensemble",
        "user_seconds": 309.6,
        "system_seconds": 12.4,
        "wall_seconds": 200.04,
        "max_rss_kb": 2770832,
        "exit_status": 0,
    }


def test_the_last_report_of_a_log_wins_and_a_failed_command_keeps_its_status(
    tmp_path: Path,
) -> None:
    log = write_log(
        tmp_path,
        REPORT.format(user="1.00", wall="0:01.00", status=0),
        REPORT.format(user="2.00", wall="1:00:00", status=1),
    )
    figures = gnu_time.parse(log)
    assert (figures["user_seconds"], figures["wall_seconds"], figures["exit_status"]) == (
        2.0,
        3600.0,
        1,
    )


def test_a_log_without_a_report_line_names_the_file_and_the_line(tmp_path: Path) -> None:
    report = REPORT.format(user="1.00", wall="0:01.00", status=0)
    log = write_log(
        tmp_path, "\n".join(line for line in report.splitlines() if "Maximum resident" not in line)
    )
    with pytest.raises(ValueError, match=r"run\.log: no GNU time line 'Maximum resident set size"):
        gnu_time.parse(log)


def test_main_writes_the_json_perf_doc_reads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = write_log(tmp_path, REPORT.format(user="309.60", wall="3:20.04", status=0))
    out = tmp_path / "perf" / "timed.json"
    out.parent.mkdir()
    assert gnu_time.main([str(log), str(out), "--what", "a test", "--note", "quiet"]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["wall_seconds"] == 200.04 and record["max_rss_kb"] == 2770832
    assert record["what"] == "a test" and record["other_processes_at_start"] == "quiet"
    assert record["command"] == "mathreport pipeline --models tfidf minilm ensemble"
    assert "cores" in record["cpu"]
    assert "200.04 s wall" in capsys.readouterr().out


def test_main_on_a_log_without_a_report_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    log = write_log(tmp_path, "", prefix="Traceback: the command never ran under time\n")
    out = tmp_path / "timed.json"
    assert gnu_time.main([str(log), str(out), "--what", "x"]) == 1
    assert not out.exists()
    assert "no GNU time line 'Command being timed'" in capsys.readouterr().err
