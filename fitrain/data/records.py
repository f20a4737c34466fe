"""The record schema shared by data_gen (writes it), prepare (reads it) and eval (decontamination).

Three input kinds, all local parquet/jsonl files or globs (a name that is not a local path and looks like
``org/name`` is passed to ``datasets.load_dataset(..., streaming=True)`` for users with network):

* the released FineInstructions layout: ``warc_record_id``, ``text`` and ``token_count`` only on each
  document's first row, ``template_id``, ``instantiated_instruction``, ``answer``,
  ``synthetic_token_count``; judge scores optionally in a column or in row-aligned side files;
* generic pair files: the same, with configurable column names (data_gen writes the released layout plus
  :data:`EXTRA_COLUMNS`);
* raw documents: one text column, for standard pre-training.

Bad rows never raise: they are counted by reason in a :class:`~fitrain.core.accounting.Rejects`. Bad *files*
(missing, corrupt, missing columns, empty) raise :class:`~fitrain.core.errors.FitrainError` naming the file.
"""
from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path

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


# ---------------------------------------------------------------------------------------------- files
def expand_paths(patterns: Iterable[str]) -> list[str]:
    """Expand globs in order; a pattern matching nothing is an error unless it is a hub dataset name."""
    out: list[str] = []
    for pat in patterns:
        matches = sorted(glob.glob(str(Path(pat).expanduser()), recursive=True))
        if matches:
            out.extend(m for m in matches if Path(m).is_file())
        elif _looks_like_hub_name(pat):
            out.append(pat)
        else:
            raise FitrainError(f"input not found: '{pat}' matches no file")
    if not out:
        raise FitrainError(f"no input files in {list(patterns)}")
    return out


def _looks_like_hub_name(s: str) -> bool:
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and not Path(s).suffix


def iter_rows(path: str, columns: list[str] | None = None, rejects: Rejects | None = None,
              hub_split: str = "train") -> Iterator[tuple[str, dict]]:
    """Yield ``(location, row)`` from a parquet or jsonl file (or a hub dataset name)."""
    rejects = rejects if rejects is not None else Rejects()
    p = Path(path)
    if not p.exists():
        if _looks_like_hub_name(path):
            yield from _iter_hub(path, hub_split)
            return
        raise FitrainError(f"input not found: {path}")
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix == ".parquet":
        yield from _iter_parquet(p, columns)
    elif suffix == ".json" and _is_json_list(p):
        yield from _iter_json_list(p, rejects)
    elif suffix in (".jsonl", ".json", ".jsonl.gz"):
        yield from _iter_jsonl(p, rejects)
    else:
        raise FitrainError(f"{path}: unsupported file type '{suffix}' (use .parquet or .jsonl)")


def _iter_parquet(p: Path, columns: list[str] | None) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on corrupt files
        raise FitrainError(f"cannot read parquet file {p}: {e}") from None
    names = pf.schema_arrow.names
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise FitrainError(f"{p}: missing column(s) {missing}; the file has {names}")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=4096, columns=columns):
            for rec in batch.to_pylist():
                yield f"{p}:{row}", rec
                row += 1
    except FitrainError:
        raise
    except Exception as e:
        raise FitrainError(f"cannot read parquet file {p} at row {row}: {e}") from None


def _iter_jsonl(p: Path, rejects: Rejects) -> Iterator[tuple[str, dict]]:
    import gzip

    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{p}:{lineno}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                rejects.add("invalid_utf8", where, str(e))
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                rejects.add("malformed_json", where, str(e))
                continue
            if not isinstance(rec, dict):
                rejects.add("not_an_object", where, type(rec).__name__)
                continue
            yield where, rec


def _is_json_list(p: Path) -> bool:
    """A ``.json`` file holding one JSON list of objects (rather than JSON lines)."""
    with open(p, "rb") as f:
        head = f.read(4096).lstrip()
    return head.startswith(b"[")


def _iter_json_list(p: Path, rejects: Rejects) -> Iterator[tuple[str, dict]]:
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FitrainError(f"{p}: not a valid JSON list: {e}") from None
    for i, rec in enumerate(data if isinstance(data, list) else []):
        if isinstance(rec, dict):
            yield f"{p}:{i}", rec
        else:
            rejects.add("not_an_object", f"{p}:{i}", type(rec).__name__)


def _iter_hub(name: str, split: str) -> Iterator[tuple[str, dict]]:  # pragma: no cover - needs network
    import datasets

    for i, rec in enumerate(datasets.load_dataset(name, split=split, streaming=True)):
        yield f"{name}:{i}", rec


