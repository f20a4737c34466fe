"""What happens after each optimizer step: metrics (CSV + W&B), the progress bar, periodic and preemption
checkpoints. Also the SIGUSR1/SIGTERM handlers (Slurm sends SIGUSR1 ahead of preemption with
``--signal=USR1@90``; SIGTERM comes from scancel/requeue and torchrun)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from fitrain.core.layout import TrainDir
from fitrain.train.checkpoint import checkpoint_name, publish
from fitrain.train.metrics import MetricsLog


class SignalFlag:
    """Install handlers that only set a flag; the step loop checkpoints and stops at the next step end."""

    SIGNALS = ("SIGUSR1", "SIGTERM")

    def __init__(self):
        self.received: int | None = None
        self._old: dict = {}

    def install(self, module) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            self.received = signum
            module.stop_requested = True
            print(f"fitrain train: received {signal.Signals(signum).name}; checkpointing at the end of this step",
                  file=sys.stderr, flush=True)

        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._old[sig] = signal.getsignal(sig)
                signal.signal(sig, handler)

    def restore(self) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (ValueError, TypeError):
                pass
        self._old.clear()


class SignalCallback(pl.Callback):
    """Installs the :class:`SignalFlag` handlers when training starts (after Lightning's own, so ours only set
    a flag) and restores the previous ones when it ends."""

    def __init__(self, flag: SignalFlag):
        self.flag = flag

    def on_train_start(self, trainer, pl_module) -> None:
        self.flag.install(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.flag.restore()


def requeue_slurm_job() -> bool:
    """``scontrol requeue $SLURM_JOB_ID`` (rank 0, after the preemption checkpoint). True when requeued."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = (f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job
              else os.environ.get("SLURM_JOB_ID"))
    if not job_id:
        return False
    r = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    print(f"fitrain train: scontrol requeue {job_id}: {'ok' if r.returncode == 0 else r.stderr.strip()}",
          file=sys.stderr, flush=True)
    return r.returncode == 0


class StepHooks:
    """Called by the training module after every step (all ranks; files only on global rank 0)."""

    def __init__(self, plan: Any, run_dir: TrainDir, log: MetricsLog | None, progress: bool,
                 flops: Any = None, peak_flops: float | None = None, eval_command: str = ""):
        self.plan, self.run_dir, self.log = plan, run_dir, log
        self.eval_command = eval_command
        self.flops, self.peak = flops, peak_flops      # fitrain.train.model.FlopsModel, the GPU's peak FLOP/s
        self.show_progress = progress
        self.bar = None
        self.last_checkpoint: Path | None = None
        self.trainer = None
        self.evals: list[subprocess.Popen] = []       # background per-checkpoint evaluations (rank 0)
        self._t_start = time.perf_counter()
        self._flops_done = 0.0                         # model FLOPs of every step of this process
        self._window: tuple[float, int, float] | None = None

    # ------------------------------------------------------------------------------------ per step
    def __call__(self, module, row: dict) -> None:
        from fitrain.train.metrics import throughput

        trainer = module.trainer
        now = time.perf_counter()
        work = row.pop("work")
        step_flops = self.flops.step(**work) if self.flops is not None else 0.0
        self._flops_done += step_flops
        if self._window is None:   # first step of this process: its own time (start-up excluded)
            tokens, flops, seconds = row["step_tokens"], step_flops, row["step_time_s"]
        else:                      # over the steps since the last logged one (device work is only synced there)
            tokens, flops = row["tokens"] - self._window[1], self._flops_done - self._window[2]
            seconds = now - self._window[0]
        row.update(throughput(tokens, flops, seconds, trainer.world_size, self.peak))
        if row["logged"]:
            self._window = (now, row["tokens"], self._flops_done)
        row["elapsed_s"] = time.perf_counter() - self._t_start
        if trainer.is_global_zero:
            if self.log is not None and row.pop("logged"):
                self.log.log(row)
            self._progress(module, row)
        every = self.plan.checkpoint_every
        if (every and module.step % every == 0) or module.finished or module.stopped_by_signal:
            self.save(module)

    def _progress(self, module, row: dict) -> None:
        if not self.show_progress:
            return
        if self.bar is None:
            from tqdm import tqdm

            unit, total, start = self._bar_units(module)
            self.bar = tqdm(total=total, initial=start, unit=unit, unit_scale=True, dynamic_ncols=True,
                            desc="train", file=sys.stderr, smoothing=0.1)
        unit, total, now = self._bar_units(module)
        self.bar.update(now - self.bar.n)
        if row["loss"] is not None:
            self.bar.set_postfix(step=row["step"], loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}",
                                 refresh=False)

    def _bar_units(self, module) -> tuple[str, int | None, int]:
        p = self.plan
        if p.max_tokens:
            return "tok", p.max_tokens, module.tokens
        if p.max_supervised_tokens:
            return "sup tok", p.max_supervised_tokens, module.supervised
        return "step", p.total_steps, module.step

    # ------------------------------------------------------------------------------------ checkpoints
    def save(self, module) -> Path:
        """Save (all ranks take part), then rank 0 renames it into place and prunes old ones."""
        trainer = module.trainer
        ckpt_dir = self.run_dir.checkpoints
        final = ckpt_dir / checkpoint_name(module.step)
        tmp = ckpt_dir / f".{final.name}.tmp"
        if trainer.is_global_zero:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            if tmp.is_dir():           # left by a job killed mid-save: stale shards must not mix in
                shutil.rmtree(tmp)
        trainer.strategy.barrier("fitrain_ckpt_dir")
        trainer.save_checkpoint(tmp)
        trainer.strategy.barrier("fitrain_ckpt_saved")
        if trainer.is_global_zero:
            publish(ckpt_dir, tmp, final, self.plan.keep_checkpoints)
            if self.eval_command:
                self.evals.append(launch_checkpoint_eval(self.eval_command, final, self.run_dir))
        trainer.strategy.barrier("fitrain_ckpt_published")
        self.last_checkpoint = final
        return final

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def wait_for_evals(evals: list[subprocess.Popen], logs: Path) -> list[int]:
    """Wait for the per-checkpoint evaluations still running; their exit codes. Under Slurm the job step's
    processes are killed when training exits, so a local ``eval_on_checkpoint`` command of the final
    checkpoint would die with it (an ``sbatch --wrap`` command returns at once and is not affected)."""
    running = [p for p in evals if p.poll() is None]
    if running:
        print(f"fitrain train: waiting for {len(running)} checkpoint evaluation(s) still running (logs in {logs})",
              file=sys.stderr, flush=True)
    return [p.wait() for p in evals]


def launch_checkpoint_eval(command: str, checkpoint: Path, run_dir: TrainDir):
    """Start ``command`` (with ``{checkpoint}`` and ``{run_dir}`` filled in) in the background and return at
    once: training never waits for evaluation. Locally it is e.g. ``fitrain eval eval/local
    model={checkpoint}``; on a cluster ``sbatch ... --wrap 'fitrain eval eval/local model={checkpoint}'``
    makes it a Slurm job per checkpoint. Its output goes to ``logs/eval-<checkpoint>.log``. Keep enough
    checkpoints (``keep_checkpoints``, 0 = all) that a queued evaluation still finds its own."""
    import shlex

    run_dir.logs.mkdir(parents=True, exist_ok=True)
    cmd = command.format(checkpoint=shlex.quote(str(checkpoint)), run_dir=shlex.quote(str(run_dir.root)))
    with open(run_dir.eval_log(checkpoint), "ab") as out:
        return subprocess.Popen(cmd, shell=True, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
