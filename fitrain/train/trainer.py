"""``fitrain train``: pre-train a from-scratch Llama on prepared shards, on Lightning Fabric.

One linear entry, :func:`train`, in the spirit of Lingua's ``train()`` and torchtitan's ``train.py``::

    check_inputs -> build -> resume -> fit -> finish

``check_inputs`` (fitrain.train.inputs) refuses data, tokenizers and budgets that cannot work before anything
is built; the run directory is then locked, so a second ``fitrain train`` on it fails at once instead of
interleaving checkpoints and metrics (fitrain.core.lock); ``build`` launches Fabric
(fitrain.train.distributed: devices, strategy, precision), makes the plan (fitrain.train.plan: the budget and
the schedule length), the randomly initialised model, the objective as Fabric sets it up (DDP-wrapped or
FSDP2-sharded), the optimizer and schedule; ``resume`` restores the checkpoint to continue from
(fitrain.train.checkpoint_io); ``fit`` is the loop::

    for batch in stream:
        record = train_step(ctx, batch, progress, stop)     # fitrain.train.step
        after_step(record, progress, save)                  # fitrain.train.hooks: metrics, checkpoints

until the budget is met exactly or a signal asks for a checkpoint; ``finish`` writes ``summary.json`` and the
HF export ``hf/``.
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitrain.core.errors import FitrainError
from fitrain.core.io import write_json
from fitrain.core.lock import dir_lock
from fitrain.core.layout import TrainDir
from fitrain.train.checkpoint import TrainState
from fitrain.train.config import TrainConfig
from fitrain.train.inputs import Inputs, check_inputs
from fitrain.train.plan import TrainPlan
from fitrain.train.step import Progress, StepContext


@dataclass
class Run:
    """Everything built for a run: Fabric, the plan, the step's context, the counters and static facts."""

    fabric: Any
    precision: Any                  # fitrain.train.distributed.Precision
    plan: TrainPlan
    ctx: StepContext
    fingerprint: str
    make_loader: Callable[[int, int], Any]
    progress: Progress = field(default_factory=Progress)
    facts: TrainState = field(default_factory=TrainState)   # the static part of every checkpoint
    resumed_from: Path | None = None
    layout: dict = field(default_factory=dict)   # attention kernel, FSDP mesh and accumulation: log + summary

    def train_state(self) -> TrainState:
        from fitrain.train.checkpoint_io import rng_states
        from fitrain.train.model import shape_fingerprint

        p, lm = self.progress, self.ctx.lm
        return dataclasses.replace(self.facts, step=p.step, tokens=p.tokens, supervised_tokens=p.supervised,
                                   finished=p.finished, loader_state=p.loader_state, last_loss=p.last_loss,
                                   last_val_loss=p.last_val_loss, model_shape=shape_fingerprint(lm),
                                   hf_config=lm.config.to_dict(), rng=rng_states())

    def save(self, path: Path) -> None:
        from fitrain.train.checkpoint_io import save_checkpoint

        save_checkpoint(path, self.fabric, self.ctx.lm, self.ctx.optimizer.optimizer, self.ctx.scheduler,
                        self.train_state())


