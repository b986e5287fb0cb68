"""Candidate lists longer than one prompt: windows that each fit the context (:func:`plan_windows`,
:func:`build_windows`), and one prompt per candidate (:func:`build_pointwise_prompts`)."""
from __future__ import annotations

from typing import Any, Sequence

from .prompt import ICRPrompt, PromptBuilder, resolve_context
from .prompt_text import (BLOCK_SEP, DEFAULT_CALIBRATION_QUERY, DEFAULT_DOC_MAX_TOKENS, DEFAULT_INSTRUCTION, DEFAULT_QUERY_INSTRUCTION,
                          DEFAULT_QUERY_LABEL, DEFAULT_TITLE_SEPARATOR, DocLike, count_tokens, make_format)

__all__ = ["plan_windows", "build_windows", "build_pointwise_prompts"]


def _plan(builder: PromptBuilder, max_docs_per_window: int | None) -> list[list[int]]:
    n = len(builder.docs)
    if builder.max_context is None:
        size = max_docs_per_window or n
        return [list(range(s, min(s + size, n))) for s in range(0, n, size)]
    # Fail fast when not even one 1-token document fits next to the query.
    minimal = builder.build([0], cap=1)
    if not builder.fits(minimal):
        raise builder.too_long(minimal, "the query is too long for the context even with one 1-token document")
    # Estimated cost of each document block ("[k] content\n\n"); the exact build verifies.
    block = [count_tokens(builder.tokenizer, f"[{n}] {c}{BLOCK_SEP}") for c in builder.contents]
    one = builder.build([0])
    overhead = one.total_len - block[0]
    windows: list[list[int]] = []
    start = 0
    cap = max_docs_per_window or n
    while start < n:
        # Greedy by estimate ...
        end, used = start, overhead
        while end < n and end - start < cap and used + block[end] <= builder.max_context:
            used += block[end]
            end += 1
        end = max(end, start + 1)
        # ... then exact: shrink while over budget, then grow while the next document still fits.
        fits = builder.fits(builder.build(list(range(start, end))))
        while not fits and end - start > 1:
            end -= 1
            fits = builder.fits(builder.build(list(range(start, end))))
        while fits and end < n and end - start < cap and builder.fits(builder.build(list(range(start, end + 1)))):
            end += 1
        # A lone document that does not fit (fits is False) stays: build_windows cuts it further.
        windows.append(list(range(start, end)))
        start = end
    return windows


def plan_windows(
    tokenizer: Any,
    query: str,
    docs: Sequence[DocLike],
    *,
    max_context: int | None,
    doc_max_tokens: int | None = DEFAULT_DOC_MAX_TOKENS,
    max_docs_per_window: int | None = None,
    **format_kwargs: Any,
) -> list[list[int]]:
    """Split the candidate list into consecutive windows that each fit ``max_context``.

    Policy: documents keep their input (e.g. BM25) order; windows are filled greedily, each taking
    as many of the next documents as fit (at most ``max_docs_per_window``), with fit measured on the
    exact tokenization of that window's prompt (query and calibration, whichever is longer). Every
    document lands in exactly one window; each window becomes its own :class:`ICRPrompt` carrying
    the query. A document too long to fit even alone forms a window of its own and is cut further
    when built (counted in ``truncated_docs``); nothing is dropped. Scores from different windows
    are on different attention scales; calibration per window removes much of that, but the scorer
    should treat cross-window comparisons as approximate.

    ``format_kwargs`` are the formatting keywords of :func:`build_prompt` (``chat_template``,
    ``instruction``, ...); they must match those used to build the windows.

    Raises:
        PromptTooLongError: the query does not fit even with a single 1-token document.
    """
    if not docs:
        return []
    builder = _builder_for(tokenizer, query, docs, doc_max_tokens, max_context, format_kwargs)
    return _plan(builder, max_docs_per_window)


def build_windows(
    tokenizer: Any,
    query: str,
    docs: Sequence[DocLike],
    *,
    max_context: int | None,
    doc_max_tokens: int | None = DEFAULT_DOC_MAX_TOKENS,
    max_docs_per_window: int | None = None,
    **format_kwargs: Any,
) -> list[ICRPrompt]:
    """:func:`plan_windows` then one :class:`ICRPrompt` per window (``doc_indices`` are global)."""
    if not docs:
        return []
    builder = _builder_for(tokenizer, query, docs, doc_max_tokens, max_context, format_kwargs)
    return [builder.build_fitting(window, "truncate") for window in _plan(builder, max_docs_per_window)]


def build_pointwise_prompts(
    tokenizer: Any,
    query: str,
    docs: Sequence[DocLike],
    *,
    max_context: int | None,
    doc_max_tokens: int | None = DEFAULT_DOC_MAX_TOKENS,
    **format_kwargs: Any,
) -> list[ICRPrompt]:
    """One :class:`ICRPrompt` per document: the listwise layout with that document alone.

    Each prompt is the instruction, ``[1]`` and the one passage, then the query (and the "N/A"
    calibration suffix), rendered with the same template and options as :func:`build_windows`;
    ``doc_indices`` holds the document's position in ``docs``. A document too long for
    ``max_context`` next to the query is cut further (counted in ``truncated_docs``).

    Raises:
        PromptTooLongError: the query does not fit even with a 1-token document.
    """
    if not docs:
        return []
    builder = _builder_for(tokenizer, query, docs, doc_max_tokens, max_context, format_kwargs)
    return [builder.build_fitting([i], "truncate") for i in range(len(builder.docs))]


_FORMAT_KEYS = {
    "chat_template": True,
    "instruction": DEFAULT_INSTRUCTION,
    "query_instruction": DEFAULT_QUERY_INSTRUCTION,
    "query_label": DEFAULT_QUERY_LABEL,
    "calibration_query": DEFAULT_CALIBRATION_QUERY,
    "title_separator": DEFAULT_TITLE_SEPARATOR,
    "normalize_whitespace": True,
}


def _builder_for(
    tokenizer: Any,
    query: str,
    docs: Sequence[DocLike],
    doc_max_tokens: int | None,
    max_context: int | None,
    format_kwargs: dict[str, Any],
) -> PromptBuilder:
    unknown = set(format_kwargs) - set(_FORMAT_KEYS)
    if unknown:
        raise TypeError(f"unknown formatting keyword(s): {sorted(unknown)}")
    fmt = make_format(tokenizer, **{**_FORMAT_KEYS, **format_kwargs})
    return PromptBuilder(
        tokenizer, query, docs, doc_max_tokens=doc_max_tokens, max_context=resolve_context(tokenizer, max_context), fmt=fmt
    )
