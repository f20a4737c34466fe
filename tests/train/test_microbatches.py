"""Exact budget cuts of a step's micro-batches (no Lightning here)."""
from __future__ import annotations

import pytest
import torch

from fitrain.data.loader import IGNORE_INDEX
from fitrain.train.microbatches import allowances, count_step, cut_step
from tests.helpers import synthetic

PAD = 0


def _micro():
    b = synthetic.packed_batch(4, 30, 50, seed=7)
    return [{k: v[i:i + 2] for k, v in b.items()} for i in (0, 2)]


def test_allowances_split_in_rank_order():
    assert allowances([5, 5, 5], 7) == [5, 2, 0]
    assert allowances([5, 5], 100) == [5, 5]
    assert allowances([3, 4], 0) == [0, 0]


@pytest.mark.parametrize("by", ["tokens", "supervised"])
def test_cut_step_keeps_exactly_the_budget(by):
    micro = _micro()
    tok, sup = count_step(micro, PAD)
    total = tok if by == "tokens" else sup
    for keep in (0, 1, total // 3, total - 1, total):
        cut, kt, ks = cut_step(micro, keep, by, PAD)
        assert (kt if by == "tokens" else ks) == keep
        # labels only ever removed, shapes unchanged
        for a, b in zip(micro, cut):
            assert a["labels"].shape == b["labels"].shape
            changed = a["labels"] != b["labels"]
            assert bool((b["labels"][changed] == IGNORE_INDEX).all())
        assert count_step(cut, PAD)[1] == ks
    # the cut is a prefix in reading order: no supervised target survives after a removed one
    cut, _, _ = cut_step(micro, total // 2, by, PAD)
    flat = torch.cat([m["labels"].reshape(-1) for m in cut])
    orig = torch.cat([m["labels"].reshape(-1) for m in micro])
    removed = ((orig != IGNORE_INDEX) & (flat == IGNORE_INDEX)).nonzero()
    kept = (flat != IGNORE_INDEX).nonzero()
    assert removed.numel() and int(kept.max()) < int(removed.min())
