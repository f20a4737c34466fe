"""MFU peak table lookup, W&B mode resolution, and the CSV log's resume truncation."""
from __future__ import annotations

import pytest

from fitrain.core.errors import FitrainError
from fitrain.train.metrics import MetricsLog, WandbConfig, peak_flops, read_metrics, wandb_mode


def test_peak_flops_table_matches_whole_names_most_specific_first():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12            # SXM
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H100 NVL") == 835e12                  # not the SXM part
    assert peak_flops("NVIDIA H200") == 989e12 and peak_flops("NVIDIA H200 NVL") == 835e12
    assert peak_flops("NVIDIA GH200 480GB") == 989e12 and peak_flops("NVIDIA B200") == 2250e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and peak_flops("NVIDIA A100 80GB PCIe") == 312e12
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L40") == 181e12   # "L40" is not "L4"
    assert peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("AMD Instinct MI250X") == 383e12 and peak_flops("AMD Instinct MI250") == 362e12
    assert peak_flops("NVIDIA A10G") is None                        # no datasheet figure; not an A10
    assert peak_flops("Tesla V100-SXM2-32GB") is None               # no bf16 tensor cores
    assert peak_flops(None) is None and peak_flops("Some Future GPU") is None


def _packed_batch(pad_id: int):
    """Two rows of 16: documents of 5, 7 and 4 tokens; one of 10 tokens and 6 of padding."""
    import torch

    pos = torch.tensor([list(range(5)) + list(range(7)) + list(range(4)), list(range(10)) + list(range(6))])
    ids = torch.full((2, 16), 7)
    ids[1, 10:] = pad_id
    return {"input_ids": ids, "position_ids": pos}


def test_mfu_of_a_packed_batch_equals_a_hand_computation(tmp_path):
    """Attention work is sum(l^2) over the packed documents (5^2 + 7^2 + 4^2 + 10^2 = 190), not rows x T^2
    (512): the MFU logged for a step is the hand-computed model FLOPs over time, devices and peak."""
    from types import SimpleNamespace

    from fitrain.core.layout import TrainDir
    from fitrain.train.hooks import AfterStep
    from fitrain.train.microbatches import sum_sq_document_lengths
    from fitrain.train.model import ModelConfig, build_model, flops_model
    from fitrain.train.step import StepRecord, Work

    pad = 1
    assert sum_sq_document_lengths(_packed_batch(pad), pad) == 190
    model = build_model(ModelConfig(preset="tiny", vocab_multiple=8), 96, "sdpa", seed=0, verbose=False)
    d, layers, ffn, vocab, kv = 64, 2, 176, 96, 2 * 16        # tiny: dim 64, 2 layers, 4 heads (2 kv) of 16
    body = layers * (2 * d * d + 2 * d * kv + 3 * d * ffn + 2 * d) + d   # q, o, k, v, MLP, norms; final norm
    tokens, targets, seconds, world, peak = 26, 20, 0.5, 2, 1e12
    hand = 6 * body * tokens + 6 * vocab * d * targets + 12 * layers * d * 190
    fm = flops_model(model)
    assert fm.step(tokens, targets, 190) == hand
    fabric = SimpleNamespace(world_size=world, is_global_zero=False)
    after = AfterStep(fabric, SimpleNamespace(checkpoint_every=0), TrainDir(tmp_path), None, False, fm, peak)
    record = StepRecord(step=1, tokens=tokens, supervised_tokens=targets, loss=1.0, lr=0.1, grad_norm=1.0,
                        step_time_s=seconds, data_wait_s=0.0, step_tokens=tokens, epoch=0, logged=True,
                        work=Work(tokens=tokens, head_positions=targets, sum_sq_lengths=190, rows=2, seq_len=16))
    after(record, SimpleNamespace(step=1, finished=False, stopped_by_signal=False), save=None)
    assert record.mfu_fitrain == pytest.approx(hand / seconds / (world * peak), rel=1e-12)
    published = (6 * body + 6 * vocab * d + 12 * layers * d * 16) * 2 * 16    # 6N + 12 L d T over full rows
    assert record.mfu_published == pytest.approx(published / seconds / (world * peak), rel=1e-12)
    assert record.tokens_per_s_per_gpu == pytest.approx(tokens / seconds / world)
    assert record.tokens_per_s == pytest.approx(tokens / seconds)
    # the old convention (every row one T-token document) would have counted 12 x L x d x T per token
    assert hand < 6 * body * tokens + 6 * vocab * d * targets + 12 * layers * d * 16 * tokens


def test_wandb_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode("auto") == "offline"            # no credentials: offline, never a prompt
    monkeypatch.setenv("WANDB_API_KEY", "x")
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled" and wandb_mode("offline") == "offline"
    with pytest.raises(FitrainError, match="^mode must be one of"):  # checked where it is configured
        WandbConfig(mode="sometimes")


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
