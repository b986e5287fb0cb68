"""Prompt builder for In-Context Re-ranking (ICR, Chen et al. 2024).

ICR scores candidates with the attention a frozen causal LM pays from the *query* tokens to each
*document's* tokens, in one prompt where all documents come first and the query last::

    Here are some passages:

    [1] <title>
    <text of document 1>

    [2] <text of document 2>
    ...

    Find the information relevant to the following query in the passages above.

    Query: <query>

The score of a document is then calibrated by subtracting the attention obtained with the
content-free query ``"N/A"`` in its place. Because only the query differs between the two passes,
everything before the query (the *prefix*: template head, instruction, all documents) is shared,
so the scorer can run it once and reuse its KV cache for both suffixes. This module produces exactly
the token ids and token spans the scorer needs for that (:class:`ICRPrompt`), plus the planning
of windows when the candidate list does not fit the model's context (:func:`.windows.plan_windows`).

Design choices, and why:

- **Spans come from the tokenizer's offset mapping**, never from adding up lengths of separately
  tokenized pieces: BPE merges differ at piece boundaries (``"] foo"`` is not ``"]" + "foo"``), and
  chat templates add tokens of their own. We render the whole prompt as one string, remember the
  character range of every document and of the query, tokenize the string once, and map
  character ranges to the tokens that overlap them.
- **The prefix/suffix cut is verified**, not assumed: we tokenize both the real prompt and the
  calibration prompt and cut at the first query token, moved back if needed so that both
  tokenizations agree on every prefix token (a tokenizer may merge the text before the query with
  its first characters). The template puts a space before the query so the boundary falls on a
  word boundary; if the cut would still have to move back into the documents, we raise
  :class:`PromptBuildError`. ``prefix_ids + query_suffix_ids`` is therefore *exactly* the
  tokenization of the rendered query prompt, and likewise for the calibration prompt.
- **Truncation happens on token boundaries of the document alone** (with the leading space it has in
  the prompt), then in characters, so the rendered text is a clean prefix of the original text.
- **Whitespace inside documents is collapsed** by default: MS MARCO passages carry stray newlines
  and runs of spaces that cost tokens and blur the ``[i]`` structure for the model.
- **Special-token strings inside documents or the query are defused** (``<|im_end|>`` in a web page
  would otherwise be parsed as a real control token and break the prompt structure).
- Everything is deterministic: the same inputs always give the same ids.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

from ..data.corpus import Document
from .prompt_text import (BLOCK_SEP, DEFAULT_CALIBRATION_QUERY, DEFAULT_DOC_MAX_TOKENS, DEFAULT_INSTRUCTION, DEFAULT_QUERY_INSTRUCTION,
                          DEFAULT_QUERY_LABEL, DEFAULT_TITLE_SEPARATOR, UNKNOWN_CONTEXT, DocLike, Format, PromptBuildError, PromptTooLongError,
                          as_document, content_of, count_tokens, defuse_specials, encode, make_format, overlapping_tokens, special_pattern,
                          special_strings, truncate_to_tokens)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_QUERY_INSTRUCTION",
    "DEFAULT_CALIBRATION_QUERY",
    "DEFAULT_DOC_MAX_TOKENS",
    "Document",
    "DocLike",
    "ICRPrompt",
    "PromptBuildError",
    "PromptTooLongError",
    "as_document",
    "build_prompt",
    "infer_max_context",
]


# --------------------------------------------------------------------------------------------------
# The prompt object
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ICRPrompt:
    """Token ids and spans for one ICR forward pair (real query + calibration query).

    The scorer runs ``prefix_ids`` once, then ``query_suffix_ids`` and ``calib_suffix_ids`` on top
    of the same KV cache, and reads the attention from the query span (resp. calibration span) of
    the suffix to each document span of the prefix. All spans are ``[start, end)`` token positions:
    ``doc_spans`` index into ``prefix_ids``, ``query_span`` into ``query_suffix_ids`` and
    ``calib_span`` into ``calib_suffix_ids`` (add ``prefix_len`` for absolute positions).
    """

    prefix_ids: list[int]
    doc_spans: list[tuple[int, int]]
    query_suffix_ids: list[int]
    query_span: tuple[int, int]
    calib_suffix_ids: list[int]
    calib_span: tuple[int, int]
    # ---- metadata ----
    #: ids of the documents, in prompt order
    doc_ids: tuple[str, ...] = ()
    #: position of each document in the caller's candidate list (windows keep the global index)
    doc_indices: tuple[int, ...] = ()
    #: the document content actually rendered (title + text after normalisation and truncation)
    doc_texts: tuple[str, ...] = ()
    #: how many documents were cut (per-document budget or total budget)
    truncated_docs: int = 0
    query: str = ""
    calibration_query: str = DEFAULT_CALIBRATION_QUERY
    #: the full rendered strings; tokenizing them with ``add_special_tokens`` gives
    #: ``prefix_ids + query_suffix_ids`` (resp. ``+ calib_suffix_ids``)
    rendered_query: str = field(default="", repr=False)
    rendered_calib: str = field(default="", repr=False)
    add_special_tokens: bool = False
    chat_template: bool = False
    max_context: int | None = None

    def __post_init__(self) -> None:
        n = len(self.prefix_ids)
        prev_end = 0
        for i, (start, end) in enumerate(self.doc_spans):
            if not (prev_end <= start < end <= n):
                raise PromptBuildError(f"document span {i} {(start, end)} is empty, overlapping or out of the prefix (len {n})")
            prev_end = end
        for name, (start, end), ids in (
            ("query_span", self.query_span, self.query_suffix_ids),
            ("calib_span", self.calib_span, self.calib_suffix_ids),
        ):
            if not (0 <= start < end <= len(ids)):
                raise PromptBuildError(f"{name} {(start, end)} is empty or out of its suffix (len {len(ids)})")
        if self.doc_ids and len(self.doc_ids) != len(self.doc_spans):
            raise PromptBuildError("doc_ids and doc_spans differ in length")

    @property
    def n_docs(self) -> int:
        return len(self.doc_spans)

    @property
    def prefix_len(self) -> int:
        return len(self.prefix_ids)

    @property
    def query_total_len(self) -> int:
        """Tokens in the full query prompt (prefix + query suffix)."""
        return len(self.prefix_ids) + len(self.query_suffix_ids)

    @property
    def calib_total_len(self) -> int:
        """Tokens in the full calibration prompt (prefix + calibration suffix)."""
        return len(self.prefix_ids) + len(self.calib_suffix_ids)

    @property
    def total_len(self) -> int:
        """The longer of the two full prompts: what must fit the model's context."""
        return max(self.query_total_len, self.calib_total_len)

    @property
    def query_ids(self) -> list[int]:
        return self.prefix_ids + self.query_suffix_ids

    @property
    def calib_ids(self) -> list[int]:
        return self.prefix_ids + self.calib_suffix_ids


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendered:
    text: str
    doc_chars: list[tuple[int, int]]
    query_chars: tuple[int, int]


