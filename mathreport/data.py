"""Question CSVs: row-level validation, cleaning, de-duplication, stratified splits, leakage checks.
`read_split` reads the split files that `mathreport.prepare` makes with the rules here."""

from __future__ import annotations

import ast
import codecs
import csv
import io
import itertools
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from mathreport import labels
from mathreport.errors import DataError, LeakageError

log = logging.getLogger(__name__)

TEXT_COL = "Question"
LABEL_COL = "label"
TRAIN_FILE = "augmented_train.csv"
VAL_FILE = "val_split.csv"
TEST_FILE = "test_split.csv"
REPORT_FILE = "prepare_report.json"
SPLIT_FILES = {"train": TRAIN_FILE, "val": VAL_FILE, "test": TEST_FILE}
KAGGLE_COMPETITION = "classification-of-math-problems-by-kasut-academy"
PREPARE_COMMAND = "mathreport prepare --input RAW.csv --out_dir data"
LEAKAGE_FLAG = "--allow_leakage"
CONFLICT_POLICIES = ("majority", "drop")
AUGMENT_METHODS = ("none", "oversample")
# Every reason a row can be dropped; all are always present in the report so its schema is stable.
DROP_REASONS = (
    "empty_after_cleaning",
    "label_conflict_minority",
    "label_conflict_unresolved",
    "duplicate_exact",
    "duplicate_normalized",
)
_LINE_NOTE = "line 1 is the header"
_MAX_EXAMPLES = 5
# What pandas and spreadsheets write for a missing value; no real question reads like this.
_MISSING_MARKERS = {"nan", "none", "null", "na", "n/a", "<na>"}
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


# ----------------------------------------------------------------------------------------------- reading
# What a file that is not a text CSV starts with, and what to tell its owner.
_NOT_CSV = (
    (b"\x1f\x8b", "is gzip-compressed, not a CSV: decompress it first (gunzip)"),
    (b"BZh", "is bzip2-compressed, not a CSV: decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "is xz-compressed, not a CSV: decompress it first (unxz)"),
    (
        b"\xd0\xcf\x11\xe0",
        "is an old Excel (.xls) or other Office file, not a CSV: save it as 'CSV UTF-8'",
    ),
    (b"%PDF", "is a PDF, not a CSV"),
    (b"PAR1", "is a Parquet file, not a CSV: convert it (pandas.read_parquet(...).to_csv(...))"),
    (b"\xff\xfe", "is UTF-16 encoded: re-save it as UTF-8 ('CSV UTF-8' in Excel)"),
    (b"\xfe\xff", "is UTF-16 encoded: re-save it as UTF-8 ('CSV UTF-8' in Excel)"),
)


def _not_csv_reason(path: Path, raw: bytes) -> str | None:
    if raw.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if any(name.startswith("xl/") for name in names):
            return "is an Excel workbook (.xlsx), not a CSV: in Excel use Save As > 'CSV UTF-8'"
        return "is a ZIP archive, not a CSV: extract the CSV from it first"
    for magic, reason in _NOT_CSV:
        if raw.startswith(magic):
            return reason
    head = raw[:4000]
    if len(head) >= 4 and head.count(b"\x00") * 3 >= len(
        head
    ):  # every other byte NUL: UTF-16 without a BOM
        return "is UTF-16 encoded (every other byte is 0): re-save it as UTF-8"
    return None


def check_input_file(path: str | Path, missing_hint: str) -> Path:
    """`path` if it is a readable regular file; else DataError saying in one line what it is instead."""
    path = Path(path)
    if path.is_dir():
        csvs = sorted(p.name for p in path.glob("*.csv"))[:4]
        inside = f" (it holds {', '.join(csvs)}: name one of them)" if csvs else ""
        raise DataError(f"{path}: is a directory, not a CSV file{inside}")
    if not path.exists():
        raise DataError(f"{path}: file not found; {missing_hint}")
    if not path.is_file():
        raise DataError(
            f"{path}: is not a regular file (a device, pipe or socket); give a CSV file"
        )
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise DataError(
            f"{path}: cannot be read (permission denied); check its permissions (ls -l {path})"
        ) from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None


def _read_records(
    path: Path, text_col: str, label_col: str | None, keep_blank: bool = False
) -> tuple[list[str], list[list[str]], list[int]]:
    # Header, records and the file line each record starts on. keep_blank: keep records of blank fields (not empty
    # lines), for the caller to refuse by line.
    expected = ",".join(col for col in (text_col, label_col) if col)
    raw = _read_bytes(path)
    reason = _not_csv_reason(path, raw)
    if reason:
        raise DataError(f"{path}: {reason}")
    if not raw.strip():
        raise DataError(
            f"{path}: the file is empty (expected a CSV with a header row '{expected}')"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid UTF-8: byte 0x{raw[err.start]:02x} at byte offset {err.start} "
            f"(line {line}, {_LINE_NOTE}); re-save the file with UTF-8 encoding"
        ) from None
    # The csv module, not pandas, because a question may span several lines (LaTeX environments) and
    # error messages must name the line the record starts on in the file, not its row index.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long LaTeX questions are fine
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_delimiter(path, text, (text_col, label_col))
    )
    header: list[str] | None = None
    records: list[list[str]] = []
    starts: list[int] = []
    next_start = 1
    try:
        for record in reader:
            start, next_start = next_start, reader.line_num + 1
            if not record or (
                not any(field.strip() for field in record) and not (keep_blank and header)
            ):
                continue
            if header is None:
                header = [field.strip() for field in record]
                continue
            records.append(record)
            starts.append(start)
    except csv.Error as err:
        raise DataError(
            f"{path}: line {reader.line_num} ({_LINE_NOTE}): malformed CSV ({err})"
        ) from None
    if header is None:  # only separators and blanks, e.g. ",,,"
        raise DataError(
            f"{path}: the file is empty (expected a CSV with a header row '{expected}')"
        )
    return header, records, starts


