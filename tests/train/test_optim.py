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
    """precision=16-mixed: fitrain clips before opt.step(), where Lightning's GradScaler unscales; clipping
    the still-scaled gradients to 1.0 would shrink the real update by the loss scale (65536)."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from fitrain.train.optim import amp_grad_scale, grad_norm_and_clip

    plugin = MixedPrecision("16-mixed", "cpu")
    scale = amp_grad_scale(plugin)
    assert scale == float(plugin.scaler.get_scale()) > 1
    assert amp_grad_scale(MixedPrecision("bf16-mixed", "cpu")) == 1.0
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 0.25) * scale            # true gradient norm 0.5, below the limit
    norm = grad_norm_and_clip([p], 1.0, grad_scale=scale)
    assert abs(float(norm) - 0.5) < 1e-6
    assert torch.allclose(p.grad / scale, torch.full((4,), 0.25))  # not clipped
    p.grad = torch.full((4,), 2.0) * scale             # true norm 4 -> clipped to 1
    norm = grad_norm_and_clip([p], 1.0, grad_scale=scale)
    assert abs(float(norm) - 4.0) < 1e-5 and abs(float((p.grad / scale).norm()) - 1.0) < 1e-5
