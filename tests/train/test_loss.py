"""The exact loss normalisation: one batch (full logits) equals the same rows as uneven micro-batches through
the training objective (head on the supervised positions only)."""
from __future__ import annotations

import math

import torch

from fitrain.data.loader import IGNORE_INDEX
from fitrain.train.loss import accumulate_gradients, sum_cross_entropy, supervised_targets
from fitrain.train.model import ModelConfig, build_model, forward_logits
from fitrain.train.objective import CausalLMLoss
from tests.helpers import synthetic

VOCAB = 97


def tiny(seed=0, **kw):
    return build_model(ModelConfig(preset="tiny", **kw), VOCAB, attention="sdpa", seed=seed, verbose=False)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_one_batch_gradient_equals_four_uneven_micro_batches():
    batch = synthetic.packed_batch(8, 32, VOCAB, seed=3)
    # make the masks very uneven across micro-batches: rows 0-1 keep 1 target, rows 6-7 keep all
    batch["labels"][0:2, 2:] = IGNORE_INDEX
    counts = [supervised_targets(batch["labels"][i:i + 2]) for i in range(0, 8, 2)]
    assert len(set(counts)) > 2
    whole = tiny(seed=5)
    total = supervised_targets(batch["labels"])
    loss, n = sum_cross_entropy(forward_logits(whole, batch), batch["labels"])
    assert n == total
    (loss / total).backward()
    split = tiny(seed=5)
    micro = [{k: v[i:i + 2] for k, v in batch.items()} for i in range(0, 8, 2)]
    got = accumulate_gradients(CausalLMLoss(split), micro, total)
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