def _check_columns(path: str, first: dict, required: list[str]) -> None:
    missing = [c for c in required if c not in first]
    if missing:
        raise FitrainError(f"{path}: missing column(s) {missing}; the rows have {sorted(first)}")


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8")  # may raise UnicodeDecodeError: the caller counts it
    return v if isinstance(v, str) else str(v)


def _num(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


# ---------------------------------------------------------------------------------------------- pairs
def iter_document_pairs(cfg: InputConfig, rejects: Rejects, filtered: Rejects | None = None
                        ) -> Iterator[DocumentPairs]:
    """Group consecutive rows by document id; pairs failing validation are counted in ``rejects``,
    pairs under ``min_judge_score`` in ``filtered`` (a filter, not a defect)."""
    filtered = filtered if filtered is not None else rejects
    c = cfg.columns
    files = expand_paths(cfg.paths)
    scores_files = expand_paths(cfg.judge_score_paths) if cfg.judge_score_paths else []
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
                _check_columns(path, rec, [c.doc_id, c.instruction, c.answer])
                checked = True
            doc_id = _text(rec.get(c.doc_id))
            if doc_id is None:
                rejects.add("missing_doc_id", where)
                continue
            if current is None or current.document.doc_id != doc_id:
                if current is not None:
                    yield current
                try:
                    text = _text(rec.get(c.text))
                except UnicodeDecodeError as e:
                    rejects.add("invalid_utf8", where, str(e))
                    text = None
                tc = rec.get(c.token_count)
                current = DocumentPairs(Document(doc_id, text or None, int(tc) if _num(tc) is not None else None))
            try:
                instruction, answer = _text(rec.get(c.instruction)), _text(rec.get(c.answer))
            except UnicodeDecodeError as e:
                rejects.add("invalid_utf8", where, str(e))
                continue
            if not instruction or not instruction.strip():
                rejects.add("empty_instruction", where)
                continue
            if not answer or not answer.strip():
                rejects.add("empty_answer", where)
                continue
            if score is None:
                score = _num(rec.get(c.judge_score))
            if cfg.min_judge_score is not None:
                if score is None:
                    rejects.add("missing_judge_score", where)
                    continue
                if score < cfg.min_judge_score:
                    filtered.add("below_min_judge_score", where, f"score {score}")
                    continue
            tid = rec.get(c.template_id)
            current.pairs.append(Pair(
                doc_id=doc_id, instruction=instruction, answer=answer,
                template_id=None if tid is None else str(tid), judge_score=score,
                excerpt_fraction=_num(rec.get("excerpt_fraction")),
                chunk_index=_int(rec.get("chunk_index")), slot_count=_int(rec.get("slot_count")),
                synthetic_token_count=_int(rec.get(c.synthetic_token_count))))
        if score_iter is not None and next(score_iter, _END) is not _END:
            raise FitrainError(f"{scores_files[i]} has more rows than {path}; they must be row-aligned")
    if current is not None:
        yield current


_END = object()


def _int(v: Any) -> int | None:
    n = _num(v)
    return None if n is None else int(n)


def _iter_scores(path: str) -> Iterator[float | None]:
    """Row-aligned judge scores: one value per row, in a column named ``score``/``judge_score`` (or the
    only column)."""
    for where, rec in iter_rows(path):
        key = next((k for k in ("judge_score", "score") if k in rec), None)
        if key is None and len(rec) == 1:
            key = next(iter(rec))
        if key is None:
            raise FitrainError(f"{where}: judge score file needs a 'score' or 'judge_score' column, has {sorted(rec)}")
        yield _num(rec[key])


# ------------------------------------------------------------------------------------------ documents
def iter_documents(cfg: InputConfig, rejects: Rejects) -> Iterator[Document]:
    for path in expand_paths(cfg.paths):
        checked = False
        for where, rec in iter_rows(path, None, rejects, cfg.hub_split):
            if not checked:
                _check_columns(path, rec, [cfg.text_column] + ([cfg.id_column] if cfg.id_column else []))
                checked = True
            try:
                text = _text(rec.get(cfg.text_column))
            except UnicodeDecodeError as e:
                rejects.add("invalid_utf8", where, str(e))
                continue
            if not text or not text.strip():
                rejects.add("empty_document", where)
                continue
            doc_id = str(rec[cfg.id_column]) if cfg.id_column else where
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
