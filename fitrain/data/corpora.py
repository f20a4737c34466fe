"""Document corpora in the layouts their authors released, and weighted mixtures of corpora: what an
experiment's ``corpus`` and ``mixture`` arms train on (fitrain/docs/method.md, "The paper's baselines
(Table 1)").

Layouts read (:class:`ReaderConfig`; ``format: auto`` decides by the file name):

* **IPT** instruction-augmented corpora (``instruction-pretrain/general-instruction-augmented-corpora`` on
  the Hugging Face hub): ``part-*/shard/*.txt`` shards of JSON lines (``part-*/json/train.json`` lists them),
  each line a JSON object whose ``text`` is one document followed by the instruction-response pairs
  synthesised from it, already concatenated. A line holding a bare JSON string, or a list of strings (one
  document each), is read as well.
* **Nemotron-CC** synthetic kinds (Q&A "diverse_qa_pairs", WRAP-style rephrasing, the full mixture): JSON
  lines with a ``text`` field per row, ``.jsonl.zstd`` in the Common Crawl release (or plain / gzip once
  unpacked); Nemotron-CC-v2 on the hub: parquet with a ``text`` column.
* anything else with a text column (parquet, JSON lines, one JSON list), or a text made of several columns
  joined in order (``join_columns``), e.g. a document column followed by a generated-QA column.

File names: ``.parquet``; ``.jsonl``, ``.ndjson``, ``.txt`` (JSON lines), ``.json`` (one list, or JSON lines);
each of the line formats optionally compressed: ``.gz``, ``.zst``, ``.zstd`` (zstd through pyarrow, no extra
package). Bad rows are counted by reason in a :class:`~fitrain.core.accounting.Rejects`, never raised; a
missing or unreadable file, or a first row without the configured columns, is a FitrainError naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from fitrain.core.accounting import Rejects
from fitrain.core.checks import check_fields, fail, one_of
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, read_json, write_json
from fitrain.data.readers import json_lines, json_list, starts_with_list
from fitrain.data.records import Document, expand_paths, iter_rows, lone_surrogate, utf8_safe

FORMATS = ("auto", "jsonl", "json", "parquet")
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
LINE_SUFFIXES = (".jsonl", ".ndjson", ".txt", ".json")
PART = "part-{:05d}.parquet"
BATCH_ROWS = 4096


@dataclass
class ReaderConfig:
    """How to turn the rows of a released corpus into documents."""

    format: str = "auto"              # auto (by file name) | jsonl | json | parquet
    text_column: str = "text"
    id_column: str = ""               # '' = <file>:<row>
    join_columns: list[str] = field(default_factory=list)  # text = these columns in order, joined by separator
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        check_fields(self, format=one_of(*FORMATS))
        if not self.join_columns and not self.text_column:
            fail("text_column", "is empty: set text_column (or join_columns)")

    @property
    def columns(self) -> list[str]:
        return list(self.join_columns or [self.text_column]) + ([self.id_column] if self.id_column else [])


# ------------------------------------------------------------------------------------------------ reading
def _kind_of(path: Path, fmt: str) -> tuple[str, str | None]:
    """(parquet | lines | list, compression) of a file."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    core = suffixes[-2] if compression and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if fmt == "parquet" or (fmt == "auto" and core == ".parquet"):
        return "parquet", None
    if fmt == "json" or (fmt == "auto" and core == ".json" and not compression and starts_with_list(path)):
        return "list", compression
    if fmt == "jsonl" or (fmt == "auto" and core in LINE_SUFFIXES):
        return "lines", compression
    raise FitrainError(f"{path}: cannot tell the format from the name '{path.name}'; set reader.format "
                       f"(one of {list(FORMATS[1:])})")