_TOLD_SEMICOLON: set[str] = set()


def _delimiter(path: Path, text: str, columns: tuple[str | None, ...]) -> str:
    # "," unless the header is one comma-field that, split at ";", names every column asked for: a spreadsheet in a
    # locale whose decimal mark is "," (Turkish, German, ...) saves CSV that way. No comma-separated file has such
    # a header, so the header decides alone, and the reader is told in one line.
    first = re.search(r"^[^\n]*\S[^\n]*$", text, re.M)  # the first line that is not blank
    header = first.group(0).rstrip("\r") if first else ""
    if len(next(csv.reader([header]), [])) != 1 or ";" not in header:
        return ","
    names = [name.strip() for name in next(csv.reader([header], delimiter=";"))]
    if not all(col in names for col in columns if col):
        return ","
    if (
        str(path) in _TOLD_SEMICOLON
    ):  # said once per file and process, however often it is read again
        return ";"
    _TOLD_SEMICOLON.add(str(path))
    log.warning(
        "%s: read as ';'-separated (its header %r joins the columns with ';', as spreadsheets set to Turkish "
        "or another language with a decimal comma save CSV)",
        path,
        header,
    )
    return ";"


def _check_columns(path: Path, header: list[str], text_col: str, label_col: str | None) -> None:
    # A missing column is a DataError, which spots a file with another delimiter.
    missing = [col for col in (text_col, label_col) if col and col not in header]
    if not missing:
        return
    if len(header) == 1:
        for sep, sep_name in _OTHER_DELIMITERS.items():
            if sep in header[0]:
                if (
                    sep == ";"
                ):  # read when its header names the columns (_delimiter); this one's does not
                    wanted = " and ".join(repr(col) for col in (text_col, label_col) if col)
                    fix = (
                        f", which is read when its header names the columns {wanted}: rename them, or name "
                        "its own with --text_col / --label_col"
                    )
                else:
                    fix = "; mathreport reads comma-separated CSV, re-save it with ',' as the delimiter"
                raise DataError(
                    f"{path}: line 1 (the header) {header[0]!r} is one column containing {sep!r}: the file "
                    f"looks {sep_name}-separated{fix}"
                )
    flags = {text_col: "--text_col", label_col: "--label_col"}
    found = ", ".join(repr(col) for col in header)
    what = " and ".join(f"{col!r} (choose another with {flags[col]})" for col in missing)
    raise DataError(f"{path}: no column {what}; columns found: {found}")


