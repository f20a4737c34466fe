"""The record schema shared by data_gen (writes it), prepare (reads it) and eval (decontamination).

Three input kinds, all local parquet/jsonl files or globs (a name that is not a local path and looks like
``org/name`` is passed to ``datasets.load_dataset(..., streaming=True)`` for users with network):

* the released FineInstructions layout: ``warc_record_id``, ``text`` and ``token_count`` only on each
  document's first row, ``template_id``, ``instantiated_instruction``, ``answer``,
  ``synthetic_token_count``; judge scores optionally in a column or in row-aligned side files;
* generic pair files: the same, with configurable column names (data_gen writes the released layout plus
  :data:`EXTRA_COLUMNS`);
* raw documents: one text column, for standard pre-training.

Bad rows never raise: they are counted by reason in a :class:`~fitrain.core.accounting.Rejects` (a field
that is not a string where text is expected, a non-numeric score, a missing id); a file with no rows is
counted as ``empty_file`` with its name. Bad *files* (missing, corrupt, a ``.jsonl.gz`` cut short, missing
columns, a row without the configured id column) raise :class:`~fitrain.core.errors.FitrainError` naming the
file and row. A file matched by two patterns is read once; repeated rows are counted
(:class:`DuplicateCounter`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from fitrain.core.accounting import Rejects
from fitrain.core.checks import check_fields, finite, one_of
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path
from fitrain.data.readers import check_columns, expand_paths, iter_rows

__all__ = ["Document", "Pair", "DocumentPairs", "PairColumns", "InputConfig", "expand_paths", "iter_rows",
           "iter_document_pairs", "iter_documents", "DuplicateCounter", "pair_rows", "write_pairs_parquet"]

RELEASED_COLUMNS = ("warc_record_id", "text", "template_id", "instantiated_instruction", "answer",
                    "token_count", "synthetic_token_count")
EXTRA_COLUMNS = ("judge_score", "excerpt_fraction", "chunk_index", "slot_count")


@dataclass
class Document:
    doc_id: str
    text: str | None
    token_count: int | None = None


@dataclass
class Pair:
    doc_id: str
    instruction: str
    answer: str
    template_id: str | None = None
    judge_score: float | None = None
    excerpt_fraction: float | None = None
    chunk_index: int | None = None
    slot_count: int | None = None
    synthetic_token_count: int | None = None


@dataclass
class DocumentPairs:
    """One source document and the pairs generated from it (the unit of the token-for-token budget)."""

    document: Document
    pairs: list[Pair] = field(default_factory=list)


@dataclass
class PairColumns:
    """Column names of a pair file. Defaults are the released FineInstructions layout."""

    doc_id: str = "warc_record_id"
    text: str = "text"
    token_count: str = "token_count"
    template_id: str = "template_id"
    instruction: str = "instantiated_instruction"
    answer: str = "answer"
    synthetic_token_count: str = "synthetic_token_count"
    judge_score: str = "judge_score"


@dataclass
class InputConfig:
    """What to read. ``kind`` is ``pairs`` (FineInstructions/generic pairs) or ``documents`` (raw text)."""

    paths: list[str] = field(default_factory=list)
    kind: str = "pairs"
    columns: PairColumns = field(default_factory=PairColumns)
    text_column: str = "text"          # documents: the text column
    id_column: str = ""                # documents: an id column ('' = file:row)
    judge_score_paths: list[str] = field(default_factory=list)  # row-aligned side files, one per path
    min_judge_score: float | None = None  # keep pairs scoring >= this (the paper keeps >= 4)
    hub_split: str = "train"
    dedupe_files: bool = True          # a file matched by several patterns is read once (false: upsample)

    def __post_init__(self) -> None:
        check_fields(self, kind=one_of("pairs", "documents"), min_judge_score=finite)


class BadValue(ValueError):
    """A field of a row that does not hold what the schema needs; ``reason`` is its reject reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason, self.detail = reason, detail


