"""``manifest.json``: the typed description of a prepared directory, and the only way code reads one.

prepare writes it last, after every shard (fitrain.data.prepare); the loader, the trainer (budgets, pad id,
tokenizer), the standard arm's ``budget_from`` check and the reports read it through :meth:`Manifest.read`.
The JSON layout is the one documented in fitrain/INTERFACES.md ("Prepared shards"); ``format_version``
says which layout a file has, and a reader refuses one it does not know.

The ``fingerprint`` is a hash of every shard's bytes (plus ``seq_len`` and the format version): two
directories with the same fingerprint hold the same training data, which is what the loader's resume
check and a training checkpoint compare.

The manifest carries its own ``checksum`` (sha256 of its canonical JSON without that field), and each
shard entry the size, sha256 and mtime of its three files: a hand-edited manifest is refused when read, and
opening the data checks the shard files cheaply (fitrain.data.integrity). A manifest without its checksum
(hand-edited, or written before checksums existed) is refused too, never trusted: a rerun of the same
``fitrain prepare`` rebuilds the directory and says so.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.accounting import Rejects, TokenCounts
from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json, write_json

FORMAT_VERSION = 1
# what to do about damaged prepared data; every such message ends with "; " + REBUILD (and maybe more advice),
# which `fitrain verify` cuts off to say it once per directory (fitrain.data.integrity)
REBUILD = "re-run the same `fitrain prepare` to rebuild it (it rewrites damaged shards)"
MANIFEST = "manifest.json"
KINDS = ("pairs", "documents")


@dataclass
class ShardEntry:
    """One shard's counts and the sha256 of its three arrays (fitrain.data.shards.shard_stats)."""

    name: str
    rows: int
    total_tokens: int = 0
    supervised_tokens: int = 0
    padding_tokens: int = 0
    segments: int = 0
    sha256: str = ""                                     # of the arrays (dtype, shape, bytes): the fingerprint's
    files: dict = field(default_factory=dict)            # part -> {bytes, sha256, mtime_ns} of each .npy file
    max_token_id: int | None = None                      # the largest non-padding id (None: an older manifest)

    @classmethod
    def from_dict(cls, d: dict) -> "ShardEntry":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class TokenizerInfo:
    """The tokenizer a directory was prepared with: its files' content hash is its identity."""

    path: str = ""
    hash: str = ""                      # of the tokenizer's files (fitrain.data.tokenizer.tokenizer_hash)
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    identity: str = ""                  # of what maps text to ids (fitrain.data.tokenizer.tokenizer_identity)


