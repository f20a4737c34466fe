"""Shared helpers for the trainer's run tests (imported by path: tests use --import-mode=importlib)."""
from __future__ import annotations

import csv
from pathlib import Path


def tiny_config(run_dir: Path, data: Path, **top):
    from fitrain.train.config import TrainConfig

    # fp32 pinned: these runs are compared with each other bit for bit or within fp32 tolerances
    opts = {"progress_bar": False, "log_every": 1, "checkpoint_every": 0, "precision": "32-true", **top}
    cfg = TrainConfig(run_dir=str(run_dir), **opts)
    cfg.data.path = str(data)
    cfg.data.micro_batch_size = 4
    cfg.data.grad_accum = 2
    cfg.optim.warmup_steps = 2
    cfg.optim.lr = 3e-3
    cfg.wandb.mode = "disabled"
    return cfg


def rows(run_dir: Path) -> list[dict]:
    with open(Path(run_dir) / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def train_rows(run_dir: Path) -> dict[int, dict]:
    """Step -> training row (validation-only rows left out)."""
    return {int(r["step"]): r for r in rows(run_dir) if r["loss"]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(overrides: list[str], nproc: int = 2, env: dict | None = None, timeout: float = 600,
                   new_session: bool = False):
    """``torchrun --nproc_per_node N -m fitrain.cli train OVERRIDES`` on CPU (gloo, one thread per rank);
    the CompletedProcess. ``new_session``: the launcher leads its own process group (a test can kill it)."""
    import os
    import subprocess
    import sys

    from tests.helpers.paths import REPO

    full_env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
                **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
           "-m", "fitrain.cli", "train", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
                          start_new_session=new_session)
