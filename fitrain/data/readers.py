"""Reading record files: globs to files (each read once), and the rows of parquet, jsonl, jsonl.gz and JSON-list
files (or a hub dataset name) as ``(location, row)``. Rows that are not JSON objects are counted by reason;
a file that cannot be read -- corrupt, a ``.jsonl.gz`` cut short, a wrong type -- raises a FitrainError
naming it; a file with no rows is counted as ``empty_file``. fitrain.data.records gives the rows meaning.
"""
from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Iterable, Iterator

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError


def expand_paths(patterns: Iterable[str], dedupe: bool = True, duplicates: list[str] | None = None) -> list[str]:
    """Expand globs in order; a pattern matching nothing is an error unless it is a hub dataset name.
    A file matched by more than one pattern is read once (``dedupe``), and each repeat is appended to
    ``duplicates``; ``dedupe=False`` keeps repeats (listing a file twice to upsample it)."""
    out: list[str] = []
    seen: set[str] = set()
    for pat in patterns:
        matches = sorted(glob.glob(str(Path(pat).expanduser()), recursive=True))
        if matches:
            files = [m for m in matches if Path(m).is_file()]
        elif _looks_like_hub_name(pat):
            files = [pat]
        else:
            raise FitrainError(f"input not found: '{pat}' matches no file")
        for f in files:
            key = str(Path(f).resolve()) if Path(f).exists() else f
            if dedupe and key in seen:
                if duplicates is not None:
                    duplicates.append(f)
                continue
            seen.add(key)
            out.append(f)
    if not out:
        raise FitrainError(f"no input files in {list(patterns)}")
    return out


def _looks_like_hub_name(s: str) -> bool:
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and not Path(s).suffix


def iter_rows(path: str, columns: list[str] | None = None, rejects: Rejects | None = None,
              hub_split: str = "train") -> Iterator[tuple[str, dict]]:
    """Yield ``(location, row)`` from a parquet or jsonl file (or a hub dataset name). A file that holds no
    row at all is counted as ``empty_file`` (by name) in ``rejects``."""
    rejects = rejects if rejects is not None else Rejects()
    p = Path(path)
    if not p.exists():
        if _looks_like_hub_name(path):
            yield from _iter_hub(path, hub_split)
            return
        raise FitrainError(f"input not found: {path}")
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix == ".parquet":
        rows = _iter_parquet(p, columns)
    elif suffix == ".json" and _is_json_list(p):
        rows = _iter_json_list(p, rejects)
    elif suffix in (".jsonl", ".json", ".jsonl.gz"):
        rows = _iter_jsonl(p, rejects)
    else:
        raise FitrainError(f"{path}: unsupported file type '{suffix}' (use .parquet or .jsonl)")
    before, n = rejects.total, 0
    for item in rows:
        n += 1
        yield item
    if n == 0 and rejects.total == before:
        rejects.add("empty_file", str(p))


def _iter_parquet(p: Path, columns: list[str] | None) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on corrupt files
        raise FitrainError(f"cannot read parquet file {p}: {_one_line(e)}") from None
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
        raise FitrainError(f"cannot read parquet file {p} at row {row}: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _iter_jsonl(p: Path, rejects: Rejects) -> Iterator[tuple[str, dict]]:
    import gzip
    import zlib

    opener = gzip.open if p.suffix == ".gz" else open
    lineno = 0
    with opener(p, "rb") as f:
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except (EOFError, gzip.BadGzipFile, zlib.error) as e:
                raise FitrainError(f"{p}: the gzip data is cut short or corrupt after line {lineno} ({_one_line(e)}); "
                                   "re-create or re-download the file") from None
            lineno += 1
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


def check_columns(path: str, first: dict, required: list[str]) -> None:
    missing = [c for c in required if c not in first]
    if missing:
        raise FitrainError(f"{path}: missing column(s) {missing}; the rows have {sorted(first)}")
