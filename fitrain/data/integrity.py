"""Everything that can be checked about a prepared directory (``fitrain verify DIR``).

Opening a directory for training checks only what is cheap (fitrain.data.shards.check_files: sizes, and the
sha256 of files whose modification time changed). :func:`verify_prepared` checks all of it:

* the manifest's own checksum (a hand-edited manifest is refused);
* every shard file's size and sha256 against the manifest;
* every shard's arrays: shapes, dtypes, the array hash the fingerprint is made of, and the counts (rows,
  tokens, supervised targets, padding, segments) recomputed from the arrays;
* token ids inside the vocabulary, targets only on non-padding positions, padding only at the end of a row;
* the fingerprint recomputed from the shards and the totals against ``counts``;
* the tokenizer the manifest names, when it is still there, against the recorded identity.

A manifest without its checksum (edited, or written before checksums existed) is refused
(fitrain.data.manifest).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fitrain.core.errors import FitrainError
from fitrain.data.manifest import MANIFEST, REBUILD, Manifest
from fitrain.data.shards import PARTS, check_files, fingerprint, shard_file, shard_stats, token_dtype

COUNTED = ("rows", "total_tokens", "supervised_tokens", "padding_tokens", "segments", "sha256")


@dataclass
class Verified:
    """What :func:`verify_prepared` found: ``problems`` is empty for a sound directory."""

    directory: Path
    manifest: Manifest | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        d = self.directory
        if not self.ok:
            return f"FAILED {d}: " + "; ".join(self.problems) + f"; {REBUILD}"
        m = self.manifest
        assert m is not None
        note = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (f"ok     {d}: {len(m.shards)} shard(s), {m.num_rows:,} rows, {m.counts.total_tokens:,} tokens "
                f"({m.counts.supervised_tokens:,} supervised), fingerprint {m.fingerprint}{note}")


def verify_prepared(directory: str | Path) -> Verified:
    """Check every byte and count of a prepared directory (see the module docstring)."""
    out = Verified(Path(directory))
    try:
        m = out.manifest = Manifest.read(directory)
    except FitrainError as e:
        out.problems.append(_problem(e, directory))
        return out
    try:
        check_files(directory, m, full=True)
    except FitrainError as e:
        out.problems.append(_problem(e, directory))
    totals = dict.fromkeys(COUNTED[:-1], 0)
    for i, entry in enumerate(m.shards):
        try:
            arrays = [np.load(shard_file(directory, i, part), allow_pickle=False) for part in PARTS]
        except (OSError, ValueError) as e:
            out.problems.append(f"{entry.name}: cannot be read ({e})")
            continue
        out.problems += [f"{entry.name}: {p}" for p in _array_problems(m, entry, arrays)]
        stats = shard_stats(*arrays)
        for k in totals:
            totals[k] += stats[k]
    fp = fingerprint(m.seq_len, m.shards)
    if fp != m.fingerprint:
        out.problems.append(f"the fingerprint of the shard entries is {fp}, the manifest says {m.fingerprint}")
    c = m.counts
    for name, have in (("rows", c.rows), ("total_tokens", c.total_tokens), ("supervised_tokens", c.supervised_tokens),
                       ("padding_tokens", c.padding_tokens)):
        if not out.problems and totals[name] != have:
            out.problems.append(f"counts.{name} is {have:,} but the shards hold {totals[name]:,}")
    out.notes += _tokenizer_note(m, out.problems)
    return out


def _problem(e: FitrainError, directory: str | Path) -> str:
    """A refusal of the readers as one of verify's problems: without the directory (the line names it) and
    without the advice (the line ends with it, once)."""
    return str(e).replace(f"prepared data {directory}: ", "").split(f"; {REBUILD}")[0]


def _array_problems(m: Manifest, entry, arrays: list[np.ndarray]) -> list[str]:
    tokens, mask, seg = arrays
    shape = (entry.rows, m.seq_len)
    bad = [f"{part} has shape {a.shape}, expected {shape}" for part, a in zip(PARTS, arrays) if a.shape != shape]
    want = (token_dtype(m.vocab_size) if m.vocab_size else tokens.dtype, np.dtype(np.uint8), np.dtype(np.uint16))
    bad += [f"{part} has dtype {a.dtype}, expected {w}" for part, a, w in zip(PARTS, arrays, want) if a.dtype != w]
    if bad:
        return bad
    stats = shard_stats(tokens, mask, seg)
    bad = [f"{k} is {stats[k]} but the manifest recorded {getattr(entry, k)}" for k in COUNTED
           if stats[k] != getattr(entry, k)]
    if entry.max_token_id is not None and stats["max_token_id"] != entry.max_token_id:
        bad.append(f"the largest token id is {stats['max_token_id']} but the manifest recorded {entry.max_token_id}")
    nonpad = seg > 0
    if m.vocab_size and tokens.size and int(tokens[nonpad].max(initial=0)) >= m.vocab_size:
        bad.append(f"token id {int(tokens[nonpad].max())} is outside the {m.vocab_size}-token vocabulary")
    if bool((mask.astype(bool) & ~nonpad).any()):
        bad.append("a supervised target sits on a padding position")
    if bool((nonpad[:, 1:] & ~nonpad[:, :-1]).any()):
        bad.append("padding in the middle of a row")
    return bad


def _tokenizer_note(m: Manifest, problems: list[str]) -> list[str]:
    path = m.tokenizer.path
    if not path or not Path(path).is_dir():
        return [f"the tokenizer {path or '(none recorded)'} is not here to check"]
    if not m.tokenizer.identity:
        return []
    from fitrain.data.tokenizer import load_tokenizer, tokenizer_identity

    try:
        identity = tokenizer_identity(load_tokenizer(path))
    except FitrainError as e:
        problems.append(f"the tokenizer {path}: {e}")
        return []
    if identity != m.tokenizer.identity:
        problems.append(f"the tokenizer at {path} is not the one the data was prepared with (identity {identity}, "
                        f"recorded {m.tokenizer.identity})")
    return []


def find_prepared(root: str | Path) -> list[Path]:
    """``root`` itself when it is a prepared directory, else the prepared directories below it (an
    experiment's ``prepared/<arm>``), by their manifest.json."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root]
    return sorted(p.parent for pattern in (f"*/{MANIFEST}", f"*/*/{MANIFEST}") for p in root.glob(pattern))
