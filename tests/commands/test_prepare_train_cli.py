"""End to end through the CLI: `fitrain prepare` makes shards, `fitrain train train/fi-tiny` trains a few
dozen steps and the loss falls; the standard arm trains on exactly the FI arm's total tokens."""
from __future__ import annotations

import json

import pytest

from fitrain.cli import main

from tests.helpers import trainrun as th


@pytest.mark.slow
def test_prepare_then_train_tiny_loss_falls_and_standard_arm_is_token_matched(dolly_pairs_file, tokenizer_dir,
                                                                             tmp_path, capsys):
    fi, std = tmp_path / "prepared" / "fi", tmp_path / "prepared" / "standard"
    common = [f"input.paths=[{dolly_pairs_file}]", f"tokenizer={tokenizer_dir}", "pack.seq_len=128", "progress=false"]
    assert main(["prepare", *common, f"out={fi}"]) == 0
    assert main(["prepare", *common, "documents_from_pairs=true", f"out={std}"]) == 0
    capsys.readouterr()

    run = tmp_path / "train" / "fi"
    assert main(["train", "train/fi-tiny", f"data.path={fi}", f"run_dir={run}", "max_steps=36",
                 "data.max_epochs=0", "progress_bar=false", "wandb.mode=offline", "wandb.project=fitrain-test"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "finished" and summary["steps"] == 36
    # W&B offline without credentials: the run id is persisted and names the offline run directory
    assert (run / "wandb" / "run_id").read_text().strip() == summary["wandb_id"]
    assert list((run / "wandb").glob(f"offline-run-*-{summary['wandb_id']}"))
    losses = [float(r["loss"]) for r in th.train_rows(run).values()]
    assert len(losses) == 36
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert (run / "hf" / "model.safetensors").is_file()

    fi_tokens = json.loads((fi / "manifest.json").read_text())["counts"]["total_tokens"]
    run_std = tmp_path / "train" / "standard"
    assert main(["train", "train/standard-tiny", f"data.path={std}", f"budget_from={fi}", f"run_dir={run_std}",
                 "data.max_epochs=0", "progress_bar=false", "wandb.mode=disabled", "export_hf=false"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tokens"] == fi_tokens and summary["arm"] == "standard"
    assert summary["budget"]["source"].startswith("budget_from")
