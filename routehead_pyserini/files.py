"""Atomic file output: write to a temporary file in the target folder, then rename over the target.

A reader never sees a half-written file, and an interrupted job leaves the previous file intact.
Outputs get the mode a plain ``open()`` would give (0644 files and 0755 folders under umask 022;
a replaced file keeps its mode), not the 0600/0700 of temporary files. A folder that cannot be
written is an :class:`OutputError` naming the output. An output path that is a symbolic link writes
the file it points to (the link stays); a link loop, and an existing output that is not a regular
file (a device such as ``/dev/null``, a FIFO, a socket), are refused: renaming over them would
replace them.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

from .errors import UserError

_UMASK_LOCK = threading.Lock()


class OutputError(UserError, OSError):
    """An output that cannot be written (a read-only or missing folder, a full disk...)."""


def _umask() -> int:
    with _UMASK_LOCK:  # reading the umask means setting it: keep the two calls together
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _output_mode(target: Path, directory: bool) -> int:
    """The mode of a new file or folder under the current umask, or the mode of the file it replaces."""
    with contextlib.suppress(OSError):
        if not directory and target.is_file():
            return stat.S_IMODE(target.stat().st_mode)
    return (0o777 if directory else 0o666) & ~_umask()


def _cannot_write(target: Path, exc: OSError) -> OutputError:
    if isinstance(exc, FileExistsError) and exc.filename:  # mkdir over a file
        return OutputError(f"cannot write {target}: {exc.filename} is a file, not a folder")
    name = Path(str(exc.filename or target)).name
    where = "" if name == target.name or name.startswith(f".{target.name}.") else f" ({exc.filename})"  # not our temp file
    return OutputError(f"cannot write {target}: {exc.strerror or exc}{where}")


def output_target(path: str | os.PathLike[str], *, directory: bool = False) -> Path:
    """The path an output named ``path`` is renamed onto: a symbolic link's target (so the link
    stays); an :class:`OutputError` for a link loop, or for an existing path that is neither a
    regular file nor a folder (a device, a FIFO, a socket), which a rename would replace."""
    target = Path(path)
    if target.is_symlink():
        try:
            target.stat()
        except FileNotFoundError:
            pass  # a dangling link: write the file it names
        except OSError as exc:  # ELOOP
            raise OutputError(f"cannot write {path}: {exc.strerror or exc} (a symbolic link that never reaches a file)") from None
        target = Path(os.path.realpath(target))
    try:
        mode = target.stat().st_mode
    except OSError:  # nothing there yet (or a path below a file: creating it says so)
        return target
    kind = _kind(mode)
    if kind not in ("a regular file", "a folder"):  # a file where a folder goes, or the reverse, fails at the rename
        raise OutputError(f"cannot write {path}: it is {kind}, not a {'folder' if directory else 'regular file'}; "
                          "writing the output would replace it")
    return target


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = output_target(path)
    binary = "b" in mode
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _cannot_write(target, exc) from exc
    try:
        os.fchmod(fd, _output_mode(target, directory=False))
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else "\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.replace(tmp, target)
        except OSError as exc:  # e.g. the target is a folder
            raise _cannot_write(target, exc) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def check_replaceable(folder: str | os.PathLike[str], *, marker: str, own: Callable[[str], bool], kind: str,
                      inputs: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Refuse to replace ``folder`` unless it is recognisably an output of this package's own
    ``kind``: it holds the ``marker`` file this package writes, every entry's name passes ``own``,
    and none of ``inputs`` lies inside it. Nothing else is ever deleted by ``--overwrite``."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a {kind} folder: --overwrite only replaces a {kind} built by routehead-pyserini")
    resolved = folder.resolve()
    for item in inputs:
        if Path(item).exists() and Path(item).resolve().is_relative_to(resolved):
            raise OutputError(f"the input {item} lies inside {folder}, which --overwrite would replace: "
                              f"choose another folder for the {kind}")
    if not (folder / marker).is_file():
        raise OutputError(f"{folder} is not a {kind} built by routehead-pyserini (no {marker}): --overwrite only replaces "
                          "those; remove the folder yourself or choose another one")
    foreign = sorted(entry.name for entry in folder.iterdir() if entry.name != marker and not own(entry.name))
    if foreign:
        raise OutputError(f"{folder} holds {len(foreign)} file(s) that are not part of a {kind} (e.g. {foreign[0]}): "
                          "--overwrite would delete them; move them out first")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` (an existing
    folder there is removed first: callers check it with :func:`check_replaceable`), on any error
    it is deleted and ``path`` is left as it was."""
    import shutil

    path = output_target(path, directory=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        os.chmod(tmp_dir, _output_mode(path, directory=True))
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        yield tmp_dir
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp_dir, path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