def read_table(path: str | Path, text_col: str, label_col: str, missing_hint: str) -> pd.DataFrame:
    """Validated rows of a question CSV as columns `Question` (raw text), `label` (int) and `line`."""
    path = check_input_file(path, missing_hint)
    header, records, starts = _read_records(path, text_col, label_col)
    _check_columns(path, header, text_col, label_col)
    if not records:
        raise DataError(f"{path}: the file has a header ({', '.join(header)}) but no data rows")
    text_idx, label_idx = header.index(text_col), header.index(label_col)
    problems: list[str] = []  # in file order; the first is reported, the rest counted
    texts: list[str] = []
    ids: list[int] = []
    for record, line in zip(records, starts, strict=True):
        where = f"{path}: line {line} ({_LINE_NOTE})"
        if len(record) != len(header):
            problems.append(
                f"{where}: {len(record)} fields but the header has {len(header)} "
                f"(a question with an unquoted comma or quote?)"
            )
            continue
        text, label = record[text_idx], record[label_idx]
        if not text.strip() or text.strip().casefold() in _MISSING_MARKERS:
            problems.append(f"{where}: column {text_col!r} is empty ({text.strip() or 'no text'})")
        if not label.strip():
            problems.append(f"{where}: column {label_col!r} is empty")
            continue
        try:
            ids.append(labels.parse_label(label))
        except ValueError as err:
            problems.append(f"{where}, column {label_col!r}: {err}")
        texts.append(text)
    if problems:
        more = f" ({len(problems) - 1} more bad rows after it)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    frame = pd.DataFrame({TEXT_COL: texts, LABEL_COL: ids, "line": starts})
    frame[LABEL_COL] = frame[LABEL_COL].astype("int64")
    return frame


# Characters that show nothing: white space (including no-break spaces), format characters (zero-width spaces and
# joiners, the byte-order mark) and control characters. A question made only of them has no text to classify.
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cf", "Cc"})


def blank_text(text: str) -> bool:
    """Whether `text` shows nothing: empty, or only white space, zero-width or control characters."""
    import unicodedata

    return all(
        ch.isspace() or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in str(text)
    )


def read_questions(path: str | Path, text_col: str = TEXT_COL) -> list[str]:
    """The questions of a CSV to classify (column `text_col`; others ignored), refusing an empty one by its line."""
    path = check_input_file(path, "give a CSV with a question column")
    header, records, starts = _read_records(path, text_col, None, keep_blank=True)
    _check_columns(path, header, text_col, None)
    if not records:
        raise DataError(f"{path}: the file has a header ({', '.join(header)}) but no questions")
    idx = header.index(text_col)
    texts = []
    for record, line in zip(records, starts, strict=True):
        text = record[idx] if idx < len(record) else ""
        if blank_text(text):
            raise DataError(
                f"{path}: line {line} ({_LINE_NOTE}): column {text_col!r} is empty; every row needs "
                "a question"
            )
        texts.append(text)
    return texts


def read_split(
    path: str | Path, text_col: str = TEXT_COL, label_col: str = LABEL_COL
) -> pd.DataFrame:
    """One split file as columns exactly `Question` (str) and `label` (int 0..7), validated row by row."""
    hint = f"make the split files with `{PREPARE_COMMAND}` (or `make report` for the demo data)"
    return read_table(path, text_col, label_col, hint).drop(columns="line")


