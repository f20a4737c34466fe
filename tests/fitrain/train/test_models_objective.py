"""Packed attention isolation, presets, exact loss normalisation over micro-batches, schedules."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from fitrain.errors import ConfigError, FitrainError
from fitrain.models import ModelConfig, build_model, count_parameters, forward_logits, resolve_shape, varlen_kwargs
from fitrain.objective import (LRSchedule, OptimConfig, accumulate_gradients, param_groups, sum_cross_entropy,
                               supervised_targets)

_spec = importlib.util.spec_from_file_location("fitrain_train_synthetic", Path(__file__).with_name("synthetic.py"))
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

VOCAB = 97


def tiny(seed=0, **kw):
    return build_model(ModelConfig(preset="tiny", **kw), VOCAB, attention="sdpa", seed=seed, verbose=False)


def test_packed_logits_equal_each_document_alone():
    model = tiny().eval()
    batch = synthetic.packed_batch(3, 40, VOCAB, seed=1)
    with torch.no_grad():
        packed = forward_logits(model, batch)
        n_segments = 0
        for r in range(3):
            for s, e in synthetic.segments(batch["position_ids"][r]):
                alone = forward_logits(model, {"input_ids": batch["input_ids"][r:r + 1, s:e],
                                               "position_ids": torch.arange(e - s)[None]})
                torch.testing.assert_close(packed[r, s:e], alone[0], rtol=1e-5, atol=1e-5)
                n_segments += 1
    assert n_segments > 6
    # the check can fail: without restarting positions the documents do see each other
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits
    s, e = synthetic.segments(batch["position_ids"][0])[1]
    assert not torch.allclose(leaky[0, s:e], packed[0, s:e], atol=1e-3)


def test_model_config_is_cache_free_and_counts_params(capsys):
    model = build_model(ModelConfig(preset="tiny", dim=32, n_heads=2, n_kv_heads=1), VOCAB, seed=0)
    assert model.config.use_cache is False and model.config.hidden_size == 32
    assert model.config.vocab_size == 128  # rounded up to a multiple of 64
    total, emb = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert "params=" in capsys.readouterr().err


def test_presets_shapes_and_bad_names():
    assert resolve_shape(ModelConfig(preset="1.8b")) == dict(dim=2048, n_layers=25, n_heads=16, n_kv_heads=16,
                                                             ffn_dim=5632, tie_embeddings=False)
    with pytest.raises(ConfigError, match="did you mean '1.8b'"):
        resolve_shape(ModelConfig(preset="1.8B"))
    with pytest.raises(ConfigError, match="not divisible"):
        resolve_shape(ModelConfig(preset="tiny", n_heads=5))
    with pytest.raises(FitrainError, match="tokenizer has 500 tokens"):
        build_model(ModelConfig(preset="tiny", vocab_size=256), 500, verbose=False)


def test_param_count_of_1_8b_preset_matches_lingua_shape():
    from fitrain.models import llama_config

    cfg = llama_config(ModelConfig(preset="1.8b"), 128256)
    d, L, f, v = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size
    n = L * (4 * d * d + 3 * d * f + 2 * d) + 2 * v * d + d
    assert 1.75e9 < n < 1.85e9


def test_varlen_kwargs_from_position_ids():
    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]])
    kw = varlen_kwargs(pos)
    assert kw["cu_seq_lens_q"].tolist() == [0, 3, 5, 9, 10] and kw["max_length_q"] == 4
    with pytest.raises(FitrainError):
        varlen_kwargs(torch.tensor([[1, 2, 0]]))


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_one_batch_gradient_equals_four_uneven_micro_batches():
    batch = synthetic.packed_batch(8, 32, VOCAB, seed=3)
    # make the masks very uneven across micro-batches: rows 0-1 keep 1 target, rows 6-7 keep all
    batch["labels"][0:2, 2:] = -100
    counts = [supervised_targets(batch["labels"][i:i + 2]) for i in range(0, 8, 2)]
    assert len(set(counts)) > 2
    whole = tiny(seed=5)
    total = supervised_targets(batch["labels"])
    loss, n = sum_cross_entropy(forward_logits(whole, batch), batch["labels"])
    assert n == total
    (loss / total).backward()
    split = tiny(seed=5)
    micro = [{k: v[i:i + 2] for k, v in batch.items()} for i in range(0, 8, 2)]
    got = accumulate_gradients(lambda mb: forward_logits(split, mb), micro, total)
    assert math.isclose(float(got), float(loss.detach()), rel_tol=1e-5)
    g1, g2 = _grads(whole), _grads(split)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-4, atol=1e-7)
    # the classic bug (mean of per-micro-batch means) gives a different gradient: the test can fail
    naive = tiny(seed=5)
    for mb in micro:
        l, c = sum_cross_entropy(forward_logits(naive, mb), mb["labels"])
        (l / c / len(micro)).backward()
    gn = _grads(naive)
    assert any(not torch.allclose(gn[k], g1[k], rtol=1e-3, atol=1e-6) for k in g1)


def test_param_groups_skip_decay_on_norms_and_embeddings():
    model = tiny()
    decay, no_decay = param_groups(model, OptimConfig())
    assert model.get_input_embeddings().weight in no_decay["params"]
    assert all(p.ndim == 2 for p in decay["params"]) and decay["weight_decay"] > 0
    assert any(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0
    d2, _ = param_groups(model, OptimConfig(decay_embeddings=True, decay_norms_and_biases=True))
    assert sum(p.numel() for p in d2["params"]) == count_parameters(model)[0]


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "linear", "constant"])
def test_schedules(schedule):
    s = LRSchedule(OptimConfig(schedule=schedule, warmup_steps=10, min_lr_ratio=0.1, decay_fraction=0.2), 100)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    if schedule == "constant":
        assert s(99) == 1.0
    else:
        assert s(99) == pytest.approx(0.1, abs=1e-9) and s(200) == pytest.approx(0.1, abs=1e-9)
    if schedule == "wsd":
        assert s(79) == 1.0 and s(85) < 1.0
    if schedule == "cosine":
        assert s(54) > 0.55 > s(55)  # midpoint of the cosine: floor + (1 - floor) / 2
    with pytest.raises(ConfigError):
        LRSchedule(OptimConfig(schedule="cosin"), 10)


def test_activation_checkpointing_gives_the_same_gradients():
    batch = synthetic.packed_batch(2, 24, VOCAB, seed=11)
    grads = []
    for ac in (False, True):
        model = tiny(seed=2, activation_checkpointing=ac).train()
        loss, n = sum_cross_entropy(forward_logits(model, batch), batch["labels"])
        (loss / n).backward()
        grads.append(_grads(model))
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-7)
