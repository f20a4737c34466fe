"""AdamW parameter groups, the learning-rate schedules, clipping in unscaled units under fp16 AMP."""
from __future__ import annotations

import pytest
import torch

from fitrain.core.errors import ConfigError
from fitrain.train.model import ModelConfig, build_model, count_parameters
from fitrain.train.optim import LRSchedule, OptimConfig, param_groups


def tiny(seed=0):
    return build_model(ModelConfig(preset="tiny"), 97, attention="sdpa", seed=seed, verbose=False)


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


def test_clipping_under_fp16_amp_is_in_unscaled_units():
    """precision=16-mixed: the gradients carry the loss scale until the scaler unscales them; fitrain's
    clip_and_step has the precision unscale first, so clipping to 1.0 acts on the true gradient (clipping
    the still-scaled one would shrink the update by the loss scale, 65536) and the norm is in true units."""
    from types import SimpleNamespace

    from lightning.fabric.plugins.precision import MixedPrecision

    from fitrain.train.step import clip_and_step

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    p = torch.nn.Parameter(torch.zeros(4))
    sgd = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 1.0)
    opt = SimpleNamespace(optimizer=sgd, step=lambda: plugin.optimizer_step(sgd), zero_grad=sgd.zero_grad)
    ctx = SimpleNamespace(fabric=SimpleNamespace(strategy=SimpleNamespace(precision=plugin)), lm=torch.nn.Module(),
                          optimizer=opt, scheduler=sched)
    ctx.lm.p = p
    plugin.backward((p * 2.0).sum(), None)             # true gradient 2 per entry, norm 4 -> clipped to 1
    assert torch.equal(p.grad, torch.full((4,), 2.0 * plugin.scaler.get_scale()))   # still scaled
    norm = clip_and_step(ctx, 1.0)
    assert abs(float(norm) - 4.0) < 1e-5
    assert torch.allclose(p.detach(), torch.full((4,), -0.5), atol=1e-6)   # SGD step of the clipped true gradient
    plugin.backward((p * 0.25).sum(), None)            # true norm 0.5: not clipped
    norm = clip_and_step(ctx, 1.0)
    assert abs(float(norm) - 0.5) < 1e-6 and torch.allclose(p.detach(), torch.full((4,), -0.75), atol=1e-6)