@dataclass
class Manifest:
    fingerprint: str = ""
    kind: str = "pairs"                 # pairs | documents
    documents_from_pairs: bool = False  # documents: the source documents of a pairs input (standard arm)
    seq_len: int = 0
    vocab_size: int = 0
    token_dtype: str = "uint16"
    tokenizer: TokenizerInfo = field(default_factory=TokenizerInfo)
    format: dict = field(default_factory=dict)       # template, loss_mask, use_chat_template, add_bos
    counts: TokenCounts = field(default_factory=TokenCounts)
    segments: int = 0
    items_in: int = 0
    rejects: Rejects = field(default_factory=Rejects)
    filtered: Rejects = field(default_factory=Rejects)   # dropped by design (judge score), not defects
    overlong: dict = field(default_factory=dict)         # the packer's over-long policy and counts
    budget: dict | None = None                           # TokenBudget.to_dict() of a budgeted pairs arm
    sources: list = field(default_factory=list)          # [{path, bytes}]
    judge_score_sources: list = field(default_factory=list)
    min_judge_score: float | None = None
    shards: list[ShardEntry] = field(default_factory=list)
    settings: str = ""                                   # hash of the settings and inputs (resume check)
    config: dict = field(default_factory=dict)          # the settings hashed (fitrain.core.overwrite names changes)
    timing: dict = field(default_factory=dict)
    matched_budget: dict | None = None                   # a documents arm checked against an FI arm's budget
    duplicates: dict = field(default_factory=dict)       # {rows: repeated input rows, files: files matched twice}
    checksum: str = ""                                   # of this manifest (canonical JSON without it)
    format_version: int = FORMAT_VERSION

    # ------------------------------------------------------------------------------------------ facts
    @property
    def pad_token_id(self) -> int | None:
        return self.tokenizer.pad_token_id

    @property
    def num_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    # ------------------------------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict:
        d: dict[str, Any] = {"format_version": self.format_version}
        for f in dataclasses.fields(self):
            if f.name == "format_version" or (f.name == "matched_budget" and self.matched_budget is None):
                continue
            v = getattr(self, f.name)
            if isinstance(v, (TokenCounts, Rejects)):
                v = v.to_dict()
            elif dataclasses.is_dataclass(v):
                v = dataclasses.asdict(v)
            elif f.name == "shards":
                v = [dataclasses.asdict(s) for s in v]
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "Manifest":
        if not isinstance(d, dict):
            raise FitrainError(f"{where} is not a prepared-data manifest (a JSON object)")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise FitrainError(f"{where}: prepared with format_version {version}, this fitrain reads "
                               f"{FORMAT_VERSION}; re-run prepare")
        missing = [k for k in ("fingerprint", "seq_len", "shards") if k not in d]
        if missing:
            raise FitrainError(f"{where} is not a prepared-data manifest (no {', '.join(missing)})")
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name == "tokenizer":
                names = [t.name for t in dataclasses.fields(TokenizerInfo)]
                v = TokenizerInfo(**{k: v[k] for k in names if k in v}) \
                    if isinstance(v, dict) else TokenizerInfo(path=str(v or ""))
            elif f.name == "counts":
                v = TokenCounts.from_dict(v or {})
            elif f.name in ("rejects", "filtered"):
                v = Rejects.from_dict(v or {})
            elif f.name == "shards":
                v = [ShardEntry.from_dict(s) for s in v]
            kw[f.name] = v
        return cls(**kw)

    @classmethod
    def read(cls, path: str | Path, what: str = "") -> "Manifest":
        """Read a prepared directory's manifest (``path`` is the directory or the manifest.json itself).
        ``what`` names the setting that pointed here (``data.path``), for the error message."""
        p = Path(path)
        d = p.parent if p.name == MANIFEST and p.is_file() else p
        prefix = f"{what}: " if what else ""
        if not (d / MANIFEST).is_file():
            hint = (" (prepare did not finish: re-run it)" if d.is_dir() and any(d.glob("shard_*"))
                    else " (expected a directory made by `fitrain prepare`, or its manifest.json)")
            raise FitrainError(f"{prefix}no prepared data at {d}: {MANIFEST} is missing{hint}")
        try:
            data = read_json(d / MANIFEST)
        except ValueError as e:
            raise FitrainError(f"{prefix}{d / MANIFEST} is not valid JSON: {e}; {REBUILD}") from None
        if isinstance(data, dict) and "format_version" in data and not data.get("checksum"):
            raise FitrainError(f"{prefix}{d / MANIFEST} has no checksum (it was edited, or written by a fitrain "
                               f"older than checksums), so its counts and budget cannot be trusted; {REBUILD}")
        if isinstance(data, dict) and data.get("checksum") and data["checksum"] != checksum(data):
            raise FitrainError(f"{prefix}{d / MANIFEST} was changed after prepare wrote it (its checksum does not "
                               f"match), so its counts and budget cannot be trusted; {REBUILD}, or see "
                               f"`fitrain verify {d}`")
        return cls.from_dict(data, where=f"{prefix}{d / MANIFEST}")

    def write(self, directory: str | Path) -> Path:
        """Write manifest.json atomically, with its checksum."""
        path = Path(directory) / MANIFEST
        d = json.loads(json.dumps(self.to_dict(), default=str))  # exactly what a reader will load
        d["checksum"] = self.checksum = checksum(d)
        write_json(path, d)
        return path


def checksum(d: dict) -> str:
    """sha256 of a manifest's canonical JSON (sorted keys, no whitespace), its ``checksum`` field left out."""
    body = {k: v for k, v in d.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def prepared_dir(path: str | Path) -> Path:
    """The prepared directory named by ``path`` (the directory or its manifest.json)."""
    p = Path(path)
    return p.parent if p.name == MANIFEST else p
