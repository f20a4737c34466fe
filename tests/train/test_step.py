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


def test_from_the_command_line_to_optimizer_step_a_reader_passes_through_few_files(pairs_shards, tmp_path, capsys,
                                                                                   monkeypatch):
    """The call stack at ``optimizer.step()`` of a real ``fitrain train``: the fitrain files on it are the
    ones a reader follows from the command line to the step (at most 12; the loop is in trainer.py, the
    phases in step.py)."""
    import traceback
    from pathlib import Path

    import torch

    from tests.helpers.cli import run_main
    from tests.helpers.paths import REPO

    stacks = []
    orig = torch.optim.AdamW.step

    def step(self, *a, **k):
        stacks.append([f.filename for f in traceback.extract_stack()])
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    r = run_main(["train", "train/fi-tiny", f"data.path={pairs_shards}", f"run_dir={tmp_path / 'run'}", "max_steps=1",
                  "progress_bar=false", "wandb.mode=disabled", "export_hf=false", "checkpoint_every=0"], capsys)
    assert r.rc == 0, r.err[-3000:]
    assert len(stacks) == 1
    ours = []
    for f in stacks[0]:
        p = Path(f).resolve()
        if p.is_relative_to(REPO / "fitrain") and str(p.relative_to(REPO)) not in ours:
            ours.append(str(p.relative_to(REPO)))
    assert ours[0] == "fitrain/cli.py" and "fitrain/train/trainer.py" in ours and ours[-1] == "fitrain/train/step.py"
    assert len(ours) <= 12, ours   # today 4: cli.py, commands/train.py, train/trainer.py, train/step.py
