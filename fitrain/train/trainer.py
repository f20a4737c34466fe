"""``fitrain train``: pre-train a from-scratch Llama on prepared shards, with Lightning.

One linear entry, :func:`train`, in the spirit of Lingua's ``train()`` and torchtitan's ``train.py``::

    check_inputs -> build -> resume -> fit -> finish

``check_inputs`` refuses data, tokenizers and budgets that cannot work before anything is built (the data's
cheap integrity checks, the tokenizer's identity against the one the data was prepared with, rows longer
than the model's positions); the run directory is then locked, so a second ``fitrain train`` on it fails
at once instead of interleaving checkpoints and metrics (fitrain.core.lock); ``build``
makes the Lightning Trainer (fitrain.train.distributed), the plan (fitrain.train.plan: the budget and the
schedule length) and the randomly initialised model; ``resume`` finds and checks the checkpoint to continue
from; ``fit`` runs the optimizer steps (fitrain.train.module) until the budget is met exactly or a signal
asks for a checkpoint; ``finish`` writes ``summary.json`` and the HF export ``hf/``.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.core.io import write_json
from fitrain.core.lock import dir_lock
from fitrain.core.layout import TrainDir
from fitrain.data.manifest import Manifest, prepared_dir
from fitrain.train.checkpoint import TrainState
from fitrain.train.config import TrainConfig
from fitrain.train.plan import TrainPlan


@dataclass
class Inputs:
    """What the run reads, checked: the prepared data and the tokenizer it was prepared with."""

    data_dir: Path
    manifest: Manifest
    tokenizer_path: str
    tokenizer: Any
    vocab_size: int


@dataclass
class Built:
    trainer: Any
    plan: TrainPlan
    model: Any
    objective: Any                  # fitrain.train.objective.CausalLMLoss over the model
    fingerprint: str
    make_loader: Callable[[int, int], Any]


@dataclass
class Outcome:
    status: str                     # finished | preempted
    state: TrainState
    checkpoint: Path | None
    log: Any = None                 # the MetricsLog (global rank 0)
    signal_received: int | None = None
    evals: list = field(default_factory=list)   # background per-checkpoint evaluations (rank 0)


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) one run; returns the summary also written to ``<run_dir>/summary.json``."""
    t0 = time.perf_counter()
    inputs = check_inputs(cfg)
    with dir_lock(cfg.run_dir, "fitrain train"):
        built = build(cfg, inputs)
        ckpt, resumed = resume(cfg, built)
        if resumed is not None and resumed.finished:
            if built.trainer.is_global_zero:
                print(f"fitrain train: {ckpt} is the end of a finished run; nothing to train", file=sys.stderr)
            return finish(cfg, built, Outcome("finished", resumed, ckpt), elapsed=0.0)
        outcome = fit(cfg, inputs, built, ckpt, resumed)
        return finish(cfg, built, outcome, elapsed=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ check
def check_inputs(cfg: TrainConfig) -> Inputs:
    from fitrain.core.config import validate_config
    from fitrain.data.shards import open_prepared
    from fitrain.data.tokenizer import vocab_size_of

    validate_config(cfg)
    if not cfg.data.path:
        raise ConfigError("data.path is not set: point it at a directory made by `fitrain prepare`")
    data = open_prepared(cfg.data.path, "data.path")
    data.validate()  # sizes, changed files' checksums, shapes
    manifest = data.manifest
    if cfg.data.val_path:
        val = open_prepared(cfg.data.val_path, "data.val_path")
        val.validate()
        if val.seq_len > cfg.model.max_seq_len:
            raise ConfigError(f"model.max_seq_len={cfg.model.max_seq_len} is shorter than the {val.seq_len}-token "
                              f"rows of data.val_path; set model.max_seq_len >= {val.seq_len}")
    if manifest.seq_len > cfg.model.max_seq_len:
        raise ConfigError(f"model.max_seq_len={cfg.model.max_seq_len} is shorter than the {manifest.seq_len}-token "
                          f"rows of data.path {data.directory}: the model has no positions for the rest; set "
                          f"model.max_seq_len >= {manifest.seq_len} or prepare with a shorter pack.seq_len")
    tok_path, tok = _tokenizer(cfg, manifest)
    return Inputs(prepared_dir(cfg.data.path), manifest, str(tok_path), tok, vocab_size_of(tok))


def _tokenizer(cfg: TrainConfig, manifest: Manifest) -> tuple[str, Any]:
    """The run's tokenizer, checked to be the one the data was prepared with: by identity (what maps text to
    ids), not by size, since the HF export ships it beside the weights."""
    from fitrain.data.tokenizer import load_tokenizer, tokenizer_hash, tokenizer_identity, vocab_size_of

    tok_path = cfg.tokenizer or manifest.tokenizer.path
    if not tok_path:
        raise FitrainError("no tokenizer: set `tokenizer` (the data manifest records none)")
    tok = load_tokenizer(tok_path)
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        raise FitrainError(f"tokenizer {tok_path} needs a pad token distinct from EOS: padding is told apart from "
                           "text by its id when tokens are counted")
    if manifest.pad_token_id is not None and manifest.pad_token_id != tok.pad_token_id:
        raise FitrainError(f"data.path was prepared with pad id {manifest.pad_token_id} but the tokenizer {tok_path} "
                           f"pads with {tok.pad_token_id}: use the tokenizer the data was prepared with")
    vocab = vocab_size_of(tok)
    if manifest.vocab_size > vocab:
        raise FitrainError(f"data.path was prepared with a {manifest.vocab_size}-token vocabulary but the "
                           f"tokenizer {tok_path} has {vocab}: use the tokenizer the data was prepared with")
    recorded = manifest.tokenizer
    if recorded.identity:
        same = tokenizer_identity(tok) == recorded.identity
    else:  # a manifest from before identities: the files' hash
        same = not recorded.hash or tokenizer_hash(tok_path) == recorded.hash
    if not same:
        raise FitrainError(f"the tokenizer {tok_path} is not the one data.path was prepared with "
                           f"({recorded.path or 'recorded in its manifest'}): its ids would not mean the same "
                           "tokens; use that tokenizer (or leave `tokenizer` unset), or re-run prepare with this one")
    return str(tok_path), tok


# ------------------------------------------------------------------------------------------------ build
def build(cfg: TrainConfig, inputs: Inputs) -> Built:
    import lightning.pytorch as pl

    from fitrain.data.loader import PackedLoader
    from fitrain.train.distributed import build_trainer
    from fitrain.train.model import build_model, select_attention
    from fitrain.train.objective import CausalLMLoss
    from fitrain.train.plan import ReadingOrder, make_plan

    trainer = build_trainer(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    def make_loader(rank: int, world_size: int) -> PackedLoader:
        return PackedLoader(inputs.data_dir, cfg.data.micro_batch_size, seed=cfg.seed, rank=rank,
                            world_size=world_size, shuffle=cfg.data.shuffle, remainder=cfg.data.remainder,
                            num_workers=cfg.data.num_workers)

    probe = make_loader(0, trainer.world_size)
    tok = inputs.tokenizer
    plan = make_plan(cfg, inputs.manifest, trainer.world_size, int(tok.pad_token_id), probe.steps_per_epoch,
                     ReadingOrder.of(probe))
    attention = select_attention(cfg.model.attention, "cuda" if trainer.strategy.root_device.type == "cuda" else "cpu")
    token_ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    model = build_model(cfg.model, inputs.vocab_size, attention, seed=cfg.seed, token_ids=token_ids,
                        verbose=trainer.is_global_zero)
    chunked = cfg.loss.chunked(model.config.vocab_size)
    objective = CausalLMLoss(model, cfg.loss.chunk_tokens if chunked else 0)
    return Built(trainer, plan, model, objective, probe.fingerprint, make_loader)


# ------------------------------------------------------------------------------------------------ resume
def resume(cfg: TrainConfig, built: Built) -> tuple[Path | None, TrainState | None]:
    """The checkpoint to continue from (``resume=auto|never|<path>``) and its state, checked against the
    model and the data being trained."""
    from fitrain.train.checkpoint import check_compatible, read_train_state, resume_point
    from fitrain.train.model import shape_fingerprint

    ckpt = resume_point(cfg.resume, TrainDir.of(cfg.run_dir).checkpoints)
    if ckpt is None:
        return None, None
    state = read_train_state(ckpt)
    check_compatible(state, ckpt, shape_fingerprint(built.model), built.fingerprint)
    return ckpt, state


# ------------------------------------------------------------------------------------------------ fit
def fit(cfg: TrainConfig, inputs: Inputs, built: Built, ckpt: Path | None, resumed: TrainState | None) -> Outcome:
    from fitrain.train.hooks import SignalCallback, SignalFlag, StepHooks
    from fitrain.train.metrics import new_run_id
    from fitrain.train.microbatches import validation_batches
    from fitrain.train.module import FitrainModule

    run_dir, trainer = TrainDir.of(cfg.run_dir), built.trainer
    facts = run_facts(cfg, inputs, built, (resumed.wandb_id if resumed else "") or new_run_id())
    log = _start_logs(cfg, run_dir, facts, built, ckpt, resumed) if trainer.is_global_zero else None
    hooks = StepHooks(built.plan, run_dir, log, cfg.progress_bar, *_flops(built), cfg.eval_on_checkpoint)
    val = (validation_batches(cfg.data.val_path, cfg.data.micro_batch_size, cfg.data.val_rows)
           if cfg.data.val_path and cfg.val_every else None)
    module = FitrainModule(built.model, built.plan, facts, built.make_loader, val, on_step=hooks,
                           objective=built.objective)
    signals = SignalFlag()
    trainer.callbacks.append(SignalCallback(signals))
    try:
        with _lightning_stop_message_hidden():
            trainer.fit(module, ckpt_path=str(ckpt) if ckpt else None)
    finally:
        signals.restore()
        hooks.close()
    if not (module.finished or module.stopped_by_signal):
        if log is not None:
            log.close()
        raise FitrainError(f"the data ran out after {module.step} steps ({module.tokens} tokens, {module.supervised} "
                           f"supervised) with data.max_epochs={cfg.data.max_epochs}, before the budget "
                           f"({built.plan.describe()}); raise data.max_epochs or lower the budget")
    if trainer.is_global_zero:
        plan = built.plan
        why = (f"stopped by {signal.Signals(signals.received).name if signals.received else 'a signal'} after step "
               f"{module.step} (checkpoint {hooks.last_checkpoint}; rerun to resume)" if module.stopped_by_signal
               else f"reached its budget of {plan.budget} at step {module.step} of {plan.total_steps} planned "
                    f"({module.tokens:,} tokens, {module.supervised:,} supervised)")
        print(f"fitrain train: {why}", file=sys.stderr, flush=True)
    return Outcome("preempted" if module.stopped_by_signal else "finished", module.train_state(),
                   hooks.last_checkpoint, log, signals.received, hooks.evals)


class _HideFitStopped(logging.Filter):
    """Lightning reports "`Trainer.fit` stopped: `max_epochs=1` reached." however a run ends, because fitrain
    runs one Lightning epoch and stops it itself; fitrain prints the real reason instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("`Trainer.fit` stopped:")


@contextlib.contextmanager
def _lightning_stop_message_hidden():
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    f = _HideFitStopped()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


def run_facts(cfg: TrainConfig, inputs: Inputs, built: Built, wandb_id: str) -> TrainState:
    """The static part of every checkpoint of this run."""
    from fitrain.core.config import redact, to_dict
    from fitrain.data.tokenizer import tokenizer_hash

    return TrainState(arm=cfg.arm, wandb_id=wandb_id, tokenizer=str(Path(inputs.tokenizer_path).resolve()),
                      tokenizer_hash=tokenizer_hash(inputs.tokenizer_path), data_fingerprint=built.fingerprint,
                      data_path=str(inputs.data_dir.resolve()), format=inputs.manifest.format or None,
                      config=redact(to_dict(cfg)))


def _start_logs(cfg: TrainConfig, run_dir: TrainDir, facts: TrainState, built: Built, ckpt: Path | None,
                resumed: TrainState | None):
    """Global rank 0: the run directory, the W&B run id file, metrics.csv (rows past a resumed step dropped)
    and W&B itself."""
    from fitrain.train.metrics import MetricsLog

    run_dir.wandb.mkdir(parents=True, exist_ok=True)
    run_dir.wandb_run_id.write_text(facts.wandb_id + "\n")
    log = MetricsLog(run_dir.metrics_csv, resume_step=resumed.step if resumed else None)
    experiment = run_dir.experiment()
    log.start_wandb(cfg.wandb, facts.wandb_id, run_dir.root, facts.config,
                    experiment.root.name if experiment else "", cfg.arm)
    print(f"fitrain train: world={built.trainer.world_size} plan: {built.plan.describe()}"
          + (f" (resuming {ckpt}, step {resumed.step})" if resumed else ""), file=sys.stderr, flush=True)
    return log


def _flops(built: Built) -> tuple[Any, float | None]:
    """(the model's training FLOPs, fitrain.train.model.FlopsModel; the device's peak FLOP/s or None on CPU)
    for MFU."""
    from fitrain.train.metrics import device_name, peak_flops
    from fitrain.train.model import flops_model

    on_gpu = built.trainer.strategy.root_device.type == "cuda"
    return flops_model(built.model), peak_flops(device_name()) if on_gpu else None


def _in_slurm_job() -> bool:
    import os

    return bool(os.environ.get("SLURM_JOB_ID"))


# ------------------------------------------------------------------------------------------------ finish
def finish(cfg: TrainConfig, built: Built, outcome: Outcome, elapsed: float) -> dict:
    """``summary.json`` and, for a finished run, the HF export (global rank 0); after a SIGUSR1 preemption
    checkpoint, requeue the Slurm job."""
    run_dir, plan, state = TrainDir.of(cfg.run_dir), built.plan, outcome.state
    exported = cfg.export_hf and outcome.status == "finished"
    summary = {"status": outcome.status, "arm": cfg.arm, "steps": state.step, "tokens": state.tokens,
               "supervised_tokens": state.supervised_tokens,
               "supervised_fraction": state.supervised_tokens / state.tokens if state.tokens else 0.0,
               "final_loss": state.last_loss, "val_loss": state.last_val_loss,
               "budget": {"max_tokens": plan.max_tokens, "max_supervised_tokens": plan.max_supervised_tokens,
                          "max_steps": plan.max_steps, "planned_steps": plan.total_steps,
                          "source": plan.budget_source},
               "run_dir": str(run_dir.root), "checkpoint": str(outcome.checkpoint) if outcome.checkpoint else None,
               "hf_dir": str(run_dir.hf) if exported else None, "metrics_csv": str(run_dir.metrics_csv),
               "wandb_id": state.wandb_id, "data_fingerprint": state.data_fingerprint,
               "elapsed_s": round(elapsed, 3)}
    if built.trainer.is_global_zero:
        if exported and outcome.checkpoint is not None:
            from fitrain.train.export import export
            from fitrain.train.export_failure import recording

            with recording(run_dir.hf, run_dir.summary, summary):  # a failed export still leaves the summary
                export(outcome.checkpoint, run_dir.hf, tokenizer=state.tokenizer or None)
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
