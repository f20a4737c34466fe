"""The batches of benchmarks/gpu_suite.py: packed rows of log-normal documents (the batch contract of
fitrain/INTERFACES.md) and the same documents one per row."""
from __future__ import annotations

import torch


def packed_rows(rows: int, seq_len: int, vocab: int, mean_doc: int, seed: int, pad_id: int = 1):
    """Rows of documents packed back to back (log-normal lengths), the batch contract of
    fitrain/INTERFACES.md: per-document position ids, the first label of each document ignored, the rest
    of a row too short for another document padding (its own segment). Also the (row, start, end) of each
    document."""
    import math

    from fitrain.data.loader import IGNORE_INDEX

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (rows, seq_len), generator=g)
    pos = torch.zeros((rows, seq_len), dtype=torch.long)
    labels = ids.clone()
    docs: list[tuple[int, int, int]] = []
    for r in range(rows):
        t = 0
        while seq_len - t >= 8:
            n = int(math.exp(math.log(mean_doc) - 0.5 + float(torch.randn((), generator=g))))
            n = max(8, min(n, seq_len - t))
            pos[r, t:t + n] = torch.arange(n)
            labels[r, t] = IGNORE_INDEX
            docs.append((r, t, t + n))
            t += n
        if t < seq_len:
            ids[r, t:], labels[r, t:], pos[r, t:] = pad_id, IGNORE_INDEX, torch.arange(seq_len - t)
    return {"input_ids": ids, "labels": labels, "position_ids": pos}, docs


def to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def one_document_per_row(batch, docs, length: int) -> dict:
    from fitrain.data.loader import IGNORE_INDEX

    n = len(docs)
    out = {"input_ids": torch.full((n, length), 1), "labels": torch.full((n, length), IGNORE_INDEX),
           "position_ids": torch.arange(length).expand(n, -1).clone()}
    for i, (r, a, e) in enumerate(docs):
        for k in ("input_ids", "labels"):
            out[k][i, :e - a] = batch[k][r, a:e]
    return out
