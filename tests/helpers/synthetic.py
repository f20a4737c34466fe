"""Synthetic packed batches that follow the batch contract (INTERFACES.md), for trainer tests."""
from __future__ import annotations

IGNORE = -100


def packed_batch(rows: int, seq_len: int, vocab: int, seed: int, response_only: bool = True,
                 min_doc: int = 3, max_doc: int = 12) -> dict:
    """Rows of random documents packed back to back, padding at the row end as its own segment.

    labels: -100 at each segment's first token and on padding; with ``response_only`` the first part of each
    document (a random 'instruction' length) is unsupervised too."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (rows, seq_len), generator=g)
    labels = torch.full((rows, seq_len), IGNORE, dtype=torch.long)
    pos = torch.zeros((rows, seq_len), dtype=torch.long)
    for r in range(rows):
        t = 0
        while t < seq_len:
            n = int(torch.randint(min_doc, max_doc + 1, (1,), generator=g))
            n = min(n, seq_len - t)
            pad = t > seq_len - min_doc and t > 0
            pos[r, t:t + n] = torch.arange(n)
            if pad:
                ids[r, t:t + n] = 0
            else:
                start = 1 + (int(torch.randint(0, max(1, n - 1), (1,), generator=g)) if response_only else 0)
                labels[r, t + start:t + n] = ids[r, t + start:t + n]
            t += n
    return {"input_ids": ids, "labels": labels, "position_ids": pos}


def segments(position_ids_row) -> list[tuple[int, int]]:
    """(start, end) of each segment of one row."""
    starts = [i for i, p in enumerate(position_ids_row.tolist()) if p == 0] + [len(position_ids_row)]
    return list(zip(starts[:-1], starts[1:]))
