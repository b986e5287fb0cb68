"""Where things live: the shared benchmark data and the on-disk caches.

Both are plain settings resolved at call time (no module-level state):

- data directory, never relative to the working directory: ``--data-dir`` on the CLI, else
  ``$ROUTEHEAD_DATA_DIR``, else ``shared/data`` beside the checkout that holds this package (the
  folder above the repository root, found from this file's own path; a development layout), when
  that folder exists, else the user data folder ``$XDG_DATA_HOME/routehead-pyserini`` (default
  ``~/.local/share/routehead-pyserini``). The README's "Getting the data" says what goes there.
- cache directory: ``$ROUTEHEAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/routehead-pyserini``, else
  ``~/.cache/routehead-pyserini``. Converted model weights (``models/``), indexes built from
  registered corpora (``indexes/``) and per-head score caches (``scores/``, or
  ``$ROUTEHEAD_SCORE_CACHE_DIR``) go there.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

#: The LLM used wherever none is named (the packaged SmolLM2-135M; its presets are shipped).
DEFAULT_MODEL = "smollm2-135m"
#: Model dtypes and quantisations the loaders accept (engine.models, engine.quantize); here, torch-free, for the CLI.
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "int8")
DATA_DIR_ENV = "ROUTEHEAD_DATA_DIR"
CACHE_DIR_ENV = "ROUTEHEAD_CACHE_DIR"
SCORE_CACHE_ENV = "ROUTEHEAD_SCORE_CACHE_DIR"
CHECKOUT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_DIR_HELP = (f"--data-dir, else ${DATA_DIR_ENV}, else shared/data beside this checkout ({CHECKOUT_DATA_DIR}) "
                 "when it exists, else ~/.local/share/routehead-pyserini")


class ConfigError(UserError, ValueError):
    """A data or cache folder setting that names a file instead of a folder."""


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/routehead-pyserini``, default ``~/.local/share/routehead-pyserini``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "routehead-pyserini"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data directory: explicit override, then the environment, then the checkout's
    ``../shared/data`` (from this package's path, not the working directory), then the user data folder."""
    env = os.environ.get(DATA_DIR_ENV)
    if override or env:
        path = Path(override or env).expanduser()
        if path.exists() and not path.is_dir():
            origin = f"--data-dir {override}" if override else f"${DATA_DIR_ENV}={env}"
            raise ConfigError(f"{origin} is a file, not the benchmark data folder: point it at a folder "
                              "(README, 'Getting the data')")
        return path
    if CHECKOUT_DATA_DIR.is_dir():
        return CHECKOUT_DATA_DIR
    return user_data_dir()


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory (created on first use)."""
    if override:
        path, origin = Path(override).expanduser(), "the cache folder"
    elif os.environ.get(CACHE_DIR_ENV):
        path, origin = Path(os.environ[CACHE_DIR_ENV]).expanduser(), f"${CACHE_DIR_ENV}"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path, origin = Path(base) / "routehead-pyserini", "the cache folder ($XDG_CACHE_HOME or ~/.cache)"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{origin} {path} is a file, not a folder: point {CACHE_DIR_ENV} at a folder") from None
    return path


def score_cache_dir() -> Path:
    """Default folder of the per-head score caches: ``$ROUTEHEAD_SCORE_CACHE_DIR`` or ``<cache dir>/scores``."""
    env = os.environ.get(SCORE_CACHE_ENV)
    return Path(env).expanduser() if env else cache_dir() / "scores"
