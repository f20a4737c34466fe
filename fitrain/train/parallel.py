"""How the model is laid over devices: FSDP2 sharding per decoder layer, mixed precision, activation
checkpointing and ``torch.compile`` composed with it (fitrain/docs/engineering.md, "FSDP").

``strategy=fsdp`` runs through Fabric's ``ModelParallelStrategy`` (fitrain.train.distributed) with every rank
a data-parallel replica; its ``parallelize_fn`` is :func:`shard_objective`, which shards the training
objective itself, built on the meta device (no rank ever holds the whole model):

* the mesh (:func:`data_parallel_mesh`): one flat shard group over all ranks, or HSDP -- a 2-D
  ``(replicate, shard)`` mesh that shards each parameter over ``fsdp.shard_size`` ranks (by default the GPUs
  of one node when ``num_nodes > 1``) and replicates across the groups (torchtitan's and OLMo-core's layout:
  the reduce-scatters stay inside a node, only an all-reduce of the shards crosses nodes);
* each decoder layer is its own FSDP2 group (``fully_shard``), the training objective
  (fitrain.train.objective.CausalLMLoss: embedding, final norm, output head) the root group; then each rank
  allocates and fills only its shards from the name-keyed generators (fitrain.train.init.materialize), equal
  bit for bit to a one-process init of the same seed;
* gradient accumulation (:func:`accumulation_sync`, ``fsdp.accumulate``): ``unsharded`` reduces only on the
  last micro-batch (``set_requires_gradient_sync(False)`` around the others: full fp32 gradients are kept
  between micro-batches), ``sharded`` reduce-scatters after every micro-batch (sharded gradients accumulate;
  under HSDP the cross-replica all-reduce still runs on the last one only: ``set_requires_all_reduce``);
  clipping uses the global norm over all shards (fitrain.train.optim);
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


def shard_objective(param_dtype: torch.dtype | None, seed: int | None = None,
                    shard_size: int = 0) -> Callable[[torch.nn.Module, Any], torch.nn.Module]:
    """Fabric's ``parallelize_fn`` for ``strategy=fsdp``: ``(objective, mesh) -> objective`` sharded with
    :func:`shard_model` over :func:`data_parallel_mesh` (compute in ``param_dtype``); a model built on the
    meta device is then materialised shard by shard with the name-keyed init of ``seed``."""
    from fitrain.train.init import materialize
    from fitrain.train.model import activation_checkpointing

    def parallelize(objective: torch.nn.Module, mesh) -> torch.nn.Module:
        dp = data_parallel_mesh(mesh, shard_size)
        shard_model(objective, objective.lm, dp, param_dtype, activation_checkpointing(objective.lm))
        if any(p.is_meta for p in objective.parameters()):
            if seed is None:
                raise ValueError("shard_objective: a meta-device model needs the seed to materialise it")
            materialize(objective.lm, mesh_device(dp), seed)
        return objective

    return parallelize


def data_parallel_mesh(mesh, shard_size: int = 0):
    """The FSDP2 mesh over Fabric's data-parallel ranks: flat (``shard_size`` 0 or all ranks), else the HSDP
    mesh ``(replicate, shard)`` = ``(ranks / shard_size, shard_size)``; ranks ``[k * shard_size, (k + 1) *
    shard_size)`` (one node's GPUs under torchrun / srun's rank order) form shard group ``k``."""
    from torch.distributed.device_mesh import init_device_mesh

    from fitrain.core.errors import ConfigError

    flat = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
    world = flat.size()
    if shard_size in (0, world):
        return flat
    if shard_size < 0 or world % shard_size:
        raise ConfigError(f"fsdp.shard_size={shard_size} does not divide the {world} data-parallel ranks")
    return init_device_mesh(flat.device_type, (world // shard_size, shard_size), mesh_dim_names=("replicate", "shard"))


def mesh_device(mesh) -> torch.device:
    """This rank's device of ``mesh`` (Fabric has set the current CUDA device before the parallelize_fn)."""
    if mesh.device_type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(mesh.device_type)


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


def is_sharded(objective: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(objective, FSDPModule)


GRADIENT_BUDGET = 0.10   # fsdp.accumulate=auto keeps unsharded gradients when 4 x params fit in this share of a device


def resolve_accumulate(requested: str, parameters: int, device_bytes: int | None, grad_accum: int) -> tuple[str, str]:
    """(``sharded`` | ``unsharded``, why) for ``fsdp.accumulate``. ``auto``: with one micro-batch per step
    there is nothing to keep; else ``unsharded`` (one reduce-scatter per step) when the full fp32 gradients
    (4 bytes x ``parameters``) take at most :data:`GRADIENT_BUDGET` of the device's memory (``device_bytes``;
    None: unknown, e.g. CPU, where the smaller footprint is chosen), else ``sharded`` (README, "FSDP, HSDP and
    accumulation memory")."""
    if requested != "auto":
        return requested, "set in the config"
    if grad_accum <= 1:
        return "unsharded", "auto: one micro-batch per step (nothing is kept between micro-batches)"
    need = 4 * parameters
    if device_bytes and need <= GRADIENT_BUDGET * device_bytes:
        return "unsharded", (f"auto: unsharded fp32 gradients ({need / 2**30:.1f} GiB) fit in "
                             f"{GRADIENT_BUDGET:.0%} of the device's {device_bytes / 2**30:.0f} GiB")
    where = f"the device's {device_bytes / 2**30:.0f} GiB" if device_bytes else "an unknown device memory"
    return "sharded", (f"auto: unsharded fp32 gradients ({need / 2**30:.1f} GiB) exceed {GRADIENT_BUDGET:.0%} "
                       f"of {where}")


def accumulation_sync(fabric: Any, objective: torch.nn.Module, mode: str) -> Callable[[], Any]:
    """The context around every micro-batch but a step's last (fitrain.train.loss.accumulate_gradients'
    ``no_sync``): ``unsharded`` skips the gradient reduction (Fabric's ``no_backward_sync``: FSDP2's
    ``set_requires_gradient_sync(False)``, DDP's ``no_sync``); ``sharded`` reduce-scatters every
    micro-batch, and under HSDP skips only the all-reduce across replicas (``set_requires_all_reduce``)."""
    if mode == "unsharded" or not is_sharded(getattr(objective, "module", objective)):
        return lambda: fabric.no_backward_sync(objective)
    root = getattr(objective, "module", objective)
    return lambda: _all_reduce_off(root)


@contextlib.contextmanager
def _all_reduce_off(root: torch.nn.Module) -> Iterator[None]:
    root.set_requires_all_reduce(False)      # a no-op without a replicate dimension
    try:
        yield
    finally:
        root.set_requires_all_reduce(True)


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
