"""The optimizer step's phases run inside the loop: validation happens in the step (on the sharded or
DDP-wrapped model, on its device), at every val_every and at the last step."""
from tests.helpers import trainrun as th


def test_validation_runs_inside_the_step_every_val_every_and_at_the_end(pairs_shards, tmp_path, monkeypatch):
    import fitrain.train.step as step
    from fitrain.train.trainer import train

    seen = []
    orig = step.validation_loss

    def spy(ctx):
        seen.append(ctx.lm.training)           # called from the training step, the model in training mode
        return orig(ctx)

    monkeypatch.setattr(step, "validation_loss", spy)
    cfg = th.tiny_config(tmp_path, pairs_shards, max_steps=3, val_every=2, export_hf=False)
    cfg.data.val_path, cfg.data.val_rows = str(pairs_shards), 8
    summary = train(cfg)
    assert seen == [True, True]            # step 2, and the last step (3)
    val_rows = [r for r in th.rows(tmp_path) if r["val_loss"]]
    assert [int(r["step"]) for r in val_rows] == [2, 3]
    assert summary["val_loss"] == float(val_rows[-1]["val_loss"])
