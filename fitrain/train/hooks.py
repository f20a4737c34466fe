"""What happens after each optimizer step (:class:`AfterStep`): metrics (CSV + W&B), the progress bar,
periodic, final and signal checkpoints, per-checkpoint background evaluations. Also the signal handlers
(:class:`SignalFlag`): Slurm sends SIGUSR1 ahead of preemption (``--signal=USR1@90``), SIGTERM comes from
scancel/requeue and torchrun, SIGINT from Ctrl-C. Each only sets a flag; the run checkpoints at the end of
the step and stops (a second Ctrl-C stops at once)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fitrain.core.layout import TrainDir
from fitrain.train.checkpoint import checkpoint_name, publish
from fitrain.train.metrics import MetricsLog
from fitrain.train.step import StepRecord


class SignalFlag:
    """Handlers that only record the signal; the loop checkpoints and stops at the next step end. A second
    SIGINT raises KeyboardInterrupt at once (no checkpoint)."""

    SIGNALS = ("SIGUSR1", "SIGTERM", "SIGINT")

    def __init__(self):
        self.received: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "SignalFlag":
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.getsignal(sig)
                    signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (ValueError, TypeError):
                pass
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        again = "; press Ctrl-C again to stop at once, without one" if signum == signal.SIGINT else ""
        print(f"fitrain train: received {signal.Signals(signum).name}; checkpointing at the end of this step{again}",
              file=sys.stderr, flush=True)


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


class AfterStep:
    """Called by the loop after every step (all ranks; files only on global rank 0)."""

    def __init__(self, fabric: Any, plan: Any, run_dir: TrainDir, log: MetricsLog | None, progress: bool,
                 flops: Any = None, peak_flops: float | None = None, eval_command: str = ""):
        self.fabric, self.plan, self.run_dir, self.log = fabric, plan, run_dir, log
        self.eval_command = eval_command
        self.flops, self.peak = flops, peak_flops      # fitrain.train.model.FlopsModel, the GPU's peak FLOP/s
        self.show_progress = progress
        self.bar = None
        self.last_checkpoint: Path | None = None
        self.evals: list[subprocess.Popen] = []       # background per-checkpoint evaluations (rank 0)
        self._t_start = time.perf_counter()
        self._flops_done: dict = {}                    # model FLOPs of every step of this process, per convention
        self._window: tuple[float, int, dict] | None = None

    def __call__(self, record: StepRecord, progress: Any, save) -> None:
        """Throughput, the metrics row, the progress bar; ``save()`` (all ranks) writes the checkpoint when
        one is due (periodic, the last step, a signal)."""
        self.measure(record)
        if self.fabric.is_global_zero:
            if self.log is not None and record.logged:
                self.log.log(record.row())
            self._progress(record, progress)
        every = self.plan.checkpoint_every
        if (every and progress.step % every == 0) or progress.finished or progress.stopped_by_signal:
            self.checkpoint(progress.step, save)

    def measure(self, record: StepRecord) -> None:
        from fitrain.train.metrics import throughput

        now = time.perf_counter()
        step_flops = record.work.flops(self.flops) if self.flops is not None else {}
        self._flops_done = {k: self._flops_done.get(k, 0.0) + v for k, v in step_flops.items()}
        if self._window is None:   # first step of this process: its own time (start-up excluded)
            tokens, flops, seconds = record.step_tokens, step_flops, record.step_time_s
        else:                      # over the steps since the last logged one (device work is only synced there)
            tokens, seconds = record.tokens - self._window[1], now - self._window[0]
            flops = {k: v - self._window[2].get(k, 0.0) for k, v in self._flops_done.items()}
        for k, v in throughput(tokens, flops, seconds, self.fabric.world_size, self.peak).items():
            setattr(record, k, v)
        if record.logged:
            self._window = (now, record.tokens, self._flops_done)
        record.elapsed_s = time.perf_counter() - self._t_start

    def run_mfu(self) -> dict:
        """``{mfu_fitrain, mfu_published}`` over every step of this process (from the first step's start,
        so compilation and checkpoints count against it); None values without a peak (CPU)."""
        from fitrain.train.flops import mfu_both

        seconds = time.perf_counter() - self._t_start
        return {f"mfu_{k}": None for k in ("fitrain", "published")} | mfu_both(self._flops_done, seconds, self.peak,
                                                                                 self.fabric.world_size)

    def _progress(self, record: StepRecord, progress: Any) -> None:
        if not self.show_progress:
            return
        unit, total, done = self._bar_units(progress)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit=unit, unit_scale=True, dynamic_ncols=True,
                            desc="train", file=sys.stderr, smoothing=0.1)
        self.bar.update(done - self.bar.n)
        if record.loss is not None:
            self.bar.set_postfix(step=record.step, loss=f"{record.loss:.4f}", tok_s=f"{record.tokens_per_s:.0f}",
                                 refresh=False)

    def _bar_units(self, progress: Any) -> tuple[str, int | None, int]:
        p = self.plan
        if p.max_tokens:
            return "tok", p.max_tokens, progress.tokens
        if p.max_supervised_tokens:
            return "sup tok", p.max_supervised_tokens, progress.supervised
        return "step", p.total_steps, progress.step

    def checkpoint(self, step: int, save) -> Path:
        """``save(tmp)`` (all ranks take part), then rank 0 renames it into place and prunes old ones."""
        fabric, ckpt_dir = self.fabric, self.run_dir.checkpoints
        final = ckpt_dir / checkpoint_name(step)
        tmp = ckpt_dir / f".{final.name}.tmp"
        if fabric.is_global_zero:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            if tmp.is_dir():           # left by a job killed mid-save: stale shards must not mix in
                shutil.rmtree(tmp)
        fabric.barrier("fitrain_ckpt_dir")
        save(tmp)
        fabric.barrier("fitrain_ckpt_saved")
        if fabric.is_global_zero:
            publish(ckpt_dir, tmp, final, self.plan.keep_checkpoints)
            if self.eval_command:
                self.evals.append(launch_checkpoint_eval(self.eval_command, final, self.run_dir))
        fabric.barrier("fitrain_ckpt_published")
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