@dataclass
class Outcome:
    status: str                     # finished | preempted (SIGTERM, SIGUSR1) | interrupted (SIGINT)
    checkpoint: Path | None
    log: Any = None                 # the MetricsLog (global rank 0)
    signal_received: int | None = None
    evals: list = field(default_factory=list)   # background per-checkpoint evaluations (rank 0)
    mfu: dict = field(default_factory=dict)      # {mfu_fitrain, mfu_published} over the whole fit


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) one run; returns the summary also written to ``<run_dir>/summary.json``."""
    t0 = time.perf_counter()
    inputs = check_inputs(cfg)
    with dir_lock(cfg.run_dir, "fitrain train"):
        run = build(cfg, inputs)
        ckpt = resume(cfg, inputs, run)
        if run.progress.finished:
            if run.fabric.is_global_zero:
                print(f"fitrain train: {ckpt} is the end of a finished run; nothing to train", file=sys.stderr)
            return finish(cfg, run, Outcome("finished", ckpt), elapsed=0.0)
        outcome = fit(cfg, run)
        return finish(cfg, run, outcome, elapsed=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ build
def build(cfg: TrainConfig, inputs: Inputs) -> Run:
    from lightning.fabric.utilities.seed import seed_everything

    from fitrain.data.loader import PackedLoader
    from fitrain.train.distributed import build_fabric, cast_parameters
    from fitrain.train.microbatches import validation_batches
    from fitrain.train.model import attention_kernel, build_model, select_attention
    from fitrain.train.objective import CausalLMLoss
    from fitrain.train.optim import build_optimizer
    from fitrain.train.parallel import compile_layers
    from fitrain.train.plan import ReadingOrder, make_plan, resolve_batch

    fabric, precision = build_fabric(cfg)
    seed_everything(cfg.seed, workers=True, verbose=False)
    grad_accum, _ = resolve_batch(cfg, fabric.world_size, inputs.manifest.seq_len)

    def make_loader(rank: int, world_size: int) -> PackedLoader:
        return PackedLoader(inputs.data_dir, cfg.data.micro_batch_size, seed=cfg.seed, rank=rank,
                            world_size=world_size, shuffle=cfg.data.shuffle, remainder=cfg.data.remainder,
                            num_workers=cfg.data.num_workers, grad_accum=grad_accum)

    probe = make_loader(0, fabric.world_size)
    tok = inputs.tokenizer
    plan = make_plan(cfg, inputs.manifest, fabric.world_size, int(tok.pad_token_id), probe.steps_per_epoch,
                     ReadingOrder.of(probe))
    attention = select_attention(cfg.model.attention, fabric.device.type)
    token_ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    sharded = cfg.strategy == "fsdp"   # built on meta: each rank materialises only its shards (parallel.py)
    lm = build_model(cfg.model, inputs.vocab_size, attention, seed=cfg.seed, token_ids=token_ids,
                     verbose=fabric.is_global_zero, device="meta" if sharded else None)
    if cfg.compile:
        compile_layers(lm)      # each layer's forward in place: parameter names (and checkpoints) unchanged
    if precision.name == "bf16-true":
        cast_parameters(lm, precision.param_dtype)
    chunked = cfg.loss.chunked(lm.config.vocab_size)
    objective = fabric.setup_module(CausalLMLoss(lm, cfg.loss.chunk_tokens if chunked else 0))
    optimizer, scheduler = build_optimizer(lm, plan.optim, plan.total_steps)
    val = (validation_batches(cfg.data.val_path, cfg.data.micro_batch_size, cfg.data.val_rows)
           if cfg.data.val_path and cfg.val_every else None)
    ctx = StepContext(fabric, objective, lm, fabric.setup_optimizers(optimizer), scheduler, plan, val)
    layout = {"attention": attention_kernel(lm)}
    if sharded:
        layout.update(_fsdp_layout(cfg, fabric, ctx, plan))
    return Run(fabric, precision, plan, ctx, probe.fingerprint, make_loader, layout=layout)


def _fsdp_layout(cfg: TrainConfig, fabric: Any, ctx: StepContext, plan: TrainPlan) -> dict:
    """The FSDP mesh and the gradient-accumulation mode (``fsdp.accumulate``), set on ``ctx``; for the log
    and summary.json."""
    from fitrain.train.distributed import device_memory, fsdp_shard_size
    from fitrain.train.flops import count_parameters
    from fitrain.train.parallel import accumulation_sync, resolve_accumulate

    shard = fsdp_shard_size(cfg, fabric.world_size)
    mode, why = resolve_accumulate(cfg.fsdp.accumulate, count_parameters(ctx.lm)[0], device_memory(fabric.device),
                                   plan.grad_accum)
    ctx.no_sync = accumulation_sync(fabric, ctx.objective, mode)
    mesh = (f"flat ({shard} ranks)" if shard == fabric.world_size
            else f"hsdp (replicate {fabric.world_size // shard} x shard {shard})")
    return {"fsdp": {"mesh": mesh, "shard_size": shard, "accumulate": mode, "accumulate_reason": why}}


# ------------------------------------------------------------------------------------------------ resume
def resume(cfg: TrainConfig, inputs: Inputs, run: Run) -> Path | None:
    """Restore the checkpoint to continue from (``resume=auto|never|<path>``), checked against the model and
    the data being trained; fills ``run.progress`` and ``run.facts``."""
    from fitrain.train.checkpoint import check_compatible, read_train_state, resume_point
    from fitrain.train.checkpoint_io import load_checkpoint
    from fitrain.train.metrics import new_run_id
    from fitrain.train.model import shape_fingerprint

    ckpt = resume_point(cfg.resume, TrainDir.of(cfg.run_dir).checkpoints)
    saved = None
    if ckpt is not None:
        saved = read_train_state(ckpt, verify=False)      # the checksum is checked as it is loaded
        check_compatible(saved, ckpt, shape_fingerprint(run.ctx.lm), run.fingerprint)
    run.facts = run_facts(cfg, inputs, run, (saved.wandb_id if saved else "") or new_run_id())
    if saved is None:
        return None
    if saved.finished:
        run.progress = _progress_of(saved)
        return ckpt
    state = load_checkpoint(ckpt, run.ctx.lm, run.ctx.optimizer.optimizer, run.ctx.scheduler)
    run.progress, run.resumed_from = _progress_of(state), ckpt
    return ckpt


def _progress_of(state: TrainState) -> Progress:
    return Progress(step=state.step, tokens=state.tokens, supervised=state.supervised_tokens,
                    finished=state.finished, last_loss=state.last_loss, last_val_loss=state.last_val_loss,
                    loader_state=state.loader_state)


# ------------------------------------------------------------------------------------------------ fit
def fit(cfg: TrainConfig, run: Run) -> Outcome:
    """The loop: one :func:`fitrain.train.step.train_step` per optimizer step, then the after-step hooks."""
    from fitrain.train.hooks import AfterStep, SignalFlag
    from fitrain.train.microbatches import StepStream
    from fitrain.train.step import train_step

    fabric, plan, progress = run.fabric, run.plan, run.progress
    log = _start_logs(cfg, run) if fabric.is_global_zero else None
    after_step = AfterStep(fabric, plan, TrainDir.of(cfg.run_dir), log, cfg.progress_bar, *_flops(run),
                           cfg.eval_on_checkpoint)
    loader = run.make_loader(fabric.global_rank, fabric.world_size)
    if progress.loader_state is not None:
        loader.load_state_dict(progress.loader_state)   # before the first iter(): no silent replay
    stream = StepStream(loader, plan.grad_accum, plan.max_epochs, plan.pad_id)
    with SignalFlag() as signals:
        try:
            for batch in stream:
                record = train_step(run.ctx, batch, progress, stop=signals.received is not None)
                after_step(record, progress, save=run.save)
                if progress.finished or progress.stopped_by_signal:
                    break
                run.ctx.t_end = time.perf_counter()
        finally:
            after_step.close()
    if not (progress.finished or progress.stopped_by_signal):
        if log is not None:
            log.close()
        raise FitrainError(f"the data ran out after {progress.step} steps ({progress.tokens} tokens, "
                           f"{progress.supervised} supervised) with data.max_epochs={cfg.data.max_epochs}, before "
                           f"the budget ({plan.describe()}); raise data.max_epochs or lower the budget")
    status = ("finished" if progress.finished else
              "interrupted" if signals.received == signal.SIGINT else "preempted")
    if fabric.is_global_zero:
        print(f"fitrain train: {_why(status, run, signals.received, after_step.last_checkpoint)}", file=sys.stderr,
              flush=True)
    return Outcome(status, after_step.last_checkpoint, log, signals.received, after_step.evals, after_step.run_mfu())


def _why(status: str, run: Run, received: int | None, checkpoint: Path | None) -> str:
    p, plan = run.progress, run.plan
    if status == "finished":
        return (f"reached its budget of {plan.budget} at step {p.step} of {plan.total_steps} planned "
                f"({p.tokens:,} tokens, {p.supervised:,} supervised)")
    name = signal.Signals(received).name if received else "a signal"
    return f"stopped by {name} after step {p.step} (checkpoint {checkpoint}; rerun to resume)"


def run_facts(cfg: TrainConfig, inputs: Inputs, run: Run, wandb_id: str) -> TrainState:
    """The static part of every checkpoint of this run."""
    from fitrain.core.config import redact, to_dict
    from fitrain.data.tokenizer import tokenizer_hash

    return TrainState(arm=cfg.arm, wandb_id=wandb_id, tokenizer=str(Path(inputs.tokenizer_path).resolve()),
                      tokenizer_hash=tokenizer_hash(inputs.tokenizer_path), data_fingerprint=run.fingerprint,
                      data_path=str(inputs.data_dir.resolve()), format=inputs.manifest.format or None,
                      config=redact(to_dict(cfg)))


def _start_logs(cfg: TrainConfig, run: Run):
    """Global rank 0: the run directory, the W&B run id file, metrics.csv (rows past a resumed step dropped)
    and W&B itself."""
    from fitrain.train.metrics import MetricsLog

    run_dir, facts, resumed = TrainDir.of(cfg.run_dir), run.facts, run.resumed_from
    run_dir.wandb.mkdir(parents=True, exist_ok=True)
    run_dir.wandb_run_id.write_text(facts.wandb_id + "\n")
    log = MetricsLog(run_dir.metrics_csv, resume_step=run.progress.step if resumed else None)
    experiment = run_dir.experiment()
    log.start_wandb(cfg.wandb, facts.wandb_id, run_dir.root, facts.config,
                    experiment.root.name if experiment else "", cfg.arm)
    fsdp = run.layout.get("fsdp")
    print(f"fitrain train: world={run.fabric.world_size} precision={run.precision.name} ({run.precision.reason}) "
          f"attention={run.layout.get('attention')} "
          + (f"fsdp: mesh {fsdp['mesh']}, accumulate {fsdp['accumulate']} ({fsdp['accumulate_reason']}) " if fsdp else "")
          + f"plan: {run.plan.describe()}" + (f" (resuming {resumed}, step {run.progress.step})" if resumed else ""),
          file=sys.stderr, flush=True)
    return log


def _flops(run: Run) -> tuple[Any, float | None]:
    """(the model's training FLOPs, fitrain.train.model.FlopsModel; the device's peak FLOP/s or None on CPU)
    for MFU."""
    from fitrain.train.metrics import device_name, peak_flops
    from fitrain.train.model import flops_model

    on_gpu = run.fabric.device.type == "cuda"
    return flops_model(run.ctx.lm), peak_flops(device_name()) if on_gpu else None


def _in_slurm_job() -> bool:
    import os

    return bool(os.environ.get("SLURM_JOB_ID"))


# ------------------------------------------------------------------------------------------------ finish
def finish(cfg: TrainConfig, run: Run, outcome: Outcome, elapsed: float) -> dict:
    """``summary.json`` and, for a finished run, the HF export (global rank 0); after a SIGUSR1 preemption
    checkpoint, requeue the Slurm job."""
    from fitrain.train.flops import CONVENTIONS

    run_dir, plan, state = TrainDir.of(cfg.run_dir), run.plan, run.progress
    exported = cfg.export_hf and outcome.status == "finished"
    summary = {"status": outcome.status, "arm": cfg.arm, "steps": state.step, "tokens": state.tokens,
               "supervised_tokens": state.supervised,
               "supervised_fraction": state.supervised / state.tokens if state.tokens else 0.0,
               "final_loss": state.last_loss, "val_loss": state.last_val_loss,
               "budget": {"max_tokens": plan.max_tokens, "max_supervised_tokens": plan.max_supervised_tokens,
                          "max_steps": plan.max_steps, "planned_steps": plan.total_steps,
                          "source": plan.budget_source},
               "run_dir": str(run_dir.root), "checkpoint": str(outcome.checkpoint) if outcome.checkpoint else None,
               "hf_dir": str(run_dir.hf) if exported else None, "metrics_csv": str(run_dir.metrics_csv),
               "wandb_id": run.facts.wandb_id, "data_fingerprint": run.facts.data_fingerprint,
               "precision": {"name": run.precision.name, "reason": run.precision.reason},
               "global_batch_rows": plan.rows_per_step, "grad_accum": plan.grad_accum, **run.layout,
               **outcome.mfu, "mfu_conventions": CONVENTIONS, "elapsed_s": round(elapsed, 3)}
    if run.fabric.is_global_zero:
        if exported and outcome.checkpoint is not None:
            from fitrain.train.export import export
            from fitrain.train.export_failure import recording

            with recording(run_dir.hf, run_dir.summary, summary):  # a failed export still leaves the summary
                export(outcome.checkpoint, run_dir.hf, tokenizer=run.facts.tokenizer or None)
        write_json(run_dir.summary, summary)
        if outcome.log is not None:
            outcome.log.close(summary)
        if (outcome.status == "preempted" and cfg.requeue_on_sigusr1
                and outcome.signal_received == signal.SIGUSR1):
            from fitrain.train.hooks import requeue_slurm_job

            summary["requeued"] = requeue_slurm_job()
        if outcome.status == "finished" and outcome.evals and _in_slurm_job():
            from fitrain.train.hooks import wait_for_evals

            wait_for_evals(outcome.evals, run_dir.logs)  # the job's end would kill them
    return summary
