"""TREC formats: runs, qrels and topics, read with validation and written atomically.

Conventions (the same everywhere in this package):

Runs
    ``qid Q0 docid rank score tag``, whitespace separated. A :class:`Run` maps each qid to its hits
    **in ranking order**. Reading sorts each query's hits the way ``trec_eval`` does — by score,
    descending — and breaks score ties by the rank column of the file, then by docid, so a file
    written by Pyserini keeps its order. (``trec_eval`` itself breaks ties by docid, descending;
    :func:`count_ties` tells you when that matters.)
    A duplicate ``(qid, docid)`` keeps its first line and is counted (``trec_eval`` would keep the
    last); pass ``strict=True`` to make duplicates an error. Fields are split on ASCII whitespace,
    as ``trec_eval`` splits them. A score that is not a finite number in plain decimal notation
    (``nan``, ``inf``, ``1e999``, ``1_000``) or beyond the float32 range trec_eval reads scores in,
    a rank that is not an integer >= 0, and an id holding other whitespace are errors that name the
    file and line.
    Writing renumbers ranks 1..n in the given order and prints scores with ``repr`` precision (the
    shortest text that reads back as the same float), so the same run gives the same bytes; it
    refuses a non-finite score and an id that is empty or holds whitespace (:class:`RunWriteError`).

Qrels
    TREC (``qid iter docid rel``) or BEIR TSV (``query-id<TAB>corpus-id<TAB>score`` with a header),
    told apart by the header. Relevance must be an integer that fits trec_eval's C ``int``. A
    duplicate judgement keeps the last one, as ``trec_eval`` does, and is counted.

Topics
    TSV (``qid<TAB>text``), BEIR JSONL (``{"_id":..., "text":...}``) or a TREC topics file
    (``<top><num> Number: ...<title> ...``), told apart by content. Order is kept. A query id seen
    twice, or one with whitespace, is an error naming the line(s).

Every file is read as UTF-8 (:func:`iter_lines`, :func:`read_text`: other bytes are an error naming
the line); a UTF-8 byte-order mark at its start is dropped.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ..files import atomic_open
from ..errors import UserError
from .checks import FLOAT32_MAX, INT32_MAX, INT32_MIN, id_problem
from collections.abc import Sequence
import numpy as np

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
UTF8_BOM = b"\xef\xbb\xbf"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # what C's atof reads whole
_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")
RANK_MAX = 2**63 - 1


class TrecFormatError(UserError, ValueError):
    """A malformed line in a TREC-style file; the message names the file and the line number."""

    def __init__(self, path: PathLike, line_no: int, message: str, line: str | None = None):
        self.path = str(path)
        self.line_no = line_no
        text = f"{path}:{line_no}: {message}"
        if line is not None:
            text += f" (line: {line.rstrip()[:120]!r})"
        super().__init__(text)


class EmptyInputError(UserError, ValueError):
    """A run, qrels, topics or corpus file with nothing in it (an error, not an empty result)."""

    def __init__(self, path: PathLike, what: str):
        self.path = str(path)
        super().__init__(f"{path}: no {what} in the file (it is empty or has only blank or comment lines)")


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 file; bytes that are not UTF-8 are an error
    naming the file and line (a binary, compressed or differently encoded file). A UTF-8 byte-order
    mark at the start is dropped (so a first id never starts with ``\\ufeff``); a UTF-16 one is an error."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise TrecFormatError(path, 1, f"not UTF-8 text but UTF-16 (it starts with the byte-order mark "
                                                   f"0x{raw[0]:02x} 0x{raw[1]:02x}); save it as UTF-8")
                raw = raw.removeprefix(UTF8_BOM)
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TrecFormatError(
                    path, line_no, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "a binary or compressed file, or another encoding?") from None


def read_text(path: PathLike) -> str:
    """The whole of a UTF-8 text file, with the same error as :func:`iter_lines` for other bytes."""
    return "".join(line for _, line in iter_lines(path))


@dataclass(frozen=True)
class Hit:
    """One ranked document of one query."""

    docid: str
    score: float


@dataclass
class Run:
    """Ranked hits per query, in ranking order, plus what reading it noticed."""

    hits: dict[str, list[Hit]] = field(default_factory=dict)
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self):
        return iter(self.hits)

    def __getitem__(self, qid: str) -> list[Hit]:
        return self.hits[qid]

    def __contains__(self, qid: object) -> bool:
        return qid in self.hits

    def qids(self) -> list[str]:
        return list(self.hits)

    def top(self, k: int) -> "Run":
        """The first ``k`` hits of every query."""
        return Run({qid: hits[:k] for qid, hits in self.hits.items()})

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}``, the form ``pytrec_eval`` takes."""
        return {qid: {h.docid: h.score for h in hits} for qid, hits in self.hits.items()}

    def num_hits(self) -> int:
        return sum(len(h) for h in self.hits.values())


