"""The training objective's head + cross-entropy: the chunked path equals the plain one (loss and
gradients), under autocast too, and never holds the [tokens, vocab] fp32 logits (measured)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fitrain.data.loader import IGNORE_INDEX
from fitrain.train.loss import LossConfig, sum_cross_entropy
from fitrain.train.model import ModelConfig, build_model, forward_logits
from fitrain.train.objective import CausalLMLoss, head_cross_entropy

from tests.helpers import synthetic
from tests.helpers.paths import REPO

VOCAB = 1000


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(chunk: int, batch: dict, reference: bool = False):
    model = build_model(ModelConfig(preset="tiny", tie_embeddings=False), VOCAB, "sdpa", seed=4, verbose=False)
    model.train()
    if reference:   # full [B, T, V] logits, the shift on the logits' side
        loss, n = sum_cross_entropy(forward_logits(model, batch), batch["labels"])
    else:
        loss, n = CausalLMLoss(model, chunk)(batch)
    loss.backward()
    return float(loss.detach()), n, _grads(model)


def test_chunked_loss_and_gradients_equal_the_plain_loss():
    batch = synthetic.packed_batch(3, 64, VOCAB, seed=9)
    ref_loss, ref_n, ref_g = _run(0, batch, reference=True)
    for chunk in (0, 7, 50, 10_000):       # plain, uneven chunks, a chunk larger than the batch
        loss, n, g = _run(chunk, batch)
        assert n == ref_n > 20
        assert loss == pytest.approx(ref_loss, rel=1e-6)
        assert g.keys() == ref_g.keys()
        for k in ref_g:
            scale = float(ref_g[k].abs().max())
            assert float((g[k] - ref_g[k]).abs().max()) <= 1e-6 * max(scale, 1.0), (chunk, k)


def test_chunked_head_under_bf16_autocast_is_as_accurate_as_the_plain_head():
    """bf16-mixed: the chunked head multiplies in autocast's dtype like the plain lm_head (softmax in fp32);
    against the fp32 result it is at least as close as the plain head (it sums the chunks' weight
    gradients in fp32)."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 33, 16, generator=g, requires_grad=True)
    weight = torch.randn(300, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 300, (2, 33), generator=g)
    labels[0, :5] = IGNORE_INDEX

    def run(chunk, autocast):
        hidden.grad = weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, n = head_cross_entropy(hidden, weight, labels, chunk)
        loss.backward()
        assert loss.dtype == torch.float32 and n == 2 * 32 - 4
        return float(loss.detach()), hidden.grad.clone(), weight.grad.clone()

    ref = run(0, autocast=False)
    errors = {}
    for chunk in (0, 8):
        loss, gh, gw = run(chunk, autocast=True)
        assert loss == pytest.approx(ref[0], rel=1e-2)
        errors[chunk] = [float((x - r).norm() / r.norm()) for x, r in ((gh, ref[1]), (gw, ref[2]))]
    assert max(errors[0]) < 2e-2 and max(errors[8]) < 2e-2
    assert all(c <= 1.5 * p for c, p in zip(errors[8], errors[0])), errors


def test_auto_chunks_large_vocabularies_only():
    cfg = LossConfig()
    assert cfg.chunked(128256) and cfg.chunked(32768) and not cfg.chunked(8192)
    assert LossConfig(kind="chunked").chunked(100) and not LossConfig(kind="plain").chunked(128256)
    from fitrain.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^kind must be one of \['auto', 'chunked', 'plain'\], got 'fused'$"):
        LossConfig(kind="fused")  # checked on construction; from a recipe the key reads loss.kind


_MEASURE = r"""
import json, resource, sys, torch
from fitrain.train.objective import head_cross_entropy
chunk, n_tok, vocab, dim = map(int, sys.argv[1:5])
torch.manual_seed(0)
hidden = torch.randn(1, n_tok, dim, requires_grad=True)
weight = (torch.randn(vocab, dim) * 0.02).requires_grad_()
labels = torch.randint(0, vocab, (1, n_tok))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loss, n = head_cross_entropy(hidden, weight, labels, chunk)
loss.backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"extra_mib": (peak - base) / 1024, "loss": float(loss) / n}))
"""


@pytest.mark.slow
def test_chunked_loss_never_materialises_the_full_fp32_logits():
    """Peak memory (ru_maxrss of a fresh process) of the head + CE forward and backward for 2048 targets
    and a 128,256-token vocabulary: one fp32 [tokens, vocab] tensor is 1002 MiB. The plain path holds at
    least that; the chunked path (128 targets per chunk: 63 MiB) stays far below it."""
    n_tok, vocab, dim = 2048, 128256, 32
    full_mib = n_tok * vocab * 4 / 2**20
    got = {}
    for chunk in (0, 128):
        r = subprocess.run([sys.executable, "-c", _MEASURE, str(chunk), str(n_tok), str(vocab), str(dim)],
                           capture_output=True, text=True, cwd=REPO, timeout=300,
                           env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr[-2000:]
        got[chunk] = json.loads(r.stdout.strip().splitlines()[-1])
    assert got[128]["loss"] == pytest.approx(got[0]["loss"], rel=1e-6)
    assert got[0]["extra_mib"] >= full_mib                 # the measurement sees the full logits
    assert got[128]["extra_mib"] < 0.25 * full_mib, got    # ... and the chunked path never holds them
