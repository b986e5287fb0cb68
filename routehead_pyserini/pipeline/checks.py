"""Checks of a pipeline file that :mod:`.spec` runs while it loads one: the pipeline's name (it names
the log file and the default work folder, so it must be a plain file name), a stage's ``with``
mappings (each key an option of the command, no option named twice in one mapping), and the
``--set`` keys (none twice, however an option is spelled).

Each check takes ``fail(message, key)``, which makes the loader's error naming the file, the stage
and the key.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from .stage_io import canonical_key, norm_key

Fail = Callable[[str, "str | None"], Exception]

_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def pipeline_name(raw: Any, path: Path, fail: Fail) -> str:
    """The pipeline's ``name`` (default: the file's stem); one that is not a plain file name (a ``/``,
    a leading ``.``, a control character) is an error: ``logs/NAME-<time>.log`` and the default
    work folder ``runs/pipelines/NAME`` would land elsewhere."""
    name = str(raw or path.stem)
    if _BAD_NAME.search(name) or name.startswith(".") or not name.strip():
        raise fail(f"{name!r} must be a plain file name (no '/', no leading '.', no control characters): it names the "
                   "log file and the default work folder", "name")
    return name


def option_settings(mappings: Sequence[Mapping[str, Any]], params: Mapping[str, click.Parameter], uses: str,
                    fail: Fail) -> dict[str, Any]:
    """The command options of a stage's ``with`` mappings (its ``with``, then its method's overrides),
    by canonical key: a later mapping overrides an earlier one, however the key is spelled
    (``top_k``/``top-k``). A key that is no option of ``uses``, and two keys of one mapping that
    name the same option (``top_k`` and ``top-k``, ``overwrite`` and ``Overwrite``), are errors."""
    settings: dict[str, Any] = {}
    for mapping in mappings:
        seen: dict[str, str] = {}
        for key, value in mapping.items():
            param = params.get(norm_key(key))
            if param is None:
                choices = sorted({canonical_key(p) for p in params.values()})
                close = difflib.get_close_matches(norm_key(key), choices, n=1)
                raise fail(f"not an option of {uses}" + (f" (did you mean {close[0]!r}?)" if close else ""), str(key))
            canonical = canonical_key(param)
            if canonical in seen:
                raise fail(f"names the option --{canonical} again (as {seen[canonical]!r} before): give it once", str(key))
            seen[canonical] = str(key)
            settings[canonical] = value
    return settings


def override_key(key: str) -> str:
    """A ``--set`` key as it is matched: ``STAGE.OPTION`` with the option normalised (``top_k`` is
    ``top-k``), anything else (a variable, ``workdir``, ``vars.NAME``) as written."""
    key = key.strip()
    prefix, dot, option = key.rpartition(".")
    return f"{prefix}.{norm_key(option)}" if dot and prefix != "vars" else key
