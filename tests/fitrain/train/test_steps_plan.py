"""Exact budget cuts, the step stream over epochs, and the plan's up-front checks (no Lightning here)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from fitrain.errors import ConfigError, FitrainError
from fitrain.steps import allowances, count_step, cut_step
from fitrain.train import TrainConfig, make_plan, resolve_budget

_spec = importlib.util.spec_from_file_location("fitrain_train_synthetic2", Path(__file__).with_name("synthetic.py"))
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

PAD = 0


def _micro():
    b = synthetic.packed_batch(4, 30, 50, seed=7)
    return [{k: v[i:i + 2] for k, v in b.items()} for i in (0, 2)]


def test_allowances_split_in_rank_order():
    assert allowances([5, 5, 5], 7) == [5, 2, 0]
    assert allowances([5, 5], 100) == [5, 5]
    assert allowances([3, 4], 0) == [0, 0]


@pytest.mark.parametrize("by", ["tokens", "supervised"])
def test_cut_step_keeps_exactly_the_budget(by):
    micro = _micro()
    tok, sup = count_step(micro, PAD)
    total = tok if by == "tokens" else sup
    for keep in (0, 1, total // 3, total - 1, total):
        cut, kt, ks = cut_step(micro, keep, by, PAD)
        assert (kt if by == "tokens" else ks) == keep
        # labels only ever removed, shapes unchanged
        for a, b in zip(micro, cut):
            assert a["labels"].shape == b["labels"].shape
            changed = a["labels"] != b["labels"]
            assert bool((b["labels"][changed] == -100).all())
        assert count_step(cut, PAD)[1] == ks
    # the cut is a prefix in reading order: no supervised target survives after a removed one
    cut, _, _ = cut_step(micro, total // 2, by, PAD)
    flat = torch.cat([m["labels"].reshape(-1) for m in cut])
    orig = torch.cat([m["labels"].reshape(-1) for m in micro])
    removed = ((orig != -100) & (flat == -100)).nonzero()
    kept = (flat != -100).nonzero()
    assert removed.numel() and int(kept.max()) < int(removed.min())


def _manifest(rows=100, total=20000, sup=12000):
    return {"counts": {"rows": rows, "total_tokens": total, "supervised_tokens": sup}, "seq_len": 256}


def test_plan_derives_schedule_from_budget():
    cfg = TrainConfig(max_tokens=10000)
    cfg.data.micro_batch_size, cfg.data.grad_accum = 4, 2
    plan = make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=25)
    assert plan.total_steps == 7  # 10000 / (8 rows x 200 tokens/row) rounded up
    cfg = TrainConfig(max_supervised_tokens=6000)
    plan = make_plan(cfg, _manifest(), world=2, pad_id=PAD, steps_per_epoch=13)
    assert plan.total_steps == 4   # 6000 / (16 rows x 120) rounded up
    # no budget: max_epochs passes
    cfg = TrainConfig()
    cfg.data.max_epochs = 2
    assert make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=13).max_steps == 26


def test_budget_the_data_cannot_meet_is_a_clear_error():
    cfg = TrainConfig(max_tokens=50000)
    with pytest.raises(FitrainError, match="cannot be met.*20000 tokens per epoch.*max_epochs=1"):
        make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=13)
    cfg.data.max_epochs = 3
    assert make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=13).max_tokens == 50000
    with pytest.raises(FitrainError, match="max_steps=99"):
        make_plan(TrainConfig(max_steps=99), _manifest(), world=1, pad_id=PAD, steps_per_epoch=13)


def test_budget_from_a_manifest(tmp_path):
    from fitrain.io import write_json

    write_json(tmp_path / "manifest.json", _manifest(total=12345))
    assert resolve_budget(TrainConfig(budget_from=str(tmp_path)))[0] == 12345
    assert resolve_budget(TrainConfig(budget_from=str(tmp_path / "manifest.json"), budget_from_epochs=2))[0] == 24690
    with pytest.raises(ConfigError, match="not both"):
        resolve_budget(TrainConfig(budget_from=str(tmp_path), max_tokens=5))
    with pytest.raises(FitrainError, match="no prepared data"):
        resolve_budget(TrainConfig(budget_from=str(tmp_path / "nope")))


def test_trainer_setup_errors_are_clear():
    from fitrain.train import build_trainer

    with pytest.raises(FitrainError, match="fsdp needs GPUs"):
        build_trainer(TrainConfig(strategy="fsdp", accelerator="cpu"))
    with pytest.raises(ConfigError, match="strategy must be one of"):
        build_trainer(TrainConfig(strategy="deepspeed"))
    with pytest.raises(FitrainError, match="cannot set up training"):
        build_trainer(TrainConfig(accelerator="gpu", devices=1))
