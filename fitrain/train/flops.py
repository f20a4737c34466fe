"""Training FLOPs of a step and MFU under two named conventions (fitrain/docs/engineering.md, "MFU").

* ``fitrain`` (exact, per document): ``6 x`` the decoder's parameters per token read, ``6 x vocab x dim`` per
  position through the output head (fitrain runs the head only on positions with a target:
  fitrain.train.objective.head_cross_entropy), and ``12 x layers x dim x l`` per token of a document of
  length ``l``: packed documents attend only within themselves, so a row of short documents does
  ``sum(l^2) / T`` of the attention work of one ``T``-token document.
* ``published`` (PaLM appendix B, Megatron, torchtitan, llm-foundry): ``6N + 12 x layers x dim x T`` per token
  over full rows of ``T`` tokens, ``N`` the parameters without the input embedding (the output head counts);
  padding counts as tokens and attention as if each row were one document. On packed data it reads 16-25%
  higher than ``fitrain`` for the 1.8b shape at 4096; it is the figure to compare with published MFU.

Both take no causal discount on attention, as the published figures do not.
"""
from __future__ import annotations

from dataclasses import dataclass

CONVENTIONS = {
    "fitrain": "exact per-document count: 6 x decoder params per token + 6 x vocab x dim per target "
               "+ 12 x layers x dim x sum(doc_len^2)",
    "published": "6N + 12 x layers x dim x T per token over full rows (PaLM / Megatron / torchtitan)",
}


@dataclass(frozen=True)
class FlopsModel:
    """Per-unit training FLOPs (forward + backward) of one model; see the module docstring."""

    body_per_token: float        # 6 x decoder parameters (embeddings excluded)
    head_per_target: float       # 6 x vocab x dim
    attention_per_sq: float      # 12 x layers x dim

    def step(self, tokens: int, head_positions: int, sum_sq_lengths: int) -> float:
        """fitrain's exact count: ``tokens`` read, ``head_positions`` through the head, ``sum(l^2)`` over the
        step's documents."""
        return (self.body_per_token * tokens + self.head_per_target * head_positions
                + self.attention_per_sq * sum_sq_lengths)

    def published_step(self, rows: int, seq_len: int) -> float:
        """The published convention: ``(6N + 12 x layers x dim x T) x rows x T``, ``N`` = decoder + head."""
        per_token = self.body_per_token + self.head_per_target + self.attention_per_sq * seq_len
        return per_token * rows * seq_len

    def both(self, tokens: int, head_positions: int, sum_sq_lengths: int, rows: int, seq_len: int) -> dict:
        """``{convention: FLOPs}`` of one step under each name of :data:`CONVENTIONS`."""
        return {"fitrain": self.step(tokens, head_positions, sum_sq_lengths),
                "published": self.published_step(rows, seq_len)}


def flops_from_shape(n_layers: int, dim: int, vocab: int, decoder_params: int) -> FlopsModel:
    return FlopsModel(body_per_token=6.0 * decoder_params, head_per_target=6.0 * vocab * dim,
                      attention_per_sq=12.0 * n_layers * dim)


def count_parameters(model) -> tuple[int, int]:
    """(total unique parameters, embedding parameters: input embedding + untied output head)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = model.get_input_embeddings().weight.numel()
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        emb += out.weight.numel()
    return total, emb


def flops_model(model) -> FlopsModel:
    """The :class:`FlopsModel` of a built transformers model (parameters counted once, embeddings apart)."""
    c = model.config
    total, emb = count_parameters(model)
    return flops_from_shape(c.num_hidden_layers, c.hidden_size, c.vocab_size, total - emb)


def mfu(flops: float, seconds: float, peak_flops_per_device: float | None, devices: int = 1) -> float | None:
    """Model FLOPs utilisation: ``flops`` done in ``seconds`` by ``devices`` devices over their dense peak;
    None when the peak is unknown (CPU, an unlisted GPU) or nothing was timed."""
    if not peak_flops_per_device or seconds <= 0 or not flops:
        return None
    return flops / seconds / (max(1, devices) * peak_flops_per_device)


def mfu_both(step_flops: dict, seconds: float, peak_flops_per_device: float | None, devices: int = 1) -> dict:
    """``{"mfu_fitrain": ..., "mfu_published": ...}`` from :meth:`FlopsModel.both`'s FLOPs."""
    return {f"mfu_{name}": mfu(f, seconds, peak_flops_per_device, devices) for name, f in step_flops.items()}
