"""The data of the bad-input table (tests/cli/test_bad_inputs.py, docs/reliability.md): a case is one
command line with one bad input and the pattern its one-line error must match. The cases are
grouped by class in the ``cases_*.py`` modules beside this one; each also writes its bad files."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (``{name}`` fields filled from the fixture's paths: ``{d}`` the
    folder of bad files, ``{idx}`` the demo index, ``{bm25}`` a BM25 run of it, ``{ro}`` a read-only
    folder, ``{out}`` a fresh output folder) and a regular expression the message must match."""

    id: str
    input: str
    args: tuple[str, ...]
    message: str


def case(id: str, input: str, args: str, message: str) -> Case:
    """A row from one string of arguments, split on whitespace; an argument ``{empty}`` becomes an empty
    argument and ``{sp}`` inside one a space (what the split cannot say otherwise)."""
    return Case(id, input, tuple("" if a == "{empty}" else a.replace("{sp}", " ") for a in args.split()), message)
