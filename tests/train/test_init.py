"""Meta-device build + name-keyed initialisation: the weights of a seed are the same bit for bit whether the
model is built eagerly, on the meta device and materialised, or sharded over 2 gloo ranks with FSDP2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fitrain.train import init
from fitrain.train.init import init_weights, initial_rows, materialize
from fitrain.train.model import ModelConfig, build_model

from tests.helpers import trainrun as th
from tests.helpers.paths import REPO

# vocab 97 with multiple 1: the embedding's rows do not split evenly over 2 ranks; pad id 1: a zero row
CFG = dict(preset="tiny", vocab_multiple=1)
TOKENS = {"pad_token_id": 1}


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _build(seed=7, **kw):
    return build_model(ModelConfig(**{**CFG, **kw}), 97, "sdpa", seed=seed, token_ids=TOKENS, verbose=False)


def test_meta_build_equals_an_eager_build_bit_for_bit():
    from transformers import LlamaForCausalLM

    ref = _build()
    eager = LlamaForCausalLM(ref.config)                 # transformers' own init, then fitrain's
    init_weights(eager, 7)
    meta = build_model(ModelConfig(**CFG), 97, "sdpa", token_ids=TOKENS, verbose=False, device="meta")
    assert all(p.is_meta for p in meta.parameters()) and ref.lm_head.weight is ref.model.embed_tokens.weight
    materialize(meta, "cpu", 7)
    a, b, c = _state(ref), _state(eager), _state(meta)
    assert sorted(a) == sorted(b) == sorted(c)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    for m in (ref, eager, meta):                          # RoPE recomputed, not left as to_empty's garbage
        torch.testing.assert_close(m.model.rotary_emb.inv_freq, eager.model.rotary_emb.original_inv_freq)


def test_each_parameter_depends_on_its_name_and_the_seed_only():
    two, three = _state(_build()), _state(_build(n_layers=3))
    shared = [k for k in two if k in three]
    assert len(shared) == len(two) and all(torch.equal(two[k], three[k]) for k in shared)   # a layer more: same
    other = _state(_build(seed=8))
    assert not torch.equal(two["model.layers.0.mlp.up_proj.weight"], other["model.layers.0.mlp.up_proj.weight"])
    emb = two["model.embed_tokens.weight"]
    assert torch.equal(emb[1], torch.zeros(64)) and float(emb[2:].std()) == pytest.approx(0.02, rel=0.05)
    assert torch.equal(two["model.norm.weight"], torch.ones(64))
    assert not torch.equal(two["model.layers.0.self_attn.q_proj.weight"], two["model.layers.1.self_attn.q_proj.weight"])


def test_any_range_of_rows_is_drawn_alone(monkeypatch):
    """Blocks of rows, each from its own generator: a range equals the same rows of the whole value."""
    monkeypatch.setattr(init, "BLOCK", 100)                    # 64-wide rows: one row per block
    emb = torch.nn.Embedding(97, 64, padding_idx=1)
    full = initial_rows(emb, "weight", "e.weight", (97, 64), 0.02, 7)
    assert torch.equal(full[1], torch.zeros(64))
    for a, b in [(0, 97), (0, 49), (49, 97), (1, 2), (50, 50), (13, 77)]:
        assert torch.equal(initial_rows(emb, "weight", "e.weight", (97, 64), 0.02, 7, a, b), full[a:b])
    lin = torch.nn.Linear(300, 5)                              # rows wider than a block
    w = initial_rows(lin, "weight", "l.weight", (5, 300), 0.02, 7)
    assert torch.equal(initial_rows(lin, "weight", "l.weight", (5, 300), 0.02, 7, 2, 4), w[2:4])
    assert not torch.equal(w[0], w[1])


SHARDED = r"""
import sys
import torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from fitrain.train import init
from fitrain.train.init import materialize
from fitrain.train.model import ModelConfig, build_model

dist.init_process_group("gloo")
init.BLOCK = int(sys.argv[2])
model = build_model(ModelConfig(preset="tiny", vocab_multiple=1), 97, "sdpa", token_ids={"pad_token_id": 1},
                    verbose=False, device="meta")
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for layer in model.model.layers:
    fully_shard(layer, mesh=mesh)
