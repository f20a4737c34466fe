"""The Lightning Trainer set-up: clear errors for strategies and devices this machine cannot run."""
import pytest

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.config import TrainConfig


def test_trainer_setup_errors_are_clear():
    from fitrain.train.distributed import build_trainer

    with pytest.raises(FitrainError, match="fsdp needs GPUs"):
        build_trainer(TrainConfig(strategy="fsdp", accelerator="cpu"))
    with pytest.raises(ConfigError, match="strategy must be one of"):
        build_trainer(TrainConfig(strategy="deepspeed"))
    with pytest.raises(FitrainError, match="cannot set up training"):
        build_trainer(TrainConfig(accelerator="gpu", devices=1))
