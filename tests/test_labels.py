"""labels: the 8 classes and reading a label written as an id or as a Turkish or English name."""

from __future__ import annotations

import pytest

from mathreport import labels


def test_ids_are_0_to_7_in_order_with_a_name_in_each_language():
    assert (
        labels.CLASS_IDS == tuple(range(8)) == tuple(t.id for t in labels.TOPICS)
        and labels.NUM_CLASSES == 8
    )
    assert labels.names("tr")[2] == "Kalkülüs" and labels.names("en")[2] == "Calculus"
    assert len(set(labels.names("tr"))) == len(set(labels.names("en"))) == 8
    assert [labels.name(i, "en") for i in labels.CLASS_IDS] == labels.names("en")


@pytest.mark.parametrize("bad", [-1, 8])
def test_a_class_id_outside_0_to_7_has_no_name(bad):
    with pytest.raises(ValueError, match="0..7"):
        labels.name(bad)


def test_only_turkish_and_english_names_exist():
    with pytest.raises(ValueError, match="'tr' or 'en'"):
        labels.names("de")


@pytest.mark.parametrize("lang", ["tr", "en"])
def test_every_name_reads_back_as_its_id(lang):
    assert [labels.parse_label(name) for name in labels.names(lang)] == list(labels.CLASS_IDS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (3.0, 3),
        ("3", 3),
        (" 3 ", 3),
        ("3.0", 3),
        ("+3", 3),
        ("KALKÜLÜS", 2),
        ("kalkulus", 2),
        ("  Kalkülüs ", 2),
        ("calculus", 2),
        ("SAYI TEORİSİ", 4),
        ("sayı teorisi", 4),
        ("SAYI TEORISI", 4),
        ("Lineer   Cebir", 6),
        ("olasilik", 3),
        ("Abstract Algebra", 7),
    ],
)
def test_a_label_is_read_whatever_its_case_accents_dotted_i_or_spacing(value, expected):
    assert labels.parse_label(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (8, "outside 0..7"),
        ("9", "outside 0..7"),
        ("-1", "outside 0..7"),
        (True, "not a class id"),
        (2.5, "neither an id"),
        ("2.5", "neither an id"),
        ("Topoloji", "neither an id"),
        (None, "neither an id"),
        ("", "neither an id"),
    ],
)
def test_a_label_that_is_no_class_is_refused_saying_what_is_allowed(value, words):
    with pytest.raises(ValueError, match=words) as info:
        labels.parse_label(value)
    if words == "neither an id":
        assert "Cebir" in str(info.value) and "Algebra" in str(info.value)
