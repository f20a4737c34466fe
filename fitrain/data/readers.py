"""Reading record files: globs to files (each read once), and the rows of parquet, jsonl, jsonl.gz and JSON-list
files (or a hub dataset name) as ``(location, row)``. Rows that are not JSON objects are counted by reason;
a file that cannot be read -- corrupt, a ``.jsonl.gz`` cut short, a wrong type -- raises a FitrainError
naming it; a file with no rows is counted as ``empty_file``. fitrain.data.records gives the rows meaning.
The line and JSON decoding here (plain, gzip, zstd) is also what fitrain.data.corpora reads released
corpora with.
"""
from __future__ import annotations

import glob
import io
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
    elif suffix == ".json" and starts_with_list(p):
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


class _Raw(io.RawIOBase):
    """A pyarrow input stream as a Python raw stream, so io.BufferedReader can split it into lines."""

    def __init__(self, stream):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.stream.read(len(b))
        b[:len(data)] = data
        return len(data)


def open_lines(path: Path, compression: str | None = None) -> Iterator[bytes]:
    """The raw lines of a plain, gzip or zstd (through pyarrow) file."""
    if compression == "gzip":
        import gzip

        with gzip.open(path, "rb") as f:
            yield from f
    elif compression == "zstd":
        import pyarrow as pa

        with pa.input_stream(str(path), compression="zstd") as s:
            yield from io.BufferedReader(_Raw(s), 1 << 20)
    else:
        with open(path, "rb") as f:
            yield from f


def json_lines(p: Path, rejects: Rejects, compression: str | None = None) -> Iterator[tuple[str, object]]:
    """``(location, value)`` per non-blank line; a line that is not UTF-8 or not JSON is counted
    (``invalid_utf8``, ``malformed_json``), a stream cut short is a FitrainError naming the line."""
    import gzip
    import zlib

    lineno = 0
    lines = open_lines(p, compression)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            break
        except (EOFError, OSError, ValueError, gzip.BadGzipFile, zlib.error) as e:
            raise FitrainError(f"{p}: the {compression or 'file'} data is cut short or corrupt after line {lineno} "
                               f"({_one_line(e)}); re-create or re-download the file") from None
        lineno += 1
        where = f"{p}:{lineno}"
        if not raw.strip():
            continue
        try:
            yield where, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            rejects.add("invalid_utf8", where, str(e))
        except json.JSONDecodeError as e:
            rejects.add("malformed_json", where, str(e)[:120])


def _iter_jsonl(p: Path, rejects: Rejects) -> Iterator[tuple[str, dict]]:
    for where, rec in json_lines(p, rejects, "gzip" if p.suffix == ".gz" else None):
        if isinstance(rec, dict):
            yield where, rec
        else:
            rejects.add("not_an_object", where, type(rec).__name__)


def starts_with_list(p: Path) -> bool:
    """A ``.json`` file holding one JSON list (rather than JSON lines)."""
    with open(p, "rb") as f:
        return f.read(4096).lstrip().startswith(b"[")


def json_list(p: Path, compression: str | None = None) -> list:
    """The values of a file holding one JSON list (one other JSON value: a list of it)."""
    try:
        data = json.loads(b"".join(open_lines(p, compression)).decode("utf-8"))
    except (ValueError, OSError, EOFError) as e:
        raise FitrainError(f"{p}: not a valid JSON list: {_one_line(e)}") from None
    return data if isinstance(data, list) else [data]


def _iter_json_list(p: Path, rejects: Rejects) -> Iterator[tuple[str, dict]]:
    for i, rec in enumerate(json_list(p)):
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
