"""Where the run executes, on Lightning Fabric: devices, launching, the data-parallel strategy, precision.

fitrain owns everything else (the step, checkpoints, logging, signals); Fabric is asked for devices,
process groups, ``setup_module`` (DDP wrapping, FSDP2 sharding), ``backward`` (the precision's loss scaling),
``no_backward_sync`` and the collectives.

Strategies: ``single`` (one device), ``ddp`` (srun / torchrun, CPU gloo or GPU NCCL), ``fsdp`` (FSDP2 per
decoder layer, fitrain.train.parallel, through Fabric's ``ModelParallelStrategy`` with every rank a
data-parallel replica, flat or HSDP (:func:`fsdp_shard_size`); CPU gloo or GPU NCCL); ``auto`` lets Fabric
pick from the devices.

Precision (:func:`resolve_precision`): ``auto`` is ``bf16-mixed`` on GPUs and on CPUs with bf16 matrix units
(AMX or AVX512-BF16), ``32-true`` elsewhere. Under ``fsdp``, bf16-mixed is FSDP2's mixed-precision policy
(fp32 master weights and gradient reduction, bf16 compute) and Fabric runs at 32-true; ``bf16-true`` casts the
parameters only (buffers such as RoPE's ``inv_freq`` stay fp32, as in the exported model).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.config import TrainConfig


@dataclass(frozen=True)
class Precision:
    """What the run computes in: ``name`` (one of PRECISIONS but auto), why it was chosen, what Fabric runs
    under, and the dtype parameters are cast to or FSDP2 computes in (None: fp32)."""

    name: str
    reason: str
    fabric: str
    param_dtype: Any = None


def cpu_bf16_matrix_units(cpuinfo: str | None = None) -> str:
    """The CPU's bf16 matrix instructions ('amx_bf16' or 'avx512_bf16'), or '' when it has none: from the
    flags in /proc/cpuinfo, else torch's CPU capability."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    for unit in ("amx_bf16", "avx512_bf16"):
        if unit in flags:
            return unit
    if not cpuinfo:
        import torch

        cap = str(torch.backends.cpu.get_cpu_capability()).lower()
        return "amx_bf16" if "amx" in cap else ""
    return ""


def resolve_precision(requested: str, on_gpu: bool, strategy: str, cpuinfo: str | None = None) -> Precision:
    """The precision a run uses (``precision: auto`` resolved) and how Fabric and FSDP2 apply it."""
    import torch

    name, reason = requested, "set in the config"
    if requested == "auto":
        unit = "" if on_gpu else cpu_bf16_matrix_units(cpuinfo)
        name = "bf16-mixed" if on_gpu or unit else "32-true"
        reason = ("auto: a GPU" if on_gpu else f"auto: the CPU has {unit}" if unit
                  else "auto: the CPU has no bf16 matrix units (amx_bf16 / avx512_bf16)")
    if strategy == "fsdp":
        if name not in ("32-true", "bf16-mixed"):
            raise FitrainError(f"strategy=fsdp runs precision 32-true or bf16-mixed (bf16 compute, fp32 weights and "
                               f"gradient reduction), not '{name}'")
        return Precision(name, reason, "32-true", torch.bfloat16 if name == "bf16-mixed" else None)
    if name == "bf16-true":
        return Precision(name, reason, "32-true", torch.bfloat16)
    return Precision(name, reason, name)


def build_fabric(cfg: TrainConfig) -> tuple[Any, Precision]:
    """(the launched Fabric, the run's precision)."""
    import torch
    from lightning.fabric import Fabric

    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    precision = resolve_precision(cfg.precision, on_gpu, cfg.strategy)
    devices: Any = 1 if cfg.strategy == "single" else (cfg.devices or "auto")
    try:
        fabric = Fabric(accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes,
                        strategy=_strategy(cfg, precision), precision=precision.fabric)
        fabric.launch()
    except (ValueError, RuntimeError, TypeError) as e:
        raise FitrainError(f"cannot set up training on this machine (accelerator={cfg.accelerator}, devices="
                           f"{cfg.devices or 'auto'}, strategy={cfg.strategy}, precision={precision.name}): "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return fabric, precision


def _strategy(cfg: TrainConfig, precision: Precision) -> Any:
    if cfg.strategy == "ddp":
        from lightning.fabric.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True)
    if cfg.strategy == "fsdp":
        from lightning.fabric.strategies import ModelParallelStrategy

        from fitrain.train.parallel import shard_objective

        world = _world_size(cfg)   # every rank is a data-parallel replica: no tensor parallelism
        return ModelParallelStrategy(parallelize_fn=shard_objective(precision.param_dtype, cfg.seed,
                                                                    fsdp_shard_size(cfg, world)),
                                     data_parallel_size=world, tensor_parallel_size=1)
    return "auto"


def fsdp_shard_size(cfg: TrainConfig, world: int) -> int:
    """Ranks each parameter is sharded over (``fsdp.shard_size``; 0 = auto: one node's ranks when
    ``num_nodes > 1`` -- HSDP, replicated across nodes -- else all ``world`` ranks)."""
    size = cfg.fsdp.shard_size or (world // cfg.num_nodes if cfg.num_nodes > 1 else world)
    if size < 1 or world % size:
        raise ConfigError(f"fsdp.shard_size={cfg.fsdp.shard_size} does not divide the {world} ranks "
                          f"({cfg.num_nodes} node(s)); set fsdp.shard_size to a divisor of {world}")
    return size


def device_memory(device: Any) -> int | None:
    """Total memory of a CUDA device in bytes; None elsewhere."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory)


def _world_size(cfg: TrainConfig) -> int:
    """The number of processes: the launcher's (torchrun, Slurm), else devices per node times nodes."""
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    if cfg.devices:
        return cfg.devices * cfg.num_nodes
    import torch

    return max(1, torch.cuda.device_count()) * cfg.num_nodes


def cast_parameters(lm: Any, dtype: Any) -> None:
    """``bf16-true``: the parameters (and so the optimizer states) in ``dtype``; buffers keep theirs, so RoPE's
    ``inv_freq`` stays fp32 as in the exported model."""
    import torch

    with torch.no_grad():
        for p in lm.parameters():
            p.data = p.data.to(dtype)
