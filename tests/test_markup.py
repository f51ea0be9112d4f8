"""markup: data strings stay text wherever they go; LaTeX in questions becomes sanitised MathML."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from mathreport import markup

HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "x<y>z and a & b",
    "a | b | c",
    "`code` and ``double``",
    "*stars* and **bold** and _under_scores_",
    "costs $5 and $10",
    "[link](javascript:alert(1)) ![img](x)",
    "# heading\n- list\n1. item",
    "back\\slash \\$ and &amp; entity",
]


class Collect(HTMLParser):
    """The tags, attributes and text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)

    def handle_data(self, data):
        self.text += data


def parse(html: str) -> Collect:
    parser = Collect()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_escaped_data_renders_as_its_own_text(value):
    html = markup.markdown_html(f"**{markup.md(value)}** and {markup.md_code(value)}")
    parsed = parse(html)
    assert set(parsed.tags) <= {"p", "strong", "code"}, parsed.tags
    expected = markup.one_line(value)
    assert parsed.text.strip() == f"{expected} and {expected}"


def test_one_line_and_code_span_fences():
    assert markup.one_line("a\n\n b\tc ") == "a b c"
    assert markup.md_code("a``b") == "```a``b```"
    assert markup.md_code("`x`") == "`` `x` ``"


@pytest.mark.parametrize("value", HOSTILE)
def test_question_without_math_is_escaped_text(value):
    html = markup.question_html(value)
    parsed = parse(html)
    assert parsed.tags == []
    assert parsed.text == markup.one_line(value)


def test_question_latex_becomes_mathml_and_text_stays_text():
    html = markup.question_html(
        r"If x<y, solve $x^2 - 5x + 6 = 0$ and find $\frac{1}{2}$ of $|G|$."
    )
    parsed = parse(html)
    assert parsed.tags.count("math") == 3 and "mfrac" in parsed.tags and "msup" in parsed.tags
    assert "$" not in parsed.text and "x<y" in parsed.text
    assert "\\frac" not in parsed.text


def test_latex_cannot_smuggle_markup_or_links():
    html = markup.question_html(
        r"$\text{<img src=x onerror=alert(1)>}$ and $\href{javascript:alert(1)}{x}$ "
        r"and $\style{color:red}{y}$"
    )
    parsed = parse(html)
    assert "img" not in parsed.tags
    assert not [a for a in parsed.attrs if a.startswith("on") or a in ("href", "style", "src")]
    assert "<img src=x onerror=alert(1)>" in parsed.text.replace("\xa0", " ")


def test_dollars_that_are_not_math_stay():
    assert markup.question_html("costs $5 and $10") == "costs $5 and $10"
    assert parse(markup.question_html("pay $5, then $12 more")).text == "pay $5, then $12 more"
    # AoPS style, a space after the opening dollar, is still math.
    assert parse(markup.question_html("In triangle $ ABC$, ...")).tags.count("math") == 1


def test_matplotlib_escape():
    assert markup.mpl("$x$ costs\n$5") == r"\$x\$ costs \$5"


def test_bracket_delimiters_are_math_too():
    assert (
        markup.dollar_math(r"Find \[ |a+b| = 12 \] and \( x^2 \).")
        == "Find $$|a+b| = 12$$ and $x^2$."
    )
    parsed = parse(markup.question_html(r"Find \[ |a+b| = 12 \] and \( x^2 \)."))
    assert parsed.tags.count("math") == 2 and "\\[" not in parsed.text and "$" not in parsed.text