def iter_corpus_rows(path: str | Path, reader: ReaderConfig, rejects: Rejects) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` of one file: a dict per parquet row or JSON object, or a bare string / list."""
    p = Path(path)
    if not p.is_file():
        raise FitrainError(f"corpus file not found: {p}")
    kind, compression = _kind_of(p, reader.format)
    if kind == "parquet":
        yield from iter_rows(str(p), reader.columns, rejects)
    elif kind == "list":
        for i, rec in enumerate(json_list(p, compression)):
            yield f"{p}:{i}", rec
    else:
        yield from json_lines(p, rejects, compression)


def _as_text(v: Any, sep: str) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        return sep.join(v)
    return None


def row_texts(rec: Any, reader: ReaderConfig) -> list[str] | str:
    """The document texts of one row, or the reason it has none."""
    if isinstance(rec, str):
        return [rec]
    if isinstance(rec, list):
        return list(rec) if rec and all(isinstance(x, str) for x in rec) else "list_of_non_strings"
    if not isinstance(rec, dict):
        return "not_an_object"
    cols = reader.join_columns or [reader.text_column]
    parts = []
    for c in cols:
        if rec.get(c) is None:
            if reader.join_columns:
                continue  # a join of the columns present
            return "missing_text"
        t = _as_text(rec[c], reader.separator)
        if t is None:
            return "text_not_a_string"
        parts.append(t)
    return [reader.separator.join(parts)] if parts else "missing_text"


def iter_corpus(paths: Iterable[str], reader: ReaderConfig, rejects: Rejects) -> Iterator[Document]:
    """Every document of the files (globs expanded in order); empty texts and bad rows are counted."""
    for path in expand_paths(list(paths)):
        checked = False
        for where, rec in iter_corpus_rows(path, reader, rejects):
            if not checked and isinstance(rec, dict):
                _check_first_row(path, rec, reader)
            checked = True
            texts = row_texts(rec, reader)
            if isinstance(texts, str):
                rejects.add(texts, where)
                continue
            base = utf8_safe(str(rec[reader.id_column]) if reader.id_column and isinstance(rec, dict) else where)
            for k, text in enumerate(texts):
                if not text.strip():
                    rejects.add("empty_document", where)
                    continue
                bad = lone_surrogate(text)
                if bad is not None:  # not text: a tokenizer or a parquet writer would refuse it later
                    rejects.add("lone_surrogate", where, bad)
                    continue
                yield Document(base if len(texts) == 1 else f"{base}.{k}", text)


def _check_first_row(path: str, rec: dict, reader: ReaderConfig) -> None:
    missing = [c for c in ([] if reader.join_columns else [reader.text_column]) + [reader.id_column]
               if c and c not in rec]
    if reader.join_columns and not any(c in rec for c in reader.join_columns):
        missing += reader.join_columns
    if missing:
        raise FitrainError(f"{path}: missing column(s) {missing}; the rows have {sorted(rec)} "
                           "(set the arm's reader.text_column / join_columns / id_column)")


# ------------------------------------------------------------------------------------------------ writing
def document_schema():
    import pyarrow as pa

    return pa.schema([("doc_id", pa.string()), ("text", pa.string())])


def write_documents(path: str | Path, docs: Iterable[Document]) -> int:
    """Documents into one parquet file (``doc_id``, ``text``), written atomically; returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, batch = 0, []
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, document_schema()) as w:
            for d in docs:
                batch.append({"doc_id": d.doc_id, "text": d.text})
                if len(batch) >= BATCH_ROWS:
                    w.write_table(pa.Table.from_pylist(batch, schema=document_schema()))
                    n, batch = n + len(batch), []
            if batch or not n:
                w.write_table(pa.Table.from_pylist(batch, schema=document_schema()))
                n += len(batch)
    return n


def normalise(paths: list[str], reader: ReaderConfig, out_dir: str | Path, log: Callable[[str], None] = print
              ) -> dict:
    """Read a released corpus and write it as ``part-NNNNN.parquet`` (``doc_id``, ``text``), one part per
    input file, which ``fitrain prepare input.kind=documents`` reads. A part whose input file and reader
    settings are unchanged since it was written is kept, so a killed run resumes file by file."""
    out = Path(out_dir)
    files = expand_paths(paths)
    settings = {"reader": {k: getattr(reader, k) for k in ("format", "text_column", "id_column", "join_columns",
                                                             "separator")}}
    total, rejects, kept = 0, Rejects(), 0
    for i, f in enumerate(files):
        part, side = out / PART.format(i), out / (PART.format(i) + ".json")
        st = Path(f).stat()
        source = {"path": str(Path(f).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, **settings}
        if part.is_file() and side.is_file() and read_json(side).get("source") == source:
            info = read_json(side)
            kept += 1
        else:
            file_rejects = Rejects()
            n = write_documents(part, iter_corpus([f], reader, file_rejects))
            info = {"source": source, "documents": n, "rejects": file_rejects.to_dict()}
            write_json(side, info)
            log(f"    {f}: {n} documents" + (f", rejected {file_rejects.summary()}" if file_rejects.total else ""))
        total += info["documents"]
        rejects.merge(Rejects.from_dict(info["rejects"]))
    for stale in sorted(out.glob("part-*.parquet"))[len(files):]:  # a rerun over fewer files
        stale.unlink()
        Path(str(stale) + ".json").unlink(missing_ok=True)
    if not total:
        raise FitrainError(f"no documents in {paths} ({rejects.summary()}); check the arm's reader settings")
    return {"files": len(files), "documents": total, "parts_kept": kept, "rejects": rejects.to_dict()}


def normalised_glob(out_dir: str | Path) -> str:
    return str(Path(out_dir) / "part-*.parquet")


# ------------------------------------------------------------------------------------------------ mixtures
@dataclass
class MixturePart:
    """One weighted source of a mixture: ``documents()`` iterates its documents from the start."""

    name: str
    documents: Callable[[], Iterator[Document]]
    weight: float


def draw_mixture(parts: list[MixturePart], target_tokens: int, count_tokens: Callable[[list[str]], list[int]],
                 out_dir: str | Path, batch: int = 256) -> dict:
    """Draw ``target_tokens`` tokens from the parts in proportion to their weights: part ``i`` gets
    ``weight_i / sum(weights) * target_tokens`` tokens (counted by ``count_tokens``, the experiment
    tokenizer's document count, EOS included), taken as whole documents in the part's own order until its
    share is reached; a part smaller than its share is read again (another epoch of it). Writes one
    ``part-NNNNN.parquet`` per part; returns the tokens, documents and passes of each."""
    if target_tokens <= 0:
        raise FitrainError(f"a mixture needs a positive token target, got {target_tokens}")
    weights = [p.weight for p in parts]
    if not parts or min(weights) <= 0:
        raise FitrainError(f"mixture weights must be positive, got {weights}")
    out, total_w, stats = Path(out_dir), sum(weights), {}
    for i, part in enumerate(parts):
        share = round(part.weight / total_w * target_tokens)
        got = {"tokens": 0, "documents": 0, "passes": 0}

        def drawn() -> Iterator[Document]:
            while got["tokens"] < share:
                got["passes"] += 1
                before = got["tokens"]
                pending: list[Document] = []
                for doc in part.documents():
                    pending.append(doc)
                    if len(pending) >= batch:
                        yield from _take(pending, share, got, count_tokens, part.name)
                        pending = []
                    if got["tokens"] >= share:
                        return
                yield from _take(pending, share, got, count_tokens, part.name)
                if got["tokens"] == before:
                    raise FitrainError(f"mixture source '{part.name}' holds no documents")

        write_documents(out / PART.format(i), drawn())
        stats[part.name] = {"weight": part.weight, "share_tokens": share, **got}
    return {"target_tokens": target_tokens, "parts": stats,
            "tokens": sum(s["tokens"] for s in stats.values())}


def _take(docs: list[Document], share: int, got: dict, count_tokens, name: str) -> Iterator[Document]:
    if not docs:
        return
    for d, n in zip(docs, count_tokens([d.text for d in docs])):
        if got["tokens"] >= share:
            return
        got["tokens"] += n
        got["documents"] += 1
        yield Document(f"{name}:{got['passes']}:{d.doc_id}", d.text)
