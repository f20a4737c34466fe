"""Shared helpers for the trainer's run tests (imported by path: tests use --import-mode=importlib)."""
from __future__ import annotations

import csv
from pathlib import Path


def tiny_config(run_dir: Path, data: Path, **top):
    from fitrain.train.config import TrainConfig

    opts = {"progress_bar": False, "log_every": 1, "checkpoint_every": 0, **top}
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
