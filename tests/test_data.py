"""Tests for mathreport.data: validation, cleaning, splits, leakage, augmentation, the Kaggle download's failures."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from mathreport import data, labels, prepare

FIXTURE = Path(__file__).parent / "fixtures" / "raw_kaggle_like.csv"
OUTPUTS = [data.TRAIN_FILE, data.VAL_FILE, data.TEST_FILE, data.REPORT_FILE]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare.prepare(FIXTURE, out)


def _splits(out: Path) -> dict[str, pd.DataFrame]:
    return {name: data.read_split(out / file) for name, file in data.SPLIT_FILES.items()}


def _fixture_rows() -> list[dict[str, str]]:
    # Read independently of the code under test (csv.DictReader, not data._read_table).
    with FIXTURE.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------- the real-shaped fixture


def test_fixture_has_the_real_data_defects():
    rows = _fixture_rows()
    texts = [r["Question"] for r in rows]
    assert 300 <= len(rows) <= 700
    assert sum(t.startswith("b'") for t in texts) >= 10
    assert max(map(len, texts)) > 2000
    assert any("\\frac" in t for t in texts) and any("\n" in t for t in texts)
    assert len(texts) - len(set(texts)) >= 10  # exact duplicates
    assert any(not r["label"].strip().isdigit() for r in rows)  # class names as labels
    counts = pd.Series([labels.parse_label(r["label"]) for r in rows]).value_counts(normalize=True)
    assert counts.min() < 0.015


def test_splits_have_no_normalised_overlap(prepared):
    out, report = prepared
    splits = _splits(out)
    keys = {
        name: set(frame["Question"].str.casefold().str.split().str.join(" "))
        for name, frame in splits.items()
    }
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    assert all(
        pair["overlap"] == 0
        for pair in data.check_leakage({n: out / f for n, f in data.SPLIT_FILES.items()}).values()
    )
    assert all(pair["overlap"] == 0 for pair in report["leakage"].values())


def test_val_and_test_class_proportions_within_3_points(prepared):
    out, _ = prepared
    splits = _splits(out)
    val = (
        splits["val"]["label"].value_counts(normalize=True).reindex(labels.CLASS_IDS, fill_value=0)
    )
    test = (
        splits["test"]["label"].value_counts(normalize=True).reindex(labels.CLASS_IDS, fill_value=0)
    )
    assert (val - test).abs().max() <= 0.03
    assert set(splits["val"]["label"]) == set(labels.CLASS_IDS)  # even the ~1% classes reach val


def test_keeps_at_least_90_percent_of_unique_questions(prepared):
    out, report = prepared
    unique_in = {data.normalize_question(r["Question"]) for r in _fixture_rows()} - {""}
    kept = sum(len(frame) for frame in _splits(out).values())
    assert report["unique_questions_in"] == len(unique_in)
    assert kept >= 0.9 * len(unique_in)
    assert kept <= len(unique_in)


def test_report_accounts_for_every_input_row(prepared):
    out, report = prepared
    on_disk = json.loads((out / data.REPORT_FILE).read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(report))
    dropped = report["cleaning"]["rows_dropped"]
    assert report["rows_in"] == len(_fixture_rows())
    assert report["rows_in"] == report["rows_kept"] + sum(dropped.values())
    assert report["rows_kept"] == sum(len(frame) for frame in _splits(out).values())
    assert report["rows_kept"] == sum(report["rows_per_split"].values())
    # the fixture has every defect, so every counter must have fired
    assert set(dropped) == set(data.DROP_REASONS)
    assert all(n > 0 for n in dropped.values()), dropped
    assert report["cleaning"]["rows_changed"]["unwrapped_bytes_literal"] >= 10
    assert report["label_conflicts"]["resolved_by_majority"] > 0
    assert report["label_conflicts"]["dropped_questions"] > 0
    for split in ("train", "val", "test"):
        assert sum(report["class_counts"][split].values()) == report["rows_per_split"][split]
    assert report["source"] == "file" and len(report["input"]["sha256"]) == 64


def test_split_files_are_clean(prepared):
    out, _ = prepared
    for file in (data.TRAIN_FILE, data.VAL_FILE, data.TEST_FILE):
        frame = pd.read_csv(out / file)
        assert list(frame.columns) == ["Question", "label"]
        assert frame["label"].between(0, 7).all() and frame["label"].dtype.kind == "i"
        assert not frame["Question"].str.startswith("b'").any()
        assert not frame["Question"].str.contains("\n").any()
    everything = pd.concat(_splits(out).values())
    # LaTeX kept byte for byte, and an unwrapped b"..." with an escaped newline and an apostrophe inside
    assert any(
        q.startswith(r"Find $\lim_{x \to") and r"\frac{\sin(" in q for q in everything["Question"]
    )
    assert "It's known that $x^2 = 49$ and $x > 0$. Find $x$." in set(everything["Question"])


def test_same_seed_same_files_other_seed_other_split(tmp_path):
    prepare.prepare(FIXTURE, tmp_path / "a", seed=3)
    prepare.prepare(FIXTURE, tmp_path / "b", seed=3)
    prepare.prepare(FIXTURE, tmp_path / "c", seed=4)
    for file in (data.TRAIN_FILE, data.VAL_FILE, data.TEST_FILE):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / data.TEST_FILE).read_bytes() != (
        tmp_path / "c" / data.TEST_FILE
    ).read_bytes()


def test_class_counts_table_has_turkish_class_rows(prepared):
    _, report = prepared
    table = data.class_counts_table(report)
    lines = table.splitlines()
    assert lines[0].split() == ["train", "val", "test"]
    assert [line.rsplit(maxsplit=3)[0] for line in lines[1:9]] == labels.names("tr")
    assert lines[-1].split() == [
        "Toplam",
        *(str(report["rows_per_split"][s]) for s in ("train", "val", "test")),
    ]


# -------------------------------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "b'Let d be 2/1 + 11/11. Solve 0 = -d*k + 3*k - 5 for k.\\n'",
            "Let d be 2/1 + 11/11. Solve 0 = -d*k + 3*k - 5 for k.",
        ),
        ('b"It\'s $x$.\\n"', "It's $x$."),
        ("b'caf\\xc3\\xa9 \\\\frac{1}{2}'", "café \\frac{1}{2}"),
        ("  b'two\\n\\nlines'  ", "two lines"),
        ("$\\frac{a}{b}$  with\tspaces\n", "$\\frac{a}{b}$ with spaces"),
        ("b is 'quoted'", "b is 'quoted'"),
    ],
)
def test_clean_question(raw, expected):
    assert data.clean_question(raw) == expected


def test_normalize_question_ignores_case_whitespace_and_wrapper():
    assert (
        data.normalize_question("b'Find  X.\\n'") == data.normalize_question("find x.") == "find x."
    )
    assert data.normalize_question("Find x.") != data.normalize_question("Find y.")


def _table(rows: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame({"Question": [q for q, _ in rows], "label": [label for _, label in rows]})


def test_conflicting_labels_majority_and_drop_policies():
    rows = [("Q one", 1), ("q  one", 1), ("Q ONE", 2), ("Q two", 3), ("Q two", 4), ("Q three", 5)]
    kept, report = data.clean_questions(_table(rows), "majority")
    assert dict(zip(kept["Question"], kept["label"], strict=True)) == {"Q one": 1, "Q three": 5}
    assert report["rows_dropped"]["label_conflict_minority"] == 1
    assert report["rows_dropped"]["label_conflict_unresolved"] == 2  # the 1-1 tie on "Q two"
    assert report["rows_dropped"]["duplicate_normalized"] == 1

    kept, report = data.clean_questions(_table(rows), "drop")
    assert kept["Question"].tolist() == ["Q three"]
    assert report["rows_dropped"]["label_conflict_unresolved"] == 5
    assert report["rows_in"] == report["rows_kept"] + sum(report["rows_dropped"].values())


def test_duplicates_exact_versus_normalised():
    rows = [("A b", 0), ("A b", 0), (" a  B ", 0), ("b'A b'", 0), ("b''", 0)]
    kept, report = data.clean_questions(_table(rows))
    assert kept["Question"].tolist() == ["A b"]
    assert report["rows_dropped"]["duplicate_exact"] == 1
    assert report["rows_dropped"]["duplicate_normalized"] == 2
    assert report["rows_dropped"]["empty_after_cleaning"] == 1


# ---------------------------------------------------------------------------------------------- augmentation


def test_oversampling_touches_train_only(tmp_path, prepared):
    plain_out, plain = prepared
    report = prepare.prepare(FIXTURE, tmp_path, augment="oversample")
    for file in (data.VAL_FILE, data.TEST_FILE):
        assert (tmp_path / file).read_bytes() == (plain_out / file).read_bytes()
    counts = report["class_counts"]
    assert counts["train_before_augmentation"] == plain["class_counts"]["train"]
    target = report["augmentation"]["target_rows_per_class"]
    before = pd.Series(counts["train_before_augmentation"])
    assert target == int(before[before > 0].median())
    for cls, n in counts["train_before_augmentation"].items():
        assert counts["train"][cls] == max(n, target)
    train = data.read_split(tmp_path / data.TRAIN_FILE)
    assert len(train) == plain["rows_per_split"]["train"] + report["augmentation"]["rows_added"]
    assert report["augmentation"]["rows_added"] > 0
    assert (
        report["rows_per_split"] == plain["rows_per_split"]
    )  # augmented copies are not input rows
    # copies are of train questions only: still no overlap with val/test
    assert all(
        p["overlap"] == 0
        for p in data.check_leakage({n: tmp_path / f for n, f in data.SPLIT_FILES.items()}).values()
    )
    assert "train (orig.)" in data.class_counts_table(report)


def test_oversample_to_a_fraction_of_the_largest_class():
    train = _table([(f"q{i}", 0) for i in range(20)] + [(f"r{i}", 1) for i in range(4)])
    out, report = data.oversample_minority(train, seed=1, target=0.5)
    assert out["label"].value_counts().to_dict() == {0: 20, 1: 10}
    assert report["rows_added_per_class"]["1"] == 6
    with pytest.raises(ValueError, match="fraction"):
        data.oversample_minority(train, target=2.0)


# --------------------------------------------------------------------------------------------------- leakage


def test_assert_no_leakage_names_splits_count_example_and_flag():
    train = _table([("Find x if 2x = 4.", 0), ("Area of a unit square?", 1), ("Integrate x.", 2)])
    test = _table(
        [("find  X if 2x = 4.", 0), ("AREA OF A UNIT SQUARE?", 1), ("Differentiate x.", 2)]
    )
    val = _table([("Is 7 prime?", 4)])
    result = data.check_leakage({"train": train, "val": val, "test": test})
    assert result["train vs test"]["overlap"] == 2 and result["train vs val"]["overlap"] == 0
    with pytest.raises(data.LeakageError) as err:
        data.assert_no_leakage(
            {"data/augmented_train.csv": train, "val": val, "data/test_split.csv": test}
        )
    message = str(err.value)
    assert "2 question(s)" in message
    assert "data/augmented_train.csv" in message and "data/test_split.csv" in message
    assert "Area of a unit square?" in message or "Find x if 2x = 4." in message
    assert "--allow_leakage" in message
    assert isinstance(err.value, data.DataError)
    allowed = data.assert_no_leakage({"train": train, "test": test}, allow=True)
    assert allowed["train vs test"]["overlap"] == 2


def test_check_leakage_reads_paths(tmp_path):
    (tmp_path / "a.csv").write_text(
        "Question,label\nWhat is 1+1?,0\nIs 5 prime?,4\n", encoding="utf-8"
    )
    (tmp_path / "b.csv").write_text('Question,label\n"what is  1+1?",0\n', encoding="utf-8")
    result = data.check_leakage({"a": tmp_path / "a.csv", "b": tmp_path / "b.csv"})
    assert result["a vs b"]["overlap"] == 1
    assert str(tmp_path / "a.csv") in result["a vs b"]["splits"][0]


# ----------------------------------------------------------------------------------------------- read_split


def test_read_split_columns_dtypes_and_label_names(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text(
        'id,label,Question\n1,Geometri,Area?\n2, 3 ,"Two\nlines"\n3,linear algebra,Rank?\n',
        encoding="utf-8",
    )
    frame = data.read_split(path)
    assert list(frame.columns) == ["Question", "label"]
    assert frame["label"].tolist() == [1, 3, 6] and frame["label"].dtype == "int64"
    assert frame["Question"].tolist() == ["Area?", "Two\nlines", "Rank?"]

    renamed = tmp_path / "renamed.csv"
    renamed.write_text("text,topic\nArea?,1\n", encoding="utf-8")
    frame = data.read_split(renamed, text_col="text", label_col="topic")
    assert list(frame.columns) == ["Question", "label"]


def test_read_split_missing_file_names_the_command(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.read_split(tmp_path / "val_split.csv")
    assert "val_split.csv" in str(err.value)
    assert "mathreport prepare --input RAW.csv --out_dir data" in str(err.value)
    assert "make report" in str(err.value)


# ------------------------------------------------------------------------------------------------ bad input
# Each bad file is refused by prepare (out_dir left empty) and by read_split, with the same message.


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _refused(tmp_path: Path, content: str | bytes) -> str:
    raw = _write(tmp_path / "raw.csv", content)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(data.DataError) as err:
        prepare.prepare(raw, out)
    assert list(out.iterdir()) == []
    with pytest.raises(data.DataError) as again:
        data.read_split(raw)
    assert str(again.value) == str(err.value)
    message = str(err.value)
    assert "\n" not in message and str(raw) in message
    return message


def test_refuses_missing_column(tmp_path):
    message = _refused(tmp_path, "problem,label\nWhat is 2+2?,0\n")
    assert "no column 'Question'" in message
    assert "columns found: 'problem', 'label'" in message


def test_refuses_label_outside_range(tmp_path):
    message = _refused(
        tmp_path, 'Question,label\nWhat is 2+2?,0\n"Multi\nline",1\nIs 9 prime?,9\nok?,2\n'
    )
    assert "line 5 (line 1 is the header)" in message  # the multi-line record shifts the file line
    assert "column 'label'" in message and "label 9 is outside 0..7" in message


def test_refuses_unknown_class_name(tmp_path):
    message = _refused(tmp_path, "Question,label\nWhat is 2+2?,Cebir\nWhat is a ring?,Topology\n")
    assert "line 3" in message and "'Topology'" in message and "Geometri" in message


def test_refuses_non_utf8_bytes(tmp_path):
    message = _refused(tmp_path, b"Question,label\nWhat is 2+2?,0\nCaf\xe9 problem,1\n")
    assert "not valid UTF-8" in message
    assert "byte offset 33" in message and "line 3" in message and "0xe9" in message


@pytest.mark.parametrize("content", ["", "\n \n", ",,\n,\n"])
def test_refuses_empty_file(tmp_path, content):
    message = _refused(tmp_path, content)
    assert "is empty" in message and "'Question,label'" in message


def test_refuses_header_only_file(tmp_path):
    message = _refused(tmp_path, "Question,label\n")
    assert "no data rows" in message


@pytest.mark.parametrize("missing", ["", "NaN", "   "])
def test_refuses_empty_or_nan_text(tmp_path, missing):
    message = _refused(tmp_path, f"Question,label\nWhat is 2+2?,0\n{missing},3\nIs 7 prime?,4\n")
    assert "line 3 (line 1 is the header)" in message and "column 'Question' is empty" in message


@pytest.mark.parametrize(
    ("header", "sep", "name"), [("Soru;Etiket", ";", "semicolon"), ("Question\tlabel", "\t", "tab")]
)
def test_refuses_other_delimiter(tmp_path, header, sep, name):
    message = _refused(tmp_path, f"{header}\nWhat is 2+2?{sep}0\n")
    assert f"looks {name}-separated" in message and repr(sep) in message
    if sep == ";":  # read only when its header names the columns: says which it needs
        assert "'Question' and 'label'" in message and "--text_col" in message


def test_refuses_ragged_row_and_counts_the_rest(tmp_path):
    message = _refused(tmp_path, "Question,label\nWhat is 2, or 3?,0\nIs 7 prime?,12\n")
    assert (
        "line 2" in message and "3 fields but the header has 2" in message and "1 more" in message
    )


def test_bad_input_does_not_create_out_dir(tmp_path):
    raw = _write(tmp_path / "raw.csv", "Question,label\nWhat?,8\n")
    with pytest.raises(data.DataError):
        prepare.prepare(raw, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="augment"):
        prepare.prepare(FIXTURE, tmp_path, augment="backtranslate")
    with pytest.raises(data.DataError, match="val_size"):
        prepare.prepare(FIXTURE, tmp_path, val_size=0.5, test_size=0.5)
    with pytest.raises(ValueError, match="conflict_policy"):
        prepare.prepare(FIXTURE, tmp_path, conflict_policy="first")
    assert list(tmp_path.iterdir()) == []


def test_class_too_small_to_stratify_goes_to_train_with_a_warning():
    frame = _table([(f"q{c}-{i}", c) for c in range(7) for i in range(20)] + [("r1", 7), ("r2", 7)])
    train, val, test, warnings = data.split_stratified(frame, seed=0)
    assert set(train.loc[train["label"] == 7, "Question"]) == {"r1", "r2"}
    assert 7 not in set(val["label"]) | set(test["label"])
    assert len(warnings) == 1 and "Abstract Algebra" in warnings[0]
    assert len(train) + len(val) + len(test) == len(frame)


def test_too_few_rows_to_stratify_is_a_data_error(tmp_path):
    raw = _write(
        tmp_path / "raw.csv", "Question,label\n" + "".join(f"q{i},{i % 8}\n" for i in range(24))
    )
    with pytest.raises(data.DataError, match="stratified"):
        prepare.prepare(raw, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------- kaggle


def _no_kaggle_credentials(monkeypatch, tmp_path):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / ".kaggle"))


def test_download_kaggle_without_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "kaggle", None)  # makes `import kaggle` raise ImportError
    with pytest.raises(data.DataError) as err:
        prepare.download_kaggle(dest=tmp_path / "kaggle")
    assert "pip install 'mathreport[kaggle]'" in str(err.value) and "kaggle.json" in str(err.value)
    assert not (tmp_path / "kaggle").exists()


def test_download_kaggle_without_credentials(monkeypatch, tmp_path):
    # A stand-in package that fails on import the way the real client does without kaggle.json.
    package = tmp_path / "fake" / "kaggle"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise OSError('Could not find kaggle.json. Make sure it is located in ...')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    monkeypatch.delitem(sys.modules, "kaggle", raising=False)
    _no_kaggle_credentials(monkeypatch, tmp_path)
    with pytest.raises(data.DataError) as err:
        prepare.download_kaggle(dest=tmp_path / "kaggle")
    message = str(err.value)
    assert (
        "could not authenticate" in message
        and "~/.kaggle/kaggle.json" in message
        and "KAGGLE_KEY" in message
    )


def test_download_kaggle_offline(monkeypatch, tmp_path):
    class OfflineApi:
        def competition_download_files(self, competition, path=None, quiet=True):
            raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setitem(sys.modules, "kaggle", types.SimpleNamespace(api=OfflineApi()))
    with pytest.raises(data.DataError) as err:
        prepare.download_kaggle(dest=tmp_path / "kaggle")
    message = str(err.value)
    assert (
        data.KAGGLE_COMPETITION in message
        and "ConnectionError" in message
        and "internet" in message
    )


# ------------------------------------------------------------------- earlier splits, class coverage, file kinds


def test_prepare_refuses_an_out_dir_with_earlier_splits_and_force_keeps_them(tmp_path):
    out = tmp_path / "out"
    prepare.prepare(FIXTURE, out, seed=1)
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    with pytest.raises(data.DataError, match="already holds .*--force"):
        prepare.prepare(FIXTURE, out, seed=2)
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    report = prepare.prepare(FIXTURE, out, seed=2, force=True)
    backup = Path(report["replaced"])
    assert (
        backup.parent == out and {name: (backup / name).read_bytes() for name in OUTPUTS} == before
    )
    assert (out / data.TRAIN_FILE).read_bytes() != before[
        data.TRAIN_FILE
    ]  # seed 2 split differently


def test_prepare_refuses_one_class_input(tmp_path):
    raw = _write(
        tmp_path / "raw.csv", "Question,label\n" + "".join(f"question {i},3\n" for i in range(40))
    )
    with pytest.raises(data.DataError, match=r"every question is of class 3 \(Olasılık\)"):
        prepare.prepare(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_warns_about_classes_too_thin_in_a_split(tmp_path):
    rows = [(f"question {c} number {i}", c) for c in range(7) for i in range(60)] + [
        (f"rare {i}", 7) for i in range(3)
    ]
    raw = _write(tmp_path / "raw.csv", "Question,label\n" + "".join(f"{q},{c}\n" for q, c in rows))
    report = prepare.prepare(raw, tmp_path / "out")
    thin = [w for w in report["warnings"] if "7 (Soyut Cebir)" in w]
    counts = {name: report["class_counts"][name]["7"] for name in ("train", "val", "test")}
    assert (
        len(thin) == 1 and f"val {counts['val']}" in thin[0] and f"test {counts['test']}" in thin[0]
    )
    assert not any("(Cebir)" in w for w in report["warnings"])  # 60 rows: enough in every split


def test_class_coverage_names_missing_classes_by_turkish_name_and_id():
    train = pd.DataFrame({"Question": ["a", "b", "c"], "label": [0, 1, 1]})
    test = pd.DataFrame({"Question": ["d", "e", "f"], "label": [0, 3, 5]})
    with pytest.raises(data.DataError) as err:
        data.check_class_coverage({"train": train, "val": train, "test": test})
    message = str(err.value)
    assert "3 (Olasılık), 5 (Kombinatorik)" in message and "--allow_missing_classes" in message
    assert "np.int64" not in message
    warnings = data.check_class_coverage(
        {"train": train, "val": train, "test": test}, allow_missing=True
    )
    assert len(warnings) == 1 and "3 (Olasılık)" in warnings[0]
    with pytest.raises(data.DataError, match=r"only class 1 \(Geometri\)"):
        data.check_class_coverage({"train": train[train.label == 1], "val": train})


def _xlsx(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir() or p, "is a directory, not a CSV file"),
        (
            lambda p: _write(p, __import__("gzip").compress(b"Question,label\nWhat?,0\n")),
            "is gzip-compressed",
        ),
        (_xlsx, r"is an Excel workbook \(.xlsx\)"),
        (lambda p: _write(p, "Question,label\nWhat?,0\n".encode("utf-16")), "is UTF-16 encoded"),
        (lambda p: _write(p, "Question,label\nWhat?,0\n".encode("utf-16-le")), "is UTF-16 encoded"),
    ],
)
def test_input_that_is_not_a_csv_says_what_it_is(tmp_path, make, expected):
    path = make(tmp_path / "input.csv")
    for read in (lambda: prepare.prepare(path, tmp_path / "out"), lambda: data.read_split(path)):
        with pytest.raises(data.DataError, match=expected) as err:
            read()
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unreadable_input_says_permission_denied(tmp_path, monkeypatch):
    path = _write(tmp_path / "raw.csv", "Question,label\nWhat?,0\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # as root, chmod 000 would not stop the read
    with pytest.raises(data.DataError, match=r"raw.csv: cannot be read \(permission denied\)"):
        prepare.prepare(path, tmp_path / "out")


# --- issue 20: --max_train_samples keeps every class ---------------------------------------------------------------


def _rare_class_frame() -> pd.DataFrame:
    rows = [(f"common {c} {i}", c) for c in range(7) for i in range(140)] + [
        ("rare 0", 7),
        ("rare 1", 7),
    ]
    return pd.DataFrame(rows, columns=["Question", "label"])


@pytest.mark.parametrize("n", [8, 50, 300, 979])
def test_stratified_sample_keeps_every_class_the_split_has(n):
    frame = _rare_class_frame()
    sample = data.stratified_sample(frame, n, seed=1)
    assert len(sample) == n and set(sample["label"]) == set(range(8))
    assert sample.index.is_monotonic_increasing and sample.index.isin(frame.index).all()
    assert sample.equals(data.stratified_sample(frame, n, seed=1))  # seeded
    counts = sample["label"].value_counts()
    # The common classes share the rest evenly (equal sizes: within one row of each other).
    assert counts[list(range(7))].max() - counts[list(range(7))].min() <= 1


def test_stratified_sample_below_the_number_of_classes_is_refused():
    with pytest.raises(data.DataError, match="has 8 classes.*at least 8"):
        data.stratified_sample(_rare_class_frame(), 5, seed=0)


def test_max_train_samples_does_not_make_search_refuse_a_rare_class(tmp_path):
    """Issue 20, 11: a random sample of 300 lacked the rare class 7, and the refusal named a flag search lacks."""
    from mathreport import cli, search, train

    frame = _rare_class_frame()
    frame.to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"Question": [f"val {c}" for c in range(8)], "label": range(8)}).to_csv(
        tmp_path / "val.csv", index=False
    )
    cfg = search.SearchConfig(
        model="minilm",
        learning_rates=[1e-4],
        train_path=tmp_path / "train.csv",
        val_path=tmp_path / "val.csv",
        output_dir=tmp_path / "out",
        max_train_samples=300,
        seed=1,
    )  # a seed whose plain random sample of 300 has neither class-7 row
    splits = train.load_splits(cfg.train_config(test_path=None, bench=False))
    assert len(splits["train"]) == 300 and set(splits["train"]["label"]) == set(range(8))
    # The flag a refusal for a split that truly lacks a class names is one `search` accepts.
    args = cli.build_parser().parse_args(
        ["search", "--model", "minilm", "--lrs", "1e-4", "--allow_missing_classes"]
    )
    assert args.allow_missing_classes is True


# --- issue 28, 6: CSV saved by a spreadsheet set to Turkish (';' between fields) -------------------------------------

# What Excel writes with a Turkish locale: a BOM, CRLF, ';' between fields and a decimal comma inside the text (so
# quoted when it holds ';').
SEMICOLON_CSV = (
    "\ufeffQuestion;label\r\n"
    '"Compute 2,5 + 1,5; then halve it.";0\r\n'
    "Find the area of a triangle with sides 3, 4 and 5.;1\r\n"
    "What is the derivative of x^2?;Kalkülüs\r\n"
)
SEMICOLON_ROWS = [
    ("Compute 2,5 + 1,5; then halve it.", 0),
    ("Find the area of a triangle with sides 3, 4 and 5.", 1),
    ("What is the derivative of x^2?", 2),
]


def test_a_semicolon_csv_whose_header_names_the_columns_is_read_and_said_once(tmp_path, caplog):
    raw = _write(tmp_path / "excel.csv", SEMICOLON_CSV)
    with caplog.at_level("WARNING", logger="mathreport.data"):
        table = data.read_split(raw)
        assert data.read_questions(raw) == [text for text, _ in SEMICOLON_ROWS]
    assert list(zip(table["Question"], table["label"], strict=True)) == SEMICOLON_ROWS
    told = [r.getMessage() for r in caplog.records if "';'-separated" in r.getMessage()]
    assert len(told) == 1 and str(raw) in told[0] and "\n" not in told[0]


def test_a_semicolon_header_in_another_order_or_with_more_columns_is_read(tmp_path):
    raw = _write(
        tmp_path / "excel.csv", "id;label;Question\n1;3;Two dice are thrown, what is P(sum = 7)?\n"
    )
    table = data.read_split(raw)
    assert table["Question"].tolist() == ["Two dice are thrown, what is P(sum = 7)?"] and table[
        "label"
    ].tolist() == [3]


def test_a_comma_csv_with_semicolons_in_its_questions_stays_comma_separated(tmp_path, caplog):
    raw = _write(tmp_path / "plain.csv", 'Question,label\n"Solve x; then y",0\nIs 7 prime?;,4\n')
    with caplog.at_level("WARNING", logger="mathreport.data"):
        table = data.read_split(raw)
    assert table["Question"].tolist() == ["Solve x; then y", "Is 7 prime?;"]
    assert not [r for r in caplog.records if "';'-separated" in r.getMessage()]
