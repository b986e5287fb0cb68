"""Content hashes and stage records: what lets a pipeline skip a stage that has nothing new to do.

A stage record (``<work folder>/.pipeline/<stage id>.json``) holds the command line the stage ran
with, the SHA-256 of every input it read and of every output it wrote. A stage is up to date when
its record exists, the command line is the same, every input hashes as recorded and every output
still exists and hashes as recorded (so an output edited or deleted by hand makes it run again).

Files hash by content; a folder hashes by the sorted list of its files' relative paths and
hashes (hidden files and temporary ``.*.tmp`` files of :mod:`.files` included only when not
temporary). Hashes are memoised per process by (path, size, mtime), so a large input read by
several stages is hashed once per run.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import atomic_write_text

RECORD_FORMAT = "routehead-stage/1"
_CHUNK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (memoised by path, size and modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _memo:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _memo[key] = digest.hexdigest()
    return _memo[key]


def path_sha256(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a file, or of a folder's files (paths and contents); ``None`` if it does not exist."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        return None
    digest = hashlib.sha256(b"folder\0")
    for child in sorted(p for p in path.rglob("*") if p.is_file() and not _is_temporary(p)):
        digest.update(f"{child.relative_to(path).as_posix()}\0{file_sha256(child)}\0".encode())
    return digest.hexdigest()


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


@dataclass
class StageRecord:
    """What a stage ran with and what it wrote, as last completed."""

    stage: str
    command: list[str]
    inputs: dict[str, str | None] = field(default_factory=dict)  # input value -> content hash
    outputs: dict[str, str | None] = field(default_factory=dict)  # output path -> content hash
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"format": RECORD_FORMAT, **asdict(self)}, indent=1, sort_keys=False) + "\n"


def record_path(workdir: Path, stage_id: str) -> Path:
    return Path(workdir) / ".pipeline" / f"{stage_id}.json"


def read_record(path: Path) -> StageRecord | None:
    """The record at ``path``, or ``None`` when there is none (or it is not a record: run again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.pop("format", None) != RECORD_FORMAT:
        return None
    try:
        return StageRecord(**data)
    except TypeError:
        return None


def write_record(path: Path, record: StageRecord) -> None:
    atomic_write_text(path, record.to_json())


def why_stale(record: StageRecord | None, command: list[str], inputs: dict[str, str | None]) -> str | None:
    """``None`` when ``record`` shows the stage up to date; else the first reason it must run."""
    if record is None:
        return "no record of a finished run"
    if record.command != command:
        return "settings changed"
    for value, digest in inputs.items():
        if record.inputs.get(value, "absent") != digest:
            return f"input {value} changed"
    for output, digest in record.outputs.items():
        now = path_sha256(output)
        if now is None:
            return f"output {output} is missing"
        if now != digest:
            return f"output {output} changed since it was written"
    return None
