"""Per-item random generators that depend only on what an item *is*, never on where it sits.

The token-for-token budget (fitrain.data.budget) and data_gen's per-document choices (which templates a
document gets, which sentences an answer takes) must not change when a corpus is split into a different
number of shards or array tasks. Both draw from :func:`item_rng`, seeded by the experiment seed and a hash
of the item's key (and of a salt naming the decision, so two decisions about one document are independent).
"""
from __future__ import annotations

import hashlib

import numpy as np


def item_rng(seed: int, *key: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and the parts of ``key`` (joined by NUL: ``("salt", doc_id)``)."""
    h = int.from_bytes(hashlib.blake2b("\0".join(key).encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng([seed & 0xFFFFFFFF, h & 0xFFFFFFFF, h >> 32])
