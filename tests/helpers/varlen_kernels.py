"""CPU stand-ins for ``torch.nn.attention.varlen.varlen_attn`` with the exact signatures of torch releases
(the CUDA kernel cannot run here). Each computes what the kernel computes (attention within each
``cu_seq`` segment, causal when asked) per segment with sdpa, refuses what the release refuses (fewer K/V
heads without ``enable_gqa``, which 2.11 does not have), and records its calls in ``CALLS``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

CALLS: list[dict] = []


def _reference(q, k, v, cu_q, cu_k, causal: bool, scale, gqa: bool):
    if q.shape[1] != k.shape[1] and not gqa:
        raise RuntimeError(f"stand-in varlen kernel: {q.shape[1]} query heads but {k.shape[1]} K/V heads")
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32
    out = torch.empty_like(q)
    for s, e in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        out[s:e] = F.scaled_dot_product_attention(q[s:e].transpose(0, 1), k[s:e].transpose(0, 1),
                                                  v[s:e].transpose(0, 1), is_causal=causal, scale=scale,
                                                  enable_gqa=gqa).transpose(0, 1)
    return out


def torch_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    CALLS.append({"version": "2.10", "causal": is_causal, "kv_heads": key.shape[1]})
    return _reference(query, key, value, cu_seq_q, cu_seq_k, is_causal, None, False)


def torch_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
               window_size=(-1, -1)):
    CALLS.append({"version": "2.11", "window_size": tuple(window_size), "scale": scale, "kv_heads": key.shape[1],
                  "max_q": max_q})
    assert tuple(window_size) in ((-1, -1), (-1, 0))
    return _reference(query, key, value, cu_seq_q, cu_seq_k, tuple(window_size) == (-1, 0), scale, False)


def torch_2_13(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
               window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
    CALLS.append({"version": "2.13", "window_size": tuple(window_size), "scale": scale, "gqa": enable_gqa,
                  "kv_heads": key.shape[1], "max_q": max_q})
    assert tuple(window_size) in ((-1, -1), (-1, 0))
    return _reference(query, key, value, cu_seq_q, cu_seq_k, tuple(window_size) == (-1, 0), scale, enable_gqa)


BY_VERSION = {"2.10": torch_2_10, "2.11": torch_2_11, "2.13": torch_2_13}


def install(monkeypatch_or_none, version: str):
    """Put the stand-in of ``version`` in place of torch's ``varlen_attn`` (with pytest's monkeypatch, or
    for good when None: the GPU suite's CPU smoke run)."""
    from torch.nn.attention import varlen

    if monkeypatch_or_none is None:
        varlen.varlen_attn = BY_VERSION[version]
    else:
        monkeypatch_or_none.setattr(varlen, "varlen_attn", BY_VERSION[version])
