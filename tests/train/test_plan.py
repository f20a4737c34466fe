"""The plan's budget, schedule length and up-front checks (no Lightning here)."""
from __future__ import annotations

import pytest

from fitrain.core.accounting import TokenCounts
from fitrain.core.errors import ConfigError, FitrainError
from fitrain.data.manifest import Manifest
from fitrain.train.config import TrainConfig
from fitrain.train.plan import Budget, make_plan, resolve_budget

PAD = 0


def _manifest(rows=100, total=20000, sup=12000):
    return Manifest(fingerprint="f", seq_len=256, counts=TokenCounts(rows=rows, total_tokens=total, supervised_tokens=sup))


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
    _manifest(total=12345).write(tmp_path)
    assert resolve_budget(TrainConfig(budget_from=str(tmp_path)))[0] == 12345
    assert resolve_budget(TrainConfig(budget_from=str(tmp_path / "manifest.json"), budget_from_epochs=2))[0] == 24690
    with pytest.raises(ConfigError, match="not both"):
        resolve_budget(TrainConfig(budget_from=str(tmp_path), max_tokens=5))
    with pytest.raises(FitrainError, match="no prepared data"):
        resolve_budget(TrainConfig(budget_from=str(tmp_path / "nope")))


def test_the_budget_is_one_typed_value():
    cfg = TrainConfig(max_tokens=10000, max_steps=5)
    plan = make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=25)
    assert plan.budget == Budget("tokens", 10000) and plan.max_steps == 5 and plan.token_budget == plan.budget
    plan = make_plan(TrainConfig(max_steps=4), _manifest(), world=1, pad_id=PAD, steps_per_epoch=25)
    assert plan.budget == Budget("steps", 4) and plan.token_budget is None and plan.max_tokens == 0
    assert str(Budget("supervised_tokens", 1234)) == "1,234 supervised tokens"
    with pytest.raises(ValueError):
        Budget("epochs", 1)
