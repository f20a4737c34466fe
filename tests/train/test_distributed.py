"""The Lightning Trainer set-up: the FSDP2 strategy and its precision, clear errors for what cannot run."""
import pytest

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.config import TrainConfig


def test_trainer_setup_errors_are_clear():
    from fitrain.train.distributed import build_trainer

    with pytest.raises(FitrainError, match="strategy=fsdp runs precision 32-true or bf16-mixed"):
        build_trainer(TrainConfig(strategy="fsdp", accelerator="cpu", precision="16-mixed"))
    with pytest.raises(ConfigError, match="strategy must be one of"):
        build_trainer(TrainConfig(strategy="deepspeed"))
    with pytest.raises(FitrainError, match="cannot set up training"):
        build_trainer(TrainConfig(accelerator="gpu", devices=1))


def test_fsdp_is_fsdp2_with_bf16_compute_and_no_autocast_on_top():
    """strategy=fsdp builds on CPU too; bf16-mixed is FSDP2's policy (bf16 params, fp32 reduction), so
    Lightning itself runs at 32-true (its bf16-mixed would autocast, and its FSDP1 bf16 casts buffers)."""
    import torch

    from fitrain.train.distributed import build_trainer
    from fitrain.train.parallel import FSDP2Strategy

    for precision, dtype in (("bf16-mixed", torch.bfloat16), ("32-true", None)):
        trainer = build_trainer(TrainConfig(strategy="fsdp", accelerator="cpu", devices=1, precision=precision))
        assert isinstance(trainer.strategy, FSDP2Strategy) and trainer.strategy.param_dtype == dtype
        assert trainer.precision == "32-true"