def _render(tokenizer: Any, query: str, contents: Sequence[str], fmt: Format) -> _Rendered:
    """Render the prompt string and record the character range of each document and of the query."""
    parts: list[str] = []
    pos = 0
    doc_chars: list[tuple[int, int]] = []

    def add(piece: str) -> None:
        nonlocal pos
        parts.append(piece)
        pos += len(piece)

    if fmt.instruction:
        add(fmt.instruction + BLOCK_SEP)
    for k, content in enumerate(contents, start=1):
        if k > 1:
            add(BLOCK_SEP)
        add(f"[{k}] ")
        doc_chars.append((pos, pos + len(content)))
        add(content)
    add(BLOCK_SEP)
    if fmt.query_instruction:
        add(fmt.query_instruction + BLOCK_SEP)
    # The space before the query keeps the prefix/suffix boundary on a word boundary.
    add(f"{fmt.query_label} " if fmt.query_label else "")
    query_chars = (pos, pos + len(query))
    add(query)
    content = "".join(parts)

    if not fmt.chat_template:
        return _Rendered(content, doc_chars, query_chars)

    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    if not isinstance(rendered, str):
        raise PromptBuildError(f"apply_chat_template(tokenize=False) returned {type(rendered)!r}, expected str")
    base = rendered.find(content)
    if base < 0:
        raise PromptBuildError(
            "the chat template altered the user message (cannot locate it in the rendered prompt); "
            "pass chat_template=False"
        )
    if rendered.find(content, base + 1) >= 0:
        raise PromptBuildError("the user message occurs twice in the rendered chat prompt")
    shift = lambda span: (span[0] + base, span[1] + base)  # noqa: E731
    return _Rendered(rendered, [shift(s) for s in doc_chars], shift(query_chars))


