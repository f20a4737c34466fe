"""``fitrain train``: pre-train a from-scratch Llama on prepared shards, with Lightning.

``train(cfg)`` resolves the budget (``max_tokens`` / ``max_supervised_tokens`` / ``max_steps``, or
``budget_from`` a FineInstructions manifest so the standard arm sees the FI arm's total tokens), derives
the schedule length from it, assembles a Lightning Trainer (single device, DDP or FSDP; bf16-mixed on GPU,
fp32 on CPU), resumes from the latest checkpoint in ``run_dir`` when there is one, trains until the budget
is met exactly, and writes ``summary.json`` and the HF export ``hf/``. The optimisation step itself is in
fitrain.training_module and fitrain.objective.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fitrain.errors import ConfigError, FitrainError
from fitrain.metrics import WandbConfig
from fitrain.models import ModelConfig
from fitrain.objective import OptimConfig

STRATEGIES = ("auto", "single", "ddp", "fsdp")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "bf16-true", "16-mixed")


@dataclass
class DataConfig:
    path: str = ""                 # prepared directory (manifest.json + shards), or its manifest.json
    val_path: str = ""             # optional held-out prepared directory: periodic validation loss
    micro_batch_size: int = 8      # rows per micro-batch per device
    grad_accum: int = 1            # micro-batches per optimizer step (pre-fetched: exact normalisation)
    max_epochs: int = 1            # passes over the data allowed; a budget needing more is an error (0 = no limit)
    shuffle: bool = True
    remainder: str = "wrap"        # rows that do not fill the last global batch of an epoch: wrap | drop
    num_workers: int = 0           # loader worker processes (each reads its mmap'd shards)
    val_rows: int = 0              # validate on the first N held-out rows (0 = all)


@dataclass
class TrainConfig:
    run_dir: str = "runs/default/train/fi"
    arm: str = "fi"
    seed: int = 0
    tokenizer: str = ""            # '' = the tokenizer recorded in the data manifest
    # budgets (0 = unset); exactly one of max_tokens / max_supervised_tokens may be set, max_steps with either
    max_tokens: float = 0          # total (non-padding) tokens read by the model, over all ranks
    max_supervised_tokens: float = 0
    max_steps: int = 0
    budget_from: str = ""          # a prepared manifest.json (or its dir): max_tokens = its total_tokens
    budget_from_epochs: float = 1.0  # ... times this many passes over that data
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    accelerator: str = "auto"      # auto | cpu | gpu
    devices: int = 0               # per node; 0 = all visible (auto)
    num_nodes: int = 1
    strategy: str = "auto"         # auto | single | ddp | fsdp
    precision: str = "auto"        # auto = bf16-mixed on GPU, 32-true on CPU
    compile: bool = False          # torch.compile the model's forward
    log_every: int = 10
    val_every: int = 0             # steps between validations (0 = none; needs data.val_path)
    checkpoint_every: int = 1000   # steps (0 = only at the end and on SIGUSR1/SIGTERM)
    keep_checkpoints: int = 2
    # run in the background after each checkpoint ({checkpoint}, {run_dir} filled in), e.g.
    # "fitrain eval eval/local model={checkpoint}", or with sbatch --wrap for a Slurm job per checkpoint;
    # keep_checkpoints must leave a queued evaluation its checkpoint (0 = keep all)
    eval_on_checkpoint: str = ""
    resume: str = "auto"           # auto (latest in run_dir/checkpoints) | never | <checkpoint path>
    requeue_on_sigusr1: bool = True  # under Slurm: after the preemption checkpoint, scontrol requeue
    export_hf: bool = True         # export <run_dir>/hf at the end
    progress_bar: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class Plan:
    """What the run will do, resolved from the config, the data manifest and the world size."""

    max_tokens: int
    max_supervised_tokens: int
    max_steps: int
    total_steps: int
    grad_accum: int
    max_epochs: int
    pad_id: int
    optim: OptimConfig
    rows_per_step: int
    log_every: int
    val_every: int
    checkpoint_every: int
    keep_checkpoints: int
    compile: bool
    budget_source: str = ""


# ---------------------------------------------------------------------------------------------- inputs
def manifest_of(path: str | Path, what: str) -> dict:
    from fitrain.io import read_json

    p = Path(path)
    m = p / "manifest.json" if p.is_dir() else p
    if not m.is_file():
        raise FitrainError(f"{what}: no prepared data at '{path}' (expected a directory with manifest.json from "
                           "`fitrain prepare`, or the manifest.json itself)")
    try:
        manifest = read_json(m)
    except ValueError as e:
        raise FitrainError(f"{what}: {m} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or "counts" not in manifest:
        raise FitrainError(f"{what}: {m} is not a prepared-data manifest (no 'counts')")
    return manifest


def data_dir(path: str) -> Path:
    if not path:
        raise ConfigError("data.path is not set: point it at a directory made by `fitrain prepare`")
    p = Path(path)
    return p.parent if p.name == "manifest.json" else p


def tokenizer_path(cfg: TrainConfig, manifest: dict) -> str:
    if cfg.tokenizer:
        return cfg.tokenizer
    tok = manifest.get("tokenizer")
    path = tok.get("path") if isinstance(tok, dict) else tok
    if not path:
        raise FitrainError("no tokenizer: set `tokenizer` (the data manifest records none)")
    return str(path)


def resolve_budget(cfg: TrainConfig) -> tuple[int, int, int, str]:
    """(max_tokens, max_supervised_tokens, max_steps, where the token budget came from)."""
    max_tokens, source = int(cfg.max_tokens), ""
    if cfg.budget_from:
        if cfg.max_tokens:
            raise ConfigError("set either max_tokens or budget_from, not both")
        m = manifest_of(cfg.budget_from, "budget_from")
        max_tokens = int(round(int(m["counts"]["total_tokens"]) * cfg.budget_from_epochs))
        source = f"budget_from {cfg.budget_from}: total_tokens {m['counts']['total_tokens']} x {cfg.budget_from_epochs}"
    if max_tokens and cfg.max_supervised_tokens:
        raise ConfigError("set max_tokens (or budget_from) or max_supervised_tokens, not both")
    if min(max_tokens, cfg.max_supervised_tokens, cfg.max_steps) < 0:
        raise ConfigError("budgets must be >= 0")
    return max_tokens, int(cfg.max_supervised_tokens), int(cfg.max_steps), source


def make_plan(cfg: TrainConfig, manifest: dict, world: int, pad_id: int, steps_per_epoch: int) -> Plan:
    """Budgets, the schedule length and the up-front check that the data can meet the budget."""
    max_tokens, max_sup, max_steps, source = resolve_budget(cfg)
    d = cfg.data
    if d.micro_batch_size < 1 or d.grad_accum < 1:
        raise ConfigError("data.micro_batch_size and data.grad_accum must be >= 1")
    counts = manifest["counts"]
    rows = max(1, int(counts.get("rows", 0)))
    rows_per_step = d.micro_batch_size * d.grad_accum * world
    tok_per_row = int(counts.get("total_tokens", 0)) / rows
    sup_per_row = int(counts.get("supervised_tokens", 0)) / rows
    epoch_steps = math.ceil(steps_per_epoch / d.grad_accum)  # optimizer steps in one pass
    if d.max_epochs > 0:
        have_tok = int(counts.get("total_tokens", 0)) * d.max_epochs
        have_sup = int(counts.get("supervised_tokens", 0)) * d.max_epochs
        have_steps = math.ceil(steps_per_epoch * d.max_epochs / d.grad_accum)
        short = None
        if max_tokens > have_tok:
            short = f"max_tokens={max_tokens} but the data holds {counts['total_tokens']} tokens per epoch"
        elif max_sup > have_sup:
            short = (f"max_supervised_tokens={max_sup} but the data holds {counts['supervised_tokens']} supervised "
                     "tokens per epoch")
        elif max_steps > have_steps:
            short = f"max_steps={max_steps} but one epoch is {epoch_steps} steps at this batch size"
        if short:
            raise FitrainError(f"the budget cannot be met: {short} and data.max_epochs={d.max_epochs}. "
                               "Raise data.max_epochs (0 = unlimited), lower the budget, or prepare more data")
        if not (max_tokens or max_sup or max_steps):
            max_steps = have_steps  # no budget: train max_epochs full passes
    elif not (max_tokens or max_sup or max_steps):
        raise ConfigError("no budget: set max_tokens, max_supervised_tokens, max_steps, budget_from, "
                          "or data.max_epochs > 0")
    estimates = []
    if max_tokens:
        estimates.append(math.ceil(max_tokens / max(1e-9, tok_per_row * rows_per_step)))
    if max_sup:
        estimates.append(math.ceil(max_sup / max(1e-9, sup_per_row * rows_per_step)))
    if max_steps:
        estimates.append(max_steps)
    return Plan(max_tokens=max_tokens, max_supervised_tokens=max_sup, max_steps=max_steps,
                total_steps=max(1, min(estimates)), grad_accum=d.grad_accum, max_epochs=d.max_epochs,
                pad_id=pad_id, optim=cfg.optim, rows_per_step=rows_per_step, log_every=max(1, cfg.log_every),
                val_every=cfg.val_every if cfg.data.val_path else 0, checkpoint_every=cfg.checkpoint_every,
                keep_checkpoints=cfg.keep_checkpoints, compile=cfg.compile, budget_source=source)


# ---------------------------------------------------------------------------------------------- trainer
def build_trainer(cfg: TrainConfig):
    import lightning.pytorch as pl
    import torch

    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got '{cfg.strategy}'")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got '{cfg.precision}'")
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if on_gpu else "32-true")
    strategy: Any = "auto"
    devices: Any = cfg.devices or "auto"
    if cfg.strategy == "single":
        devices = 1
    elif cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True)
    elif cfg.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        strategy = FSDPStrategy(auto_wrap_policy={LlamaDecoderLayer}, state_dict_type="sharded",
                                sharding_strategy="FULL_SHARD", use_orig_params=True,
                                activation_checkpointing_policy=({LlamaDecoderLayer}
                                                                 if cfg.model.activation_checkpointing else None))
    plugins = []
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))  # fitrain checkpoints and requeues itself
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if cfg.strategy == "fsdp" and not on_gpu:
        raise FitrainError("strategy=fsdp needs GPUs (Lightning's FSDP runs on CUDA only); use strategy=ddp on CPU")
    try:
        return pl.Trainer(accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes, strategy=strategy,
                          precision=precision, max_epochs=1, max_steps=-1, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                          limit_val_batches=0, use_distributed_sampler=False, default_root_dir=cfg.run_dir,
                          plugins=plugins or None)
    except (ValueError, RuntimeError, MisconfigurationException) as e:
        raise FitrainError(f"cannot set up training on this machine (accelerator={cfg.accelerator}, devices="
                           f"{cfg.devices or 'auto'}, strategy={cfg.strategy}, precision={precision}): {e}") from None


def val_batches_factory(val_path: str, micro_batch_size: int, max_rows: int):
    """(rank, world) -> held-out micro-batches: every row once, the same number of batches on every rank."""
    import numpy as np
    import torch

    from fitrain.loader import batch_arrays, pad_id_of
    from fitrain.shards import open_prepared

    data = open_prepared(val_path)
    data.validate()
    n = data.num_rows if not max_rows else min(max_rows, data.num_rows)
    chunks = [np.arange(i, min(i + micro_batch_size, n)) for i in range(0, n, micro_batch_size)]

    def make(rank: int, world: int) -> list[dict]:
        per_rank = math.ceil(len(chunks) / world)
        out = []
        for j in range(per_rank):
            k = j * world + rank
            idx = chunks[k] if k < len(chunks) else chunks[0]
            b = {kk: torch.from_numpy(np.ascontiguousarray(v)) for kk, v in batch_arrays(*data.rows(idx), pad_id=pad_id_of(data.manifest)).items()}
            if k >= len(chunks):  # filler so ranks run the same number of forwards; carries no loss
                b["labels"] = torch.full_like(b["labels"], -100)
            out.append(b)
        return out

    return make


def resume_checkpoint(cfg: TrainConfig) -> Path | None:
    from fitrain.checkpoint import latest_checkpoint

    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        return latest_checkpoint(Path(cfg.run_dir) / "checkpoints")
    p = Path(cfg.resume)
    if not p.exists():
        raise FitrainError(f"resume: checkpoint not found: {p}")
    return p


# ---------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig) -> dict:
    """Train (or resume) one run; returns the summary also written to ``<run_dir>/summary.json``."""
    from fitrain.train_run import run

    return run(cfg)


def config_dict(cfg: TrainConfig) -> dict:
    from fitrain.config import redact, to_dict

    return redact(to_dict(cfg))


def describe_plan(plan: Plan) -> str:
    d = asdict(plan)
    d.pop("optim")
    return ", ".join(f"{k}={v}" for k, v in d.items() if v not in ("", None))

