"""A command's wall time, CPU time and peak memory, read from GNU time's report into the JSON docs/perf keeps.

    /usr/bin/time -v COMMAND > LOG 2>&1      # GNU time writes its report at the end of stderr
    python benchmarks/gnu_time.py LOG OUT.json --what "what was timed, on what data" [--note "machine state"] \
        [--commit SHA]      # default: this checkout's HEAD

The numbers are parsed from LOG (never typed in): `Elapsed (wall clock) time`, `User time`, `System time`,
`Maximum resident set size` and `Exit status`; the command is GNU time's `Command being timed`. A report that
lacks one of them is an error naming the log and the line it looked for. The JSON also records the commit
timed (`--commit`, default HEAD) and the CPU (mathreport.environment); OUT.json is written atomically.
docs/perf/make-report.json and docs/perf/real-data-pipeline.json are made this way; `make perf-doc` turns them
into tables.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

from mathreport import environment, files

FIELDS = {
    "command": r"Command being timed: \"(?P<v>.*)\"",
    "user_seconds": r"User time \(seconds\): (?P<v>[0-9.]+)",
    "system_seconds": r"System time \(seconds\): (?P<v>[0-9.]+)",
    "wall_seconds": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?P<v>[0-9:.]+)",
    "max_rss_kb": r"Maximum resident set size \(kbytes\): (?P<v>[0-9]+)",
    "exit_status": r"Exit status: (?P<v>-?[0-9]+)",
}


def clock_seconds(text: str) -> float:
    """GNU time's elapsed time, `m:ss.cc` or `h:mm:ss`, in seconds."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"elapsed time {text!r}: expected m:ss.cc or h:mm:ss")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return round(seconds, 2)


def parse(log: Path) -> dict:
    """The figures of the last GNU time report in `log`."""
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    out: dict = {}
    for key, pattern in FIELDS.items():
        found = re.findall(r"^\s*" + pattern + r"\s*$", text, flags=re.MULTILINE)
        if not found:
            label = pattern.split(":")[0].replace("\\", "")
            raise ValueError(
                f"{log}: no GNU time line {label!r}; run the command as `/usr/bin/time -v COMMAND`"
            )
        value = found[-1]
        if key == "command":
            out[key] = value
        elif key == "wall_seconds":
            out[key] = clock_seconds(value)
        elif key in ("max_rss_kb", "exit_status"):
            out[key] = int(value)
        else:
            out[key] = float(value)
    return out


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "log", type=Path, help="the output of `/usr/bin/time -v COMMAND` (stderr included)"
    )
    parser.add_argument("out", type=Path, help="the JSON to write (docs/perf/NAME.json)")
    parser.add_argument("--what", required=True, help="what was timed, on what data")
    parser.add_argument("--note", help="what else ran on the machine at the time")
    parser.add_argument(
        "--commit", help="the commit that was timed (default: this checkout's HEAD)"
    )
    args = parser.parse_args(argv)
    try:
        figures = parse(args.log)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    hardware = environment.hardware()
    flags = " ".join(hardware.get("cpu_bf16_flags") or []) or "no bf16 flags"
    record = {
        "what": args.what,
        **figures,
        "commit": args.commit or git_commit(),
        "other_processes_at_start": args.note,
        "cpu": f"{hardware.get('cpu')}, {hardware.get('cpu_count')} cores, {flags}",
        "made_by": shlex.join(
            ["python", "benchmarks/gnu_time.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    files.write_json(args.out, record)
    print(
        f"wrote {args.out}: {figures['wall_seconds']} s wall, exit status {figures['exit_status']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
