"""Where things live: the shared benchmark data and the on-disk caches.

Both are plain settings resolved at call time (no module-level state):

- data directory: ``--data-dir`` on the CLI, else ``$ROUTEHEAD_DATA_DIR``, else ``../shared/data``
  relative to the working directory (the layout of a checkout beside ``shared/``).
- cache directory: ``$ROUTEHEAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/routehead-pyserini``, else
  ``~/.cache/routehead-pyserini``. Converted model weights (``models/``), indexes built from
  registered corpora (``indexes/``) and per-head score caches (``scores/``, or
  ``$ROUTEHEAD_SCORE_CACHE_DIR``) go there.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "ROUTEHEAD_DATA_DIR"
CACHE_DIR_ENV = "ROUTEHEAD_CACHE_DIR"
SCORE_CACHE_ENV = "ROUTEHEAD_SCORE_CACHE_DIR"
DEFAULT_DATA_DIR = Path("..") / "shared" / "data"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data directory: explicit override, then the environment, then the default."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory (created on first use)."""
    if override:
        path = Path(override).expanduser()
    elif os.environ.get(CACHE_DIR_ENV):
        path = Path(os.environ[CACHE_DIR_ENV]).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "routehead-pyserini"
    path.mkdir(parents=True, exist_ok=True)
    return path


def score_cache_dir() -> Path:
    """Default folder of the per-head score caches: ``$ROUTEHEAD_SCORE_CACHE_DIR`` or ``<cache dir>/scores``."""
    env = os.environ.get(SCORE_CACHE_ENV)
    return Path(env).expanduser() if env else cache_dir() / "scores"
