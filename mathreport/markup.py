"""Text that comes from data is data: escaping it for markdown (`md`, `md_code`), HTML, matplotlib (`mpl`), and
questions' LaTeX as allowlisted MathML (`question_html`), so the report shows math with no script, offline."""

from __future__ import annotations

import html
import re
from functools import cache
from xml.etree import ElementTree

_WHITESPACE = re.compile(r"\s+")
# CommonMark lets a backslash escape any ASCII punctuation character, and then the character is plain text.
_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
_CHAR_REF = re.compile(r"&#x([0-9A-Fa-f]+);|&#([0-9]+);")
MATHML_NS = "http://www.w3.org/1998/Math/MathML"

# MathML presentation elements and the attributes that only change layout; anything else (href, style, event
# handlers, foreign elements) is dropped.
MATHML_TAGS = frozenset(
    {
        "math",
        "mrow",
        "mi",
        "mn",
        "mo",
        "ms",
        "mtext",
        "mspace",
        "msup",
        "msub",
        "msubsup",
        "mfrac",
        "msqrt",
        "mroot",
        "mstyle",
        "merror",
        "mpadded",
        "mphantom",
        "mfenced",
        "menclose",
        "munder",
        "mover",
        "munderover",
        "mtable",
        "mtr",
        "mtd",
        "mlabeledtr",
        "mmultiscripts",
        "mprescripts",
        "none",
        "semantics",
    }
)
MATHML_ATTRIBUTES = frozenset(
    {
        "display",
        "mathvariant",
        "mathsize",
        "stretchy",
        "fence",
        "separator",
        "form",
        "lspace",
        "rspace",
        "movablelimits",
        "accent",
        "accentunder",
        "linethickness",
        "columnalign",
        "columnspacing",
        "rowspacing",
        "columnlines",
        "rowlines",
        "frame",
        "framespacing",
        "width",
        "height",
        "depth",
        "notation",
        "open",
        "close",
        "separators",
        "scriptlevel",
        "displaystyle",
        "minsize",
        "maxsize",
        "symmetric",
        "largeop",
        "align",
        "rowalign",
        "voffset",
        "bevelled",
        "numalign",
        "denomalign",
        "columnspan",
        "rowspan",
    }
)


def one_line(text: object) -> str:
    """`text` as a string on one line (runs of whitespace, newlines included, become one space)."""
    return _WHITESPACE.sub(" ", str(text)).strip()


def md(text: object) -> str:
    """Escape a data string for inline markdown: every ASCII punctuation character is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


def md_code(text: object) -> str:
    """A data string as an inline markdown code span (shown verbatim, whatever backticks it holds)."""
    text = one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def escape_html(text: object) -> str:
    """Escape a data string for HTML text or an attribute value."""
    return html.escape(str(text), quote=True)


def mpl(text: object) -> str:
    """Escape a data string for a matplotlib text (a `$` would start mathtext)."""
    return one_line(text).replace("$", r"\$")


@cache
def _prose_renderer():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def markdown_html(markdown: str) -> str:
    """Render report prose (markdown with escaped data) to HTML; raw HTML in it is shown as text."""
    return _prose_renderer().render(markdown)


def _decode_char_refs(text: str | None) -> str | None:
    # latex2mathml leaves operators as numeric character references inside element text; decode them so the
    # serializer escapes the text once, and escapes any `<` or `&` that came from the question itself.
    if text is None:
        return None
    return _CHAR_REF.sub(
        lambda m: chr(int(m.group(1), 16) if m.group(1) else int(m.group(2))), text
    )


def _clean_mathml(element: ElementTree.Element) -> ElementTree.Element:
    tag = element.tag.split("}")[-1]
    if tag not in MATHML_TAGS:
        raise ValueError(f"unexpected element {tag!r} in MathML")
    clean = ElementTree.Element(
        tag, {k: v for k, v in element.attrib.items() if k in MATHML_ATTRIBUTES}
    )
    clean.text = _decode_char_refs(element.text)
    for child in element:
        clean.append(_clean_mathml(child))
        clean[-1].tail = _decode_char_refs(child.tail)
    return clean


def latex_mathml(latex: str, display: bool = False) -> str:
    """LaTeX math as a MathML element (allowlisted tags and attributes, text escaped); ValueError if it fails."""
    from latex2mathml.converter import convert_to_element

    try:
        element = convert_to_element(latex, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises many types on input it cannot parse
        raise ValueError(f"cannot convert LaTeX {latex!r}: {err}") from err
    clean = _clean_mathml(element)
    clean.set("xmlns", MATHML_NS)
    clean.set("display", "block" if display else "inline")
    return ElementTree.tostring(clean, encoding="unicode", short_empty_elements=True)


def _render_math(latex: str, options: dict) -> str:
    display = bool(options.get("display_mode"))
    try:
        return latex_mathml(latex, display)
    except ValueError:
        # Not math latex2mathml understands: keep the question's own characters, as text.
        delimiter = "$$" if display else "$"
        return escape_html(f"{delimiter}{latex}{delimiter}")


@cache
def _question_renderer():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    # "zero": no markdown at all (no emphasis, links, code, HTML); only $...$ / $$...$$ are parsed. A closing `$`
    # followed by a digit does not close math, so prices stay text ("costs $5 and $10"); spaces inside are
    # allowed ("$ ABC$", common in competition problems).
    return MarkdownIt("zero").use(
        dollarmath_plugin,
        allow_space=True,
        allow_digits=False,
        double_inline=True,
        renderer=_render_math,
    )


_DISPLAY_MATH = re.compile(r"\\\[(.+?)\\\]")
_INLINE_MATH = re.compile(r"\\\((.+?)\\\)")


def dollar_math(text: object) -> str:
    """`text` on one line with LaTeX's \\[...\\] and \\(...\\) math written as $$...$$ and $...$."""
    text = _DISPLAY_MATH.sub(lambda m: f"$${m.group(1).strip()}$$", one_line(text))
    return _INLINE_MATH.sub(lambda m: f"${m.group(1).strip()}$", text)


def question_html(text: object) -> str:
    """A question as HTML: its characters escaped, its LaTeX ($...$, $$...$$, \\(...\\), \\[...\\]) as MathML."""
    return _question_renderer().renderInline(dollar_math(text))
