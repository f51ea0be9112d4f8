"""A deterministic, offline demo corpus of math problems over the 8 classes (`mathgenerator` and the templates below),
with the real file's overlaps between topics and its defects (b'...' wrappers, duplicates, conflicting labels), so
no classifier is perfect on it and `prepare` has something to clean."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mathgenerator
import pandas as pd

from mathreport import data, files, labels

RAW_FILE = "demo_raw.csv"
# Share of each class id, shaped like the Kaggle data: four large classes, two mid, two of a few percent.
PROPORTIONS = {0: 0.26, 1: 0.22, 2: 0.14, 3: 0.06, 4: 0.16, 5: 0.115, 6: 0.03, 7: 0.015}
# Labels a confused annotator would give instead (for the conflicting-label rows).
_CONFUSED_WITH = {0: 6, 1: 2, 2: 0, 3: 5, 4: 5, 5: 3, 6: 0, 7: 4}
_PRIMES = (
    3,
    5,
    7,
    11,
    13,
    17,
    19,
    23,
    29,
    31,
    37,
    41,
    43,
    47,
    53,
    59,
    61,
    67,
    71,
    73,
    79,
    83,
    89,
    97,
)
_GROUPS = (
    r"\mathbb{Z}_{<n>}",
    r"S_{<k>}",
    r"D_{<n>}",
    r"A_{<k>}",
    r"\mathbb{Z}_{<a>} \times \mathbb{Z}_{<b>}",
)

Source = Callable[[random.Random], str]


# The integer range of each template placeholder; wide enough to keep most problems distinct.
_RANGES = {
    "a": (2, 9),
    "b": (2, 19),
    "c": (10, 99),
    "k": (3, 7),
    "n": (5, 60),
    "m": (100, 9999),
    "x": (1, 20),
    "y": (1, 20),
    "deg": (10, 170),
}


def _draw(rng: random.Random, name: str) -> str:
    if name in _RANGES:
        return str(rng.randint(*_RANGES[name]))
    if name == "d":  # a signed term: "x <d>" reads "x +7" or "x -3"
        return f"{rng.choice([-1, 1]) * rng.randint(1, 12):+d}"
    if name in ("p", "q"):
        return str(rng.choice(_PRIMES))
    if name == "G":
        return _fill(rng, rng.choice(_GROUPS))
    raise KeyError(f"unknown template placeholder <{name}>")


def _fill(rng: random.Random, template: str) -> str:
    # Each `<name>` replaced by a drawn value, the same for repeats of a name; `<name>`, not `{name}`, so LaTeX
    # braces need no escaping.
    values: dict[str, str] = {}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            values[name] = _draw(rng, name)
        return values[name]

    return re.sub(r"<(\w+)>", value, template)


def _templates(*templates: str) -> Source:
    return lambda rng: _fill(rng, rng.choice(templates))


def _mg(function: str, *frames: str) -> Source:
    # Problems from a `mathgenerator` function, each put into one of `frames` at `{}`.
    def source(rng: random.Random) -> str:
        for _ in range(10):
            try:
                problem = getattr(mathgenerator, function)()[0]
                break
            except (
                IndexError,
                ValueError,
                ZeroDivisionError,
            ):  # a few generators fail on rare draws
                continue
        else:
            raise RuntimeError(f"mathgenerator.{function} failed 10 times in a row")
        return _fill(rng, rng.choice(frames)).replace("{}", problem.strip())

    return source


def _deepmind(*templates: str) -> Source:
    # Generated one-liners wrapped as b'...\\n', the way they appear in the real training file.
    return lambda rng: "b'" + _fill(rng, rng.choice(templates)) + "\\n'"


def _mix(*sources: Source) -> Source:
    return lambda rng: rng.choice(sources)(rng)


# Problem families that real data files under either of two topics (annotators disagree). Each is listed in
# both classes below, which keeps any classifier below 100% accuracy, as on the real data.
_SHARED: dict[str, Source] = {
    "systems": _mix(
        _mg("linear_equations", "{}"),
        _templates(
            r"Solve the system $<a>x + <b>y = <c>$, $<x>x - <y>y = <n>$.",
            r"Find $x$ and $y$ such that $<a>x - y = <b>$ and $x + <k>y = <c>$.",
            r"For which value of $k$ does the system $<a>x + ky = <b>$, $<x>x + <y>y = <c>$ have no solution?",
        ),
    ),
    "extremum": _templates(
        r"Find the maximum value of $-<a>x^2 + <c>x + <b>$.",
        r"Find the minimum value of $f(x) = x^2 - <c>x + <m>$ and where it occurs.",
        r"Find the vertex of the parabola $y = <a>x^2 <d>x + <b>$.",
    ),
    "coordinates": _mix(
        _mg("distance_two_points", "{}"),
        _mg("equation_of_line_from_two_points", "{}"),
        _mg("intersection_of_two_lines", "{}"),
        _mg("midpoint_of_two_points", "{}"),
    ),
    "sequences": _mix(
        _mg("arithmetic_progression_sum", "{}"),
        _mg("arithmetic_progression_term", "{}"),
        _mg("geometric_progression", "{}"),
        _templates(r"Find the sum $1 + <a> + <a>^2 + \cdots + <a>^{<n>}$."),
    ),
    "counting_multiples": _templates(
        r"How many integers from 1 to <m> are divisible by <a> but not by <b>?",
        r"How many positive integers less than <m> are multiples of <p> or <q>?",
        r"How many integers $n \le <m>$ satisfy $n \equiv <a> \pmod{<p>}$?",
    ),
    "coins_dice": _mix(
        _mg("dice_sum_probability", "{}"),
        _templates(
            r"A fair coin is tossed <b> times. Find the number of outcomes with exactly <a> heads and their share.",
            r"Two dice are rolled <a> times. In how many sequences is the sum <b> every time, and how likely is it?",
            r"<a> balls are placed at random into <b> boxes. How many placements leave box 1 empty?",
        ),
    ),
    "area_under_curve": _templates(
        r"Find the area of the region under $y = <a>x + <b>$ from $x = 0$ to $x = <x>$.",
        r"Find the area enclosed between $y = <a>x$ and $y = x^2$ for $0 \le x \le <b>$.",
        r"A ladder <c> ft long slides down a wall. How far is its foot from the wall when the top is <b> ft high?",
    ),
    "densities": _templates(
        r"A random variable has density proportional to $x^{<a>}$ on $[0, <b>]$. Find its mean.",
        r"Compute $\int_0^\infty x e^{-<a>x}\,dx$ and interpret it as an expected value of rate $<a>$.",
        r"Find $c$ so that $f(x) = c\,x^{<a>}(<b> - x)$ is a probability density on $[0, <b>]$.",
    ),
    "modular": _templates(
        r"Find the order of $<a>$ modulo $<p>$.",
        r"Find the inverse of $<c>$ modulo $<p>$.",
        r"Find a generator of the multiplicative group modulo $<p>$ and the number of generators.",
        r"Solve $<c>x \equiv <b> \pmod{<p>}$.",
    ),
    "matrix_groups": _templates(
        r"Find the order of $\begin{pmatrix} <a> & <b> \\ 0 & 1 \end{pmatrix}$ in $GL_2(\mathbb{Z}_{<p>})$.",
        r"How many invertible $2 \times 2$ matrices are there over $\mathbb{Z}_{<p>}$?",
        r"Show that the $<k> \times <k>$ matrices $A$ with $A^T A = I$ form a group, and find $\det A$ for "
        r"$A = <a>I$ scaled to lie in it.",
    ),
}


# Sources per class with weights. Comments mark the templates that borrow another class's words.
SOURCES: dict[int, list[tuple[float, Source]]] = {
    0: [  # Algebra
        (1.5, _SHARED["systems"]),
        (1, _SHARED["extremum"]),
        (1, _SHARED["coordinates"]),
        (1.5, _SHARED["sequences"]),
        (2, _mg("quadratic_equation", "{}", "{}. Find both roots.", "Find the value of $x$: {}")),
        (
            1,
            _mg(
                "basic_algebra",
                "Solve for $x$: {}",
                "Find the value of $x$ if {}",
                "{} What is $x$?",
            ),
        ),
        (1, _mg("system_of_equations", "{}")),
        (1, _mg("factoring", "Factor the polynomial {}.", "Factor {} completely.")),
        (1, _mg("expanding", "Expand {}.", "Expand and simplify {}.")),
        (1, _mg("combine_like_terms", "Combine like terms: {}", "Simplify the polynomial {}")),
        (1, _mg("complex_quadratic", "{}")),
        (
            1,
            _deepmind(
                "Let d be <a>/1 + <b>/<b>. Solve <d>*k + d*k - <c> = 0 for k.",
                "Suppose -<a>*h + <c> = <b>*h. Solve <k>*v - h = <x> for v.",
                "Solve <c>*t + <m> = <a>*t - <b> for t.",
            ),
        ),
        (
            3,
            _templates(
                r"If $x + y = <c>$ and $xy = <b>$, what is the value of $x^2 + y^2$?",
                r"Let $f(x) = <a>x + <b>$. Find $f^{-1}(<c>)$.",
                r"Find all real $x$ such that $|<a>x <d>| = <c>$.",
                r"The sum of the roots of $x^3 - <b>x^2 + <c>x - <a> = 0$ is $S$. Compute $S^2 + <x>$.",
                r"Simplify $\frac{x^{<k>} \cdot x^{<a>}}{x^{<b>}}$ and evaluate it at $x = <a>$.",
                r"Find the range of the function $g(x) = \frac{<a>x + <b>}{x - <x>}$.",
                r"For which values of $m$ does $x^2 + mx + <c> = 0$ have two distinct real roots?",
                r"Solve the inequality $<a>x <d> > <b>x + <c>$.",
                r"If $\log_{<a>}(x) + \log_{<a>}(x - <x>) = <k>$, find $x$.",
                r"Find the remainder when $x^{<n>} + <a>x + <b>$ is divided by $x - 1$.",  # number-theory words
                # geometry words
                r"A rectangle has length $x + <a>$ and width $x$. Its area is $<m>$. Find the value of $x$.",
                r"Solve the system of equations $<a>x + <b>y = <c>$, $<k>x - y = <x>$.",  # linear-algebra words
            ),
        ),
    ],
    1: [  # Geometry
        (2, _SHARED["coordinates"]),
        (1, _SHARED["area_under_curve"]),
        (1, _mg("area_of_triangle", "Find the {}", "{}")),
        (1, _mg("pythagorean_theorem", "{}")),
        (1, _mg("sector_area", "{}")),
        (1, _mg("arc_length", "{}")),
        (1, _mg("surface_area_cone", "{}")),
        (1, _mg("volume_cone", "Find the {}", "{}")),
        (1, _mg("third_angle_of_triangle", "{}", "Find the {}")),
        (1, _mg("valid_triangle", "{}")),
        (1, _mg("fourth_angle_of_quadrilateral", "{}")),
        (1, _mg("curved_surface_area_cylinder", "{}")),
        (1, _mg("area_of_circle_given_center_and_point", "{}")),
        (
            4,
            _templates(
                r"In triangle $ABC$, $AB = <b>$, $BC = <c>$ and $\angle B = <deg>^\circ$. Find the area of the "
                r"triangle.",
                r"A circle of radius $<c>$ is inscribed in a square. What is the area inside the square but outside "
                r"the circle?",
                r"In rectangle $ABCD$, $AB = <b>$ and the diagonal $AC = <c>$. Find the perimeter of $ABCD$.",
                r"Two chords $AB$ and $CD$ of a circle meet at $P$ with $AP = <a>$, $PB = <b>$ and $CP = <x>$. "
                r"Find $PD$.",
                r"The legs of a right triangle are $<b>$ and $<c>$. Find the length of the altitude to the hypotenuse.",
                r"A regular hexagon has side length $<c>$. Find the radius of its circumscribed circle and its area.",
                r"In trapezoid $ABCD$ with $AB \parallel CD$, $AB = <c>$, $CD = <b>$ and height $<a>$. Find its area.",
                r"Triangle $ABC$ is similar to triangle $DEF$ with ratio $<a>:<b>$. If $[ABC] = <c>$, find $[DEF]$.",
                r"A cube has space diagonal $<c>\sqrt{3}$. Find its volume.",
                r"Find the angle between the tangent lines drawn from a point at distance $<c>$ from the center of a "
                r"circle of radius $<a>$.",
                r"The line $y = <a>x + <b>$ meets the axes at $P$ and $Q$. Find the area of triangle $OPQ$.",  # algebra
                r"A point is chosen on segment $AB$ of length $<c>$ so that $AP:PB = <a>:<b>$. Find $AP$.",
            ),
        ),
    ],
    2: [  # Calculus
        (1, _SHARED["extremum"]),
        (1.5, _SHARED["area_under_curve"]),
        (0.7, _SHARED["densities"]),
        (2, _mg("definite_integral", "{}", "Evaluate: {}", "Compute {}")),
        (
            2,
            _mg(
                "power_rule_differentiation",
                "Differentiate {} with respect to $x$.",
                "Find $f'(x)$ if $f(x)$ = {}",
            ),
        ),
        (
            2,
            _mg(
                "power_rule_integration",
                "Integrate {} with respect to $x$.",
                "Find the antiderivative of {}.",
            ),
        ),
        (
            1,
            _mg(
                "trig_differentiation", "{} Evaluate at $x = <a>$.", "Compute {} at $x = \\pi/<k>$."
            ),
        ),
        (
            1,
            _deepmind(
                "What is the third derivative of <c>*w**<k> - <b>*w**2 wrt w?",
                "Differentiate <m>*q**<a> + <c>*q - <b> with respect to q.",
                "Find the second derivative of -<c>*z**<k> + <m>*z wrt z.",
            ),
        ),
        (
            4,
            _templates(
                r"Evaluate $\displaystyle\int_0^{<a>} x^{<k>} e^{x}\,dx$.",
                r"Find $\lim_{x \to 0} \frac{\sin(<a>x)}{<b>x}$.",
                r"Let $f(x) = x^{<k>} - <c>x$. Find the local minimum of $f$ on $[0, <a>]$.",
                r"Compute the derivative of $y = \ln(x^2 + <b>)\cos(<a>x)$.",
                r"Find the radius of convergence of $\sum_{n=1}^\infty \frac{(<a>x)^n}{n^{<k>}}$.",
                r"Find the Taylor polynomial of degree $<k>$ of $e^{<a>x}$ about $x = 0$.",
                r"Evaluate $\lim_{n \to \infty} \left(1 + \frac{<a>}{n}\right)^{<b>n}$.",
                r"Find the equation of the tangent line to $y = x^{<k>} + <b>x$ at $x = <a>$.",
                r"Does the series $\sum_{n=1}^\infty \frac{n^{<a>}}{<b>^n}$ converge? Justify.",
                r"Find the area of the region bounded by $y = x^2$ and $y = <a>x$.",  # geometry words
                r"The radius of a circle grows at $<a>$ cm/s. How fast is the area growing when the radius is "
                r"$<c>$ cm?",  # geometry words
                r"Find the volume of the solid obtained by rotating $y = \sqrt{x}$, $0 \le x \le <a>$, about the "
                r"x-axis.",  # geometry words
            ),
        ),
    ],
    3: [  # Probability
        (2, _SHARED["coins_dice"]),
        (1, _SHARED["densities"]),
        (1, _mg("conditional_probability", "{}")),
        (1, _mg("binomial_distribution", "{}")),
        (1, _mg("mean_median", "{}")),
        (
            1,
            _deepmind(
                "Two letters picked without replacement from {w: <a>, x: <b>}. What is prob of sequence wx?",
                "Three letters picked without replacement from {q: <a>, r: <b>, s: <x>}. Give prob of picking 2 q.",
            ),
        ),
        (
            4,
            _templates(
                r"A bag contains <b> red and <x> blue marbles. Two are drawn without replacement. What is the "
                r"probability that both are red?",
                r"A fair coin is tossed <b> times. What is the probability of getting exactly <a> heads?",
                r"Two fair dice are rolled. Given that the sum is at least <a>, what is the probability of a double?",
                r"A random variable $X$ is uniform on $[0, <c>]$. Find $P(X^2 < <m>)$ and $E[X]$.",
                r"The number of calls per hour is Poisson with mean <a>. Find the probability of at most <k> calls.",
                r"$X \sim N(<c>, <a>^2)$. Find $P(X > <c> + <a>)$ using the standard normal table.",
                r"An urn has <a> white and <b> black balls. Balls are drawn until a white one appears. Find the "
                r"expected number of draws.",
                r"A test is <c>\% accurate and the disease affects 1 in <m> people. Find the probability of disease "
                r"given a positive test.",
                r"An integer is chosen at random from 1 to <m>. What is the probability that it is divisible by <p>?",
                r"A committee of <a> is chosen at random from <b> men and <x> women. What is the probability that "
                r"it has more women than men?",  # combinatorics words
            ),
        ),
    ],
    4: [  # Number theory
        (1.5, _SHARED["counting_multiples"]),
        (1.5, _SHARED["modular"]),
        (1, _SHARED["sequences"]),
        (1, _mg("gcd", "{}", "Find the {}")),
        (1, _mg("lcm", "{}", "Find the {}")),
        (1, _mg("prime_factors", "{}", "{} and list them in increasing order.")),
        (1, _mg("modulo_division", "Compute {}", "{}")),
        (1, _mg("common_factors", "{}", "Find the {}")),
        (1, _mg("factors", "{}", "List the {}")),
        (1, _mg("base_conversion", "{}")),
        (1, _mg("is_composite", "{}", "{} Justify your answer.")),
        (
            1,
            _deepmind(
                "Calculate the remainder when <m> is divided by <c>.",
                "What is the highest common divisor of <m> and <c>?",
                "Is <m> a prime number?",
                "List the prime factors of <m>.",
            ),
        ),
        (
            4,
            _templates(
                r"Find the remainder when $<b>^{<m>}$ is divided by $<p>$.",
                r"How many positive divisors does $<m>$ have?",
                r"Find the smallest positive integer $n > <c>$ with $n \equiv <a> \pmod{<p>}$ and "
                r"$n \equiv <x> \pmod{<q>}$.",
                r"Find all integer solutions of $<a>x + <b>y = <c>$.",  # algebra words
                r"What is the last digit of $<b>^{<m>}$?",
                r"Find the sum of all primes $p < <c>$ such that $p + 2$ is also prime.",
                r"Show that $n^{<p>} - n$ is divisible by $<p>$ for every integer $n$.",
                r"Find $\varphi(<m>)$, where $\varphi$ is Euler's totient function.",
                r"For how many integers $1 \le n \le <m>$ is $\gcd(n, <c>) = 1$?",
                r"Find the number of trailing zeros of $<m>!$.",
                r"How many integers between 1 and <m> are divisible by <a> or <b>?",  # combinatorics words
            ),
        ),
    ],
    5: [  # Combinatorics
        (2, _SHARED["counting_multiples"]),
        (2, _SHARED["coins_dice"]),
        (1, _mg("combinations", "{}", "{} Give the answer as an integer.")),
        (1, _mg("permutation", "{}")),
        (
            4,
            _templates(
                r"In how many ways can <b> students be seated in a row if two of them refuse to sit next to each "
                r"other?",
                r"How many subsets of $\{1, 2, \ldots, <c>\}$ have exactly <a> elements and contain no two "
                r"consecutive integers?",
                r"A committee of <a> is chosen from <b> men and <x> women. How many committees include at least "
                r"two women?",
                r"How many lattice paths from $(0,0)$ to $(<b>,<x>)$ use only unit steps right and up?",
                r"How many ways are there to distribute <c> identical balls into <a> distinct boxes?",
                r"How many arrangements of the letters of the word MISSISSIPPI start with <a> S's?",
                r"In how many ways can a $2 \times <b>$ board be tiled with $1 \times 2$ dominoes?",
                r"How many diagonals does a convex polygon with <c> sides have?",  # geometry words
                r"Find the coefficient of $x^{<a>}$ in the expansion of $(1 + x)^{<c>}$.",  # algebra words
                r"How many positive integers less than <m> have all distinct digits?",  # number-theory words
                r"How many ways can <b> people be split into teams of <a>, ignoring the order of the teams?",
                r"At a party of <c> people everyone shakes hands once with everyone else. How many handshakes are "
                r"there?",
                r"How many <a>-digit passwords use each of the digits at most once?",
                r"Find the number of derangements of <k> letters.",
            ),
        ),
    ],
    6: [  # Linear algebra
        (2, _SHARED["systems"]),
        (1, _SHARED["matrix_groups"]),
        (1, _mg("int_matrix_22_determinant", "{}", "Compute the determinant: {}")),
        (1, _mg("matrix_multiplication", "{}")),
        (1, _mg("vector_cross", "Compute the cross product {}", "{}")),
        (1, _mg("vector_dot", "Find the dot product {}", "{}")),
        (1, _mg("multiply_int_to_22_matrix", "{}")),
        (
            4,
            _templates(
                r"Find the eigenvalues of $A = \begin{pmatrix} <a> & <b> \\ <x> & -<y> \end{pmatrix}$.",
                r"Determine whether the vectors $(<a>, <b>, 1)$, $(<x>, -<b>, 2)$ and $(1, <y>, <k>)$ are linearly "
                r"independent.",
                r"Find the rank of the matrix $\begin{pmatrix} 1 & <a> & <b> \\ <x> & <y> & <k> \\ 2 & <c> & 0 "
                r"\end{pmatrix}$.",
                r"Find a basis for the null space of $\begin{pmatrix} <a> & <b> & <k> \\ <x> & <y> & 1 \end{pmatrix}$.",
                r"Let $T: \mathbb{R}^<k> \to \mathbb{R}^2$ be linear with $T(e_1) = (<a>, <b>)$. Find the matrix of "
                r"$T$ and its kernel dimension.",
                r"Diagonalize $\begin{pmatrix} <a> & 1 \\ 0 & <b> \end{pmatrix}$ or explain why it is impossible.",
                r"Find the projection of $(<a>, <b>, <x>)$ onto the subspace spanned by $(1, 1, 0)$ and $(0, 1, 1)$.",
                r"Use Gram-Schmidt to orthonormalize $(<a>, 1, 0)$, $(1, <b>, 1)$ and $(0, 1, <x>)$.",
                r"Solve the system of linear equations $<a>x + <b>y + z = <c>$, $x - y + <k>z = <x>$, $x + y = <y>$ "
                r"using an augmented matrix.",  # algebra words
                r"A linear map rotates the plane by $<deg>^\circ$. Write its matrix and find its trace.",  # geometry
            ),
        ),
    ],
    7: [  # Abstract algebra
        (1, _SHARED["modular"]),
        (1, _SHARED["matrix_groups"]),
        (
            1,
            _templates(
                r"Let $G$ be a group of order $<m>$. Find the number of Sylow $<p>$-subgroups of $G$.",
                r"Is the ring $\mathbb{Z}[x]/(x^2 + <b>)$ an integral domain? Determine its units.",
                r"Find all subgroups of the group $<G>$ and say which are normal.",
                r"Determine the number of group homomorphisms from $\mathbb{Z}_{<c>}$ to $\mathbb{Z}_{<n>}$.",
                r"Show that every group of order $<p>^2$ is abelian.",
                r"Is $x^{<k>} + <a>x + <p>$ irreducible over $\mathbb{Q}$? Use Eisenstein's criterion.",
                r"Find the degree of the field extension $\mathbb{Q}(\sqrt{<p>}, \sqrt{<q>})$ over $\mathbb{Q}$.",
                r"Let $R$ be a commutative ring with identity and $I$ an ideal. Show that $R/I$ is a field iff $I$ is "
                r"maximal, and apply it to $\mathbb{Z}_{<n>}$.",
                r"List the conjugacy classes of $<G>$ and check the class equation.",
                r"Find the center of the group $<G>$ and its order.",
                # number-theory words
                r"Find the order of the element $<a>$ in the multiplicative group $(\mathbb{Z}/<p>\mathbb{Z})^*$.",
                r"How many elements of order $<a>$ does the permutation group $S_{<k>}$ have?",  # combinatorics words
                r"Is the set of $2 \times 2$ real matrices with determinant $1$ a group under multiplication? Is it "
                r"abelian?",  # linear-algebra words
                r"Find the kernel and image of the homomorphism $\mathbb{Z}_{<c>} \to \mathbb{Z}_{<n>}$, $x \mapsto "
                r"<a>x$.",
            ),
        ),
    ],
}
# Wording shared by every class, as in real problem sets.
_PREFIXES = ("", "", "", "", "Problem <x>. ", "Question: ", "Exercise <y>: ", "Find the answer. ")
_SUFFIXES = (
    "",
    "",
    "",
    "",
    " Give your answer as an integer.",
    " Express the value in simplest form.",
    " Justify your answer.",
    " Round the value to two decimal places.",
    " Show all steps.",
)


def class_sizes(n_total: int) -> dict[int, int]:
    """Problems per class for a corpus of `n_total` (rounded so they sum to `n_total`)."""
    sizes = {c: int(n_total * share) for c, share in PROPORTIONS.items()}
    by_remainder = sorted(
        PROPORTIONS, key=lambda c: n_total * PROPORTIONS[c] - sizes[c], reverse=True
    )
    for c in by_remainder[: n_total - sum(sizes.values())]:
        sizes[c] += 1
    return sizes


def _problem(rng: random.Random, class_id: int) -> str:
    weights, sources = zip(*SOURCES[class_id], strict=True)
    text = rng.choices(sources, weights=weights)[0](rng)
    if text.startswith("b'"):  # keep the generated one-liners as they are in the real file
        return text
    return _fill(rng, rng.choice(_PREFIXES)) + text + rng.choice(_SUFFIXES)


def generate_problems(n_total: int = 3200, seed: int = 42) -> pd.DataFrame:
    """`n_total` distinct problems (`Question`, `label`) in class order, the same for the same seed."""
    if n_total < 200:
        raise ValueError(
            f"n_total must be at least 200 so every class has a few problems, got {n_total}"
        )
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    # mathgenerator draws from the global `random`: seed it for reproducibility, then give it back untouched.
    state = random.getstate()
    random.seed(seed)
    try:
        for class_id, size in class_sizes(n_total).items():
            made = tries = 0
            while made < size:
                tries += 1
                if tries > 50 * size + 100:
                    raise RuntimeError(
                        f"could not make {size} distinct problems for class {class_id}"
                    )
                text = _problem(rng, class_id)
                key = data.normalize_question(text)
                if key in seen:
                    continue
                seen.add(key)
                rows.append((text, class_id))
                made += 1
    finally:
        random.setstate(state)
    return pd.DataFrame(rows, columns=[data.TEXT_COL, data.LABEL_COL])


def _add_defects(problems: pd.DataFrame, rng: random.Random) -> tuple[pd.DataFrame, dict[str, int]]:
    """The raw corpus: the problems plus duplicates, case/whitespace variants and conflicting labels, shuffled."""
    texts, ids = problems[data.TEXT_COL].tolist(), problems[data.LABEL_COL].tolist()
    n_dup = max(2, len(texts) // 100)
    plain = [i for i, text in enumerate(texts) if not text.startswith("b'")]
    picked = rng.sample(plain, 2 * n_dup + 10)
    exact, variants = picked[:n_dup], picked[n_dup : 2 * n_dup]
    majority, ties = picked[2 * n_dup : 2 * n_dup + 6], picked[2 * n_dup + 6 :]
    extra = [(texts[i], ids[i]) for i in exact]
    for j, i in enumerate(variants):
        text = texts[i]
        variant = (
            text.upper(),
            f"  {text}  ",
            text.replace(" ", "\n", 1),
            text.replace(" ", "   ", 2),
        )[j % 4]
        extra.append((variant if variant != text else f" {text}\n", ids[i]))
    for i in majority:  # seen twice with its label, once with another: the majority keeps it
        extra += [(texts[i], ids[i]), (texts[i], _CONFUSED_WITH[ids[i]])]
    for i in ties:  # seen once with each of two labels: dropped
        extra.append((texts[i].lower(), _CONFUSED_WITH[ids[i]]))
    raw = pd.concat([problems, pd.DataFrame(extra, columns=problems.columns)], ignore_index=True)
    order = list(range(len(raw)))
    rng.shuffle(order)
    counts = {
        "exact_duplicates": len(exact),
        "case_or_whitespace_variants": len(variants),
        "conflicting_labels_majority": len(majority),
        "conflicting_labels_tie": len(ties),
    }
    return raw.iloc[order].reset_index(drop=True), counts


def write_demo_corpus(out_dir: str | Path, seed: int = 42, n_total: int = 3200) -> dict[str, Any]:
    """Write the demo raw CSV and, through `prepare`, its three split files and report; returns the report."""
    out_dir = Path(out_dir)
    # A second stream for the defects, so changing them does not change the problems.
    raw, defects = _add_defects(generate_problems(n_total, seed), random.Random(seed + 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_path = out_dir / RAW_FILE
    files.write_text(raw_path, raw.to_csv(index=False, lineterminator="\n"))
    info = {
        "raw_file": RAW_FILE,
        "seed": seed,
        "n_problems": n_total,
        "proportions": {labels.name(c, "en"): share for c, share in PROPORTIONS.items()},
        "injected_defects": defects,
        "generator": f"mathgenerator {version('mathgenerator')} + mathreport.demo templates",
    }
    from mathreport import prepare

    return prepare.prepare(raw_path, out_dir, seed=seed, source="demo", source_info=info)