def _assemble(
    tokenizer: Any,
    query: str,
    docs: Sequence[Document],
    contents: Sequence[str],
    indices: Sequence[int],
    truncated: int,
    fmt: Format,
    max_context: int | None,
) -> ICRPrompt:
    """Render + tokenize the query and calibration prompts and cut them into prefix and suffixes."""
    add_special = not fmt.chat_template  # a chat template already writes BOS etc. itself
    rq = _render(tokenizer, query, contents, fmt)
    rc = _render(tokenizer, fmt.calibration_query, contents, fmt)
    q_ids, q_off = encode(tokenizer, rq.text, add_special)
    c_ids, c_off = encode(tokenizer, rc.text, add_special)

    q_first, q_end = overlapping_tokens(q_off, *rq.query_chars)
    c_first, c_end = overlapping_tokens(c_off, *rc.query_chars)
    if q_first < 0 or c_first < 0:
        raise PromptBuildError("no token covers the query text (empty query after normalisation?)")

    common = 0
    limit = min(q_first, c_first)
    while common < limit and q_ids[common] == c_ids[common]:
        common += 1
    cut = common
    if cut < q_first or cut < c_first:
        logger.debug(
            "prefix/suffix boundary moved back from token %d to %d: the tokenizer merges text before the query",
            q_first,
            cut,
        )

    doc_spans: list[tuple[int, int]] = []
    start_token = 0
    for i, (a, b) in enumerate(rq.doc_chars):
        span = overlapping_tokens(q_off, a, b, start_token)
        if span[0] < 0:
            raise PromptBuildError(f"document {i} ({docs[i].docid!r}) maps to no token")
        doc_spans.append(span)
        start_token = span[1]
    if doc_spans and doc_spans[-1][1] > cut:
        raise PromptBuildError(
            f"query and calibration prompts tokenize differently before the query (common prefix {cut} tokens, "
            f"documents end at token {doc_spans[-1][1]}): the tokenizer merges across the documents/query boundary"
        )
    # Both tokenizations agree on every token before ``cut``, so the document spans hold for both.
    prefix = q_ids[:cut]
    return ICRPrompt(
        prefix_ids=prefix,
        doc_spans=doc_spans,
        query_suffix_ids=q_ids[cut:],
        query_span=(q_first - cut, q_end - cut),
        calib_suffix_ids=c_ids[cut:],
        calib_span=(c_first - cut, c_end - cut),
        doc_ids=tuple(d.docid for d in docs),
        doc_indices=tuple(indices),
        doc_texts=tuple(contents),
        truncated_docs=truncated,
        query=query,
        calibration_query=fmt.calibration_query,
        rendered_query=rq.text,
        rendered_calib=rc.text,
        add_special_tokens=add_special,
        chat_template=fmt.chat_template,
        max_context=max_context,
    )


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def infer_max_context(tokenizer: Any, model_or_config: Any = None) -> int | None:
    """The model's context length, if known: ``config.max_position_embeddings``, else a real
    ``tokenizer.model_max_length`` (HF uses a huge sentinel when unknown), else ``None``.

    GGUF-loaded tokenizers (SmolLM2 here) report the sentinel, so pass the model or its config.
    """
    if model_or_config is not None:
        config = getattr(model_or_config, "config", model_or_config)
        for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < UNKNOWN_CONTEXT:
        return value
    return None


