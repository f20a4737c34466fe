"""The plan's budget, schedule length and up-front checks (no Lightning here)."""
from __future__ import annotations

import numpy as np
import pytest

from fitrain.core.accounting import TokenCounts
from fitrain.core.errors import ConfigError, FitrainError
from fitrain.data.manifest import Manifest
from fitrain.train.config import TrainConfig
from fitrain.train.plan import Budget, ReadingOrder, make_plan, resolve_budget

PAD = 0


def _manifest(rows=100, total=20000, sup=12000):
    return Manifest(fingerprint="f", seq_len=256, counts=TokenCounts(rows=rows, total_tokens=total, supervised_tokens=sup))


def _order(rows=100, tokens=200, sup=120, per_micro=4):
    """Rows of equal counts read in file order, wrapped to whole micro-steps like the loader."""
    def order(epoch):
        steps = -(-rows // per_micro)
        return np.resize(np.arange(rows), steps * per_micro)
    return ReadingOrder.from_arrays(np.full(rows, tokens), np.full(rows, sup), order, per_micro)


def test_plan_derives_schedule_from_budget():
    cfg = TrainConfig(max_tokens=10000)
    cfg.data.micro_batch_size, cfg.data.grad_accum = 4, 2
    plan = make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=25, order=_order())
    assert plan.total_steps == 7  # 10000 / (8 rows x 200 tokens/row) rounded up
    cfg = TrainConfig(max_supervised_tokens=6000)
    plan = make_plan(cfg, _manifest(), world=2, pad_id=PAD, steps_per_epoch=13, order=_order(per_micro=16))
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
    assert make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=13, order=_order()).max_tokens == 50000
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
    plan = make_plan(cfg, _manifest(), world=1, pad_id=PAD, steps_per_epoch=25, order=_order())
    assert plan.budget == Budget("tokens", 10000) and plan.max_steps == 5 and plan.token_budget == plan.budget
    plan = make_plan(TrainConfig(max_steps=4), _manifest(), world=1, pad_id=PAD, steps_per_epoch=25)
    assert plan.budget == Budget("steps", 4) and plan.token_budget is None and plan.max_tokens == 0
    assert str(Budget("supervised_tokens", 1234)) == "1,234 supervised tokens"
    with pytest.raises(ValueError):
        Budget("epochs", 1)


