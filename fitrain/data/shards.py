"""The on-disk format of prepared data (fitrain/INTERFACES.md, "Prepared shards"): writer and reader.

A prepared directory holds ``manifest.json`` and, per shard ``i``:

* ``shard_{i:05d}.tokens.npy`` -- ``[rows, seq_len]`` token ids, uint16 when the vocabulary fits, else uint32;
* ``shard_{i:05d}.mask.npy``   -- ``[rows, seq_len]`` uint8, 1 where the token is a supervised *target*;
* ``shard_{i:05d}.seg.npy``    -- ``[rows, seq_len]`` uint16, 1-based segment (document/pair) index in
  the row, 0 = padding (padding only ever fills the end of a row).

Every file is written atomically (temporary file, fsync, rename), so a killed writer never leaves a
half-written shard. The manifest's ``fingerprint`` is a hash of every shard's bytes (plus seq_len and
format version): two directories with the same fingerprint hold the same training data. The manifest itself
is the typed :class:`fitrain.data.manifest.Manifest`.

Opening a directory (:meth:`PreparedData.validate`) checks what is cheap to check: every file's size, and
the sha256 of any file whose modification time differs from the one recorded (a file written after
prepare, e.g. bytes overwritten in place); ``fitrain verify`` (fitrain.data.integrity) checks everything.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fitrain.core.accounting import TokenCounts
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, file_sha256
from fitrain.data.manifest import FORMAT_VERSION, REBUILD, Manifest, ShardEntry

PARTS = ("tokens", "mask", "seg")
MAX_SEGMENTS = np.iinfo(np.uint16).max
_CHECKED: set[tuple[str, str]] = set()   # directories whose files this process has checked


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def shard_file(directory: str | Path, index: int, part: str) -> Path:
    return Path(directory) / f"shard_{index:05d}.{part}.npy"


def shard_stats(tokens: np.ndarray, mask: np.ndarray, seg: np.ndarray) -> dict:
    """Counts of one shard (rows, non-padding tokens, supervised targets, padding, segments) and its hash."""
    nonpad = seg > 0
    starts = nonpad.copy()
    starts[:, 1:] &= seg[:, 1:] != seg[:, :-1]
    h = hashlib.sha256()
    for a in (tokens, mask, seg):
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).data)
    return {"rows": int(tokens.shape[0]), "total_tokens": int(nonpad.sum()),
            "supervised_tokens": int(mask[nonpad].sum()), "padding_tokens": int((~nonpad).sum()),
            "segments": int(starts.sum()), "sha256": h.hexdigest(),
            "max_token_id": int(tokens[nonpad].max(initial=0)) if tokens.size else 0}


def write_shard(directory: str | Path, index: int, tokens: np.ndarray, mask: np.ndarray, seg: np.ndarray,
                stats: dict | None = None) -> ShardEntry:
    """Write one shard's three arrays atomically; returns its manifest entry."""
    if not (tokens.shape == mask.shape == seg.shape) or tokens.ndim != 2:
        raise ValueError(f"shard arrays must share one [rows, seq_len] shape: {tokens.shape} {mask.shape} {seg.shape}")
    stats = stats or shard_stats(tokens, mask, seg)
    for part, arr in zip(PARTS, (tokens, mask, seg)):
        with atomic_path(shard_file(directory, index, part)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
    return ShardEntry(name=f"shard_{index:05d}", **stats)


def file_entries(directory: str | Path, index: int) -> dict:
    """What the manifest records of shard ``index``'s files: size, sha256 and modification time."""
    out = {}
    for part in PARTS:
        p = shard_file(directory, index, part)
        st = p.stat()
        out[part] = {"bytes": st.st_size, "sha256": file_sha256(p), "mtime_ns": st.st_mtime_ns}
    return out


def check_files(directory: str | Path, manifest: Manifest, full: bool = False) -> None:
    """Every shard file as the manifest recorded it: its size always, its sha256 when ``full`` or when its
    modification time changed. FitrainError naming the file and how to rebuild."""
    directory = Path(directory)
    for i, s in enumerate(manifest.shards):
        for part in PARTS:
            p = shard_file(directory, i, part)
            rec = s.files.get(part)
            if not p.is_file():
                raise FitrainError(f"prepared data {directory}: {p.name} is missing; {REBUILD}")
            if not rec:
                continue  # a manifest from before file checksums: only shapes are checked
            st = p.stat()
            if st.st_size != rec["bytes"]:
                raise FitrainError(f"prepared data {directory}: {p.name} is {st.st_size} bytes but was written with "
                                   f"{rec['bytes']} (truncated or overwritten); {REBUILD}")
            if (full or st.st_mtime_ns != rec.get("mtime_ns")) and file_sha256(p) != rec["sha256"]:
                raise FitrainError(f"prepared data {directory}: the bytes of {p.name} changed after prepare wrote "
                                   f"it (sha256 mismatch); {REBUILD}")


def fingerprint(seq_len: int, shards: list[ShardEntry]) -> str:
    h = hashlib.sha256(f"fitrain-shards v{FORMAT_VERSION} seq_len={seq_len}".encode())
    for s in shards:
        h.update(f"{s.name}:{s.rows}:{s.sha256}".encode())
    return h.hexdigest()[:32]


@dataclass
class PreparedData:
    """Read side: the manifest plus lazily opened memory maps of every shard (safe to pickle into
    DataLoader workers: the maps are reopened in each process)."""

    directory: Path
    manifest: Manifest
    offsets: np.ndarray = field(init=False)
    _maps: list | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        rows = [s.rows for s in self.manifest.shards]
        self.offsets = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)]).astype(np.int64)

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def seq_len(self) -> int:
        return int(self.manifest.seq_len)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.fingerprint)

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_maps"] = None
        return d

    def _open(self) -> list:
        if self._maps is None:
            maps = []
            for i, s in enumerate(self.manifest.shards):
                parts = []
                for part in PARTS:
                    p = shard_file(self.directory, i, part)
                    try:
                        a = np.load(p, mmap_mode="r", allow_pickle=False)
                    except (OSError, ValueError) as e:
                        raise FitrainError(f"prepared data {self.directory}: cannot read {p.name} ({e}); "
                                           f"{REBUILD}") from None
                    if a.shape != (s.rows, self.seq_len):
                        raise FitrainError(f"prepared data {self.directory}: {p.name} has shape {a.shape}, the "
                                           f"manifest says ({s.rows}, {self.seq_len}); {REBUILD}")
                    parts.append(a)
                maps.append(parts)
            self._maps = maps
        return self._maps

    def validate(self) -> None:
        """The cheap checks (sizes, changed files' checksums, shapes, the recorded largest token id against
        the vocabulary), once per directory and process."""
        key = (str(self.directory.resolve()), self.manifest.checksum or self.manifest.fingerprint)
        if key not in _CHECKED:
            check_files(self.directory, self.manifest)
            self.check_token_ids()
            _CHECKED.add(key)
        self._open()

    def check_token_ids(self, embedding_rows: int | None = None) -> None:
        """Every shard's recorded largest token id must index the vocabulary it was prepared with (and
        ``embedding_rows``, a model's embedding, when given): FitrainError naming the shard, never an
        IndexError inside the model. :meth:`rows` checks the ids it reads as well."""
        limits = [v for v in (self.manifest.vocab_size, embedding_rows) if v]
        for s in self.manifest.shards:
            if limits and s.max_token_id is not None and s.max_token_id >= min(limits):
                raise FitrainError(self._past_vocab(f"{s.name}.tokens.npy", s.max_token_id, min(limits)))

    def _past_vocab(self, where: str, token: int, limit: int) -> str:
        return (f"prepared data {self.directory}: {where} holds token id {token}, past the {limit}-token "
                f"vocabulary (the model's embedding has no row for it); {REBUILD}")

    def row_counts(self, unit: str = "tokens", chunk_rows: int = 1 << 14) -> np.ndarray:
        """Non-padding tokens (``unit='tokens'``) or supervised targets of every row, in global row order, as
        the loader's batches count them (a target is a masked non-padding position that does not start a
        segment). Reads the seg arrays once (and the mask arrays for targets), in chunks."""
        maps = self._open()
        out = np.empty(self.num_rows, dtype=np.int64)
        for k, (_, mask, seg) in enumerate(maps):
            base = int(self.offsets[k])
            for a in range(0, seg.shape[0], chunk_rows):
                sg = np.asarray(seg[a:a + chunk_rows])
                if unit == "tokens":
                    n = np.count_nonzero(sg, axis=1)
                else:
                    starts = np.ones(sg.shape, dtype=bool)
                    starts[:, 1:] = sg[:, 1:] != sg[:, :-1]
                    n = np.count_nonzero((np.asarray(mask[a:a + chunk_rows]) != 0) & (sg != 0) & ~starts, axis=1)
                out[base + a: base + a + len(sg)] = n
        return out

    def rows(self, indices: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens, mask, seg) of the given global row indices, in that order, as in-memory arrays."""
        idx = np.asarray(indices, dtype=np.int64)
        maps = self._open()
        n, t = len(idx), self.seq_len
        out = (np.empty((n, t), dtype=np.int64), np.empty((n, t), dtype=np.uint8), np.empty((n, t), dtype=np.uint16))
        shard_of = np.searchsorted(self.offsets, idx, side="right") - 1
        for j, (g, s) in enumerate(zip(idx.tolist(), shard_of.tolist())):
            local = g - int(self.offsets[s])
            for k in range(3):
                out[k][j] = maps[s][k][local]
        vocab = self.manifest.vocab_size
        if vocab and n and int(out[0].max()) >= vocab:  # a shard changed behind the manifest's back
            j = int(np.nonzero((out[0] >= vocab).any(axis=1))[0][0])
            s = int(shard_of[j])
            raise FitrainError(self._past_vocab(f"shard_{s:05d}.tokens.npy row {int(idx[j]) - int(self.offsets[s])}",
                                                int(out[0][j].max()), vocab))
        return out


def open_prepared(directory: str | Path, what: str = "") -> PreparedData:
    """Open a prepared directory (or its manifest.json); FitrainError when it is missing, unfinished or of
    another format (``what`` names the setting that pointed here, for the message)."""
    from fitrain.data.manifest import prepared_dir

    return PreparedData(prepared_dir(directory), Manifest.read(directory, what))


def recount(directory: str | Path) -> tuple[TokenCounts, int]:
    """Recount rows/tokens/supervised/padding from the shard files themselves; returns (counts, segments)
    (``documents``/``pairs`` stay 0: a split document spans several segments)."""
    data = open_prepared(directory)
    data.validate()
    c, segments = TokenCounts(), 0
    for parts in data._open():
        s = shard_stats(*[np.asarray(a) for a in parts])
        c.rows += s["rows"]
        c.total_tokens += s["total_tokens"]
        c.supervised_tokens += s["supervised_tokens"]
        c.padding_tokens += s["padding_tokens"]
        segments += s["segments"]
    return c, segments
