"""The settings of ``fitrain train``: :class:`TrainConfig` (the run) and :class:`DataConfig` (its batches).

The model's (:class:`fitrain.train.model.ModelConfig`), the optimiser's
(:class:`fitrain.train.optim.OptimConfig`), the loss's (:class:`fitrain.train.loss.LossConfig`) and W&B's
(:class:`fitrain.train.metrics.WandbConfig`) settings are their components' own. Recipes under ``recipes/train/`` are merged over these defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, SEED, above, at_least, check_fields, one_of
from fitrain.train.loss import LossConfig
from fitrain.train.metrics import WandbConfig
from fitrain.train.model import ModelConfig
from fitrain.train.optim import OptimConfig

STRATEGIES = ("auto", "single", "ddp", "fsdp")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "bf16-true", "16-mixed")


@dataclass
class DataConfig:
    path: str = ""                 # prepared directory (manifest.json + shards), or its manifest.json
    val_path: str = ""             # optional held-out prepared directory: periodic validation loss
    micro_batch_size: int = 8      # rows per micro-batch per device (a memory knob: never changes what is trained)
    # the global batch, rows read per optimizer step over all ranks (at most one of the two; 0 = unset): the
    # experiment; grad_accum = global batch / (micro_batch_size x ranks), a split that does not divide is an error
    global_batch_rows: int = 0
    global_batch_tokens: int = 0   # ... in tokens: a whole number of the data's seq_len-token rows
    grad_accum: int = 0            # micro-batches per optimizer step; 0 = derived from the global batch (1 without)
    max_epochs: int = 1            # passes over the data allowed; a budget needing more is an error (0 = no limit)
    shuffle: bool = True
    remainder: str = "wrap"        # rows that do not fill the last global batch of an epoch: wrap | drop
    num_workers: int = 0           # loader worker processes (each reads its mmap'd shards)
    val_rows: int = 0              # validate on the first N held-out rows (0 = all)

    def __post_init__(self) -> None:
        check_fields(self, micro_batch_size=POSITIVE, grad_accum=NON_NEGATIVE, max_epochs=NON_NEGATIVE,
                     num_workers=NON_NEGATIVE, val_rows=NON_NEGATIVE, remainder=one_of("wrap", "drop"),
                     global_batch_rows=NON_NEGATIVE, global_batch_tokens=NON_NEGATIVE)


ACCUMULATE = ("auto", "sharded", "unsharded")


@dataclass
class FsdpConfig:
    """``strategy=fsdp`` (fitrain.train.parallel; README, "FSDP, HSDP and accumulation memory")."""

    # ranks each parameter is sharded over; the rest replicate (HSDP: a (replicate, shard) mesh). 0 = auto:
    # the devices of one node when num_nodes > 1 (shard within a node, replicate across nodes), else all ranks
    shard_size: int = 0
    # gradients between micro-batches: sharded (reduce-scattered after every micro-batch: 1/shard the memory,
    # grad_accum x the reduce-scatters) | unsharded (full fp32 gradients kept, reduced once on the last
    # micro-batch) | auto (unsharded when 4 bytes x parameters fit in 10% of a device's memory, else sharded)
    accumulate: str = "auto"

    def __post_init__(self) -> None:
        check_fields(self, shard_size=NON_NEGATIVE, accumulate=one_of(*ACCUMULATE))


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
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    accelerator: str = "auto"      # auto | cpu | gpu
    devices: int = 0               # per node; 0 = all visible (auto)
    num_nodes: int = 1
    strategy: str = "auto"         # auto | single | ddp | fsdp (FSDP2 per decoder layer; CPU gloo or GPU)
    precision: str = "auto"        # auto = bf16-mixed on GPUs and CPUs with AMX/AVX512-BF16, else 32-true
    fsdp: FsdpConfig = field(default_factory=FsdpConfig)
    compile: bool = False          # torch.compile each decoder layer
    log_every: int = 10
    val_every: int = 0             # steps between validations (0 = none; needs data.val_path)
    checkpoint_every: int = 1000   # steps (0 = only at the end and on SIGUSR1/SIGTERM)
    keep_checkpoints: int = 2
    # run in the background after each checkpoint ({checkpoint}, {run_dir} filled in), e.g.
    # "fitrain eval eval/local model={checkpoint}", or with sbatch --wrap for a Slurm job per checkpoint;
    # keep_checkpoints must leave a queued evaluation its checkpoint (0 = keep all). Inside a Slurm job the
    # run waits at the end for the evaluations still running (the job's end would kill them); one started
    # for a preemption checkpoint stops with the job (sbatch --wrap decouples them)
    eval_on_checkpoint: str = ""
    resume: str = "auto"           # auto (latest in run_dir/checkpoints) | never | <checkpoint path>
    requeue_on_sigusr1: bool = True  # under Slurm: after the preemption checkpoint, scontrol requeue
    export_hf: bool = True         # export <run_dir>/hf at the end
    progress_bar: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        check_fields(self, accelerator=one_of("auto", "cpu", "gpu", "cuda"), seed=SEED,
                     max_tokens=at_least(0), max_supervised_tokens=at_least(0), max_steps=NON_NEGATIVE,
                     budget_from_epochs=above(0), devices=NON_NEGATIVE, num_nodes=POSITIVE, strategy=one_of(*STRATEGIES),
                     precision=one_of(*PRECISIONS), log_every=NON_NEGATIVE, val_every=NON_NEGATIVE,
                     checkpoint_every=NON_NEGATIVE, keep_checkpoints=NON_NEGATIVE)