# ---------------------------------------------------------------------------------------------- cleaning
_BYTES_LITERAL = re.compile(r"""\Ab(['"])(.*)\1\Z""", re.DOTALL)


def unwrap_bytes_literal(text: str) -> str:
    """The text inside a `b'...'` / `b"..."` wrapper with escapes (\\n, \\', \\xNN) decoded; else `text`."""
    stripped = text.strip()
    match = _BYTES_LITERAL.match(stripped)
    if match is None:
        return text
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        value = None  # raw newlines or non-ASCII inside the quotes: not a Python literal, decode by hand
    if not isinstance(value, bytes):
        try:
            value = codecs.escape_decode(match.group(2).encode("utf-8"))[0]
        except ValueError:  # a trailing lone backslash
            return match.group(2)
    return value.decode("utf-8", errors="replace")


def normalize_whitespace(text: str) -> str:
    """Runs of whitespace (newlines, tabs, non-breaking spaces) as one space, ends stripped."""
    return " ".join(text.split())


def clean_question(text: str) -> str:
    """A question as written to the split files: `b'...'` unwrapped, whitespace normalised, LaTeX kept."""
    return normalize_whitespace(unwrap_bytes_literal(text))


def normalize_question(text: str) -> str:
    """The key two questions are the same by: cleaned text, casefolded."""
    return clean_question(text).casefold()


