"""The ``routehead-pyserini`` group: global options (data folder, logging, threads), the context
every command receives, and one clear line instead of a traceback for every error."""
from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from .. import __version__, config
from ..data.checks import INT32_MAX, INT32_MIN

logger = logging.getLogger("routehead_pyserini")

POSITIVE = click.IntRange(min=1)  # counts: --top-k, --hits, --threads, --epochs...
MAX_THREADS = 1024  # torch threads: more fails in torch (beyond a C int) or aborts in OpenMP (1e9 thread stacks)
RELEVANCE_LEVEL = click.IntRange(INT32_MIN, INT32_MAX)  # trec_eval -l: a C int
FOLDS = click.IntRange(min=2)  # cross-validation needs a held-out fold
MEASURE_HELP = "Measure, repeatable: nDCG@10, MAP@100, R@100, MRR@10, P@10, MAP, nDCG."


@dataclass
class Context:
    data_dir: Path
    quiet: bool
    threads: int | None = None  # torch threads of the scoring commands (None: torch's default)

    def apply_threads(self) -> None:
        """Set torch's thread count (``--threads``); called by the commands that run a model."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)

    @property
    def progress(self) -> bool:
        return not self.quiet


def _setup_logging(level: str, quiet: bool, log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        import os

        folder = Path(log_file).expanduser().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK) or (Path(log_file).exists() and not os.access(log_file, os.W_OK)):
            raise click.BadParameter(f"{log_file}: cannot write there ({'no folder ' + str(folder) if not folder.is_dir() else 'permission denied'})",
                                     param_hint="'--log-file'")
        # opened at the first record, after the command has checked that the log is none of its inputs or outputs
        handlers.append(logging.FileHandler(log_file, encoding="utf-8", delay=True))
    logging.basicConfig(
        level=logging.WARNING if quiet and level == "INFO" else getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every fallback at INFO
    if quiet or level != "DEBUG":
        import os

        # transformers' "Loading weights" / "Writing model shards" bars (read when it is imported)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _sigterm_as_interrupt(ctx: click.Context) -> None:
    """SIGTERM ends a command the way Ctrl-C does: KeyboardInterrupt, temporary files removed,
    earlier outputs intact (the JVM is started with -Xrs so it leaves the signal to Python)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


class FriendlyGroup(click.Group):
    """Every error ends as one line on stderr (``Error: ...``, exit 1), its traceback logged at DEBUG:
    the package's UserErrors, OSErrors of paths, Java, out-of-memory and CUDA errors said as what to
    change, anything else as an internal error (a bug). Click's usage errors (exit 2), Ctrl-C and
    SIGTERM (``Aborted!``) and exits pass through."""

    def invoke(self, ctx: click.Context):
        from ..errors import UserError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except UserError as exc:
            logger.debug("failed", exc_info=True)
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            logger.debug("failed", exc_info=True)
            raise click.ClickException(describe_error(exc)) from exc


_ALLOCATION_FAILED = re.compile(r"can't allocate memory|not enough memory|out of memory", re.I)  # torch's CPU allocator
_CUDA_UNAVAILABLE = re.compile(r"not compiled with CUDA|no NVIDIA driver|no CUDA GPUs|CUDA.*(not available|unavailable|initiali[sz]|driver)", re.I)


def describe_error(exc: Exception) -> str:
    """One line for an exception that is not a :class:`UserError`: what to change where the type
    says it (a path, Java, memory, CUDA), else an internal error to report."""
    from ..errors import os_error_message
    from ..firststage.jvm import is_java_exception, java_message

    text = str(exc).strip()
    first = " ".join(text.splitlines()[0].split())[:300] if text else ""
    torch = sys.modules.get("torch")  # never imported here: only an error it raised can be its type
    if isinstance(exc, OSError):  # a path the user gave, a full disk, a folder they cannot write
        return os_error_message(exc)
    if is_java_exception(exc):
        return f"{java_message(exc)} (from Lucene/Anserini): check --index and the search options; --log-level DEBUG shows the Java trace"
    if isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ()))) or (
            isinstance(exc, RuntimeError) and _ALLOCATION_FAILED.search(text)):
        return f"out of memory{f' ({first})' if first else ''}: lower --batch-size/--top-k/--doc-max-tokens"
    if isinstance(exc, (RuntimeError, AssertionError)) and _CUDA_UNAVAILABLE.search(text):
        return f"CUDA is not usable here ({first}): use --device cpu, or a machine with a CUDA GPU and a CUDA build of torch"
    return f"internal error: {type(exc).__name__}: {first} (a bug: please report it; --log-level DEBUG shows the traceback)"


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="routehead-pyserini")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Benchmark data directory used by registry names [{config.DATA_DIR_HELP}].",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True, help="Logging verbosity (stderr).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="Also write the log to this file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; warnings and errors only.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, envvar="ROUTEHEAD_THREADS",
              help="Torch threads for model work [env ROUTEHEAD_THREADS; default: torch's, one per core]. Running "
                   "several jobs on one machine, give each cores/jobs threads: oversubscribed threads made one query 20x slower.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, log_level: str, log_file: str | None, quiet: bool, threads: int | None) -> None:
    """Re-rank Pyserini BM25 runs with routed attention heads of a frozen LLM.

    \b
    First stage:  index, search
    Second stage: rerank, analyze-heads
    RouteHead:    label, train, rerank --router; train-soft-router (per-query head weights)
    Baselines:    train-weights (learned head weights, --fuse with BM25, --fuse-dense), rerank --method dense
    Evaluation:   evaluate, random-order (control)
    Registry:     datasets (names usable for --index/--topics/--qrels/--run)
    Demo:         demo (index + BM25 + evaluation on the embedded collection)
    Pipelines:    pipeline run FILE.yaml (stages of these commands); heads (head sets, routing)
    """
    _setup_logging(log_level, quiet, log_file)
    _sigterm_as_interrupt(ctx)
    ctx.obj = Context(data_dir=config.data_dir(data_dir), quiet=quiet, threads=threads)
