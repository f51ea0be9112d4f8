"""The 8 topic classes: id, Turkish name, English name. The only place they are written."""

from __future__ import annotations

import unicodedata
from typing import NamedTuple


class Topic(NamedTuple):
    id: int
    tr: str
    en: str


TOPICS: tuple[Topic, ...] = (
    Topic(0, "Cebir", "Algebra"),
    Topic(1, "Geometri", "Geometry"),
    Topic(2, "Kalkülüs", "Calculus"),
    Topic(3, "Olasılık", "Probability"),
    Topic(4, "Sayı Teorisi", "Number Theory"),
    Topic(5, "Kombinatorik", "Combinatorics"),
    Topic(6, "Lineer Cebir", "Linear Algebra"),
    Topic(7, "Soyut Cebir", "Abstract Algebra"),
)
NUM_CLASSES = len(TOPICS)
CLASS_IDS = tuple(t.id for t in TOPICS)


def names(lang: str = "tr") -> list[str]:
    """Class names in id order, in Turkish (`tr`) or English (`en`)."""
    if lang not in ("tr", "en"):
        raise ValueError(f"lang must be 'tr' or 'en', got {lang!r}")
    return [getattr(t, lang) for t in TOPICS]


def name(class_id: int, lang: str = "tr") -> str:
    """The name of one class id."""
    if not 0 <= int(class_id) < NUM_CLASSES:
        raise ValueError(f"class id must be in 0..{NUM_CLASSES - 1}, got {class_id!r}")
    return names(lang)[int(class_id)]


def _fold(text: str) -> str:
    # Case- and accent-insensitive key, with Turkish dotless/dotted i folded to plain i,
    # so "KALKÜLÜS", "kalkulus" and "Kalkülüs" all match.
    text = text.strip().replace("İ", "i").replace("I", "i").replace("ı", "i").lower()
    text = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


_BY_NAME = {_fold(getattr(t, lang)): t.id for t in TOPICS for lang in ("tr", "en")}


def parse_label(value: object) -> int:
    """The class id of a label given as an id (0-7, int or digit string) or a Turkish/English name; else ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} is not a class id or name")
    if isinstance(value, int) or (isinstance(value, float) and float(value).is_integer()):
        class_id = int(value)
        if 0 <= class_id < NUM_CLASSES:
            return class_id
        raise ValueError(f"label {value!r} is outside 0..{NUM_CLASSES - 1}")
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() or (text.endswith(".0") and text[:-2].isdigit()):
            return parse_label(int(float(text)))
        key = _fold(text)
        if key in _BY_NAME:
            return _BY_NAME[key]
    raise ValueError(
        f"label {value!r} is neither an id 0..{NUM_CLASSES - 1} nor a class name "
        f"({', '.join(names('tr'))} / {', '.join(names('en'))})"
    )