def _text(v: Any, field: str = "text") -> str | None:
    """A text field: a string (bytes are decoded as UTF-8), or None when empty. Anything else -- a list, a
    number, a mapping -- is rejected as ``non_string_<field>`` rather than trained as its Python repr."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadValue("invalid_utf8", str(e)) from None
    if not isinstance(v, str):
        raise BadValue(f"non_string_{field}", f"{field} is a {type(v).__name__}: {str(v)[:60]}")
    bad = lone_surrogate(v)
    if bad is not None:
        raise BadValue("lone_surrogate", f"{field} holds a lone UTF-16 surrogate {bad} (not text; e.g. a JSON "
                       "\\ud83d without its pair)")
    return v


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate code point of ``text`` as ``U+D83D`` (a JSON ``\\ud83d`` without its pair,
    or a ``surrogateescape``d byte), or None. Such a string cannot be encoded as UTF-8: tokenizers, parquet
    and model servers refuse it, so a row holding one is rejected (counted), not passed on."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return f"U+{ord(text[e.start]):04X}"


def utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (a file name that is not UTF-8, read with
    ``surrogateescape``: ``docs\\xff.jsonl``), so that it can be stored as a string (parquet, UTF-8 JSON)."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
        if all(not 0xD800 <= ord(c) < 0xDC80 for c in text) else text.encode("utf-8", "backslashreplace").decode()


def _doc_id(v: Any) -> str | None:
    """A document id: a string or an integer (ids are often numbers); anything else is rejected."""
    if isinstance(v, bool) or isinstance(v, float) and not math.isnan(v) and v != int(v):
        raise BadValue("bad_doc_id", f"id is a {type(v).__name__}: {v}")
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return str(int(v))
    return _text(v, "doc_id")


def _num(v: Any, field: str = "") -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BadValue(f"non_numeric_{field}", f"{field} is a {type(v).__name__}: {str(v)[:60]}")
    try:
        return float(v)
    except ValueError:
        raise BadValue(f"non_numeric_{field}", f"{field} is {v!r}") from None


def _int(v: Any, field: str = "") -> int | None:
    n = _num(v, field)
    return None if n is None else int(n)


class DuplicateCounter:
    """Counts repeated rows by an 8-byte hash of their content (8 bytes per row; the count is taken once
    at the end with a sort, so a huge input needs no set in memory). Duplicates are counted, not removed:
    a repeated pair is reported in the manifest and the user decides."""

    CHUNK = 1 << 20

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._chunks: list = []
        self._buf = np.empty(self.CHUNK, dtype=np.uint64)
        self._n = 0

    def add(self, *parts: str) -> None:
        import hashlib

        h = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
        self._buf[self._n] = int.from_bytes(h, "little")
        self._n += 1
        if self._n == self.CHUNK:
            self._chunks.append(self._buf)
            self._buf = self._np.empty(self.CHUNK, dtype=self._np.uint64)
            self._n = 0

    @property
    def rows(self) -> int:
        return len(self._chunks) * self.CHUNK + self._n

    def duplicates(self) -> int:
        """Rows whose content appeared earlier in the input."""
        np = self._np
        allh = np.concatenate(self._chunks + [self._buf[: self._n]])
        return int(len(allh) - len(np.unique(allh))) if len(allh) else 0


# ---------------------------------------------------------------------------------------------- pairs
def iter_document_pairs(cfg: InputConfig, rejects: Rejects, filtered: Rejects | None = None
                        ) -> Iterator[DocumentPairs]:
    """Group consecutive rows by document id; pairs failing validation are counted in ``rejects``,
    pairs under ``min_judge_score`` in ``filtered`` (a filter, not a defect)."""
    filtered = filtered if filtered is not None else rejects
    c = cfg.columns
    files = expand_paths(cfg.paths, cfg.dedupe_files)
    scores_files = expand_paths(cfg.judge_score_paths, cfg.dedupe_files) if cfg.judge_score_paths else []
    if scores_files and len(scores_files) != len(files):
        raise FitrainError(f"judge_score_paths: {len(scores_files)} files for {len(files)} pair files; "
                           "they must be row-aligned one to one")
    # a document's rows may straddle two files (hub files are split by row count): the group carries over
    current: DocumentPairs | None = None
    for i, path in enumerate(files):
        score_iter = _iter_scores(scores_files[i]) if scores_files else None
        checked = False
        for where, rec in iter_rows(path, None, rejects, cfg.hub_split):
            score = next(score_iter, _END) if score_iter is not None else None
            if score is _END:
                raise FitrainError(f"{scores_files[i]} has fewer rows than {path}; they must be row-aligned")
            if not checked:
                check_columns(path, rec, [c.doc_id, c.instruction, c.answer])
                checked = True
            try:
                doc_id = _doc_id(rec.get(c.doc_id))
                if doc_id is None:
                    rejects.add("missing_doc_id", where)
                    continue
                if current is None or current.document.doc_id != doc_id:
                    if current is not None:
                        yield current
                    current = DocumentPairs(Document(doc_id, None))
                    text = _text(rec.get(c.text), "text")
                    current.document = Document(doc_id, text or None, _int(rec.get(c.token_count), c.token_count))
                pair = _pair(cfg, rec, doc_id, score)
            except BadValue as e:
                rejects.add(e.reason, where, e.detail)
                continue
            if isinstance(pair, tuple):
                reason, detail = pair
                (filtered if reason == "below_min_judge_score" else rejects).add(reason, where, detail)
                continue
            current.pairs.append(pair)
        if score_iter is not None and next(score_iter, _END) is not _END:
            raise FitrainError(f"{scores_files[i]} has more rows than {path}; they must be row-aligned")
    if current is not None:
        yield current


def _pair(cfg: InputConfig, rec: dict, doc_id: str, score: Any) -> Pair | tuple[str, str]:
    """One row's pair, or (reason, detail) when it is left out (``empty_instruction``,
    ``below_min_judge_score``...); a malformed field raises :class:`BadValue`."""
    c = cfg.columns
    instruction, answer = _text(rec.get(c.instruction), "instruction"), _text(rec.get(c.answer), "answer")
    if not instruction or not instruction.strip():
        return "empty_instruction", ""
    if not answer or not answer.strip():
        return "empty_answer", ""
    score = _num(rec.get(c.judge_score) if score is None else score, "judge_score")
    if cfg.min_judge_score is not None:
        if score is None:
            return "missing_judge_score", ""
        if score < cfg.min_judge_score:
            return "below_min_judge_score", f"score {score}"
    tid = rec.get(c.template_id)
    return Pair(doc_id=doc_id, instruction=instruction, answer=answer,
                template_id=None if tid is None else str(tid), judge_score=score,
                excerpt_fraction=_num(rec.get("excerpt_fraction"), "excerpt_fraction"),
                chunk_index=_int(rec.get("chunk_index"), "chunk_index"),
                slot_count=_int(rec.get("slot_count"), "slot_count"),
                synthetic_token_count=_int(rec.get(c.synthetic_token_count), c.synthetic_token_count))


_END = object()


def _iter_scores(path: str) -> Iterator[Any]:
    """Row-aligned judge scores: one value per row, in a column named ``score``/``judge_score`` (or the
    only column); values are checked where they are used."""
    for where, rec in iter_rows(path):
        key = next((k for k in ("judge_score", "score") if k in rec), None)
        if key is None and len(rec) == 1:
            key = next(iter(rec))
        if key is None:
            raise FitrainError(f"{where}: judge score file needs a 'score' or 'judge_score' column, has {sorted(rec)}")
        yield rec[key]


# ------------------------------------------------------------------------------------------ documents
def iter_documents(cfg: InputConfig, rejects: Rejects) -> Iterator[Document]:
    needed = [cfg.text_column] + ([cfg.id_column] if cfg.id_column else [])
    for path in expand_paths(cfg.paths, cfg.dedupe_files):
        checked = False
        for where, rec in iter_rows(path, needed, rejects, cfg.hub_split):  # parquet: only these columns are read
            if not checked:
                check_columns(path, rec, needed)
                checked = True
            if cfg.id_column and cfg.id_column not in rec:
                raise FitrainError(f"{where}: the row has no '{cfg.id_column}' field (input.id_column); give every "
                                   "row an id, or set input.id_column='' to use file:line ids")
            try:
                text = _text(rec.get(cfg.text_column), "text")
                doc_id = _doc_id(rec[cfg.id_column]) if cfg.id_column else utf8_safe(where)
            except BadValue as e:
                rejects.add(e.reason, where, e.detail)
                continue
            if not text or not text.strip():
                rejects.add("empty_document", where)
                continue
            if doc_id is None:
                rejects.add("missing_doc_id", where)
                continue
            yield Document(doc_id, text)


# ---------------------------------------------------------------------------------------------- write
def pair_rows(groups: Iterable[DocumentPairs], extra: bool = True) -> Iterator[dict]:
    """Rows in the released layout (text/token_count on each document's first row only)."""
    for g in groups:
        for j, p in enumerate(g.pairs):
            row = {
                "warc_record_id": g.document.doc_id,
                "text": g.document.text if j == 0 else None,
                "template_id": p.template_id,
                "instantiated_instruction": p.instruction,
                "answer": p.answer,
                "token_count": g.document.token_count if j == 0 else None,
                "synthetic_token_count": p.synthetic_token_count,
            }
            if extra:
                row.update(judge_score=p.judge_score, excerpt_fraction=p.excerpt_fraction,
                           chunk_index=p.chunk_index, slot_count=p.slot_count)
            yield row


def write_pairs_parquet(path: str | Path, groups: Iterable[DocumentPairs], extra: bool = True) -> int:
    """Write pair groups atomically in the released column layout (+ our columns); returns rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("warc_record_id", pa.string()), ("text", pa.string()), ("template_id", pa.string()),
                        ("instantiated_instruction", pa.string()), ("answer", pa.string()),
                        ("token_count", pa.int64()), ("synthetic_token_count", pa.int64())]
                       + ([("judge_score", pa.float64()), ("excerpt_fraction", pa.float64()),
                           ("chunk_index", pa.int64()), ("slot_count", pa.int64())] if extra else []))
    rows = list(pair_rows(groups, extra))
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    return len(rows)
