"""Checks every reader shares: YAML without duplicate keys, finite numbers, ids that fit a TREC line.

- :func:`load_yaml` reads YAML like ``yaml.safe_load`` but refuses a mapping that names a key
  twice (``safe_load`` silently keeps the last one): the error is a ``yaml.YAMLError`` whose
  ``problem_mark`` is the second key's line, so callers report it like any other YAML error.
- :func:`number_problem` says why a value read from a file is not a finite number (NaN, an
  infinity, or not a number at all), or ``None`` when it is one. Python's ``json`` reads the
  tokens ``NaN`` and ``Infinity``, YAML reads ``.nan`` and ``.inf``, and ``float("1e999")`` is
  ``inf``: no such value may reach a score.
- :func:`id_problem` says why an id cannot be written on a TREC line (empty, or with whitespace:
  run and qrels lines are split on whitespace), or ``None``.
- :func:`int_problem` also checks a range: relevance grades and levels must fit trec_eval's C
  ``int`` (:data:`INT32_MIN`..:data:`INT32_MAX`), or pytrec_eval fails deep inside.
"""
from __future__ import annotations

import math
import re
from typing import Any

import yaml

_WHITESPACE = re.compile(r"\s")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # trec_eval's relevance grades and levels, and measure cut-offs
FLOAT32_MAX = 3.4028234663852886e38  # trec_eval reads run scores as C floats: larger magnitudes become inf
_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a duplicate key in a mapping (naming both lines)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # '<<: *anchor' merges; explicit keys may override those
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports an unhashable key
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first_line[key]})", key_node.start_mark)
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, but a key given twice in one mapping is a ``yaml.YAMLError``."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def yaml_error(exc: yaml.YAMLError) -> str:
    """``at line N: problem`` of a YAML error (its first line only)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: {problem}"


def number_problem(value: object) -> str | None:
    """Why ``value`` is not a finite number (``"NaN"``, ``"infinite (inf)"``, ``"'x', not a number"``), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r}, not a number"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return f"infinite ({value})"
    return None


def int_problem(value: object, minimum: int | None = None, maximum: int | None = None) -> str | None:
    """Why ``value`` is not an integer (in ``minimum``..``maximum``), or ``None``; ``2.0`` is not an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{value!r}, not an integer"
    if minimum is not None and value < minimum:
        return f"{value}, below {minimum}"
    if maximum is not None and value > maximum:
        return f"{value}, above {maximum}"
    return None


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a qid or docid of a TREC line, or ``None``."""
    if not value:
        return "is empty"
    if _WHITESPACE.search(value):
        return "contains whitespace (TREC run lines are split on whitespace)"
    return None
