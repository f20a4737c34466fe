"""The LightningModule: one optimizer step per ``training_step``, owned here (manual optimisation).

Each ``training_step`` receives one step of pre-fetched micro-batches (fitrain.train.microbatches.StepStream)
and runs the phases of fitrain.train.step: count and all-gather, cut to the budget, backward every
micro-batch with the exact normalisation, clip and step, log. The loss of a micro-batch is the training
objective's (fitrain.train.objective.CausalLMLoss: decoder, head and CE of the supervised targets);
``configure_model`` compiles the layers and, under ``strategy=fsdp``, shards the model
(fitrain.train.parallel). The counters, the loader state and the RNG
states travel in every checkpoint as a :class:`fitrain.train.checkpoint.TrainState`.
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.strategies import DDPStrategy

from fitrain.core.errors import FitrainError
from fitrain.train.checkpoint import TrainState
from fitrain.train.loss import accumulate_gradients
from fitrain.train.microbatches import StepStream
from fitrain.train.objective import CausalLMLoss
from fitrain.train.model import activation_checkpointing, shape_fingerprint
from fitrain.train.optim import amp_grad_scale, build_optimizer
from fitrain.train.parallel import FSDP2Strategy, compile_layers, gradient_sync_off, is_sharded, keep_rope_fp32
from fitrain.train.plan import TrainPlan
from fitrain.train.step import StepCounts, clip_and_step, count_and_reduce, cut_to_budget, log_row


class FitrainModule(pl.LightningModule):
    def __init__(self, model, plan: TrainPlan, run_facts: TrainState, make_loader: Callable,
                 make_val_batches: Callable | None = None, on_step: Callable | None = None,
                 objective: CausalLMLoss | None = None):
        super().__init__()
        self.model = model
        # not a registered submodule: it holds the same model, and checkpoints keep the HF names (model.*)
        self.__dict__["objective"] = objective if objective is not None else CausalLMLoss(model)
        self.plan = plan
        self.run_facts = run_facts         # the static part of every checkpoint's TrainState
        self._make_loader = make_loader    # (rank, world) -> PackedLoader
        self._make_val_batches = make_val_batches  # (rank, world) -> micro-batches (equal count per rank)
        self.on_step = on_step             # callback(module, row) after each step (metrics, checkpoints)
        self.automatic_optimization = False
        self.step = 0
        self.tokens = 0
        self.supervised = 0
        self.last_loss: float | None = None
        self.last_val_loss: float | None = None
        self.finished = False
        self.stop_requested = False        # set by the signal handler (SIGTERM/SIGUSR1)
        self.stopped_by_signal = False
        self.loader = None
        self.loader_state: dict | None = None
        self._restored_state: dict | None = None
        self._configured = False
        self._t_end: float | None = None

    # ------------------------------------------------------------------------------------ data
    def train_dataloader(self):
        self.loader = self._make_loader(self.global_rank, self.trainer.world_size)
        if self._restored_state is not None:
            self.loader.load_state_dict(self._restored_state)  # before the first iter(): no silent replay
        return StepStream(self.loader, self.plan.grad_accum, self.plan.max_epochs, self.plan.pad_id)

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.model, self.plan.optim, self.plan.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def forward(self, batch):
        """(sum of CE over the batch's supervised targets, their count)."""
        return self.objective(batch)

    def configure_model(self):
        """Before the optimizer is built (and, under FSDP, before a checkpoint is restored): compile the
        decoder layers in place (the parameter names do not change, so checkpoints resume either way) and
        shard the model under ``strategy=fsdp``. Lightning may call this hook more than once."""
        if self._configured:
            return
        self._configured = True
        if getattr(self.plan, "compile", False):
            compile_layers(self.model)
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, FSDP2Strategy):
            strategy.shard(self.objective, self.model, activation_checkpointing=activation_checkpointing(self.model))

    def on_fit_start(self):
        keep_rope_fp32(self.model)  # after Lightning's precision conversion (bf16-true casts buffers too)

    # ------------------------------------------------------------------------------------ collectives
    def _distributed(self) -> bool:
        return self.trainer.world_size > 1 and torch.distributed.is_initialized()

    def _gather(self, values: list[int]) -> list[list[int]]:
        t = torch.tensor(values, dtype=torch.long, device=self.device)
        if not self._distributed():
            return [t.tolist()]
        out = [torch.zeros_like(t) for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather(out, t)
        return [o.tolist() for o in out]

    def _sum(self, x: torch.Tensor) -> torch.Tensor:
        if self._distributed():
            x = x.clone()
            torch.distributed.all_reduce(x)
        return x

    # ------------------------------------------------------------------------------------ the step
    def training_step(self, item: dict, batch_idx: int):
        t0 = time.perf_counter()
        wait = (t0 - self._t_end) if self._t_end is not None else 0.0
        plan, strategy = self.plan, self.trainer.strategy
        read = count_and_reduce(item["tokens"], item["supervised"], plan.grad_accum, self.stop_requested,
                                self._gather, item.get("sum_sq_lengths", 0))
        micro, counts, final = cut_to_budget(item["micro"], read, plan.token_budget, self.tokens, self.supervised,
                                             self.global_rank, plan.pad_id, self._gather)
        lr = self.optimizers().param_groups[0]["lr"]
        if is_sharded(self.objective):
            no_sync = lambda: gradient_sync_off(self.objective)  # noqa: E731
        else:
            no_sync = strategy.block_backward_sync if isinstance(strategy, DDPStrategy) else None
        loss_sum = accumulate_gradients(self.objective, micro, counts.total_supervised, self.trainer.world_size,
                                        backward=self.manual_backward, no_sync=no_sync)
        grad_norm = clip_and_step(self.model.parameters(), self.optimizers(), self.lr_schedulers(),
                                  plan.optim.clip_grad_norm, grad_scale=amp_grad_scale(self.trainer.precision_plugin))
        self._advance(counts, item["loader_state"], final)
        # the final validation happens here too, not after trainer.fit: Lightning's teardown has then moved
        # the module to the CPU and unwrapped DDP (NCCL all-reduce of CPU tensors)
        validate = bool(self._make_val_batches is not None and plan.val_every
                        and (self.step % plan.val_every == 0 or self.finished))
        # the loss all-reduce and the host syncs happen only on logged steps (the same steps on every rank)
        logged = self.step % plan.log_every == 0 or self.finished or counts.stop_requested or validate
        loss = self._reduce_loss(loss_sum, counts) if logged else None
        row = log_row(self.step, self.tokens, self.supervised, loss, lr, grad_norm, time.perf_counter() - t0, wait,
                      counts, read, int(item["loader_state"].get("epoch", 0)), logged)
        if validate:
            row["val_loss"] = self.validate()
        self.stopped_by_signal = counts.stop_requested and not self.finished
        if self.on_step is not None:
            self.on_step(self, row)
        if self.finished or self.stopped_by_signal:
            self.trainer.should_stop = True
        self._t_end = time.perf_counter()

    def _advance(self, counts: StepCounts, loader_state: dict, final: bool) -> None:
        self.step += 1
        self.tokens += counts.total_tokens
        self.supervised += counts.total_supervised
        self.loader_state = loader_state
        if final or (self.plan.max_steps and self.step >= self.plan.max_steps):
            self.finished = True

    def _reduce_loss(self, loss_sum: torch.Tensor, counts: StepCounts) -> float:
        n = counts.total_supervised
        self.last_loss = float(self._sum(loss_sum.to(self.device))) / n if n else float("nan")
        return self.last_loss

    @torch.no_grad()
    def validate(self) -> float:
        """Mean CE per supervised target over the held-out batches (all ranks)."""
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for mb in self._make_val_batches(self.global_rank, self.trainer.world_size):
            mb = {k: v.to(self.device) for k, v in mb.items()}
            s, n = self.objective(mb)
            total += s.double()
            count += n
        self.model.train(was_training)
        total, count = self._sum(total), self._sum(count)
        self.last_val_loss = float(total / count) if float(count) else float("nan")
        return self.last_val_loss

    # ------------------------------------------------------------------------------------ checkpoints
    def train_state(self) -> TrainState:
        return dataclasses.replace(
            self.run_facts, step=self.step, tokens=self.tokens, supervised_tokens=self.supervised,
            finished=self.finished, loader_state=self.loader_state, last_loss=self.last_loss,
            last_val_loss=self.last_val_loss, model_shape=shape_fingerprint(self.model),
            hf_config=self.model.config.to_dict(), rng=_rng_states())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fitrain"] = self.train_state().to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get("fitrain") is None:
            raise FitrainError("checkpoint has no 'fitrain' entry: not written by fitrain train")
        state = TrainState.from_dict(checkpoint["fitrain"])
        self.step, self.tokens, self.supervised = state.step, state.tokens, state.supervised_tokens
        self.finished = state.finished
        self.loader_state = self._restored_state = state.loader_state
        self.run_facts = dataclasses.replace(self.run_facts, wandb_id=state.wandb_id or self.run_facts.wandb_id)
        self.last_loss, self.last_val_loss = state.last_loss, state.last_val_loss
        _set_rng_states(state.rng or {})


def _rng_states() -> dict[str, Any]:
    # numpy's key array as a tensor: checkpoints load with weights_only=True
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_states(rng: dict[str, Any]) -> None:
    if rng.get("torch") is not None:
        torch.set_rng_state(rng["torch"])
    if rng.get("numpy") is not None:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if rng.get("python") is not None:
        random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