class PromptBuilder:
    """Shared state for building one or more prompts over the same query and candidate list.

    Normalises the documents and applies the per-document budget once, so windows planning and
    window building do not redo that work.
    """

    def __init__(
        self,
        tokenizer: Any,
        query: str,
        docs: Iterable[DocLike],
        *,
        doc_max_tokens: int | None,
        max_context: int | None,
        fmt: Format,
    ) -> None:
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.max_context = max_context
        if max_context is not None and max_context < 1:
            raise ValueError(f"max_context must be positive, got {max_context}")
        pattern = special_pattern(special_strings(tokenizer))
        self.query = defuse_specials(" ".join(str(query).split()), pattern)
        if not self.query:
            raise ValueError("query is empty")
        self.docs = [as_document(d, i) for i, d in enumerate(docs)]
        self.full: list[str] = [content_of(d, fmt, pattern) for d in self.docs]
        self.contents: list[str] = []
        self.cut: list[bool] = []
        for content in self.full:
            if doc_max_tokens is not None:
                content, was_cut = truncate_to_tokens(tokenizer, content, doc_max_tokens)
            else:
                was_cut = False
            self.contents.append(content)
            self.cut.append(was_cut)
        if any(self.cut):
            logger.debug("%d of %d documents cut to %s tokens", sum(self.cut), len(self.cut), doc_max_tokens)

    def build(self, indices: Sequence[int], cap: int | None = None) -> ICRPrompt:
        """Prompt for the documents at ``indices``, each further cut to ``cap`` tokens if given."""
        contents: list[str] = []
        truncated = 0
        for i in indices:
            content, was_cut = self.contents[i], self.cut[i]
            if cap is not None:
                content, cut_now = truncate_to_tokens(self.tokenizer, content, cap)
                was_cut = was_cut or cut_now
            contents.append(content)
            truncated += was_cut
        return _assemble(
            self.tokenizer,
            self.query,
            [self.docs[i] for i in indices],
            contents,
            indices,
            truncated,
            self.fmt,
            self.max_context,
        )

    def fits(self, prompt: ICRPrompt) -> bool:
        return self.max_context is None or prompt.total_len <= self.max_context

    def too_long(self, prompt: ICRPrompt, what: str) -> PromptTooLongError:
        query_tokens = prompt.query_span[1] - prompt.query_span[0]
        return PromptTooLongError(
            f"{what}: the prompt needs {prompt.total_len} tokens but max_context is {self.max_context} "
            f"(query {query_tokens} tokens, query suffix {len(prompt.query_suffix_ids)}, "
            f"prefix {prompt.prefix_len} with {prompt.n_docs} document(s) of at most "
            f"{max((e - s for s, e in prompt.doc_spans), default=0)} tokens)"
        )

    def build_fitting(self, indices: Sequence[int], on_overflow: str) -> ICRPrompt:
        """Build, and if over ``max_context`` shrink every document to a common cap that fits.

        The cap is the largest one that fits (binary search on exact builds), so documents shorter
        than the cap are untouched and longer ones lose their tails equally.
        """
        prompt = self.build(indices)
        if self.fits(prompt):
            return prompt
        if on_overflow == "raise":
            raise self.too_long(prompt, f"{len(indices)} documents do not fit")
        minimal = self.build(indices, cap=1)
        if not self.fits(minimal):
            if len(indices) == 1:
                raise self.too_long(minimal, "the query is too long for the context even with one 1-token document")
            raise self.too_long(
                minimal, f"{len(indices)} documents cannot fit even at 1 token each; split them with plan_windows()"
            )
        lo = 1
        hi = max(count_tokens(self.tokenizer, " " + self.contents[i]) for i in indices)
        best = minimal
        while lo < hi:
            mid = (lo + hi + 1) // 2
            candidate = self.build(indices, cap=mid)
            if self.fits(candidate):
                lo, best = mid, candidate
            else:
                hi = mid - 1
        logger.warning(
            "prompt over max_context=%s: documents cut to %d tokens (%d of %d truncated, %d tokens)",
            self.max_context,
            lo,
            best.truncated_docs,
            best.n_docs,
            best.total_len,
        )
        return best


