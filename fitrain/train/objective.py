"""The training objective: decoder -> final hidden states -> output head + cross-entropy of the supervised
targets, as one module (:class:`CausalLMLoss`) that FSDP2 can shard as its root (fitrain.train.parallel).

Memory (fitrain/docs/engineering.md, "Output head memory"): the head runs only on the positions that carry
a target (gathered by index first; under a response-only mask that skips the instruction tokens), the
shift is done on the labels (no ``logits[:, :-1]`` copy), and with the chunked loss (``loss.kind``, on by
default for large vocabularies) the head and the cross-entropy run ``chunk_tokens`` targets at a time
inside one autograd Function that computes each chunk's gradients as it goes: no ``[tokens, vocab]`` fp32
logits are ever held (for a 1.8b micro-batch of 4 x 4096 with a 128k vocabulary they are 8 GiB, plus as
much again for their gradient) and the head's matmul is not recomputed in the backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fitrain.data.loader import IGNORE_INDEX
from fitrain.train.loss import shifted_targets


def _compute_dtype(device: torch.device, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype the plain ``lm_head`` would use: autocast's (bf16-mixed) or the weight's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight.dtype


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``sum(CE(hidden @ weight.T, targets))`` over ``[N, D]`` hidden states (every target valid), chunk by
    chunk. The forward also computes the gradients (softmax - one-hot per chunk, in fp32), so the backward
    only scales them: no chunk's logits outlive the chunk and the head matmul is not recomputed."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, dtype: torch.dtype):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if want_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
            for s in range(0, hidden.shape[0], chunk):
                h, t = hidden[s:s + chunk].to(dtype), targets[s:s + chunk, None]
                z = (h @ w.t()).float()                            # [c, V] fp32 logits of this chunk only
                target = z.gather(1, t)
                top = z.amax(dim=-1, keepdim=True)
                p = z.sub_(top).exp_()                             # in place: one [c, V] buffer per chunk
                total = p.sum(dim=-1, keepdim=True)
                loss += (top + total.log() - target).sum()         # log-sum-exp - target logit
                if want_h or want_w:
                    g = p.div_(total)                              # softmax ...
                    g.scatter_add_(1, t, torch.full_like(t, -1, dtype=g.dtype))   # ... minus one-hot
                    g = g.to(dtype)
                    if want_h:
                        grad_h[s:s + chunk] = (g @ w).to(hidden.dtype)
                    if want_w:
                        grad_w += g.t() @ h
                    del g
                del z, p                                           # before the next chunk's logits exist
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        grad_h = saved.pop(0) * grad_out if ctx.needs_input_grad[0] else None      # keeps the hidden dtype
        grad_w = (saved.pop(0) * grad_out).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None, None, None


def supervised_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the flattened ``[B*T]`` indices of the positions that carry a target, their targets). Finding them is
    a host sync; :class:`CausalLMLoss` does it before the decoder is queued, so it waits only for work
    already on the device."""
    targets = shifted_targets(labels).reshape(-1)
    index = (targets != IGNORE_INDEX).nonzero().view(-1)
    return index, targets.index_select(0, index)


def head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int = 0,
                       positions: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, int]:
    """Sum of CE over the supervised targets of ``[B, T, D]`` final hidden states through the output head
    ``weight`` ``[V, D]``, and the number of targets. ``chunk_tokens`` > 0: the memory-bounded chunked path.
    Only positions with a target go through the head (``positions``: :func:`supervised_positions`)."""
    index, t = positions if positions is not None else supervised_positions(labels)
    h = hidden.reshape(-1, hidden.size(-1)).index_select(0, index)
    n = int(index.numel())
    if chunk_tokens > 0:
        dtype = _compute_dtype(hidden.device, weight)
        return _ChunkedLinearCrossEntropy.apply(h, weight, t, int(chunk_tokens), dtype), n
    logits = F.linear(h, weight)
    return F.cross_entropy(logits.float(), t, reduction="sum"), n


class CausalLMLoss(torch.nn.Module):
    """The model's training objective as a module: decoder -> final hidden states -> head + CE of the
    supervised targets. ``forward(batch) -> (sum of CE, targets)``.

    A module so that FSDP2 can shard it as the root (the decoder layers are their own groups; the
    embedding, final norm and head are the root's, gathered for this forward), which keeps the head's
    weight whole while the chunked loss uses it. Checkpoints hold the HF model's own state (HF parameter
    names, ``model.*``), not this module's (fitrain.train.checkpoint_io)."""

    def __init__(self, lm, chunk_tokens: int = 0):
        super().__init__()
        self.lm = lm
        self.chunk_tokens = int(chunk_tokens)

    def forward(self, batch: dict) -> tuple[torch.Tensor, int]:
        from fitrain.train.model import forward_hidden

        positions = supervised_positions(batch["labels"])
        hidden = forward_hidden(self.lm, batch)
        return head_cross_entropy(hidden, self.lm.get_output_embeddings().weight, batch["labels"],
                                  self.chunk_tokens, positions)
