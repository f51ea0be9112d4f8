"""Every word a reader sees: one catalog per language (`locales/<lang>.toml`) with the keys and placeholders of the
Turkish one (`register` checks a new one). Messages are `str.format` templates with named placeholders; what goes
into one is data, formatted and escaped by the caller. Topic names (`class.<id>`) come from `labels.TOPICS`."""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources

import tomllib

from mathreport.errors import MissingMessageError, UnknownLanguageError
from mathreport.labels import NUM_CLASSES, TOPICS


def catalog_file(lang: str) -> str:
    """Where the table of `lang` is edited: its file in the package, or what `register` got."""
    if resources.files("mathreport").joinpath("locales", f"{lang}.toml").is_file():
        return f"mathreport/locales/{lang}.toml"
    return f"the {lang!r} table given to register"


def _load(lang: str) -> dict[str, str]:
    """The catalog `locales/<lang>.toml` of the package, with the topic names of `labels`."""
    with resources.files("mathreport").joinpath("locales", f"{lang}.toml").open("rb") as fh:
        messages = tomllib.load(fh)
    return {**messages, **{f"class.{topic.id}": getattr(topic, lang) for topic in TOPICS}}


TR: dict[str, str] = _load("tr")
EN: dict[str, str] = _load("en")

CATALOG: dict[str, dict[str, str]] = {"tr": TR, "en": EN}
REFERENCE = "tr"


def languages() -> list[str]:
    """The languages that have a table, sorted."""
    return sorted(CATALOG)


def table(lang: str) -> Mapping[str, str]:
    """The whole table of one language; an unknown language raises UnknownLanguageError naming the known ones."""
    try:
        return CATALOG[lang]
    except (KeyError, TypeError):
        raise UnknownLanguageError(f"lang must be one of {languages()}, got {lang!r}") from None


def message(key: str, lang: str = "tr", **values: object) -> str:
    """The message `key` in language `lang`, filled from `values`; MissingMessageError for a missing key or value."""
    messages = table(lang)
    if key not in messages:
        raise MissingMessageError(
            f"no message {key!r} in the {lang!r} table of mathreport.i18n "
            f"(every language needs the keys of the {REFERENCE!r} table)"
        )
    try:
        return messages[key].format(**values)
    except KeyError as missing:
        raise MissingMessageError(
            f"message {key!r} ({lang!r}) needs a value for placeholder {missing}; given {sorted(values)}"
        ) from None


def require(keys: Iterable[str], user: str) -> None:
    """MissingMessageError naming the first catalog that lacks any of `keys` and the keys to add.

    user: what shows the keys (e.g. a report section), named in the message.
    """
    keys = list(keys)
    for lang in languages():
        lacking = [key for key in keys if key not in CATALOG[lang]]
        if lacking:
            names = ", ".join(map(repr, lacking))
            raise MissingMessageError(
                f"{catalog_file(lang)} has no {names}, which {user} shows; "
                "add them to every catalog in mathreport/locales/"
            )


def class_names(lang: str = "tr") -> list[str]:
    """The topic names in class-id order, in language `lang`."""
    return [message(f"class.{i}", lang) for i in range(NUM_CLASSES)]


def placeholders(template: str) -> set[str]:
    """The names of a template's placeholders (`{run}`, `{p_value:.4f}` -> run, p_value)."""
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            if not field or field.isdigit():
                raise ValueError(
                    f"template {template!r} has a positional placeholder; name every placeholder"
                )
            names.add(field.split(".")[0].split("[")[0])
    return names


def register(lang: str, messages: Mapping[str, str]) -> None:
    """Add (or replace) the table of `lang`; ValueError if its keys or placeholders differ from the reference's."""
    reference = CATALOG[REFERENCE]
    problems = []
    missing, extra = sorted(set(reference) - set(messages)), sorted(set(messages) - set(reference))
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"keys the {REFERENCE!r} table does not have: {extra}")
    for key in sorted(set(reference) & set(messages)):
        want, found = placeholders(reference[key]), placeholders(messages[key])
        if want != found:
            problems.append(
                f"{key!r} has placeholders {sorted(found)}; the {REFERENCE!r} one has {sorted(want)}"
            )
    if problems:
        raise ValueError(f"the {lang!r} message table is incomplete: " + "; ".join(problems))
    CATALOG[lang] = dict(messages)


class Section(Mapping):
    """One group of messages per language, read live from the catalog, in table order: `Section("intro.")["en"]`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __getitem__(self, lang: str) -> dict[str, str]:
        if lang not in CATALOG:
            raise KeyError(lang)
        return {
            k[len(self.prefix) :]: v for k, v in CATALOG[lang].items() if k.startswith(self.prefix)
        }

    def __iter__(self) -> Iterator[str]:
        return iter(CATALOG)

    def __len__(self) -> int:
        return len(CATALOG)
