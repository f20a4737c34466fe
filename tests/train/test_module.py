"""The LightningModule: compiled layers keep the checkpoint names; the final validation runs inside fit."""
from types import SimpleNamespace


from fitrain.train.checkpoint import TrainState


def _tiny_model():
    from fitrain.train.model import ModelConfig, build_model

    return build_model(ModelConfig(preset="tiny", vocab_multiple=8), 64, "sdpa", seed=0, verbose=False)


def test_compiled_layers_keep_the_checkpoint_state_dict_names():
    """compile=True compiles each decoder layer's forward in place (configure_model): the parameter names do
    not change, so a checkpoint of a compiled run loads strictly into a fresh module, whichever of them is
    compiled (Lightning restores weights before or after configure_model, depending on the strategy)."""
    from fitrain.train.module import FitrainModule

    module = FitrainModule(_tiny_model(), SimpleNamespace(compile=True), TrainState(), make_loader=None)
    keys_before = set(module.state_dict())
    module.configure_model()
    module.configure_model()           # Lightning may call it again: idempotent
    layer = module.model.model.layers[0]
    assert "forward" in vars(layer) and layer._fitrain_compiled
    assert set(module.state_dict()) == keys_before
    fresh = FitrainModule(_tiny_model(), SimpleNamespace(compile=False), TrainState(), make_loader=None)
    fresh.load_state_dict(module.state_dict(), strict=True)


def test_final_validation_runs_inside_fit(pairs_shards, tmp_path, monkeypatch):
    """After trainer.fit Lightning's teardown has moved the module to the CPU (and DDP/FSDP are unwrapped):
    a validation there runs a GPU model on the CPU, all-reduces CPU tensors over NCCL (crash under DDP) or
    runs FSDP-sharded weights unwrapped. The final validation must happen in the last training step."""
    from lightning.pytorch.trainer.states import TrainerStatus

    from fitrain.train.trainer import train
    from fitrain.train.module import FitrainModule

    from tests.helpers import trainrun as th

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
