"""How the model is laid over devices: FSDP2 sharding per decoder layer, mixed precision, activation
checkpointing and ``torch.compile`` composed with it (fitrain/docs/engineering.md, "FSDP").

``strategy=fsdp`` runs through Fabric's ``ModelParallelStrategy`` (fitrain.train.distributed) with every rank
in one data-parallel mesh; its ``parallelize_fn`` is :func:`shard_objective`, which shards the training
objective itself:

* each decoder layer is its own FSDP2 group (``fully_shard``), the training objective
  (fitrain.train.objective.CausalLMLoss: embedding, final norm, output head) the root group;
* gradient accumulation reduces only on the last micro-batch (Fabric's ``no_backward_sync`` around the
  others: ``set_requires_gradient_sync``); clipping uses the global norm over all shards (fitrain.train.optim);
* ``bf16-mixed`` is FSDP2's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``: fp32 sharded
  master weights and optimizer states, bf16 compute, fp32 gradient reduction. Buffers are not cast, so
  RoPE's ``inv_freq`` stays fp32 as in the exported model;
* activation checkpointing wraps each layer *inside* its FSDP group (torch's ``checkpoint_wrapper``), so a
  recompute does not run FSDP's hooks again; ``compile`` compiles each layer's ``forward`` (the hooks stay
  outside the compiled code), as torchtitan does. Parameter names do not change, so checkpoints keep the
  HF names.

Checkpoints are sharded (``torch.distributed.checkpoint``: one directory, a file per rank plus ``meta.pt``;
fitrain.train.checkpoint_io); the export consolidates them.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch


def shard_objective(param_dtype: torch.dtype | None) -> Callable[[torch.nn.Module, Any], torch.nn.Module]:
    """Fabric's ``parallelize_fn`` for ``strategy=fsdp``: ``(objective, mesh) -> objective`` sharded with
    :func:`shard_model` over the mesh's data-parallel dimension (compute in ``param_dtype``)."""
    from fitrain.train.model import activation_checkpointing

    def parallelize(objective: torch.nn.Module, mesh) -> torch.nn.Module:
        shard_model(objective, objective.lm, mesh["data_parallel"], param_dtype,
                    activation_checkpointing(objective.lm))
        return objective

    return parallelize


def shard_model(objective: torch.nn.Module, lm: torch.nn.Module, mesh, param_dtype: torch.dtype | None,
                activation_checkpointing: bool) -> None:
    """FSDP2 over ``mesh``: each decoder layer of ``lm`` (checkpoint-wrapped first when asked), then the
    ``objective`` (which holds ``lm``) as the root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    layers = lm.model.layers
    if activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper

        from fitrain.train.model import set_activation_checkpointing

        set_activation_checkpointing(lm, False)   # transformers' own would recompute inside FSDP's hooks
        for i, layer in enumerate(layers):
            layers[i] = checkpoint_wrapper(layer, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
    for i, layer in enumerate(layers):
        # the last layer's parameters are gathered again at once by the backward: keep them
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(layers) - 1)
    fully_shard(objective, mesh=mesh, mp_policy=mp, reshard_after_forward=False)


@contextlib.contextmanager
def gradient_sync_off(root: torch.nn.Module) -> Iterator[None]:
    """FSDP2: accumulate unsharded gradients without reducing them (all micro-batches but the last); for
    loops outside Fabric (benchmarks/gpu_suite.py), which uses ``no_backward_sync``."""
    root.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        root.set_requires_gradient_sync(True)


def compile_layers(lm: torch.nn.Module) -> None:
    """``torch.compile`` each decoder layer's ``forward`` in place: module hooks (FSDP2's) stay outside the
    compiled code, parameter names do not change (no ``_orig_mod``), and one compiled graph serves every
    layer of the same shape."""
    for layer in lm.model.layers:
        inner = getattr(layer, "_checkpoint_wrapped_module", layer)
        if not getattr(inner, "_fitrain_compiled", False):
            inner.forward = torch.compile(inner.forward)
            inner._fitrain_compiled = True


def keep_rope_fp32(lm: torch.nn.Module) -> None:
    """Rotary frequencies in fp32, recomputed if a whole-module conversion (``module.to(bf16)``, e.g. in
    benchmarks/gpu_suite.py) cast the buffer: a bf16 ``inv_freq`` shifts the phase by radians at positions in the thousands, while
    the exported model recomputes it in fp32."""
    for m in lm.modules():
        inv = getattr(m, "inv_freq", None)
        if not isinstance(inv, torch.Tensor) or inv.dtype == torch.float32:
            continue
        if getattr(m, "rope_type", "default") == "default":
            fresh, _ = m.compute_default_rope_parameters(m.config)
        else:
            from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

            fresh, _ = ROPE_INIT_FUNCTIONS[m.rope_type](m.config, inv.device)
        m.register_buffer("inv_freq", fresh.to(device=inv.device, dtype=torch.float32), persistent=False)
        if isinstance(getattr(m, "original_inv_freq", None), torch.Tensor):
            m.register_buffer("original_inv_freq", m.inv_freq.clone(), persistent=False)
