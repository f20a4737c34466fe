"""The global batch is the experiment: at ``data.global_batch_rows=16`` every split of it into ranks and
micro-batches -- (world, micro-batch) = (1, 4) [the reference], (1, 1), (2, 2) DDP, (2, 1) FSDP keeping unsharded
gradients between micro-batches, (4, 1) HSDP, with grad_accum derived -- reads the same rows at every optimizer step, across an epoch end that wraps (102 rows: 7 steps of
16 per epoch, the 7th ending with 10 rows of the same pass again), and the losses agree within 1e-5. The
(4, 1) run is also the HSDP check: 2 x 2 (sharded within pairs of ranks, replicated across them), gradients
reduce-scattered every micro-batch, equal to the one-process run. A requeue on another cluster shape (1 process
-> 2 ranks, from a checkpoint) continues the same run. CPU, gloo (torchrun)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fitrain.train.trainer import train

from tests.helpers import trainrun as th

pytestmark = pytest.mark.slow
GLOBAL_BATCH, STEPS = 16, 8


def _single(run_dir: Path, data: Path, micro: int) -> Path:
    cfg = th.tiny_config(run_dir, data, max_steps=STEPS, export_hf=run_dir.name == "reference",
                         checkpoint_every=4, keep_checkpoints=0)
    cfg.data.micro_batch_size, cfg.data.grad_accum, cfg.data.global_batch_rows = micro, 0, GLOBAL_BATCH
    cfg.data.max_epochs = 2
    train(cfg)
    return run_dir


def _torchrun(run_dir: Path, data: Path, world: int, micro: int, *extra: str) -> Path:
    r = th.torchrun_train([f"run_dir={run_dir}", f"data.path={data}", f"max_steps={STEPS}", "data.max_epochs=2",
                           f"data.micro_batch_size={micro}", f"data.global_batch_rows={GLOBAL_BATCH}",
                           "optim.warmup_steps=2", "optim.lr=0.003", "log_every=1", "checkpoint_every=0",
                           "progress_bar=false", "wandb.mode=disabled", "accelerator=cpu", f"devices={world}",
                           "precision=32-true", *extra], nproc=world, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return run_dir


@pytest.fixture(scope="module")
def reference(pairs_shards, tmp_path_factory) -> Path:
    from fitrain.data.manifest import Manifest

    rows = Manifest.read(pairs_shards).counts.rows
    assert rows % GLOBAL_BATCH and -(-rows // GLOBAL_BATCH) < STEPS     # the run wraps at an epoch end
    return _single(tmp_path_factory.mktemp("global_batch") / "reference", pairs_shards, micro=4)


def _same_steps(a_dir: Path, b_dir: Path, first: int = 1) -> None:
    a, b = th.train_rows(a_dir), th.train_rows(b_dir)
    assert sorted(a) == list(range(1, STEPS + 1)) and sorted(b) == list(range(first, STEPS + 1))
    assert [int(a[s]["epoch"]) for s in a] == [0] * 7 + [1]
    for s in b:   # identical rows: identical token and target counts; the same sums: losses within 1e-5
        assert (a[s]["tokens"], a[s]["supervised_tokens"]) == (b[s]["tokens"], b[s]["supervised_tokens"]), s
        assert float(b[s]["loss"]) == pytest.approx(float(a[s]["loss"]), rel=1e-5), s
        assert float(b[s]["grad_norm"]) == pytest.approx(float(a[s]["grad_norm"]), rel=1e-4), s


def test_every_split_of_the_global_batch_trains_the_same_steps(reference, pairs_shards, tmp_path):
    summary = json.loads((reference / "summary.json").read_text())
    assert (summary["global_batch_rows"], summary["grad_accum"]) == (GLOBAL_BATCH, 4)
    _same_steps(reference, _single(tmp_path / "w1m1", pairs_shards, micro=1))           # grad_accum 16
    _same_steps(reference, _torchrun(tmp_path / "w2m2", pairs_shards, 2, 2, "strategy=ddp"))   # grad_accum 4
    # grad_accum 8 under FSDP2 with the full gradients kept between micro-batches (the GPU default for 1.8b)
    run = _torchrun(tmp_path / "w2m1", pairs_shards, 2, 1, "strategy=fsdp", "fsdp.accumulate=unsharded",
                    "checkpoint_every=4", "keep_checkpoints=0")
    _same_steps(reference, run)
    assert json.loads((run / "summary.json").read_text())["fsdp"]["accumulate"] == "unsharded"
    # its sharded step-4 checkpoint resumed by 4 ranks x micro-batch 1: the same steps 5-8
    ckpt = run / "checkpoints" / "step-00000004.ckpt"
    assert ckpt.is_dir()
    _same_steps(reference, _torchrun(tmp_path / "w4m1", pairs_shards, 4, 1, "strategy=fsdp", f"resume={ckpt}"),
                first=5)


def test_a_requeue_on_another_cluster_shape_continues_the_same_run(reference, pairs_shards, tmp_path):
    """The one-process run's step-4 checkpoint resumed by 2 DDP ranks x micro-batch 2: steps 5-8 (across the
    epoch end) read the same rows and reach the same losses as the uninterrupted run (a sharded checkpoint
    resumed by more ranks: test_every_split_of_the_global_batch_trains_the_same_steps)."""
    ckpt = reference / "checkpoints" / "step-00000004.ckpt"
    _same_steps(reference, _torchrun(tmp_path / "requeued", pairs_shards, 2, 2, "strategy=ddp", f"resume={ckpt}"),
                first=5)


def test_hsdp_two_by_two_equals_one_process(reference, pairs_shards, tmp_path):
    """4 ranks x micro-batch 1 (grad_accum 4), fsdp.shard_size=2: a (replicate 2, shard 2) mesh;
    fsdp.accumulate=sharded reduce-scatters every micro-batch and all-reduces across the replicas on the last.
    Every step as the one-process run's; the final weights (exported from the sharded checkpoint) within 1e-5."""
    from safetensors.torch import load_file

    run = _torchrun(tmp_path / "hsdp", pairs_shards, 4, 1, "strategy=fsdp", "fsdp.shard_size=2",
                    "fsdp.accumulate=sharded")
    _same_steps(reference, run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fsdp"]["mesh"] == "hsdp (replicate 2 x shard 2)" and summary["fsdp"]["accumulate"] == "sharded"
    a, b = load_file(str(reference / "hf" / "model.safetensors")), load_file(str(run / "hf" / "model.safetensors"))
    assert sorted(a) == sorted(b)
    worst = max(float((b[k].double() - a[k].double()).norm() / a[k].double().norm().clamp_min(1e-30)) for k in a)
    assert worst <= 1e-5, worst