def resolve_context(tokenizer: Any, max_context: int | None) -> int | None:
    return max_context if max_context is not None else infer_max_context(tokenizer)


def build_prompt(
    tokenizer: Any,
    query: str,
    docs: Sequence[DocLike],
    *,
    doc_max_tokens: int | None = DEFAULT_DOC_MAX_TOKENS,
    max_context: int | None = None,
    chat_template: bool = True,
    instruction: str = DEFAULT_INSTRUCTION,
    query_instruction: str = DEFAULT_QUERY_INSTRUCTION,
    query_label: str = DEFAULT_QUERY_LABEL,
    calibration_query: str = DEFAULT_CALIBRATION_QUERY,
    title_separator: str = DEFAULT_TITLE_SEPARATOR,
    normalize_whitespace: bool = True,
    on_overflow: Literal["truncate", "raise"] = "truncate",
) -> ICRPrompt:
    """Build the ICR prompt for ``query`` over all of ``docs`` (in the given order).

    Args:
        tokenizer: a *fast* Hugging Face tokenizer (offset mapping is needed).
        query: the query text (whitespace is collapsed).
        docs: candidates as :class:`Document`, ``(docid, text)`` pairs or objects with ``.text``
            (optional ``.title``/``.docid``).
        doc_max_tokens: per-document budget; longer documents are cut at a token boundary and
            counted in ``truncated_docs``. ``None`` disables it.
        max_context: total token budget for the longer of the query/calibration prompts; ``None``
            uses :func:`infer_max_context` (often unknown for GGUF tokenizers: pass it explicitly).
        chat_template: wrap the prompt as a user turn of the tokenizer's chat template (with the
            generation prompt), when it has one; plain text otherwise.
        instruction / query_instruction / query_label: the wording around documents and query.
        calibration_query: the content-free query for calibration (ICR uses ``"N/A"``).
        title_separator: between a document's title and its text.
        normalize_whitespace: collapse whitespace runs (newlines included) in documents and title.
        on_overflow: when the documents do not fit ``max_context``: ``"truncate"`` cuts all of them
            to the largest common token cap that fits (counted in ``truncated_docs``); ``"raise"``
            raises :class:`PromptTooLongError`. For long lists use :func:`build_windows` instead.

    Raises:
        PromptTooLongError: the query does not fit even with 1-token documents.
        PromptBuildError: spans cannot be located consistently.
    """
    if not docs:
        raise ValueError("docs is empty: ICR needs at least one document")
    fmt = make_format(
        tokenizer,
        chat_template=chat_template,
        instruction=instruction,
        query_instruction=query_instruction,
        query_label=query_label,
        calibration_query=calibration_query,
        title_separator=title_separator,
        normalize_whitespace=normalize_whitespace,
    )
    builder = PromptBuilder(
        tokenizer, query, docs, doc_max_tokens=doc_max_tokens, max_context=resolve_context(tokenizer, max_context), fmt=fmt
    )
    return builder.build_fitting(list(range(len(builder.docs))), on_overflow)
