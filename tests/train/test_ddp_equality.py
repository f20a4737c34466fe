"""A 2-process DDP run on CPU (gloo, launched with torchrun) equals the single-process run: same rows per
optimizer step, the loss normalised over both ranks' supervised targets, and the last step cut at the token
budget in the same global reading order."""
from __future__ import annotations

import pytest

from fitrain.train.trainer import train

from tests.helpers import trainrun as th


@pytest.mark.slow
def test_two_process_ddp_equals_single_process(pairs_shards, tmp_path):
    steps, budget = 4, 7000   # 4 steps of <= 2048 tokens, the last one cut at exactly 7000 tokens
    single = th.tiny_config(tmp_path / "single", pairs_shards, max_tokens=budget, export_hf=False)
    single.data.micro_batch_size, single.data.grad_accum = 4, 2          # 8 rows per optimizer step
    train(single)

    overrides = [f"run_dir={tmp_path / 'ddp'}", f"data.path={pairs_shards}", f"max_tokens={budget}",
                 "data.micro_batch_size=2", "data.grad_accum=2",               # 2 ranks x 2 x 2 = 8 rows
                 "optim.warmup_steps=2", "optim.lr=0.003", "log_every=1", "checkpoint_every=0",
                 "progress_bar=false", "export_hf=false", "wandb.mode=disabled",
                 "strategy=ddp", "devices=2", "accelerator=cpu", "precision=32-true"]   # as the single run
    r = th.torchrun_train(overrides, nproc=2, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    a, b = th.train_rows(tmp_path / "single"), th.train_rows(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    assert int(a[steps]["tokens"]) == int(b[steps]["tokens"]) == budget  # the cut follows the same reading order
    for s in a:
        assert a[s]["tokens"] == b[s]["tokens"] and a[s]["supervised_tokens"] == b[s]["supervised_tokens"]
        assert float(b[s]["loss"]) == pytest.approx(float(a[s]["loss"]), rel=1e-5, abs=1e-6), s
        assert float(b[s]["grad_norm"]) == pytest.approx(float(a[s]["grad_norm"]), rel=1e-4, abs=1e-7), s
