"""Review findings in the trainer (fast unit checks, no training run)."""
from types import SimpleNamespace

import torch


def _tiny_model():
    from fitrain.models import ModelConfig, build_model

    return build_model(ModelConfig(preset="tiny", vocab_multiple=8), 64, "sdpa", seed=0, verbose=False)


def test_compiled_forward_is_not_saved_in_the_checkpoint_state_dict():
    """compile=True: Lightning restores the weights (strict) *before* on_fit_start compiles again, so a
    compiled wrapper registered as a submodule adds '_fwd._orig_mod.*' keys that make resume fail."""
    from fitrain.training_module import FitrainModule

    model = _tiny_model()
    module = FitrainModule(model, SimpleNamespace(compile=True), {}, make_loader=None)
    keys_before = set(module.state_dict())
    module.on_fit_start()
    assert module._fwd is not None
    assert set(module.state_dict()) == keys_before
    fresh = FitrainModule(_tiny_model(), SimpleNamespace(compile=True), {}, make_loader=None)
    fresh.load_state_dict(module.state_dict(), strict=True)


def test_clipping_under_fp16_amp_is_in_unscaled_units():
    """precision=16-mixed: fitrain clips before opt.step(), where Lightning's GradScaler unscales; clipping
    the still-scaled gradients to 1.0 would shrink the real update by the loss scale (65536)."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from fitrain.objective import grad_norm_and_clip
    from fitrain.training_module import amp_grad_scale

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


def test_sharded_fsdp_checkpoint_exports(tmp_path):
    """Lightning's FSDPStrategy(state_dict_type='sharded') saves the weights under 'model' (not
    'state_dict') with torch.distributed.checkpoint and the rest in meta.pt; model_state_dict (export at
    the end of every FSDP run) must read that layout."""
    import warnings

    from torch.distributed.checkpoint import save

    from fitrain.checkpoint import model_state_dict

    model = _tiny_model()
    ckpt = tmp_path / "step-00000001.ckpt"
    ckpt.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save({"model": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint_id=ckpt)
    torch.save({"fitrain": {"step": 1, "hf_config": model.config.to_dict()}, "global_step": 1}, ckpt / "meta.pt")
    state, meta = model_state_dict(ckpt)
    assert meta["step"] == 1
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_final_validation_runs_inside_fit(pairs_shards, tmp_path, monkeypatch):
    """After trainer.fit Lightning's teardown has moved the module to the CPU (and DDP/FSDP are unwrapped):
    a validation there runs a GPU model on the CPU, all-reduces CPU tensors over NCCL (crash under DDP) or
    runs FSDP-sharded weights unwrapped. The final validation must happen in the last training step."""
    import importlib.util
    from pathlib import Path

    from lightning.pytorch.trainer.states import TrainerStatus

    from fitrain.train import train
    from fitrain.training_module import FitrainModule

    spec = importlib.util.spec_from_file_location("th_review", Path(__file__).with_name("trainhelp.py"))
    th = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(th)
    seen = []
    orig = FitrainModule.validate

    def spy(self):
        seen.append(self.trainer.state.status)
        return orig(self)

    monkeypatch.setattr(FitrainModule, "validate", spy)
    cfg = th.tiny_config(tmp_path, pairs_shards, max_steps=3, val_every=2, export_hf=False)
    cfg.data.val_path, cfg.data.val_rows = str(pairs_shards), 8
    summary = train(cfg)
    assert seen == [TrainerStatus.RUNNING] * 2            # step 2, and the last step (3)
    val_rows = [r for r in th.rows(tmp_path) if r["val_loss"]]
    assert [int(r["step"]) for r in val_rows] == [2, 3]
    assert summary["val_loss"] == float(val_rows[-1]["val_loss"])
