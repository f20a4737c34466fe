"""The Lightning Trainer fitrain runs in: devices, the data-parallel strategy, precision, the Slurm
environment. fitrain owns the optimizer step (manual optimisation), checkpoints, logging and the progress
bar, so the Trainer is asked for none of its own.

Strategies: ``single`` (one device), ``ddp`` (srun / torchrun, CPU gloo or GPU NCCL), ``fsdp`` (FSDP2 per
decoder layer, fitrain.train.parallel; CPU gloo or GPU NCCL); ``auto`` lets Lightning pick from the devices.
Precision ``auto`` is bf16-mixed on GPU and fp32 on CPU; under ``fsdp``, bf16-mixed is FSDP2's
mixed-precision policy (fp32 master weights and gradient reduction, bf16 compute, fp32 buffers).
"""
from __future__ import annotations

from typing import Any

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.config import PRECISIONS, STRATEGIES, TrainConfig


def build_trainer(cfg: TrainConfig):
    import lightning.pytorch as pl
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got '{cfg.strategy}'")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got '{cfg.precision}'")
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if on_gpu else "32-true")
    strategy, lightning_precision = _strategy(cfg, precision)
    devices: Any = 1 if cfg.strategy == "single" else (cfg.devices or "auto")
    # fitrain checkpoints and requeues itself on SIGUSR1, so Lightning's own auto-requeue stays off
    plugins = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None
    try:
        return pl.Trainer(accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes,
                          strategy=strategy, precision=lightning_precision, max_epochs=1, max_steps=-1, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          num_sanity_val_steps=0, limit_val_batches=0, use_distributed_sampler=False,
                          default_root_dir=cfg.run_dir, plugins=plugins)
    except (ValueError, RuntimeError, MisconfigurationException) as e:
        raise FitrainError(f"cannot set up training on this machine (accelerator={cfg.accelerator}, devices="
                           f"{cfg.devices or 'auto'}, strategy={cfg.strategy}, precision={precision}): {e}") from None


def _strategy(cfg: TrainConfig, precision: str) -> tuple[Any, str]:
    """(the Lightning strategy, the precision flag Lightning runs under)."""
    if cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True), precision
    if cfg.strategy == "fsdp":
        from fitrain.train.parallel import FSDP2Strategy, fsdp_precision

        lightning_precision, param_dtype = fsdp_precision(precision)
        return FSDP2Strategy(param_dtype=param_dtype), lightning_precision
    return "auto", precision
