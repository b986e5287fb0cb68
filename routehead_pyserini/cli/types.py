"""Option types that refuse what click's own let through: ``nan`` and ``inf`` (``click.FloatRange``
checks a range with comparisons that NaN never fails), ids that would break a TREC line, and
comma-separated lists. A bad value is click's usage error (exit 2) naming the option; pipelines
check their ``with:`` values with the same types (:mod:`..pipeline.spec`)."""
from __future__ import annotations

import math
import re
from typing import Any

import click


class FiniteRange(click.FloatRange):
    """A finite float, optionally in a range: ``nan``, ``inf`` and ``1e999`` are refused before the
    range is checked (the range's message is click's own, e.g. ``1.0 is not in the range 0<=x<1``)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def finite_range(min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False) -> FiniteRange:
    """A :class:`FiniteRange` (``finite_range()``: any finite float)."""
    return FiniteRange(min, max, min_open=min_open, max_open=max_open)


FINITE = finite_range()
NON_NEGATIVE = finite_range(0)  # regularisation weights, BM25 k1
UNIT = finite_range(0, 1)  # [0, 1]: BM25 b
FRACTION = finite_range(0, 1, max_open=True)  # [0, 1): held-out shares


class IntList(click.ParamType):
    """Comma-separated integers, each at least ``min`` and none twice; the value stays the option's text."""

    name = "integers"

    def __init__(self, min: int | None = None):
        self.min = min

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        numbers = []
        for part in str(value).split(","):
            if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", part):  # int() also reads '1_6' and non-ASCII digits
                self.fail(f"{part.strip()!r} is not an integer", param, ctx)
            numbers.append(int(part))
            if self.min is not None and numbers[-1] < self.min:
                self.fail(f"{numbers[-1]} is below {self.min}", param, ctx)
        if len(set(numbers)) < len(numbers):
            self.fail(f"{max(numbers, key=numbers.count)} is given twice; give each once", param, ctx)
        return str(value)


class Word(click.ParamType):
    """One non-empty word without whitespace: the tag column of a TREC run line."""

    name = "word"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text or any(ch.isspace() for ch in text):
            self.fail(f"{text!r} must be one word without whitespace (TREC run lines are split on whitespace)", param, ctx)
        return text


WORD = Word()
