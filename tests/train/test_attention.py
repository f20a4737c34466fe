"""Attention selection and torch's varlen kernel behind transformers, through CPU stand-ins with the exact
signatures of torch 2.10, 2.11 and 2.13 (tests/helpers/varlen_kernels.py)."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from fitrain.core.errors import FitrainError
from fitrain.train import attention as attn
from fitrain.train.model import ModelConfig, build_model, forward_logits

from tests.helpers import synthetic, varlen_kernels

VOCAB = 97


def test_the_installed_and_the_stand_in_signatures_are_read():
    from torch.nn.attention import varlen

    assert attn.varlen_signature(varlen_kernels.torch_2_11) == attn.VarlenSignature("window_size", True, False)
    assert attn.varlen_signature(varlen_kernels.torch_2_13) == attn.VarlenSignature("window_size", True, True)
    assert attn.varlen_signature(varlen_kernels.torch_2_10) == attn.VarlenSignature("is_causal", False, False)
    assert attn.varlen_signature(varlen.varlen_attn) == attn.VarlenSignature("window_size", True, True)  # 2.13
    assert attn.varlen_signature(lambda q, k, v: q) is None
    assert attn.varlen_signature(lambda query, key, value, cu_seq_q, cu_seq_k, max_q, max_k: query) is None


def test_torch_varlen_available_checks_the_signature(monkeypatch):
    from torch.nn.attention import varlen

    assert attn.torch_varlen_available()
    monkeypatch.setattr(varlen, "varlen_attn", lambda q, k, v, cu, mx: q)       # a signature fitrain cannot call
    assert not attn.torch_varlen_available()
    monkeypatch.delattr(varlen, "varlen_attn")
    assert not attn.torch_varlen_available()


def _block_diagonal_sdpa(q, k, v, cu, scale):
    """Reference: one sdpa over the whole flattened batch with a dense block-diagonal causal mask."""
    n = q.shape[0]
    seg = torch.repeat_interleave(torch.arange(len(cu) - 1), cu.diff().long())
    mask = (seg[:, None] == seg[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    return F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                          attn_mask=mask, scale=scale, enable_gqa=True)[0].transpose(0, 1)


@pytest.mark.parametrize("version", ["2.10", "2.11", "2.13"])
def test_the_varlen_glue_equals_block_diagonal_sdpa(monkeypatch, version):
    """The attention function alone, with GQA (8 query heads, 2 K/V heads) and two rows of packed segments:
    each kernel signature gets its own call and the output equals dense masked sdpa."""
    varlen_kernels.install(monkeypatch, version)
    varlen_kernels.CALLS.clear()
    g = torch.Generator().manual_seed(0)
    b, t, h, hkv, d = 2, 24, 8, 2, 16
    q, k, v = (torch.randn(b, n, t, d, generator=g, requires_grad=True) for n in (h, hkv, hkv))
    pos = torch.tensor([list(range(10)) + list(range(14)), list(range(5)) + list(range(19))])
    kw = attn.varlen_kwargs(pos)
    out, _ = attn.torch_varlen_attention(None, q, k, v, scaling=d ** -0.5, **kw)
    flat = [x.transpose(1, 2).reshape(b * t, x.shape[1], d) for x in (q, k, v)]
    want = _block_diagonal_sdpa(*flat, kw["cu_seq_lens_q"], d ** -0.5).view(b, t, h, d)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    (call,) = varlen_kernels.CALLS
    assert call["kv_heads"] == (hkv if version == "2.13" else h)     # K/V repeated where enable_gqa is missing
    assert call.get("window_size", (-1, 0)) == (-1, 0) and call.get("causal", True)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    want_grads = torch.autograd.grad(want.square().sum(), (q, k, v))
    for a, w in zip(grads, want_grads):
        torch.testing.assert_close(a, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("version", ["2.11", "2.13"])
def test_a_packed_model_on_torch_varlen_equals_sdpa(monkeypatch, version):
    """model.attention=torch_varlen through transformers: the packed logits equal sdpa's (documents apart)."""
    varlen_kernels.install(monkeypatch, version)
    varlen_kernels.CALLS.clear()
    cfg = ModelConfig(preset="tiny")                      # 4 heads, 2 K/V heads
    packed_model = build_model(cfg, VOCAB, attention="torch_varlen", seed=3, verbose=False).eval()
    sdpa_model = build_model(cfg, VOCAB, attention="sdpa", seed=3, verbose=False).eval()
    batch = synthetic.packed_batch(3, 40, VOCAB, seed=5)
    with torch.no_grad():
        got, want = forward_logits(packed_model, batch), forward_logits(sdpa_model, batch)
    assert len(varlen_kernels.CALLS) == packed_model.config.num_hidden_layers
    assert all(c["version"] == version and c["scale"] == pytest.approx(16 ** -0.5) for c in varlen_kernels.CALLS)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert attn.attention_kernel(packed_model).startswith("torch_varlen: torch.nn.attention.varlen.varlen_attn")
    assert attn.attention_kernel(sdpa_model) == "sdpa"


def test_auto_picks_flash_then_torch_varlen_then_sdpa_with_one_warning(monkeypatch):
    import transformers.utils

    monkeypatch.setattr(attn, "_warned", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert attn.select_attention("auto", "cpu") == "sdpa"                      # CPU: sdpa, no warning
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)
    assert attn.select_attention("auto", "cuda") == "flash_attention_2"
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    assert attn.select_attention("auto", "cuda") == "torch_varlen"
    monkeypatch.setattr(attn, "torch_varlen_available", lambda: False)
    with pytest.warns(UserWarning, match=r"full T\^2") as seen:
        assert attn.select_attention("auto", "cuda") == "sdpa"
        assert attn.select_attention("auto", "cuda") == "sdpa"
    assert len(seen) == 1                                                           # one warning, not one per call
    with pytest.raises(FitrainError, match="torch_varlen needs a CUDA GPU"):
        attn.select_attention("torch_varlen", "cuda")
    with pytest.raises(FitrainError, match="flash_attention_2 needs"):
        attn.select_attention("flash_attention_2", "cuda")
