"""The shipped lm-eval tasks stand alone: plain lm-eval (its Python API, as ``lm_eval --include_path
<fitrain>/eval/tasks`` runs it) finds their data from any working directory and scores what fitrain's harness
scores."""
import json
import os

import pytest

from fitrain_eval import harness
from tests.helpers.paths import REPO


def test_the_shipped_tasks_read_their_data_beside_the_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nowhere near the task files
    assert {"fitrain_mixeval_mc", "fitrain_mixeval_hard_mc"} <= set(harness.shipped_tasks())
    [cfg], needs_registry = harness.resolve_tasks(["fitrain_mixeval_mc"])
    assert not needs_registry and cfg["task"] == "fitrain_mixeval_mc"
    test = cfg["custom_dataset"](**cfg["dataset_kwargs"], pretrained="ignored")["test"]
    rows = [json.loads(x) for x in (REPO / "eval" / "tasks" / "mixeval_mc.jsonl").read_text().splitlines()]
    assert len(test) == len(rows) == 200 and test[0] == rows[0]


@pytest.mark.slow
def test_plain_lm_eval_from_another_folder_scores_as_fitrain_does(tiny_model_dir, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    cfg = harness.HarnessConfig(tasks=["fitrain_mixeval_mc"], limit=12, formats=["plain"], batch_size=8,
                                device="cpu", bootstrap_iters=0)
    ours = harness.run_harness(tiny_model_dir, cfg, tmp_path / "ours")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not (elsewhere / "mixeval_mc.jsonl").exists() and os.getcwd() == str(elsewhere)
    res = simple_evaluate(model="hf", model_args=f"pretrained={tiny_model_dir},device=cpu",
                          tasks=["fitrain_mixeval_mc"], limit=12, batch_size=8, bootstrap_iters=0,
                          task_manager=TaskManager(include_path=str(REPO / "eval" / "tasks")))
    theirs = res["results"]["fitrain_mixeval_mc"]
    assert res["n-samples"]["fitrain_mixeval_mc"]["effective"] == 12
    for metric in ("acc", "acc_norm"):
        assert theirs[f"{metric},none"] == pytest.approx(ours[f"lm_eval/fitrain_mixeval_mc/{metric}"])
