"""How the model is laid over devices: FSDP2 sharding per decoder layer, mixed precision, activation
checkpointing and ``torch.compile`` composed with it (fitrain/docs/engineering.md, "FSDP").

``strategy=fsdp`` is :class:`FSDP2Strategy`, Lightning's ``ModelParallelStrategy`` (FSDP2 / DTensor) with
every rank in one data-parallel mesh. Lightning's older ``FSDPStrategy`` wraps the whole LightningModule,
so fitrain's own step (backward per micro-batch, no-sync, clipping, optimizer step) would run inside FSDP's
forward and fail its state checks; here the LightningModule stays unwrapped and :meth:`FSDP2Strategy.shard`
(called from the module's ``configure_model``) shards the model itself:

* each decoder layer is its own FSDP2 group (``fully_shard``), the training objective
  (fitrain.train.objective.CausalLMLoss: embedding, final norm, output head) the root group;
* gradient accumulation reduces only on the last micro-batch (:func:`gradient_sync_off` around the others,
  ``set_requires_gradient_sync``); clipping uses the global norm over all shards (fitrain.train.optim);
* ``bf16-mixed`` is FSDP2's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``: fp32 sharded
  master weights and optimizer states, bf16 compute, fp32 gradient reduction. Buffers are not cast, so
  RoPE's ``inv_freq`` stays fp32 as in the exported model (:func:`keep_rope_fp32` checks it);
* activation checkpointing wraps each layer *inside* its FSDP group (torch's ``checkpoint_wrapper``), so a
  recompute does not run FSDP's hooks again; ``compile`` compiles each layer's ``forward`` (the hooks stay
  outside the compiled code), as torchtitan does. Parameter names do not change, so checkpoints keep the
  HF names.

Checkpoints are sharded (``torch.distributed.checkpoint``: one directory, a file per rank plus
``meta.pt``); fitrain.train.checkpoint consolidates them for the export.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from lightning.pytorch.strategies import ModelParallelStrategy

from fitrain.core.errors import FitrainError

# strategy=fsdp: the Lightning precision flag to run under, and FSDP2's parameter (compute) dtype
FSDP_PRECISIONS: dict[str, tuple[str, torch.dtype | None]] = {
    "32-true": ("32-true", None),
    "bf16-mixed": ("32-true", torch.bfloat16),   # FSDP2's policy does the mixing; no autocast on top
}


def fsdp_precision(precision: str) -> tuple[str, torch.dtype | None]:
    if precision not in FSDP_PRECISIONS:
        raise FitrainError(f"strategy=fsdp runs precision 32-true or bf16-mixed (bf16 compute, fp32 weights and "
                           f"gradient reduction), not '{precision}'")
    return FSDP_PRECISIONS[precision]


class FSDP2Strategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` as pure data-parallel FSDP2: one mesh of all ranks (no tensor parallelism),
    sharded checkpoints, and the mixed-precision policy :meth:`shard` applies."""

    def __init__(self, param_dtype: torch.dtype | None = None, **kwargs: Any):
        super().__init__(save_distributed_checkpoint=True, **kwargs)
        self.param_dtype = param_dtype

    def setup_environment(self) -> None:
        # every rank is a data-parallel replica (the base class defaults to nodes x GPUs-per-node as DP x TP)
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def shard(self, objective: torch.nn.Module, lm: torch.nn.Module, activation_checkpointing: bool) -> None:
        shard_model(objective, lm, self.device_mesh["data_parallel"], self.param_dtype, activation_checkpointing)


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
    keep_rope_fp32(lm)


def is_sharded(objective: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(objective, FSDPModule)


@contextlib.contextmanager
def gradient_sync_off(root: torch.nn.Module) -> Iterator[None]:
    """FSDP2: accumulate unsharded gradients without reducing them (all micro-batches but the last)."""
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
    """Rotary frequencies in fp32, recomputed if a precision conversion (``bf16-true``: ``module.to(bf16)``)
    cast the buffer: a bf16 ``inv_freq`` shifts the phase by radians at positions in the thousands, while
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
