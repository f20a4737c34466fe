"""Checkpoint files: the typed fitrain state, the one layout, its checksum, the old (Lightning) layout refused."""
import pytest
import torch

from fitrain.core.errors import FitrainError
from fitrain.train.checkpoint import STATE_VERSION, TrainState


def _tiny_model():
    from fitrain.train.model import ModelConfig, build_model

    return build_model(ModelConfig(preset="tiny", vocab_multiple=8), 64, "sdpa", seed=0, verbose=False)


def _saved_checkpoint(tmp_path):
    """A real single-file checkpoint of a tiny model after one AdamW step (fitrain.train.checkpoint_io)."""
    from types import SimpleNamespace

    from fitrain.train.checkpoint_io import save_checkpoint
    from fitrain.train.optim import OptimConfig, build_optimizer

    model = _tiny_model()
    opt, sched = build_optimizer(model, OptimConfig(), 10)
    model(input_ids=torch.randint(0, 64, (2, 8))).logits.sum().backward()
    opt.step()
    sched.step()
    path = tmp_path / "step-00000001.ckpt"
    state = TrainState(step=1, hf_config=model.config.to_dict())
    save_checkpoint(path, SimpleNamespace(is_global_zero=True), model, opt, sched, state)
    return model, path


def test_a_checkpoint_round_trips_weights_and_optimizer(tmp_path):
    from fitrain.train.checkpoint import model_state_dict
    from fitrain.train.checkpoint_io import load_checkpoint
    from fitrain.train.optim import OptimConfig, build_optimizer

    model, path = _saved_checkpoint(tmp_path)
    weights, state = model_state_dict(path)
    assert state.step == 1 and all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    fresh = _tiny_model()
    opt, sched = build_optimizer(fresh, OptimConfig(), 10)
    load_checkpoint(path, fresh, opt, sched)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert opt.state_dict()["state"][0]["step"] == 1 and sched.last_epoch == 1


def test_a_flipped_byte_inside_a_weight_is_a_one_line_error(tmp_path):
    from fitrain.train.checkpoint import model_state_dict

    model, path = _saved_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    weight = model.state_dict()["model.layers.0.mlp.up_proj.weight"].numpy().tobytes()
    at = bytes(data).find(weight)
    assert at > 0
    data[at + 101] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(FitrainError, match="is corrupt") as e:
        model_state_dict(path)
    assert "\n" not in str(e.value)


def test_a_checkpoint_of_the_lightning_loop_is_refused_naming_its_version(tmp_path):
    from fitrain.train.checkpoint import model_state_dict, read_train_state

    model = _tiny_model()
    old = tmp_path / "step-00000001.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "global_step": 1,
                "pytorch-lightning_version": "2.6.6", "fitrain": {"step": 1, "hf_config": {}}}, old)
    for read in (model_state_dict, read_train_state):
        with pytest.raises(FitrainError, match="Lightning loop \\(pytorch-lightning 2.6.6\\), layout 1; this fitrain "
                                               "reads layout 2"):
            read(old)


def test_train_state_round_trips_and_refuses_another_version():
    s = TrainState(step=3, tokens=100, supervised_tokens=60, arm="fi", config={"seed": 0})
    assert TrainState.from_dict(s.to_dict()) == s
    assert TrainState.from_dict({k: v for k, v in s.to_dict().items() if k != "version"}) == s  # older files
    with pytest.raises(FitrainError, match="state version 99"):
        TrainState.from_dict({**s.to_dict(), "version": 99})
    assert s.version == STATE_VERSION
