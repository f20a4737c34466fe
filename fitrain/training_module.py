"""The LightningModule: one optimizer step per ``training_step``, owned here (manual optimisation).

Each ``training_step`` receives one step of pre-fetched micro-batches (fitrain.steps.StepStream). It
all-gathers the ranks' token and supervised-target counts (plus a preemption flag) in one collective, cuts
the last step exactly at the budget, back-propagates every micro-batch with the exact normalisation
(fitrain.objective), clips, steps AdamW and the schedule, and logs. Counters, the loader state, RNG states
and the W&B run id travel in the checkpoint under ``fitrain``.
"""
from __future__ import annotations

import random
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from fitrain.errors import FitrainError
from fitrain.models import forward_logits, shape_fingerprint
from fitrain.objective import accumulate_gradients, build_optimizer, grad_norm_and_clip, sum_cross_entropy
from fitrain.steps import StepStream, allowances, cut_step


class FitrainModule(pl.LightningModule):
    def __init__(self, model, plan: Any, meta: dict, make_loader, make_val_batches=None, on_step=None):
        super().__init__()
        self.model = model
        self.plan = plan                  # fitrain.train.Plan: budgets, total steps, optim config, pad id ...
        self.meta = dict(meta)            # static run facts saved with every checkpoint (config, tokenizer ...)
        self._make_loader = make_loader   # (rank, world) -> PackedLoader
        self._make_val_batches = make_val_batches  # (rank, world) -> list of micro-batches (equal count per rank)
        self.on_step = on_step            # callback(module, row) after each step (metrics, progress)
        self.automatic_optimization = False
        self.step = 0
        self.tokens = 0
        self.supervised = 0
        self.last_loss: float | None = None
        self.last_val_loss: float | None = None
        self.finished = False
        self.stop_requested = 0           # set by the signal handler (1 = SIGTERM/SIGUSR1)
        self.stopped_by_signal = False
        self.loader = None
        self.loader_state: dict | None = None
        self._restored_state: dict | None = None
        self.wandb_id = meta.get("wandb_id")
        self._fwd = None
        self._t_end = None

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
        fwd = self._fwd if self._fwd is not None else self.model
        return forward_logits(fwd, batch)

    def on_fit_start(self):
        if self.plan.compile and self._fwd is None:
            # not registered as a submodule: its '_fwd._orig_mod.*' keys would enter the checkpoint, and
            # Lightning restores the weights (strictly) before on_fit_start, so resuming would fail
            self.__dict__["_fwd"] = torch.compile(self.model)

    # ------------------------------------------------------------------------------------ collectives
    def _gather(self, values: list[int]) -> list[list[int]]:
        t = torch.tensor(values, dtype=torch.long, device=self.device)
        world = self.trainer.world_size
        if world == 1 or not torch.distributed.is_initialized():
            return [t.tolist()]
        out = [torch.zeros_like(t) for _ in range(world)]
        torch.distributed.all_gather(out, t)
        return [o.tolist() for o in out]

    def _sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            x = x.clone()
            torch.distributed.all_reduce(x)
        return x

    # ------------------------------------------------------------------------------------ the step
    def training_step(self, item: dict, batch_idx: int):
        t0 = time.perf_counter()
        wait = (t0 - self._t_end) if self._t_end is not None else 0.0
        plan = self.plan
        micro = item["micro"]
        A, W, rank = plan.grad_accum, self.trainer.world_size, self.global_rank
        tok_m = list(item["tokens"]) + [0] * (A - len(micro))   # per micro-batch, this rank
        sup_m = list(item["supervised"]) + [0] * (A - len(micro))
        gathered = self._gather(tok_m + sup_m + [self.stop_requested])
        g_tok = sum(sum(r[:A]) for r in gathered)
        g_sup = sum(sum(r[A:2 * A]) for r in gathered)
        stop_signal = any(r[2 * A] for r in gathered)
        final = False
        cut = None
        if plan.max_tokens and self.tokens + g_tok >= plan.max_tokens:
            cut, col, left = "tokens", 0, plan.max_tokens - self.tokens
        elif plan.max_supervised_tokens and self.supervised + g_sup >= plan.max_supervised_tokens:
            cut, col, left = "supervised", A, plan.max_supervised_tokens - self.supervised
        if cut is not None:
            # the budget is handed out in the loader's global reading order: micro-batch, then rank
            order = [gathered[r][col + m] for m in range(A) for r in range(W)]
            keeps = allowances(order, left)
            parts = [cut_step([mb], keeps[m * W + rank], cut, plan.pad_id) for m, mb in enumerate(micro)]
            micro = [p[0][0] for p in parts]
            gathered = self._gather([sum(p[1] for p in parts), sum(p[2] for p in parts), 0])
            g_tok, g_sup = sum(r[0] for r in gathered), sum(r[1] for r in gathered)
            final = True

        opt = self.optimizers()
        sched = self.lr_schedulers()
        lr = opt.param_groups[0]["lr"]
        strategy = self.trainer.strategy
        no_sync = getattr(strategy, "block_backward_sync", None)
        loss_sum = accumulate_gradients(self.forward, micro, g_sup, self.trainer.world_size,
                                        backward=self.manual_backward, no_sync=no_sync)
        fsdp_root = strategy.model if type(strategy).__name__ == "FSDPStrategy" else None
        grad_norm = grad_norm_and_clip(self.model.parameters(), plan.optim.clip_grad_norm, fsdp_root,
                                       grad_scale=amp_grad_scale(self.trainer.precision_plugin))
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()

        self.step += 1
        self.tokens += g_tok
        self.supervised += g_sup
        self.loader_state = item["loader_state"]
        if (plan.max_steps and self.step >= plan.max_steps) or final:
            self.finished = True
        # the final validation happens here too, not after trainer.fit: Lightning's teardown has then moved
        # the module to the CPU and unwrapped DDP/FSDP (NCCL all-reduce of CPU tensors, sharded weights)
        do_val = (self._make_val_batches is not None and plan.val_every
                  and (self.step % plan.val_every == 0 or self.finished))
        # the loss all-reduce and the host syncs happen only on logged steps (the same steps on every rank)
        logged = self.step % plan.log_every == 0 or self.finished or stop_signal or do_val
        loss = None
        if logged:
            loss = float(self._sum(loss_sum.to(self.device))) / g_sup if g_sup else float("nan")
            self.last_loss = loss
        step_time = time.perf_counter() - t0
        row = {"step": self.step, "tokens": self.tokens, "supervised_tokens": self.supervised,
               "supervised_fraction": self.supervised / self.tokens if self.tokens else 0.0, "loss": loss,
               "lr": lr, "grad_norm": float(grad_norm) if logged else None, "step_time_s": step_time + wait,
               "data_wait_s": wait, "step_tokens": g_tok, "epoch": int(item["loader_state"].get("epoch", 0)),
               "logged": logged}
        if do_val:
            row["val_loss"] = self.validate()
        self.stopped_by_signal = stop_signal and not self.finished
        if self.on_step is not None:
            self.on_step(self, row)
        if self.finished or self.stopped_by_signal:
            self.trainer.should_stop = True
        self._t_end = time.perf_counter()

    @torch.no_grad()
    def validate(self) -> float:
        """Mean CE per supervised target over the held-out batches (all ranks)."""
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        for mb in self._make_val_batches(self.global_rank, self.trainer.world_size):
            mb = {k: v.to(self.device) for k, v in mb.items()}
            s, n = sum_cross_entropy(self.forward(mb), mb["labels"])
            total += s.double()
            count += n
        self.model.train(was_training)
        total, count = self._sum(total), self._sum(count)
        self.last_val_loss = float(total / count) if float(count) else float("nan")
        return self.last_val_loss

    # ------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fitrain"] = {
            **self.meta, "step": self.step, "tokens": self.tokens, "supervised_tokens": self.supervised,
            "finished": self.finished, "loader_state": self.loader_state, "wandb_id": self.wandb_id,
            "last_loss": self.last_loss, "last_val_loss": self.last_val_loss,
            "model_shape": shape_fingerprint(self.model),
            "hf_config": self.model.config.to_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("fitrain")
        if meta is None:
            raise FitrainError("checkpoint has no 'fitrain' entry: not written by fitrain train")
        self.step, self.tokens, self.supervised = int(meta["step"]), int(meta["tokens"]), int(meta["supervised_tokens"])
        self.finished = bool(meta.get("finished"))
        self.loader_state = self._restored_state = meta.get("loader_state")
        self.wandb_id = meta.get("wandb_id") or self.wandb_id
        self.last_loss = meta.get("last_loss")
        self.last_val_loss = meta.get("last_val_loss")
        rng = meta.get("rng") or {}
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("numpy") is not None:
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if rng.get("python") is not None:
            random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def amp_grad_scale(precision_plugin) -> float:
    """The loss scale of fp16 AMP ('16-mixed'), 1.0 otherwise: under manual optimisation the gradients are
    still scaled when fitrain clips them (Lightning unscales inside ``optimizer.step()``)."""
    scaler = getattr(precision_plugin, "scaler", None)
    if scaler is None or not getattr(scaler, "is_enabled", lambda: True)():
        return 1.0
    return float(scaler.get_scale())


def _numpy_state() -> tuple:
    """numpy's global RNG state with the key array as a tensor (checkpoints load with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