def test_schedule_length_is_exact_not_a_mean_estimate():
    """Rows of very different lengths read in file order: the mean tokens per row predicts the wrong step
    count, the exact count does not (the issue's case: 6 steps planned, 5 run)."""
    tokens = np.array([250, 250, 250, 250, 10, 10, 10, 10] * 4)
    order = ReadingOrder.from_arrays(tokens, tokens // 2, lambda e: np.arange(len(tokens)), 2)
    cfg = TrainConfig(max_tokens=1001)
    cfg.data.micro_batch_size, cfg.data.grad_accum = 2, 1
    m = _manifest(rows=len(tokens), total=int(tokens.sum()), sup=int(tokens.sum() // 2))
    plan = make_plan(cfg, m, world=1, pad_id=PAD, steps_per_epoch=16, order=order)
    # steps read 500, 500, 20 ... tokens: 1001 is reached in the third step
    assert plan.total_steps == 3
    # across epochs: the budget of 1.5 passes ends inside the second epoch
    cfg = TrainConfig(max_tokens=int(tokens.sum() * 1.5))
    cfg.data.micro_batch_size, cfg.data.grad_accum, cfg.data.max_epochs = 2, 3, 0
    plan = make_plan(cfg, m, world=1, pad_id=PAD, steps_per_epoch=16, order=order)
    cum = np.cumsum(np.tile(tokens.reshape(-1, 2).sum(1), 2))
    first_micro = int(np.searchsorted(cum, cfg.max_tokens))
    assert plan.total_steps == first_micro // 3 + 1
    # a budget the allowed passes cannot hold is refused, by the exact count
    cfg.data.max_epochs = 1
    with pytest.raises(FitrainError, match="cannot be met"):
        make_plan(cfg, m, world=1, pad_id=PAD, steps_per_epoch=16, order=order)


def test_the_global_batch_sets_grad_accum_and_a_split_that_does_not_divide_is_one_line():
    from fitrain.train.plan import resolve_batch

    cfg = TrainConfig()
    cfg.data.micro_batch_size, cfg.data.global_batch_tokens = 4, 524288          # 128 rows of 4096
    assert resolve_batch(cfg, world=32, seq_len=4096) == (1, 128)                # 4 nodes x 8 GPUs
    assert resolve_batch(cfg, world=8, seq_len=4096) == (4, 128)                 # 1 node: same batch
    assert resolve_batch(cfg, world=1, seq_len=4096) == (32, 128)
    with pytest.raises(ConfigError, match=r"global_batch_tokens=524288 \(128 rows\) does not divide by "
                                          r"data.micro_batch_size=4 x 3 rank\(s\) = 12 rows") as e:
        resolve_batch(cfg, world=3, seq_len=4096)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not a whole number of the data's 3000-token rows"):
        resolve_batch(cfg, world=1, seq_len=3000)
    cfg.data.grad_accum = 2
    with pytest.raises(ConfigError, match="data.grad_accum=2 but .* = 4; leave grad_accum unset"):
        resolve_batch(cfg, world=8, seq_len=4096)
    cfg.data.global_batch_rows = 128
    with pytest.raises(ConfigError, match="not both"):
        resolve_batch(cfg, world=8, seq_len=4096)
    cfg = TrainConfig()                                                          # no global batch: as before
    cfg.data.micro_batch_size, cfg.data.grad_accum = 4, 2
    assert resolve_batch(cfg, world=2, seq_len=256) == (2, 16)
    cfg.data.grad_accum = 0
    assert resolve_batch(cfg, world=2, seq_len=256) == (1, 8)
    cfg.data.global_batch_rows, cfg.max_steps = 24, 3
    plan = make_plan(cfg, _manifest(), world=2, pad_id=PAD, steps_per_epoch=15)
    assert (plan.grad_accum, plan.rows_per_step) == (3, 24)


@pytest.mark.parametrize("recipe,experiment,tokens", [("fi-1.8b", "fi-vs-standard-1.8b", 524288),
                                                      ("fi-7b", "fi-vs-standard-7b", 1048576)])
def test_the_large_recipes_train_one_global_batch_on_any_cluster_shape(recipe, experiment, tokens):
    """The 1.8b/7b recipes (train and experiment) state their global batch in tokens: 1 node or 4 or 16 nodes
    of 8 GPUs train the same rows per step (grad_accum takes up the difference)."""
    from fitrain.core.config import load_config
    from fitrain.pipeline.graph import ExperimentConfig
    from fitrain.train.plan import resolve_batch

    from tests.helpers.paths import REPO

    train_cfg = load_config(TrainConfig, REPO / "recipes" / "train" / f"{recipe}.yaml")
    exp_cfg = load_config(ExperimentConfig, REPO / "recipes" / "experiments" / f"{experiment}.yaml").train
    for cfg in (train_cfg, exp_cfg):
        assert cfg.data.global_batch_tokens == tokens
        micro = cfg.data.micro_batch_size
        for gpus in (8, 32, 128 if recipe == "fi-7b" else 16):
            accum, rows = resolve_batch(cfg, gpus, 4096)
            assert rows * 4096 == tokens and accum * micro * gpus == rows


def test_the_schedule_from_stored_counts_equals_the_exact_schedule_from_the_shards(pairs_shards):
    """ReadingOrder.of reads the per-row counts stored at prepare time (fitrain.data.rowcounts); the step
    counts it gives equal those from scanning every shard's seg and mask arrays, for every budget."""
    from fitrain.data.loader import PackedLoader

    for world, micro, accum in [(1, 4, 2), (2, 3, 1), (4, 1, 4)]:
        loader = PackedLoader(pairs_shards, micro, seed=3, rank=0, world_size=world, grad_accum=accum)
        stored = ReadingOrder.of(loader)
        scanned = ReadingOrder(loader.data.row_counts, loader.epoch_order, world * micro)
        total = loader.data.manifest.counts
        for unit, per_epoch in (("tokens", total.total_tokens), ("supervised_tokens", total.supervised_tokens)):
            for amount in (1, 999, per_epoch // 3, per_epoch, per_epoch + 1, 2 * per_epoch + 7):
                got = stored.steps_to(unit, amount, accum, max_epochs=3)
                assert got == scanned.steps_to(unit, amount, accum, max_epochs=3) and got is not None
