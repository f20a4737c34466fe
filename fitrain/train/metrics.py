"""Training metrics: the local CSV log (always), W&B (offline without credentials), MFU and throughput.

``logs/metrics.csv`` has one row per logged optimizer step and one per validation (``val_loss`` filled).
On resume, rows after the resumed step are dropped first, so a step is never logged twice.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.errors import FitrainError
from fitrain.core.wandb_mode import start_run
from fitrain.core.checks import check_fields, one_of

COLUMNS = ("step", "tokens", "supervised_tokens", "supervised_fraction", "loss", "val_loss", "lr", "grad_norm",
           "tokens_per_s", "tokens_per_s_per_gpu", "mfu_fitrain", "mfu_published", "step_time_s", "data_wait_s", "epoch", "elapsed_s")

# Dense (no sparsity) bf16 tensor-core peak FLOP/s per GPU, from the vendors' datasheets (their headline
# figures are often with 2:4 sparsity: half of those). Matched as whole words against the device name
# (torch.cuda.get_device_name), most specific first, so "H100 NVL" is not an SXM H100, "L40" not "L4",
# "GH200" not "H200". GPUs without bf16 tensor cores (V100, T4) are not listed: MFU is then not reported.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500e12), ("B200", 2250e12), ("B100", 1750e12),
    ("GH200", 989e12), ("H200 NVL", 835e12), ("H200", 989e12),
    ("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12),
    ("H800 PCIe", 756e12), ("H800", 989e12), ("H20", 148e12),
    ("A100", 312e12), ("A800", 312e12), ("A30", 165e12), ("A10", 125e12),
    ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("RTX A6000", 155e12), ("RTX 6000 Ada", 364e12), ("RTX 4090", 165e12),
    ("MI325X", 1307e12), ("MI300X", 1307e12), ("MI250X", 383e12), ("MI250", 362e12),
)


def _matches(key: str, name: str) -> bool:
    import re

    return re.search(r"(?<![A-Za-z0-9])" + re.escape(key) + r"(?![A-Za-z0-9])", name, re.IGNORECASE) is not None


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a known GPU, or None (CPU, unknown GPU: MFU is not reported)."""
    if not device_name:
        return None
    for key, flops in PEAK_BF16_FLOPS:
        if _matches(key, device_name):
            return flops
    return None


def throughput(tokens: float, flops: dict, seconds: float, world: int, peak: float | None) -> dict:
    """``tokens_per_s`` (all ranks), ``tokens_per_s_per_gpu`` and ``mfu_<convention>`` for each convention of
    ``flops`` (``{convention: FLOPs}``, fitrain.train.flops.FlopsModel.both; model FLOPs per second per
    device over its peak, None without a peak) of ``tokens`` done by ``world`` devices in ``seconds``."""
    from fitrain.train.flops import mfu_both

    seconds = max(seconds, 1e-12)
    return {"tokens_per_s": tokens / seconds, "tokens_per_s_per_gpu": tokens / seconds / max(1, world),
            **mfu_both(flops, seconds, peak, world)}


def device_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@dataclass
class WandbConfig:
    project: str = "fitrain"
    group: str = ""              # '' = the experiment name, when the run dir is runs/<experiment>/train/<arm>
    name: str = ""               # '' = the arm
    entity: str = ""
    mode: str = "auto"           # auto (online with credentials, else offline) | online | offline | disabled
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_fields(self, mode=one_of("auto", "online", "offline", "disabled"))


def wandb_mode(requested: str) -> str:
    """The mode to run W&B in (``requested`` is a checked WandbConfig.mode)."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE")  # auto: the environment decides first (e.g. a cluster-wide offline)
    if env in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if netrc.is_file() and "api.wandb.ai" in netrc.read_text():
            return "online"
    except OSError:
        pass
    return "offline"


class MetricsLog:
    """CSV rows (always) + W&B (optional) on global rank 0. ``resume_step``: drop rows beyond it."""

    def __init__(self, csv_path: Path, resume_step: int | None = None):
        self.path = Path(csv_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict] = []
        if self.path.is_file() and resume_step is not None:
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        self._f = open(self.path, "w", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=COLUMNS, extrasaction="ignore")
        self._w.writeheader()
        for r in kept:
            self._w.writerow(r)
        self._f.flush()
        self.wandb = None

    def start_wandb(self, cfg: WandbConfig, run_id: str, run_dir: Path, config: dict, default_group: str,
                    default_name: str) -> None:
        """W&B writes into ``<run_dir>/wandb/`` (offline runs as ``wandb/offline-run-*``)."""
        mode = wandb_mode(cfg.mode)
        if mode == "disabled":
            return
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        self.wandb = start_run(wandb.init, project=cfg.project, group=cfg.group or default_group or None,
                               name=cfg.name or default_name, entity=cfg.entity or None, id=run_id,
                               resume="allow", mode=mode, dir=str(run_dir), config=config,
                               tags=list(cfg.tags) or None)  # online may fall back to offline (fitrain.core.wandb_mode)

    def log(self, row: dict[str, Any]) -> None:
        self._w.writerow({k: _fmt(v) for k, v in row.items()})
        self._f.flush()
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if v is not None and k != "step"}, step=int(row["step"]))

    def close(self, summary: dict | None = None) -> None:
        self._f.close()
        if self.wandb is not None:
            if summary:
                self.wandb.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
            self.wandb.finish()
            self.wandb = None


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # round-trips exactly (resume is checked bit for bit)
    return v


def read_metrics(csv_path: str | Path) -> list[dict]:
    """Rows of a metrics.csv with numbers parsed (empty cells -> None)."""
    out = []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            out.append({k: (None if v == "" else float(v) if k not in ("step", "tokens", "supervised_tokens",
                                                                        "epoch") else int(float(v)))
                        for k, v in r.items()})
    return out


def new_run_id() -> str:
    import secrets

    return secrets.token_hex(4)
