"""The schedule ends where the budget ends: with a token budget the planned steps are exactly the steps run, so
the last step's learning rate is the floor; and the run says why it stopped (not Lightning's "max_epochs=1
reached")."""
import json
import math

import pytest

from tests.helpers import trainrun as th
from tests.helpers.cli import run_main


@pytest.mark.parametrize("shuffle, budget", [("false", "max_tokens=10001"), ("true", "max_supervised_tokens=3001")])
def test_last_step_reaches_the_lr_floor_exactly(pairs_shards, tmp_path, capsys, shuffle, budget):
    run = tmp_path / "run"
    r = run_main(["train", "train/fi-tiny", f"data.path={pairs_shards}", f"run_dir={run}", budget, "max_steps=0",
                  f"data.shuffle={shuffle}", "data.micro_batch_size=3", "data.grad_accum=2", "optim.warmup_steps=1",
                  "optim.lr=0.01", "optim.min_lr_ratio=0.1", "optim.schedule=cosine", "log_every=1",
                  "progress_bar=false", "wandb.mode=disabled", "export_hf=false", "checkpoint_every=0"], capsys)
    assert r.rc == 0, r.err[-3000:]
    summary = json.loads(r.out)
    assert summary["steps"] == summary["budget"]["planned_steps"]
    unit = "tokens" if "max_tokens" in budget else "supervised_tokens"
    assert summary[unit] == int(budget.split("=")[1])
    rows = th.train_rows(run)
    assert math.isclose(float(rows[summary["steps"]]["lr"]), 0.01 * 0.1, rel_tol=1e-9)
    assert float(rows[summary["steps"] - 1]["lr"]) > 0.01 * 0.1
    assert "`Trainer.fit` stopped" not in r.err
    assert f"fitrain train: reached its budget of {int(budget.split('=')[1]):,} {unit.replace('_', ' ')} at step " \
           f"{summary['steps']} of {summary['steps']} planned" in r.err


def test_reading_order_counts_what_the_loader_reads(pairs_shards):
    """ReadingOrder's per-row counts and order, summed per step, equal the batches the loader yields."""
    import numpy as np

    from fitrain.data.loader import IGNORE_INDEX, PackedLoader
    from fitrain.train.plan import ReadingOrder

    loader = PackedLoader(pairs_shards, batch_size=3, seed=5, rank=0, world_size=1, shuffle=True)
    order = ReadingOrder.of(loader)
    expected = order.row_counts("tokens")[order.epoch_order(0)].reshape(-1, 3).sum(1)
    expected_sup = order.row_counts("supervised_tokens")[order.epoch_order(0)].reshape(-1, 3).sum(1)
    pad = loader.data.manifest.pad_token_id
    got = [(int((b["input_ids"] != pad).sum()), int((b["labels"] != IGNORE_INDEX).sum())) for b in loader]
    assert got == list(zip(expected.tolist(), expected_sup.tolist()))
    assert np.array_equal(order.epoch_order(1), loader.epoch_order(1))