fully_shard(model, mesh=mesh)
materialize(model, "cpu", 7)
assert model.lm_head.weight is model.model.embed_tokens.weight
full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
local = sum(p.to_local().numel() for p in model.parameters())
if dist.get_rank() == 0:
    torch.save({"state": full, "local": local, "inv_freq": model.model.rotary_emb.inv_freq}, sys.argv[1])
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_fully_sharded_meta_init_equals_the_one_process_init(tmp_path, monkeypatch, ranks):
    """Blocks of 100 values (one 64-wide row): the 97-row embedding's shard of rank 1 starts mid-way."""
    monkeypatch.setattr(init, "BLOCK", 100)
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    out = tmp_path / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
                        f"--master_port={th.free_port()}", str(script), str(out), "100"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    got = torch.load(out)
    want = _state(_build())
    assert sorted(got["state"]) == sorted(want)
    assert [k for k in want if not torch.equal(got["state"][k], want[k])] == []
    n = sum(p.numel() for p in _build().parameters())
    assert got["local"] < n if ranks == 2 else got["local"] == n            # each rank held only its shards
    torch.testing.assert_close(got["inv_freq"], _build().model.rotary_emb.inv_freq)


TRAINER_BUILD = r"""
import os, sys
import torch, torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from fitrain.train.config import TrainConfig
from fitrain.train.inputs import check_inputs
from fitrain.train import init
from fitrain.train.trainer import build

calls, materialize = [], init.materialize
def spy(model, device, seed):   # when the model is materialised: sharded (DTensor) and still on meta
    calls.append(all(type(p).__name__ == "DTensor" and p.is_meta for p in model.parameters()))
    return materialize(model, device, seed)
init.materialize = spy
cfg = TrainConfig(run_dir=sys.argv[2], strategy="fsdp", accelerator="cpu", precision="32-true", seed=5,
                  max_steps=1, progress_bar=False, devices=int(os.environ["WORLD_SIZE"]))
cfg.data.path, cfg.wandb.mode = sys.argv[1], "disabled"
cfg.model.activation_checkpointing = sys.argv[4] == "ac"   # layers wrapped before the shards are filled
run = build(cfg, check_inputs(cfg))
lm = run.ctx.lm
assert calls == [True] and all(not p.is_meta for p in lm.parameters()), calls
local = sum(p.to_local().numel() for p in lm.parameters())
state = get_model_state_dict(lm, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
if dist.get_rank() == 0:
    torch.save({"state": state, "local": local, "inv_freq": lm.model.rotary_emb.inv_freq}, sys.argv[3])
"""


@pytest.mark.slow
@pytest.mark.parametrize("ranks,ac", [(1, ""), (2, "ac")])
def test_the_trainers_fsdp_build_equals_the_one_process_init(pairs_shards, tmp_path, ranks, ac):
    """``fitrain train strategy=fsdp`` builds the model on the meta device and materialises each rank's shards
    (fitrain.train.parallel.shard_objective): the weights equal a one-process build of the same seed bit for
    bit, with 2 ranks each rank held only its shards, and activation checkpointing's layer wrappers (in place
    before the shards are filled) do not change the keys."""
    from fitrain.train.config import TrainConfig
    from fitrain.train.inputs import check_inputs

    script = tmp_path / "build.py"
    script.write_text(TRAINER_BUILD)
    out = tmp_path / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
                        f"--master_port={th.free_port()}", str(script), str(pairs_shards), str(tmp_path / "run"),
                        str(out), ac or "-"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    got = torch.load(out)
    cfg = TrainConfig()
    cfg.data.path = str(pairs_shards)
    inputs = check_inputs(cfg)
    tok = inputs.tokenizer
    ref = build_model(cfg.model, inputs.vocab_size, "sdpa", seed=5, verbose=False,
                      token_ids={"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                                 "pad_token_id": tok.pad_token_id})
    want = _state(ref)
    assert sorted(got["state"]) == sorted(want)
    assert [k for k in want if not torch.equal(got["state"][k], want[k])] == []
    n = sum(p.numel() for p in ref.parameters())
    assert got["local"] < n if ranks == 2 else got["local"] == n
    torch.testing.assert_close(got["inv_freq"], ref.model.rotary_emb.inv_freq)
