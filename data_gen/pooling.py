"""Gaussian coverage pooling (fitrain/docs/method.md, "Matching"): one global mean-pooled vector plus K local vectors.

For a document of T unpadded tokens (t = 0..T-1 counts unpadded positions, so padding side is irrelevant),
local vector k = 1..K has centre c_k = T*k/(K+1) and token weights
w_{k,t} = m_t * exp(-1/2 * ((t - c_k) / (sigma*T))^2), normalised over t (m = attention mask);
the local vector is alpha * (weighted mean) + (1 - alpha) * (global mean). With K=1 and alpha=0 every
vector is the plain mean pooling of sentence-transformers.
"""
from __future__ import annotations


def gaussian_coverage_pool(token_embeddings, attention_mask, k: int, sigma: float, alpha: float):
    """``[B, L, D]`` token embeddings + ``[B, L]`` mask -> ``[B, K+1, D]`` (index 0 = global, 1..K local).
    Not normalised: callers L2-normalise for cosine search."""
    import torch

    if k < 0:
        raise ValueError(f"pooling k must be >= 0, got {k}")
    if sigma <= 0:
        raise ValueError(f"pooling sigma must be > 0, got {sigma}")
    emb = token_embeddings.float()
    m = attention_mask.to(emb.dtype)                                  # [B, L]
    n_tok = m.sum(dim=1).clamp(min=1.0)                                # T per row
    global_mean = (emb * m.unsqueeze(-1)).sum(dim=1) / n_tok.unsqueeze(-1)   # [B, D]
    if k == 0:
        return global_mean.unsqueeze(1)
    pos = (torch.cumsum(m, dim=1) - 1.0).clamp(min=0.0)              # t of each unpadded token
    ks = torch.arange(1, k + 1, dtype=emb.dtype, device=emb.device)   # [K]
    centres = n_tok.unsqueeze(1) * ks.unsqueeze(0) / (k + 1)          # [B, K]
    width = (sigma * n_tok).unsqueeze(1).unsqueeze(2)                 # [B, 1, 1]
    z = (pos.unsqueeze(1) - centres.unsqueeze(2)) / width             # [B, K, L]
    w = m.unsqueeze(1) * torch.exp(-0.5 * z * z)
    w = w / w.sum(dim=2, keepdim=True).clamp(min=1e-12)
    local = torch.einsum("bkl,bld->bkd", w, emb)                      # [B, K, D]
    local = alpha * local + (1.0 - alpha) * global_mean.unsqueeze(1)
    return torch.cat([global_mean.unsqueeze(1), local], dim=1)
