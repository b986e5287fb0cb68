"""Names for datasets and indexes: ``--index vaswani``, ``--topics scifact``, ``--qrels trec-dl-2019``.

Resolution order for a name given to ``--index``:

1. an existing folder (a Lucene index) is used as it is;
2. a name in the registry: the built-in ``datasets.yaml`` of this package, overlaid by the user
   registry (``$ROUTEHEAD_REGISTRY``, default ``~/.config/routehead-pyserini/registry.yaml``).
   If the entry's index folder does not exist but its corpus does, the index is built once;
3. a Pyserini prebuilt index name (``msmarco-v1-passage``...), which needs a download. Offline,
   Pyserini returns ``None``; we raise :class:`IndexNotFoundError` saying how to build or register
   an index instead.

``--topics``, ``--qrels`` and ``--run`` take a file path or a registry name the same way.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml

from .. import config
from ..files import atomic_write_text
from ..errors import UserError
from .checks import load_yaml, yaml_error
from .trec import read_text

logger = logging.getLogger(__name__)

REGISTRY_ENV = "ROUTEHEAD_REGISTRY"
FIELDS = ("corpus", "index", "topics", "qrels", "run")
PACKAGE_DIR = Path(__file__).resolve().parent


# Where each built-in benchmark comes from (README "Getting the data" has the details and the layout).
SOURCES = {
    "trec-dl-2019": "Pyserini topics/qrels 'dl19-passage', BM25 run over the prebuilt 'msmarco-v1-passage', "
                    "passage text from ir_datasets 'msmarco-passage/trec-dl-2019/judged'",
    "scifact": "ir_datasets 'beir/scifact/train' or BEIR's scifact.zip (corpus.jsonl, queries.jsonl, qrels/train.tsv)",
    "vaswani": "ir_datasets 'vaswani'",
    "cranfield": "ir_datasets 'cranfield' (qrels gain = 5 - code, -1 -> 0)",
    "cacm": "Anserini's topics.cacm.txt and qrels.cacm.txt, documents from the Glasgow test collections' cacm.all",
    "medline": "the Glasgow test collection MED (MED.ALL, MED.QRY, MED.REL)",
    "adi": "the Glasgow test collection ADI (ADI.ALL, ADI.QRY, ADI.REL)",
    "lisa": "the Glasgow test collection LISA (LISA*, LISA.QUE, LISARJ.NUM)",
}


def how_to_get(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """One line saying where a registered benchmark's files go and where to get them."""
    source = SOURCES.get(name)
    where = f"put its files in {config.data_dir(data_dir) / name}/"
    hint = f"{where} (from {source})" if source else where
    return (f"{hint}, or point --data-dir / ${config.DATA_DIR_ENV} at a folder that has {name}/; "
            "README 'Getting the data' has the layout")


class RegistryError(UserError, ValueError):
    """A malformed registry file or an unknown name."""


@dataclass(frozen=True)
class Entry:
    """One registered dataset; any field may be missing."""

    name: str
    corpus: Path | None = None
    index: Path | None = None
    topics: Path | None = None
    qrels: Path | None = None
    run: Path | None = None


def user_registry_path() -> Path:
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "routehead-pyserini" / "registry.yaml"


def _load_yaml(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    try:
        raw = load_yaml(read_text(path)) or {}
    except yaml.YAMLError as exc:  # a key given twice is one too: it names the line
        raise RegistryError(f"{path}: invalid YAML{yaml_error(exc)}") from None
    if not isinstance(raw, dict):
        raise RegistryError(f"{path}: expected a mapping of names to entries")
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise RegistryError(f"{path}: entry {name!r} must be a mapping with keys {', '.join(FIELDS)}")
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise RegistryError(f"{path}: entry {name!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(FIELDS)}")
        for key, value in entry.items():
            if value is not None and not isinstance(value, str):
                raise RegistryError(f"{path}: entry {name!r}: {key} must be a path (a string), got {value!r}")
    return raw


def load_registry(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Entry]:
    """Built-in entries overlaid by the user's, with ``${data_dir}``-style variables expanded."""
    variables = {
        "data_dir": str(config.data_dir(data_dir)),
        "cache_dir": str(config.cache_dir()),
        "package_dir": str(PACKAGE_DIR),
    }
    merged: dict[str, dict[str, str]] = {}
    for path in (PACKAGE_DIR / "datasets.yaml", user_registry_path()):
        for name, entry in _load_yaml(path).items():
            merged.setdefault(str(name), {}).update(entry)
    entries = {}
    for name, fields in merged.items():
        expanded = {
            key: Path(Template(str(value)).safe_substitute(variables)).expanduser()
            for key, value in fields.items()
            if value is not None
        }
        entries[name] = Entry(name=name, **expanded)
    return entries


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a registered name (empty, whitespace, a path separator), or ``None``."""
    if not name.strip():
        return "is empty"
    if any(ch.isspace() for ch in name) or "/" in name or os.sep in name or name.startswith("-"):
        return "must be one word without whitespace or '/', not starting with '-' (it stands where a path or an option could)"
    return None


def register(name: str, **paths: str | os.PathLike[str]) -> Path:
    """Add or update ``name`` in the user registry (written atomically); returns the registry path."""
    problem = name_problem(name)
    if problem:
        raise RegistryError(f"registry name {name!r} {problem}")
    unknown = set(paths) - set(FIELDS)
    if unknown:
        raise RegistryError(f"unknown registry fields {sorted(unknown)}")
    path = user_registry_path()
    current = _load_yaml(path)
    entry = current.setdefault(name, {})
    entry.update({key: str(Path(value).resolve()) for key, value in paths.items() if value is not None})
    atomic_write_text(path, yaml.safe_dump(current, sort_keys=True))
    return path


def lookup(name: str, field: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The path a command should read for ``name``: the file itself, or the registry entry's ``field``."""
    if Path(name).expanduser().exists():
        return Path(name).expanduser()
    entries = load_registry(data_dir)
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(sorted(n for n, e in entries.items() if getattr(e, field) is not None))
        raise RegistryError(f"{name!r} is neither an existing file nor a registered name with a {field} (known: {known})")
    value = getattr(entry, field)
    if value is None:
        raise RegistryError(f"registry entry {name!r} has no {field}")
    if not value.exists():
        raise FileNotFoundError(f"registry entry {name!r}: {field} {value} does not exist (data directory: "
                                f"{config.data_dir(data_dir)}): {how_to_get(name, data_dir)}")
    return value