def _parse_float(text: str, path: PathLike, line_no: int, line: str, what: str) -> float:
    """A finite float: not a number, NaN and infinities (``inf``, ``1e999``) are errors naming the line."""
    try:
        value = float(text)
    except ValueError:
        raise TrecFormatError(path, line_no, f"{what} {text!r} is not a number", line) from None
    if math.isnan(value):
        raise TrecFormatError(path, line_no, f"{what} is NaN, not a finite number", line)
    if math.isinf(value):
        raise TrecFormatError(path, line_no, f"{what} is not finite ({text!r} reads as {value})", line)
    if not _DECIMAL.fullmatch(text):  # Python also reads '1_000' and non-ASCII digits; trec_eval does not
        raise TrecFormatError(path, line_no, f"{what} {text!r} is not a number in plain decimal notation", line)
    if abs(value) > FLOAT32_MAX:
        raise TrecFormatError(path, line_no, f"{what} {text} is beyond the float32 range (+-3.4e38) trec_eval reads "
                                             "scores in: it would read an infinity", line)
    return value


def _parse_int(text: str, path: PathLike, line_no: int, line: str, what: str, low: int, high: int) -> int:
    """An integer written in ASCII digits, in ``low``..``high`` (``1.0``, ``1e3`` and ``nan`` are
    errors naming the line, and so is a value out of the range)."""
    if not _INTEGER.fullmatch(text):
        raise TrecFormatError(path, line_no, f"{what} {text!r} is not an integer", line)
    value = int(text)
    if not low <= value <= high:
        raise TrecFormatError(path, line_no, f"{what} {text} is out of range ({low} to {high})", line)
    return value


def _fields(line: str) -> list[str]:
    """The fields of a run or qrels line, split on ASCII whitespace as trec_eval splits them (Python's
    ``str.split`` also splits on e.g. a no-break space, which trec_eval keeps inside a field)."""
    return line.split() if line.isascii() else _ASCII_SPACE.split(line.strip(" \t\n\r\f\v"))


def _check_ids(path: PathLike, line_no: int, line: str, **ids: str) -> None:
    """An id holding non-ASCII whitespace (a field of an ASCII-split line) cannot be written back."""
    if not line.isascii():
        for what, value in ids.items():
            problem = id_problem(value)
            if problem:
                raise TrecFormatError(path, line_no, f"{what.replace('_', ' ')} {value!r} {problem}", line)


def read_run(path: PathLike, *, strict: bool = False) -> Run:
    """Read a TREC run file (see the module docstring for ordering and duplicate rules)."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for line_no, line in iter_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = _fields(line)
        if len(parts) != 6:
            raise TrecFormatError(path, line_no, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}", line)
        qid, _, docid, rank_text, score_text, _ = parts
        _check_ids(path, line_no, line, query_id=qid, document_id=docid)
        rank = _parse_int(rank_text, path, line_no, line, "rank", 0, RANK_MAX)
        score = _parse_float(score_text, path, line_no, line, "score")
        if (qid, docid) in seen:
            if strict:
                raise TrecFormatError(path, line_no, f"duplicate document {docid!r} for query {qid!r}", line)
            duplicates += 1
            continue
        seen.add((qid, docid))
        rows.setdefault(qid, []).append((score, rank, docid))
    if not rows:
        raise EmptyInputError(path, "hits")
    if duplicates:
        logger.warning("%s: %d duplicate (qid, docid) lines ignored (first occurrence kept)", path, duplicates)
    hits = {
        qid: [Hit(docid, score) for score, _, docid in sorted(entries, key=lambda e: (-e[0], e[1], e[2]))]
        for qid, entries in rows.items()
    }
    return Run(hits, duplicates=duplicates)


def format_score(score: float) -> str:
    """Shortest text that reads back as the same float (deterministic, lossless)."""
    return repr(float(score))


class RunWriteError(UserError, ValueError):
    """A run that cannot be written as TREC lines: a non-finite score, an id with whitespace, a bad tag."""


def write_run(run: Run | Mapping[str, list[Hit]], path: PathLike, tag: str = "routehead") -> None:
    """Write ``run`` atomically, ranks 1..n in the order given, queries in insertion order.

    Refuses (before anything is written) a tag that is not one word, an empty id or one with
    whitespace, and a score that is not finite: trec_eval would read another run than the one meant.
    """
    hits_by_qid = run.hits if isinstance(run, Run) else run
    if not tag or any(ch.isspace() for ch in tag):
        raise RunWriteError(f"run tag must be one non-empty word, got {tag!r}")
    for qid, hits in hits_by_qid.items():
        _check_hits(qid, hits)
    with atomic_open(path) as handle:
        for qid, hits in hits_by_qid.items():
            for rank, hit in enumerate(hits, start=1):
                handle.write(f"{qid} Q0 {hit.docid} {rank} {format_score(hit.score)} {tag}\n")


def _check_hits(qid: str, hits: Sequence[Hit]) -> None:
    problem = id_problem(qid)
    if problem:
        raise RunWriteError(f"cannot write a run: query id {qid!r} {problem}")
    docids = [hit.docid for hit in hits]
    if " ".join(docids).split() != docids:  # one C-speed test; the loop below only finds the culprit
        for docid in docids:
            problem = id_problem(docid)
            if problem:
                raise RunWriteError(f"cannot write a run: query {qid}: document id {docid!r} {problem}")
    scores = np.asarray([hit.score for hit in hits], dtype=np.float64)
    if not np.isfinite(scores).all():
        bad = hits[int(np.flatnonzero(~np.isfinite(scores))[0])]
        raise RunWriteError(f"cannot write a run: query {qid}, document {bad.docid}: score {bad.score} is not finite")


def count_ties(run: Run) -> int:
    """Number of hits whose score equals the previous hit's score (where ``trec_eval`` may reorder)."""
    return sum(
        1 for hits in run.hits.values() for prev, cur in zip(hits, hits[1:]) if prev.score == cur.score
    )


