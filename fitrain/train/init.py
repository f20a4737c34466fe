"""Random initialisation that does not depend on how the model is laid out: meta-device build, then
materialise, with every parameter drawn from its own generator keyed by ``(seed, parameter name)``.

A model built on the meta device holds no memory; :func:`materialize` (one process) or ``to_empty`` after
``fully_shard`` followed by :func:`init_weights` (FSDP2: parameters are DTensors) gives it real weights. Since
each parameter's values come from a generator seeded by its name, not from the order of draws on one global
generator, the weights are equal bit for bit whether a rank holds the whole model or a shard of it, and
whatever order the parameters are visited in. Sharded parameters are filled one at a time: the full tensor
is drawn on CPU and only the rank's shard is copied, so the peak is one full parameter (the embedding), not
the model.

The distributions are transformers' (``LlamaPreTrainedModel._init_weights``): linear and embedding weights
``normal(0, initializer_range)``, the padding token's embedding row zero, biases zero, norm weights one;
rotary frequencies are recomputed (``to_empty`` leaves buffers uninitialised).
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from fitrain.core.errors import FitrainError


def parameter_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, name)``: the same on every rank, independent of draw order."""
    digest = hashlib.sha256(f"fitrain-init:{int(seed)}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _full_value(module: nn.Module, leaf: str, name: str, shape, std: float, seed: int) -> torch.Tensor:
    """The full fp32 initial value of ``module.<leaf>`` (canonical name ``name``) on CPU."""
    if leaf == "bias":
        return torch.zeros(shape)
    if isinstance(module, (nn.Linear, nn.Embedding)) and leaf == "weight":
        value = torch.empty(shape).normal_(0.0, std, generator=parameter_generator(seed, name))
        pad = getattr(module, "padding_idx", None)
        if isinstance(module, nn.Embedding) and pad is not None:
            value[pad] = 0.0
        return value
    if leaf == "weight" and ("RMSNorm" in type(module).__name__ or isinstance(module, nn.LayerNorm)):
        return torch.ones(shape)
    raise FitrainError(f"init_weights has no rule for parameter '{name}' of {type(module).__name__}")


def _owners(model: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    """``id(parameter) -> (module holding it, attribute name)``; a tied parameter keeps its first holder."""
    out: dict[int, tuple[nn.Module, str]] = {}
    for module in model.modules():
        for leaf, p in module.named_parameters(recurse=False):
            out.setdefault(id(p), (module, leaf))
    return out


@torch.no_grad()
def init_weights(model: nn.Module, seed: int) -> None:
    """Initialise every parameter of ``model`` (a transformers causal LM, plain or sharded with
    ``fully_shard``) in place from its name-keyed generator, and recompute the rotary buffers.

    Pass the language model itself (its ``named_parameters`` names are the keys, the HF names), not a
    wrapper that prefixes them."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    std = float(model.config.initializer_range)
    owners = _owners(model)
    for name, p in model.named_parameters():        # deduplicated: a tied head is its embedding
        module, leaf = owners[id(p)]
        full = _full_value(module, leaf, name, tuple(p.shape), std, seed)
        if isinstance(p, DTensor):
            # every rank drew the same full tensor: take the local shard without communication
            local = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local()
            p.to_local().copy_(local)
        else:
            p.copy_(full)
        del full
    reset_rotary_buffers(model)


@torch.no_grad()
def reset_rotary_buffers(model: nn.Module) -> None:
    """Recompute the rotary embedding's frequency buffers (fp32) in place, from the model's config."""
    for m in model.modules():
        if "RotaryEmbedding" not in type(m).__name__:
            continue
        fresh = type(m)(config=m.config)           # small: one vector per buffer, built on CPU
        for bname, buf in fresh.named_buffers(recurse=False):
            old = getattr(m, bname)
            m.register_buffer(bname, buf.to(device=old.device, dtype=torch.float32),
                              persistent=bname in m.state_dict())
        if hasattr(fresh, "attention_scaling"):
            m.attention_scaling = fresh.attention_scaling


def materialize(model: nn.Module, device: torch.device | str, seed: int) -> nn.Module:
    """Give a meta-device model real storage on ``device`` and initialise it (:func:`init_weights`).
    For FSDP2, call ``fully_shard`` first and then this: each rank allocates and fills only its shards."""
    model.to_empty(device=device)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()          # to_empty gives each parameter new storage: a tied head is re-tied
    init_weights(model, seed)
    return model