def _examples(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # A few dropped rows for the report, so a reader can check a reason by opening the raw file.
    return [
        {"line": int(row.line), "label": int(row.label), "question": _shorten(row.raw)}
        for row in frame.head(_MAX_EXAMPLES).itertuples()
    ]


def _shorten(text: str, width: int = 120) -> str:
    text = normalize_whitespace(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def clean_questions(
    table: pd.DataFrame, conflict_policy: str = "majority"
) -> tuple[pd.DataFrame, dict]:
    """Clean, drop empty questions, resolve conflicting labels and collapse duplicates; (kept rows, report).

    table: columns `Question` (raw text), `label`, optionally `line` (file line, for the report).
    conflict_policy: for a question seen with several labels, "majority" keeps the most frequent label (a tie
    drops the question); "drop" drops every copy.
    """
    if conflict_policy not in CONFLICT_POLICIES:
        raise ValueError(
            f"conflict_policy must be one of {CONFLICT_POLICIES}, got {conflict_policy!r}"
        )
    df = pd.DataFrame(
        {
            "raw": table[TEXT_COL].astype(str),
            LABEL_COL: table[LABEL_COL].astype("int64"),
            "line": table["line"] if "line" in table else pd.RangeIndex(2, len(table) + 2),
        }
    ).reset_index(drop=True)
    unwrapped = df["raw"].map(unwrap_bytes_literal)
    df[TEXT_COL] = unwrapped.map(normalize_whitespace)
    changed = {
        "unwrapped_bytes_literal": int((unwrapped != df["raw"]).sum()),
        "whitespace_normalized": int((df[TEXT_COL] != unwrapped).sum()),
    }
    df["key"] = df[TEXT_COL].str.casefold()
    reason = pd.Series("", index=df.index)  # "" = kept so far

    reason[df[TEXT_COL] == ""] = "empty_after_cleaning"

    alive = reason == ""
    n_labels = df[alive].groupby("key")[LABEL_COL].transform("nunique")
    conflicted = df[alive][n_labels > 1]
    conflict_examples = []
    resolved = unresolved = 0
    for _, group in conflicted.groupby("key", sort=False):
        votes = group[LABEL_COL].value_counts()
        is_tie = len(votes) > 1 and votes.iloc[0] == votes.iloc[1]
        if conflict_policy == "majority" and not is_tie:
            resolved += 1
            reason[group.index[group[LABEL_COL] != votes.index[0]]] = "label_conflict_minority"
        else:
            unresolved += 1
            reason[group.index] = "label_conflict_unresolved"
        if len(conflict_examples) < _MAX_EXAMPLES:
            conflict_examples.append(
                {
                    "question": _shorten(group["raw"].iloc[0]),
                    "lines": [int(x) for x in group["line"]],
                    "labels": [int(x) for x in group[LABEL_COL]],
                }
            )

    # Among the survivors every question has one label; keep its first occurrence. A copy is "exact" when its
    # raw text is byte-identical to an earlier row, "normalized" when it differs only in whitespace, case or
    # a b'...' wrapper.
    alive = reason == ""
    survivors = df[alive]
    duplicate = survivors.duplicated("key", keep="first")
    exact = survivors.duplicated("raw", keep="first")
    reason[survivors.index[duplicate & exact]] = "duplicate_exact"
    reason[survivors.index[duplicate & ~exact]] = "duplicate_normalized"

    dropped = {name: int((reason == name).sum()) for name in DROP_REASONS}
    kept = df[reason == ""][[TEXT_COL, LABEL_COL, "line"]].reset_index(drop=True)
    report = {
        "rows_in": len(df),
        "rows_kept": len(kept),
        "rows_changed": changed,
        "rows_dropped": dropped,
        "unique_questions_in": int(df.loc[df[TEXT_COL] != "", "key"].nunique()),
        "label_conflicts": {
            "policy": conflict_policy,
            "questions": resolved + unresolved,
            "resolved_by_majority": resolved,
            "dropped_questions": unresolved,
            "examples": conflict_examples,
        },
        "dropped_examples": {name: _examples(df[reason == name]) for name in DROP_REASONS},
    }
    assert report["rows_in"] == report["rows_kept"] + sum(dropped.values())
    return kept, report


# --------------------------------------------------------------------------------------- splits and counts
def class_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per class id (as a string key, all 8 classes present)."""
    counts = frame[LABEL_COL].value_counts()
    return {str(i): int(counts.get(i, 0)) for i in labels.CLASS_IDS}


def split_stratified(
    frame: pd.DataFrame, val_size: float = 0.1, test_size: float = 0.1, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Train, val and test, stratified by label and seeded, and warnings (a class of under 3 rows: all in train)."""
    counts = frame[LABEL_COL].value_counts()
    rare = sorted(int(c) for c in counts.index[counts < 3])
    warnings = [
        f"class {c} ({labels.name(c, 'en')}) has {int(counts[c])} row(s), too few to stratify: all in train"
        for c in rare
    ]
    rest = frame[~frame[LABEL_COL].isin(rare)]
    rare_rows = frame[frame[LABEL_COL].isin(rare)]
    try:
        train_val, test = train_test_split(
            rest, test_size=test_size, stratify=rest[LABEL_COL], random_state=seed
        )
        train, val = train_test_split(
            train_val,
            test_size=val_size / (1.0 - test_size),
            stratify=train_val[LABEL_COL],
            random_state=seed,
        )
    except ValueError as err:
        raise DataError(
            f"cannot make stratified splits of {len(frame)} rows with val_size={val_size}, test_size={test_size}: {err}"
        ) from None
    train = pd.concat([train, rare_rows]).sample(frac=1.0, random_state=seed)
    return (*(part.reset_index(drop=True) for part in (train, val, test)), warnings)


# A class with fewer rows than this in a split gets a warning: its scores there rest on a handful of questions.
MIN_ROWS_PER_SPLIT = 5
MISSING_CLASSES_FLAG = "--allow_missing_classes"


def class_list(ids) -> str:
    """Class ids as the reader knows them: "3 (Olasılık), 5 (Kombinatorik)"."""
    return ", ".join(f"{int(i)} ({labels.name(int(i))})" for i in sorted(ids))


def coverage_warnings(
    counts: Mapping[str, Mapping[str, int]], min_rows: int = MIN_ROWS_PER_SPLIT
) -> list[str]:
    """One warning per class that has rows but fewer than `min_rows` in some split.

    counts: {split: {class id (str): rows}}, as in prepare_report.json's `class_counts`.
    """
    splits = [name for name in ("train", "val", "test") if name in counts]
    out = []
    for i in labels.CLASS_IDS:
        per = {name: int(counts[name].get(str(i), 0)) for name in splits}
        thin = [name for name in splits if per[name] < min_rows]
        if sum(per.values()) and thin:
            split = " / ".join(f"{name} {per[name]}" for name in splits)
            out.append(
                f"class {class_list([i])}: {split} rows; fewer than {min_rows} in {', '.join(thin)}, so "
                "its scores there rest on too few questions (none at 0)"
            )
    return out


def check_class_coverage(
    splits: Mapping[str, pd.DataFrame],
    allow_missing: bool = False,
    where: Mapping[str, str] | None = None,
) -> list[str]:
    """The class rule every model trains under: train has two classes or more (else DataError) and every class of
    val and test (else DataError, or with `allow_missing` the warnings returned).

    where: a name per split for the messages (e.g. its file).
    """
    where = {name: where.get(name, name) if where else name for name in splits}
    train_ids = set(int(i) for i in splits["train"][LABEL_COL].unique())
    if len(train_ids) < 2:
        raise DataError(
            f"{where['train']}: the train split has only class {class_list(train_ids)}; a classifier "
            "needs at least two classes"
        )
    problems = []
    for name in ("val", "test"):
        if name in splits and splits[name] is not None:
            lacking = set(int(i) for i in splits[name][LABEL_COL].unique()) - train_ids
            if lacking:
                problems.append(
                    f"{where['train']} has no question of class {class_list(lacking)}, which "
                    f"{where[name]} has"
                )
    if problems and not allow_missing:
        raise DataError(
            "; ".join(problems) + ": no model can learn a class it never sees. Re-make the splits "
            f"with `{PREPARE_COMMAND}`, or pass {MISSING_CLASSES_FLAG} to train anyway"
        )
    return [
        p + f" ({MISSING_CLASSES_FLAG}: its scores will be those of a model that never saw it)"
        for p in problems
    ]


def stratified_sample(
    frame: pd.DataFrame, n: int, seed: int, where: str = "the train split"
) -> pd.DataFrame:
    """`n` rows of `frame`, in order: one of every class, the rest shared in proportion (largest remainder).

    DataError when `n` is below the number of classes.
    """
    # Not train_test_split: it refuses a class of one row and may leave a rare class out of a small sample.
    import numpy as np

    if n >= len(frame):
        return frame
    counts = frame[LABEL_COL].value_counts().sort_index()
    if n < len(counts):
        raise DataError(
            f"--max_train_samples {n}: {where} has {len(counts)} classes, and a sample must keep one "
            f"question of each; give at least {len(counts)}"
        )
    spare = counts - 1
    quota = spare / spare.sum() * (n - len(counts))
    take = np.floor(quota).astype(int)
    # Largest remainders first (ties: the lower class id), one row each, until n rows are taken.
    order = sorted(counts.index, key=lambda c: (-(quota[c] - take[c]), c))
    for c in order[: n - len(counts) - int(take.sum())]:
        take[c] += 1
    parts = [
        frame[frame[LABEL_COL] == c].sample(n=int(take[c]) + 1, random_state=seed)
        for c in counts.index
    ]
    return pd.concat(parts).sort_index()


def oversample_minority(
    train: pd.DataFrame, seed: int = 42, target: str | float = "median"
) -> tuple[pd.DataFrame, dict]:
    """Train with minority classes randomly duplicated up to `target` rows each, and a report.

    target: "median" (the median class count) or a fraction in (0, 1] of the largest class count.
    """
    counts = train[LABEL_COL].value_counts()
    if target == "median":
        goal = int(counts.median())
    elif isinstance(target, (int, float)) and 0 < float(target) <= 1:
        goal = round(float(target) * int(counts.max()))
    else:
        raise ValueError(
            f"oversample target must be 'median' or a fraction in (0, 1], got {target!r}"
        )
    extra = [
        train[train[LABEL_COL] == cls].sample(
            n=goal - int(n), replace=True, random_state=seed + int(cls)
        )
        for cls, n in counts.sort_index().items()
        if n < goal
    ]
    added = class_counts(pd.concat(extra)) if extra else class_counts(train.iloc[:0])
    # Shuffled so the copies are not all at the end of the file.
    augmented = (
        pd.concat([train, *extra]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    )
    return augmented, {
        "method": "oversample",
        "target": target,
        "target_rows_per_class": goal,
        "rows_added": int(sum(added.values())),
        "rows_added_per_class": added,
    }


def class_counts_table(report: Mapping[str, Any]) -> str:
    """The class-counts-per-split table of a prepare report as text: rows are classes (Turkish names)."""
    counts = report["class_counts"]
    columns = [c for c in ("train_before_augmentation", "train", "val", "test") if c in counts]
    table = pd.DataFrame(
        {col: [counts[col][str(i)] for i in labels.CLASS_IDS] for col in columns},
        index=labels.names("tr"),
    )
    table.loc["Toplam"] = table.sum()
    return table.rename(columns={"train_before_augmentation": "train (orig.)"}).to_string()


# ------------------------------------------------------------------------------------------------ leakage
def _leakage_inputs(
    paths_or_frames: Mapping[str, pd.DataFrame | str | Path],
) -> dict[str, tuple[str, pd.Series]]:
    # Display name and question texts of each split.
    out = {}
    for name, value in paths_or_frames.items():
        if isinstance(value, pd.DataFrame):
            out[name] = (name, value[TEXT_COL].astype(str))
        else:
            display = name if str(value) == name else f"{name} ({value})"
            out[name] = (display, read_split(value)[TEXT_COL])
    return out


def check_leakage(
    paths_or_frames: Mapping[str, pd.DataFrame | str | Path],
) -> dict[str, dict[str, Any]]:
    """The questions each pair of splits shares, compared by `normalize_question`.

    Values: frames with a `Question` column, or split files. Returns {"a vs b": {"splits": [a, b], "overlap":
    distinct shared questions, "example": one of them}}.
    """
    splits = _leakage_inputs(paths_or_frames)
    keyed = {
        name: dict(zip(texts.map(normalize_question), texts, strict=True))
        for name, (_, texts) in splits.items()
    }
    result = {}
    for a, b in itertools.combinations(splits, 2):
        shared = sorted(keyed[a].keys() & keyed[b].keys())
        result[f"{a} vs {b}"] = {
            "splits": [splits[a][0], splits[b][0]],
            "overlap": len(shared),
            "example": _shorten(keyed[a][shared[0]]) if shared else None,
        }
    return result


def assert_no_leakage(
    splits: Mapping[str, pd.DataFrame | str | Path], allow: bool = False
) -> dict[str, dict[str, Any]]:
    """Raise LeakageError if a question is in two splits (unless `allow`); the `check_leakage` result."""
    result = check_leakage(splits)
    leaks = [pair for pair in result.values() if pair["overlap"]]
    if not leaks:
        return result
    first = leaks[0]
    others = "".join(
        f"; also {p['overlap']} in {p['splits'][0]} and {p['splits'][1]}" for p in leaks[1:]
    )
    message = (
        f"{first['overlap']} question(s) appear in both {first['splits'][0]} and {first['splits'][1]} "
        f"(compared after whitespace/case normalisation), e.g. {first['example']!r}{others}"
    )
    if allow:
        log.warning("leakage allowed by %s: %s", LEAKAGE_FLAG, message)
        return result
    raise LeakageError(
        f"{message}; re-make the splits with `{PREPARE_COMMAND}` or pass {LEAKAGE_FLAG} to go on"
    )