# --------------------------------------------------------------------------------------------
# Qrels

Qrels = dict[str, dict[str, int]]


def read_qrels(path: PathLike) -> Qrels:
    """Read TREC or BEIR-TSV qrels into ``{qid: {docid: relevance}}``."""
    qrels: Qrels = {}
    duplicates = 0
    lines = [line for _, line in iter_lines(path)]
    beir = bool(lines) and lines[0].split("\t")[0].strip().lower() in {"query-id", "query_id", "qid"}
    for line_no, line in enumerate(lines, start=1):
        if not line.strip() or (beir and line_no == 1):
            continue
        if beir:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise TrecFormatError(path, line_no, f"expected 3 tab-separated fields 'query-id corpus-id score', got {len(parts)}", line)
            qid, docid, rel_text = (p.strip() for p in parts)
        else:
            parts = _fields(line)
            if len(parts) != 4:
                raise TrecFormatError(path, line_no, f"expected 4 fields 'qid iter docid relevance', got {len(parts)}", line)
            qid, _, docid, rel_text = parts
        rel = _parse_int(rel_text, path, line_no, line, "relevance", INT32_MIN, INT32_MAX)
        for what, value in (("query id", qid), ("document id", docid)):
            problem = id_problem(value)  # BEIR TSV fields may hold spaces; a run's never do
            if problem:
                raise TrecFormatError(path, line_no, f"{what} {value!r} {problem}", line)
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            duplicates += 1
        judged[docid] = rel
    if not qrels:
        raise EmptyInputError(path, "judgements")
    if duplicates:
        logger.warning("%s: %d duplicate judgements (last one kept, as trec_eval does)", path, duplicates)
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Write TREC qrels atomically."""
    with atomic_open(path) as handle:
        for qid, judged in qrels.items():
            for docid, rel in judged.items():
                handle.write(f"{qid} 0 {docid} {int(rel)}\n")


# --------------------------------------------------------------------------------------------
# Topics

Topics = dict[str, str]
_TREC_TOPIC = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_TREC_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)", re.I)
_TREC_TITLE = re.compile(r"<title>\s*(?:Topic:)?\s*(.*?)\s*(?=<desc>|<narr>|<num>|</top>|$)", re.S | re.I)


def read_topics(path: PathLike) -> Topics:
    """Read topics as ``{qid: text}`` from TSV, BEIR JSONL or a TREC topics file."""
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise EmptyInputError(path, "topics")
    if stripped.startswith("<top>") or "<top>" in stripped[:2000]:
        return _read_trec_topics(path, text)
    if stripped.startswith("{"):
        return _read_jsonl_topics(path)
    return _read_tsv_topics(path, text)


def _read_trec_topics(path: PathLike, text: str) -> Topics:
    topics: Topics = {}
    lines: dict[str, int] = {}
    for match in _TREC_TOPIC.finditer(text):
        block = match.group(1)
        line_no = text.count("\n", 0, match.start()) + 1
        num, title = _TREC_NUM.search(block), _TREC_TITLE.search(block)
        if not num or not title or not title.group(1).strip():
            raise TrecFormatError(path, line_no, "TREC topic without <num> or <title>")
        _add_topic(topics, lines, path, line_no, num.group(1), " ".join(title.group(1).split()))
    if not topics:
        raise TrecFormatError(path, 1, "no <top> blocks found")
    return topics


def _add_topic(topics: Topics, lines: dict[str, int], path: PathLike, line_no: int, qid: str, query: str,
               line: str | None = None) -> None:
    """Add one topic; an id that cannot be written on a run line, or one seen before, is an error."""
    problem = id_problem(qid)
    if problem:
        raise TrecFormatError(path, line_no, f"query id {qid!r} {problem}", line)
    if qid in lines:
        raise TrecFormatError(path, line_no, f"duplicate query id {qid!r} (first at line {lines[qid]})", line)
    lines[qid] = line_no
    topics[qid] = query


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict, str]]:
    """``(line number, object, line)`` for each non-blank line of a JSONL file; bad JSON names file and line."""
    for line_no, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrecFormatError(path, line_no, f"invalid JSON: {exc.msg}", line) from None
        if not isinstance(obj, dict):
            raise TrecFormatError(path, line_no, "expected a JSON object", line)
        yield line_no, obj, line


def _read_jsonl_topics(path: PathLike) -> Topics:
    topics: Topics = {}
    lines: dict[str, int] = {}
    for line_no, obj, line in iter_jsonl(path):
        qid = obj.get("_id", obj.get("qid", obj.get("id")))
        query = obj.get("text", obj.get("query", obj.get("title")))
        if qid is None or not isinstance(query, str):
            raise TrecFormatError(path, line_no, "a topic needs '_id' (or 'qid') and 'text' (or 'query')", line)
        if isinstance(qid, bool) or not isinstance(qid, (str, int)):
            raise TrecFormatError(path, line_no, f"query id {qid!r} is not a string or an integer", line)
        if not query.strip():
            raise TrecFormatError(path, line_no, f"query {qid} has empty text", line)
        _add_topic(topics, lines, path, line_no, str(qid), query, line)
    return topics


def _read_tsv_topics(path: PathLike, text: str) -> Topics:
    topics: Topics = {}
    lines: dict[str, int] = {}
    for line_no, line in enumerate(text.split("\n"), start=1):  # the line numbers of iter_lines
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("\t")
        if len(parts) < 2 or not parts[0].strip():
            raise TrecFormatError(path, line_no, "expected 'qid<TAB>query text'", line)
        query = "\t".join(parts[1:]).strip()
        if not query:
            raise TrecFormatError(path, line_no, f"query {parts[0].strip()} has empty text", line)
        _add_topic(topics, lines, path, line_no, parts[0].strip(), query, line)
    return topics


def write_topics(topics: Mapping[str, str], path: PathLike) -> None:
    """Write topics as TSV atomically (tabs and newlines inside a query become spaces)."""
    with atomic_open(path) as handle:
        for qid, query in topics.items():
            handle.write(f"{qid}\t{' '.join(query.split())}\n")


def scores_below(values: Sequence[float], n: int) -> list[float]:
    """Scores for ``n`` candidates kept unscored below scored ones, in their order: 1, 2, ... below
    the lowest of ``values`` (below 0 when there are none)."""
    floor = min(values, default=0.0)
    return [floor - 1.0 - i for i in range(n)]


def ranked_hits(docids: Sequence[str], values: Sequence[float], rest: Sequence[Hit] = ()) -> list[Hit]:
    """``docids`` sorted by ``values`` (ties: given order), then ``rest`` in its order with lower scores.

    Scores come out strictly decreasing **in float32**, the precision trec_eval (and pytrec_eval)
    reads scores with: scores that tie there are separated by one float32 ulp, because trec_eval
    would otherwise order tied documents by docid and evaluate another ranking than the one written.
    """
    order = sorted(range(len(docids)), key=lambda i: (-values[i], i))
    ranked = [docids[i] for i in order] + [h.docid for h in rest]
    raw = [float(values[i]) for i in order]
    raw += scores_below(raw, len(rest))
    scores = np.asarray(raw, dtype=np.float32)
    for i in range(1, len(scores)):
        if scores[i] >= scores[i - 1]:
            scores[i] = np.nextafter(scores[i - 1], np.float32(-np.inf))
    return [Hit(docid, float(score)) for docid, score in zip(ranked, scores)]
