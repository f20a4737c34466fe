"""Training FLOPs and MFU under both named conventions, against counts done by hand."""
from __future__ import annotations

import pytest

from fitrain.train.flops import CONVENTIONS, flops_model, mfu, mfu_both
from fitrain.train.model import ModelConfig, build_model, count_parameters, llama_config, parameter_count


def _tiny():
    # dim 64, 2 layers, 4 heads (head_dim 16), 2 K/V heads, FFN 176, tied; vocab 97 -> 128
    return build_model(ModelConfig(preset="tiny"), 97, "sdpa", seed=0, verbose=False)


def test_flops_model_equals_the_hand_count():
    fm = flops_model(_tiny())
    per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176 + 2 * 64      # q,o + k,v + SwiGLU + 2 norms = 46,208
    decoder = 2 * per_layer + 64                                          # + final norm = 92,480
    assert decoder == 92_480
    assert fm.body_per_token == 6 * 92_480 and fm.head_per_target == 6 * 128 * 64 and fm.attention_per_sq == 12 * 2 * 64


def test_both_conventions_of_one_step_by_hand():
    fm = flops_model(_tiny())
    # two rows of 8: documents of 3 and 5 tokens, and one of 8; 13 positions with a target
    tokens, targets, sum_sq, rows, seq_len = 16, 13, 3 ** 2 + 5 ** 2 + 8 ** 2, 2, 8
    fitrain = 6 * 92_480 * 16 + 6 * 128 * 64 * 13 + 12 * 2 * 64 * 98
    published = (6 * (92_480 + 128 * 64) + 12 * 2 * 64 * 8) * 16          # 6N + 12 L d T per token, full rows
    assert fm.step(tokens, targets, sum_sq) == fitrain == 9_667_584
    assert fm.published_step(rows, seq_len) == published == 9_861_120
    assert fm.both(tokens, targets, sum_sq, rows, seq_len) == {"fitrain": fitrain, "published": published}
    assert sorted(CONVENTIONS) == ["fitrain", "published"]


def test_published_reads_higher_on_packed_1_8b_rows():
    """The 1.8b shape at 4 x 4096 with ~700-token documents: the published count is 16-25% above the exact one."""
    cfg = llama_config(ModelConfig(preset="1.8b"), 128256)
    n = parameter_count(ModelConfig(preset="1.8b"), 128256)
    from fitrain.train.flops import flops_from_shape

    fm = flops_from_shape(cfg.num_hidden_layers, cfg.hidden_size, 128256, n - 2 * 128256 * 2048)
    docs = [700] * 23 + [4096 * 4 - 700 * 23]
    exact = fm.step(4 * 4096, 4 * 4096 - len(docs), sum(x * x for x in docs))
    ratio = fm.published_step(4, 4096) / exact
    assert 1.10 < ratio < 1.30


def test_mfu_by_hand():
    assert mfu(4e12, 2.0, 1e12, devices=2) == pytest.approx(1.0)
    assert mfu(1e12, 2.0, 1e12, devices=2) == pytest.approx(0.25)
    assert mfu(1e12, 2.0, None) is None and mfu(0.0, 1.0, 1e12) is None
    assert mfu_both({"fitrain": 1e12, "published": 2e12}, 1.0, 4e12) == {"mfu_fitrain": 0.25, "mfu_published": 0.5}


@pytest.mark.parametrize("kw", [{}, {"tie_embeddings": False, "n_kv_heads": 1}])
def test_parameter_count_from_the_shape_equals_the_built_model(kw):
    model = build_model(ModelConfig(preset="tiny", **kw), 97, "sdpa", seed=0, verbose=False, device="meta")
    assert parameter_count(ModelConfig(preset="tiny", **kw), 128) == count_parameters(model)[0]
