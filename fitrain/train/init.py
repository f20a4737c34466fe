"""Random initialisation that does not depend on how the model is laid out: meta-device build, then
materialise, with every parameter drawn from its own generator keyed by ``(seed, parameter name)``.

A model built on the meta device holds no memory; :func:`materialize` (one process) or ``to_empty`` after
``fully_shard`` followed by :func:`init_weights` (FSDP2: parameters are DTensors) gives it real weights. Since
each parameter's values come from a generator seeded by its name, not from the order of draws on one global
generator, the weights are equal bit for bit whether a rank holds the whole model or a shard of it, and
whatever order the parameters are visited in. A parameter's values are drawn in blocks of whole rows
(at most ``BLOCK`` values, each block from its own generator), so a rank holding a dim-0 shard (FSDP2, HSDP)
draws only the blocks its rows touch: materialising costs each rank its shards plus the blocks being drawn
on CPU (``WORKERS`` x 64 MB), never the whole model.

The distributions are transformers' (``LlamaPreTrainedModel._init_weights``): linear and embedding weights
``normal(0, initializer_range)``, the padding token's embedding row zero, biases zero, norm weights one;
rotary frequencies are recomputed (``to_empty`` leaves buffers uninitialised).
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from fitrain.core.errors import FitrainError


BLOCK = 1 << 24      # elements per generator: a parameter is drawn in blocks of rows of at most this many values
WORKERS = 4          # blocks drawn at once (threads): CPU peak while materialising = shards + WORKERS blocks


def parameter_generator(seed: int, name: str, block: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``(seed, name, block)``: the same on every rank, independent of draw order."""
    digest = hashlib.sha256(f"fitrain-init:{int(seed)}:{name}:{block}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _rule(module: nn.Module, leaf: str, name: str) -> str:
    if leaf == "bias":
        return "zeros"
    if isinstance(module, (nn.Linear, nn.Embedding)) and leaf == "weight":
        return "normal"
    if leaf == "weight" and ("RMSNorm" in type(module).__name__ or isinstance(module, nn.LayerNorm)):
        return "ones"
    raise FitrainError(f"init_weights has no rule for parameter '{name}' of {type(module).__name__}")


def initial_rows(module: nn.Module, leaf: str, name: str, shape, std: float, seed: int,
                 start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows ``[start, stop)`` (along dim 0) of the fp32 initial value of ``module.<leaf>`` (canonical name
    ``name``, full shape ``shape``), on CPU. Normal values come in blocks of whole rows, each block from its
    own generator, so any range of rows is drawn without drawing the rest."""
    shape = tuple(shape)
    stop = shape[0] if stop is None else stop
    out_shape = (stop - start, *shape[1:])
    rule = _rule(module, leaf, name)
    if rule != "normal" or stop <= start:
        return torch.ones(out_shape) if rule == "ones" else torch.zeros(out_shape)
    row = max(1, int(torch.Size(shape[1:]).numel()))
    per_block = max(1, BLOCK // row)
    value = torch.empty(out_shape)

    def fill(blk: int) -> None:
        lo, hi = blk * per_block, min((blk + 1) * per_block, shape[0])
        drawn = torch.empty((hi - lo, *shape[1:])).normal_(0.0, std, generator=parameter_generator(seed, name, blk))
        a, b = max(start, lo), min(stop, hi)
        value[a - start:b - start] = drawn[a - lo:b - lo]

    blocks = range(start // per_block, -(-stop // per_block))
    if len(blocks) == 1:
        fill(blocks[0])
    else:   # blocks are independent (own generators): draw a few at once, the result does not depend on it
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(blocks))) as pool:
            list(pool.map(fill, blocks))
    pad = getattr(module, "padding_idx", None)
    if isinstance(module, nn.Embedding) and pad is not None and start <= pad < stop:
        value[pad - start] = 0.0
    return value


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
    wrapper that prefixes them; a layer wrapped for activation checkpointing (fitrain.train.parallel) keeps
    its HF name as the key (the wrapper's ``_checkpoint_wrapped_module.`` is left out)."""
    from torch.distributed.tensor import DTensor

    std = float(model.config.initializer_range)
    owners = _owners(model)
    for wrapped, p in model.named_parameters():     # deduplicated: a tied head is its embedding
        name = canonical_name(wrapped)
        module, leaf = owners[id(p)]
        if isinstance(p, DTensor):
            p.to_local().copy_(_local_rows(p, module, leaf, name, std, seed))
        else:
            p.copy_(initial_rows(module, leaf, name, p.shape, std, seed))
    reset_rotary_buffers(model)


def canonical_name(name: str) -> str:
    """A parameter's HF name: without the activation-checkpoint wrapper's prefix (torch's
    ``checkpoint_wrapper``, applied inside the FSDP groups before the shards are materialised)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import _CHECKPOINT_PREFIX

    return name.replace(_CHECKPOINT_PREFIX, "")


def _local_rows(p, module: nn.Module, leaf: str, name: str, std: float, seed: int) -> torch.Tensor:
    """This rank's shard of a DTensor parameter's initial value: drawn directly when the parameter is split
    along dim 0 only (FSDP2, HSDP), else cut from the full value without communication."""
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape = tuple(p.shape)
    local_shape, offset = compute_local_shape_and_global_offset(shape, p.device_mesh, p.placements)
    if tuple(local_shape[1:]) == shape[1:]:
        return initial_rows(module, leaf, name, shape, std, seed, offset[0], offset[0] + local_shape[0])
    full = initial_rows(module, leaf, name, shape, std, seed)
    return distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local()


@torch.no_grad()
def reset_rotary_buffers(model: nn.Module) -> None:
    """Recompute the rotary embedding's frequency buffers (fp32) in place, from the model's config."""
    for m in model.modules():
        if "RotaryEmbedding" not in type(m).__name__:
            continue
        fresh = type(m)(config=m.config)           # small: one vector per buffer, built on CPU
        device = m.inv_freq.device if isinstance(getattr(m, "inv_freq", None), torch.Tensor) else None
        for bname, buf in fresh.named_buffers(recurse=False):
            m.register_buffer(bname, buf.to(device=getattr(m, bname).device, dtype=torch.float32),
                              persistent=bname in m.state_dict())
        for attr, value in vars(fresh).items():    # older transformers keep original_inv_freq as a plain tensor
            if isinstance(value, torch.Tensor) and attr not in fresh._buffers and device is not None:
                setattr(m, attr, value.to(device))
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
