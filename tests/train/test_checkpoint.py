"""Checkpoint files: the typed fitrain state, Lightning's sharded FSDP layout."""
import pytest
import torch

from fitrain.core.errors import FitrainError
from fitrain.train.checkpoint import STATE_VERSION, TrainState


def _tiny_model():
    from fitrain.train.model import ModelConfig, build_model

    return build_model(ModelConfig(preset="tiny", vocab_multiple=8), 64, "sdpa", seed=0, verbose=False)


def test_sharded_fsdp_checkpoint_exports(tmp_path):
    """Lightning's FSDPStrategy(state_dict_type='sharded') saves the weights under 'model' (not
    'state_dict') with torch.distributed.checkpoint and the rest in meta.pt; model_state_dict (export at
    the end of every FSDP run) must read that layout."""
    import warnings

    from torch.distributed.checkpoint import save

    from fitrain.train.checkpoint import model_state_dict

    model = _tiny_model()
    ckpt = tmp_path / "step-00000001.ckpt"
    ckpt.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save({"model": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint_id=ckpt)
    torch.save({"fitrain": {"step": 1, "hf_config": model.config.to_dict()}, "global_step": 1}, ckpt / "meta.pt")
    state, meta = model_state_dict(ckpt)
    assert meta.step == 1
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_train_state_round_trips_and_refuses_another_version():
    s = TrainState(step=3, tokens=100, supervised_tokens=60, arm="fi", config={"seed": 0})
    assert TrainState.from_dict(s.to_dict()) == s
    assert TrainState.from_dict({k: v for k, v in s.to_dict().items() if k != "version"}) == s  # older files
    with pytest.raises(FitrainError, match="state version 99"):
        TrainState.from_dict({**s.to_dict(), "version": 99})
    assert s.version == STATE_VERSION
