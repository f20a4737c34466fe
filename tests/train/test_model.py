"""Packed attention isolation, presets, parameter counts, varlen arguments, activation checkpointing."""
from __future__ import annotations


import pytest
import torch

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.loss import sum_cross_entropy
from fitrain.train.model import ModelConfig, build_model, count_parameters, forward_logits, resolve_shape, varlen_kwargs

from tests.helpers import synthetic

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
    from fitrain.train.model import llama_config

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


def test_rope_theta_reaches_the_rotary_embedding():
    """The config passes RoPE theta as transformers v5's ``rope_parameters``; under 4.x that key is ignored
    and theta silently stays 10000. This checks the frequencies the model actually uses (and so the
    ``transformers>=5.0`` floor in pyproject.toml)."""
    import re

    from tests.helpers.paths import REPO

    model = tiny(rope_theta=500000.0)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    want = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, want)
    floor = re.search(r'"transformers>=(\d+)', (REPO / "pyproject.toml").read_text())
    assert floor and int(floor.group(1)) >= 5
