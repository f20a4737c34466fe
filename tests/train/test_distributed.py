"""Where a run executes (Lightning Fabric): the FSDP2 strategy and its precision, ``precision: auto``, clear
errors for what cannot run."""
import pytest

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.config import TrainConfig

AMX = "processor\t: 0\nflags\t\t: fpu sse avx512f amx_tile amx_bf16 amx_int8\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n"
PLAIN = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n"


def test_fabric_setup_errors_are_clear():
    from fitrain.train.distributed import build_fabric

    with pytest.raises(FitrainError, match="strategy=fsdp runs precision 32-true or bf16-mixed"):
        build_fabric(TrainConfig(strategy="fsdp", accelerator="cpu", precision="16-mixed"))
    with pytest.raises(ConfigError, match="strategy must be one of"):
        build_fabric(TrainConfig(strategy="deepspeed"))
    with pytest.raises(FitrainError, match="cannot set up training"):
        build_fabric(TrainConfig(accelerator="gpu", devices=1))


def test_fsdp_is_fsdp2_with_bf16_compute_and_no_autocast_on_top():
    """strategy=fsdp builds on CPU too; bf16-mixed is FSDP2's policy (bf16 params, fp32 reduction), so
    Fabric itself runs at 32-true (its bf16-mixed would autocast on top)."""
    import torch
    from lightning.fabric.strategies import ModelParallelStrategy

    from fitrain.train.distributed import build_fabric

    for precision, dtype in (("bf16-mixed", torch.bfloat16), ("32-true", None)):
        fabric, chosen = build_fabric(TrainConfig(strategy="fsdp", accelerator="cpu", devices=1, precision=precision))
        assert isinstance(fabric.strategy, ModelParallelStrategy) and chosen.param_dtype == dtype
        assert chosen.fabric == "32-true" and chosen.name == precision


@pytest.mark.parametrize("cpuinfo, unit", [(AMX, "amx_bf16"), (AVX512_BF16, "avx512_bf16"), (PLAIN, "")])
def test_auto_precision_is_bf16_mixed_on_cpus_with_bf16_matrix_units(cpuinfo, unit):
    from fitrain.train.distributed import cpu_bf16_matrix_units, resolve_precision

    assert cpu_bf16_matrix_units(cpuinfo) == unit
    chosen = resolve_precision("auto", on_gpu=False, strategy="auto", cpuinfo=cpuinfo)
    assert chosen.name == ("bf16-mixed" if unit else "32-true")
    assert (unit or "no bf16 matrix units") in chosen.reason
    assert resolve_precision("auto", on_gpu=True, strategy="ddp", cpuinfo=PLAIN).name == "bf16-mixed"
    assert resolve_precision("32-true", on_gpu=False, strategy="auto", cpuinfo=AMX).name == "32-true"


def test_bf16_true_casts_parameters_not_the_rope_buffer():
    import torch

    from fitrain.train.distributed import cast_parameters, resolve_precision
    from fitrain.train.model import ModelConfig, build_model

    chosen = resolve_precision("bf16-true", on_gpu=False, strategy="auto")
    assert chosen.fabric == "32-true" and chosen.param_dtype == torch.bfloat16
    lm = build_model(ModelConfig(preset="tiny", vocab_multiple=8), 64, "sdpa", seed=0, verbose=False)
    cast_parameters(lm, chosen.param_dtype)
    assert {p.dtype for p in lm.parameters()} == {torch.bfloat16}
    assert lm.model.rotary_emb.inv_freq.dtype == torch.float32


def test_fsdp_shards_within_a_node_and_replicates_across_nodes_by_default():
    from fitrain.train.distributed import fsdp_shard_size

    cfg = TrainConfig(num_nodes=4)
    assert fsdp_shard_size(cfg, 32) == 8                      # HSDP: (replicate 4, shard 8)
    assert fsdp_shard_size(TrainConfig(), 8) == 8             # one node: one flat mesh
    cfg.fsdp.shard_size = 16
    assert fsdp_shard_size(cfg, 32) == 16
    cfg.fsdp.shard_size = 12
    with pytest.raises(ConfigError, match="fsdp.shard_size=12 does not divide the 32 ranks"):
        fsdp_shard_size(cfg, 32)
