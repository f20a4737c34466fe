"""MFU peak table lookup, W&B mode resolution, and the CSV log's resume truncation."""
from __future__ import annotations

import pytest

from fitrain.core.errors import FitrainError
from fitrain.train.metrics import MetricsLog, peak_flops, read_metrics, wandb_mode


def test_peak_flops_table_most_specific_first():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops(None) is None and peak_flops("Some Future GPU") is None


def test_wandb_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode("auto") == "offline"            # no credentials: offline, never a prompt
    monkeypatch.setenv("WANDB_API_KEY", "x")
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled" and wandb_mode("offline") == "offline"
    with pytest.raises(FitrainError):
        wandb_mode("sometimes")


def test_metrics_csv_resume_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "logs" / "metrics.csv"
    log = MetricsLog(path)
    for s in range(1, 6):
        log.log({"step": s, "tokens": 100 * s, "supervised_tokens": 50 * s, "loss": 1.0 / s, "lr": 0.1})
    log.log({"step": 4, "tokens": 400, "supervised_tokens": 200, "val_loss": 2.5})
    log.close()
    log = MetricsLog(path, resume_step=3)  # resumed from the step-3 checkpoint: steps 4, 5 will be redone
    log.log({"step": 4, "tokens": 400, "supervised_tokens": 200, "loss": 0.25, "lr": 0.1})
    log.close()
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[1]["loss"] == 0.5 and rows[3]["val_loss"] is None
