"""Per-row counts stored at prepare time; a directory prepared without them gets them computed once and cached
(atomically, with the umask's permissions, keyed by the data's fingerprint)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from fitrain.data.rowcounts import counts_path, row_counts
from fitrain.data.shards import PreparedData, open_prepared


def test_prepare_stores_the_counts_the_shards_hold(pairs_shards):
    data = open_prepared(pairs_shards)
    stored = np.load(counts_path(data))
    assert stored.shape == (data.num_rows, 2) and stored.dtype == np.uint16
    for unit in ("tokens", "supervised_tokens"):
        assert np.array_equal(row_counts(data, unit), data.row_counts(unit))
    assert int(stored[:, 0].sum()) == data.manifest.counts.total_tokens
    assert int(stored[:, 1].sum()) == data.manifest.counts.supervised_tokens


def test_a_directory_without_them_gets_them_computed_once_and_cached(pairs_shards, tmp_path, monkeypatch):
    d = tmp_path / "old"
    shutil.copytree(pairs_shards, d)
    data = open_prepared(d)
    counts_path(data).unlink()                      # as prepared before the counts were stored
    scans = []
    scan = PreparedData.row_counts
    monkeypatch.setattr(PreparedData, "row_counts", lambda self, unit, *a: scans.append(unit) or scan(self, unit))
    old = os.umask(0o027)
    try:
        first = row_counts(data, "supervised_tokens")
    finally:
        os.umask(old)
    assert sorted(scans) == ["supervised_tokens", "tokens"]       # one pass, both units cached
    assert (counts_path(data).stat().st_mode & 0o777) == 0o640
    assert not list(d.glob(".*.tmp"))
    assert np.array_equal(row_counts(data, "supervised_tokens"), first) and np.array_equal(
        row_counts(open_prepared(d), "tokens"), scan(data, "tokens"))
    assert len(scans) == 2                                          # read from the cache since
    counts_path(data).write_bytes(b"garbage")                      # a damaged cache is counted again
    assert np.array_equal(row_counts(data, "tokens"), scan(data, "tokens")) and len(scans) == 4


def test_a_directory_that_cannot_be_written_is_counted_without_a_cache(pairs_shards, tmp_path, capsys, monkeypatch):
    from fitrain.data import rowcounts

    d = tmp_path / "ro"
    shutil.copytree(pairs_shards, d)
    data = open_prepared(d)
    counts_path(data).unlink()

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rowcounts, "atomic_path", refuse)
    assert np.array_equal(row_counts(data, "tokens"), data.row_counts("tokens"))
    assert "cannot cache the row counts" in capsys.readouterr().err and not counts_path(data).exists()
