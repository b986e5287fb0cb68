"""The text of an ICR prompt (:mod:`.prompt`): what a document may be, the prompt's wording and
its options, and the tokenizer-level helpers (special-token defusing, whitespace cleaning, cutting a
passage at a token boundary, mapping character ranges to tokens)."""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

from ..data.corpus import Document
from ..errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Here are some passages:"
DEFAULT_QUERY_INSTRUCTION = "Find the information relevant to the following query in the passages above."
DEFAULT_QUERY_LABEL = "Query:"
DEFAULT_CALIBRATION_QUERY = "N/A"
DEFAULT_TITLE_SEPARATOR = "\n"
#: Per-document token budget. DL19/MS MARCO passages are ~60-100 words (~80-150 tokens); 256 keeps
#: nearly all of them whole while stopping a rare very long document from eating the context.
DEFAULT_DOC_MAX_TOKENS = 256
#: ``model_max_length`` values at or above this are HF's "unknown" sentinel, not a real context size.
UNKNOWN_CONTEXT = 1_000_000
#: Separator between blocks of the user message (instruction, documents, query instruction, query).
BLOCK_SEP = "\n\n"


class PromptBuildError(UserError, ValueError):
    """The prompt cannot be built consistently (e.g. the tokenizer merges the query into the prefix)."""


class PromptTooLongError(PromptBuildError):
    """The prompt cannot fit ``max_context`` even with every document cut to a single token."""


# --------------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class _HasText(Protocol):
    text: str


#: What :func:`build_prompt` accepts per document: a :class:`Document`, a ``(docid, text)`` pair,
#: or any object with a ``.text`` attribute (and optionally ``.title`` and ``.docid``), such as a
#: Pyserini hit wrapper.
DocLike = Union[Document, tuple[str, str], _HasText]


def as_document(doc: Any, index: int = 0) -> Document:
    """Normalise one :data:`DocLike` into a :class:`Document` (``index`` names it if it has no id)."""
    if isinstance(doc, Document):
        return doc
    if isinstance(doc, tuple):
        if len(doc) != 2:
            raise TypeError(f"document {index}: expected a (docid, text) pair, got a {len(doc)}-tuple")
        docid, text = doc
        return Document(str(docid), _require_str(text, index))
    if hasattr(doc, "text"):
        title = getattr(doc, "title", "") or ""
        docid = getattr(doc, "docid", None)
        if docid is None:
            docid = getattr(doc, "id", None)
        return Document(str(docid) if docid is not None else str(index), _require_str(doc.text, index), str(title))
    raise TypeError(f"document {index}: expected Document, (docid, text) or an object with .text, got {type(doc)!r}")


def _require_str(text: Any, index: int) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise TypeError(f"document {index}: text must be str, got {type(text)!r}")
    return text


# --------------------------------------------------------------------------------------------------
# Formatting options
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    instruction: str
    query_instruction: str
    query_label: str
    calibration_query: str
    title_separator: str
    normalize_whitespace: bool
    chat_template: bool


def make_format(
    tokenizer: Any,
    *,
    chat_template: bool,
    instruction: str,
    query_instruction: str,
    query_label: str,
    calibration_query: str,
    title_separator: str,
    normalize_whitespace: bool,
) -> Format:
    use_template = bool(chat_template) and bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not use_template:
        logger.debug("tokenizer has no chat template; rendering a plain-text prompt")
    if not getattr(tokenizer, "is_fast", False):
        raise PromptBuildError("a fast tokenizer (with offset mapping) is required to locate spans")
    calib = calibration_query.strip()
    if not calib:
        raise ValueError("calibration_query must not be empty")
    return Format(
        instruction=instruction.strip(),
        query_instruction=query_instruction.strip(),
        query_label=query_label.strip(),
        calibration_query=calib,
        title_separator=title_separator,
        normalize_whitespace=normalize_whitespace,
        chat_template=use_template,
    )


def clean_text(text: str, fmt: Format) -> str:
    return " ".join(text.split()) if fmt.normalize_whitespace else text.strip()


@functools.lru_cache(maxsize=16)
def special_pattern(specials: tuple[str, ...]) -> re.Pattern[str] | None:
    if not specials:
        return None
    return re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """Strings the tokenizer would parse as control tokens if they appeared in raw text."""
    found: set[str] = set(getattr(tokenizer, "all_special_tokens", None) or ())
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for added in decoder.values():
        if getattr(added, "special", False):
            found.add(str(added))
    return tuple(sorted(s for s in found if len(s) >= 2))


def defuse_specials(text: str, pattern: re.Pattern[str] | None) -> str:
    """Break up special-token strings (``<|im_end|>`` -> ``< |im_end|>``) so they stay plain text."""
    if pattern is None or not text:
        return text
    return pattern.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)


def content_of(doc: Document, fmt: Format, pattern: re.Pattern[str] | None) -> str:
    """The document's rendered content: ``title<sep>text``, or just the text when there is no title."""
    title = defuse_specials(clean_text(doc.title, fmt), pattern)
    text = defuse_specials(clean_text(doc.text, fmt), pattern)
    if title and text:
        return f"{title}{fmt.title_separator}{text}"
    content = title or text
    if not content:
        # An empty candidate must still occupy a non-empty span so the scorer can score it.
        content = "(empty)"
    return content


# --------------------------------------------------------------------------------------------------
# Token-level helpers
# --------------------------------------------------------------------------------------------------


def encode(tokenizer: Any, text: str, add_special_tokens: bool) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def truncate_to_tokens(tokenizer: Any, content: str, max_tokens: int) -> tuple[str, bool]:
    """Cut ``content`` to at most ``max_tokens`` tokens, at a token boundary.

    The content is tokenized with the leading space it has in the prompt (after ``[i]``), so the
    count matches the in-context tokenization for byte-level BPE. The cut is made at the character
    where token ``max_tokens`` starts, which also drops a character whose bytes straddle the cut.
    """
    if max_tokens < 1:
        raise ValueError(f"doc_max_tokens must be >= 1, got {max_tokens}")
    ids, offsets = encode(tokenizer, " " + content, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return content, False
    cut = offsets[max_tokens][0] - 1  # -1: undo the leading space
    cut_text = content[: max(cut, 0)].rstrip()
    if not cut_text:
        # Degenerate: the first token(s) share a multi-byte character; keep that first character.
        first_end = max(offsets[0][1] - 1, 1)
        cut_text = content[:first_end].rstrip() or content[:1]
    return cut_text, True


def overlapping_tokens(offsets: list[tuple[int, int]], start_char: int, end_char: int, from_token: int = 0) -> tuple[int, int]:
    """``[first, last+1)`` of the tokens whose characters overlap ``[start_char, end_char)``.

    Zero-width tokens (special tokens added by the tokenizer) never overlap. Returns ``(-1, -1)``
    when no token overlaps.
    """
    first = last = -1
    for t in range(from_token, len(offsets)):
        s, e = offsets[t]
        if e <= s:
            continue
        if s >= end_char:
            break
        if e > start_char:
            if first < 0:
                first = t
            last = t
    return (first, last + 1) if first >= 0 else (-1, -1)
