"""What a command reads and writes, declared beside the command itself so that pipelines can check
and chain stages without a table of their own; and how a stage's ``with`` keys map to the
command's click parameters and back to a command line.

A command that can be a pipeline stage carries a :class:`CommandIO` (set by :func:`pipeline_io`,
the outermost decorator of the click command); one without it cannot be used in ``uses:``.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

_ATTRIBUTE = "pipeline_io"


#: How an output option's value becomes the files it stands for: ``(value, the stage's settings) -> paths``.
Expand = Callable[[str, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class CommandIO:
    """Which ``with`` keys of a command name what it reads and what it writes."""

    inputs: tuple[str, ...]  # files, folders or registry names read
    outputs: tuple[str, ...]  # written; the first one given is the stage's ${stages.ID.output}
    expand: Mapping[str, Expand] = field(default_factory=dict, compare=False)  # output key -> its files, when not one

    def written(self, key: str, settings: Mapping[str, Any]) -> list[str]:
        """The files the output ``key`` stands for in ``settings`` (its value, unless ``expand`` says otherwise)."""
        value = str(settings[key])
        return self.expand[key](value, settings) if key in self.expand else [value]


def pipeline_io(inputs: Sequence[str] = (), outputs: Sequence[str] = (), expand: Mapping[str, Expand] | None = None) -> Callable:
    """Mark a click command as a pipeline stage that reads the ``inputs`` keys and writes the
    ``outputs`` keys; ``expand`` maps an output key to the files its value stands for (a folder
    holding a report, a pattern giving several files)."""

    def mark(command):
        io = CommandIO(tuple(inputs), tuple(outputs), dict(expand or {}))
        setattr(command, _ATTRIBUTE, io)
        _guard_inputs(command, io)
        return command

    return mark


def _guard_inputs(command: click.Command, io: CommandIO) -> None:
    """Wrap the command's callback: before it runs, refuse an output that is one of its inputs, lies
    inside an input folder, or is another of its outputs (and a global --log-file that is any of them)."""
    callback = command.callback
    if callback is None:
        return
    names = {canonical_key(p): p.name for p in command.params if p.name}

    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        ctx = click.get_current_context(silent=True)
        log_file = ctx.find_root().params.get("log_file") if ctx is not None else None
        check_no_overwrite(io, {key: kwargs.get(name) for key, name in names.items()}, log_file=log_file)
        return callback(*args, **kwargs)

    command.callback = guarded


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when the two paths name one file or folder (after ``~``, ``..`` and symbolic links)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)  # hard links and bind mounts too
    except OSError:
        pass
    return os.path.realpath(pa) == os.path.realpath(pb)


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when ``path`` lies below the existing folder ``folder`` (after ``~``, ``..`` and links)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return False
    return Path(os.path.realpath(Path(path).expanduser())).is_relative_to(os.path.realpath(folder))


def check_no_overwrite(io: CommandIO, settings: Mapping[str, Any], log_file: str | os.PathLike[str] | None = None) -> None:
    """Refuse (a usage error naming both options) an output path that is also an input or lies inside
    an input folder (an index): the command would replace or change what it reads; and two outputs
    (or ``log_file``, the global --log-file, and an output or input) that name one file: one would
    replace the other. Inputs that are registry names or literals are not paths and pass."""
    inputs = [(key, str(v)) for key in io.inputs for v in as_list(settings.get(key)) if v is not None]
    inputs = [(key, value) for key, value in inputs if Path(value).expanduser().exists()]
    outputs = [(key, written) for key in io.outputs if settings.get(key) is not None for written in io.written(key, settings)]
    if log_file is not None:
        outputs.append(("log-file", str(log_file)))
    for out_key, written in outputs:
        if written.strip() in ("-", ""):  # click reads '-' as a file of that name, not as stdout
            raise click.UsageError(f"--{out_key} {written!r}: give a file path (outputs are files written atomically, not stdout)")
    for out_key, written in outputs:
        for in_key, value in inputs:
            if same_file(written, value):
                harm = "logging into it would change" if out_key == "log-file" else "writing it would replace"
                raise click.UsageError(f"--{out_key} {written} is the same file as the input --{in_key} {value}: {harm} "
                                       "the input; choose another output path")
            if inside(written, value):
                raise click.UsageError(
                    f"--{out_key} {written} lies inside the input --{in_key} {value}: writing it would change the input; "
                    f"choose an output path outside that folder")
    for i, (key, written) in enumerate(outputs):
        for other_key, other in outputs[i + 1:]:
            if other_key != key and same_file(written, other):
                raise click.UsageError(f"--{key} {written} and --{other_key} {other} are the same file: one output would "
                                       "replace the other; give each its own path")


def command_io(command) -> CommandIO | None:
    """The :class:`CommandIO` a command was marked with, or ``None`` (not usable as a stage)."""
    return getattr(command, _ATTRIBUTE, None)


def norm_key(key: str) -> str:
    return str(key).strip().lower().replace("_", "-")


def command_keys(command: click.Command) -> dict[str, click.Parameter]:
    """``with`` key → click parameter: long option names and parameter names, ``_`` read as ``-``."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        if param.name == "help":
            continue
        if isinstance(param, click.Option):
            for opt in param.opts:
                if opt.startswith("--"):
                    keys.setdefault(norm_key(opt[2:]), param)
        keys.setdefault(norm_key(param.name), param)
    return keys


def canonical_key(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        long = [o for o in param.opts if o.startswith("--")]
        if long:
            return long[0][2:]
    return norm_key(param.name)


def as_list(value: Any) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def command_argv(params: Mapping[str, click.Parameter], settings: Mapping[str, Any]) -> list[str]:
    """The command line of ``settings`` (options in the command's order, then arguments)."""
    options: list[str] = []
    arguments: list[str] = []
    for key, param in params.items():
        value = settings.get(key)
        if value is None:
            continue
        if isinstance(param, click.Argument):
            arguments.extend(str(v) for v in as_list(value))
            continue
        flag = f"--{key}"
        if param.is_flag:
            if value:
                options.append(flag)
            continue
        for item in as_list(value):
            options += [flag, str(item)]
    if any(a.startswith("-") for a in arguments):
        arguments.insert(0, "--")
    return options + arguments
