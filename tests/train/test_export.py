"""The HF export loads with AutoModelForCausalLM (same logits as the trained weights), and runs through
lm-eval's hf model on a local task."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fitrain.core.errors import FitrainError
from fitrain.train.export import export
from fitrain.train.trainer import train

from tests.helpers import trainrun as th
TASK_DIR = Path(__file__).with_name("lmeval_task")


@pytest.fixture(scope="module")
def trained(pairs_shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("exp_run")
    cfg = th.tiny_config(run_dir, pairs_shards, max_steps=3, export_hf=False)
    train(cfg)
    return run_dir


def test_export_loads_with_automodel_and_matches_checkpoint(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fitrain.train.checkpoint import model_state_dict
    from fitrain.train.model import forward_logits

    out = export(trained / "checkpoints", tmp_path / "hf")  # a checkpoints/ folder: its latest
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert model.generation_config.eos_token_id == tok.eos_token_id and model.config.use_cache
    # a chat endpoint prompts it as trained: one user turn is the training prefix (fitrain.train.chat_template)
    assert tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                   tokenize=False) == "Instruction: hello\n\nAnswer: "
    # the generation length is the caller's: nothing here may override lm-eval's max_gen_toks
    written = json.loads((out / "generation_config.json").read_text())
    assert not {"max_new_tokens", "max_length"} & set(written) and written["do_sample"] is False
    state, meta = model_state_dict(trained / "checkpoints" / "step-00000003.ckpt")
    for k, v in state.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    ids = torch.tensor([tok("Instruction: hello\n\nAnswer: world").input_ids])
    with torch.no_grad():
        logits = forward_logits(model, {"input_ids": ids, "position_ids": torch.arange(ids.shape[1])[None]})
        plain = model(input_ids=ids).logits  # what lm-eval and generate() call
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)
    gen = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert gen.shape[1] <= ids.shape[1] + 3


@pytest.mark.slow
def test_export_runs_through_lm_eval_on_a_local_task(trained, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = export(trained / "checkpoints", tmp_path / "hf")
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    data = shutil.copy(TASK_DIR / "tiny_mc.jsonl", task_dir / "tiny_mc.jsonl")
    (task_dir / "fitrain_tiny_mc.yaml").write_text(
        (TASK_DIR / "fitrain_tiny_mc.yaml").read_text().replace("DATA_FILE", str(Path(data).resolve())))
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={out},dtype=float32", tasks=["fitrain_tiny_mc"],
                                  task_manager=TaskManager(include_path=str(task_dir), include_defaults=False), device="cpu", batch_size=2,
                                  bootstrap_iters=0, log_samples=False)
    acc = res["results"]["fitrain_tiny_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    assert res["config"]["model"] == "hf"


def test_export_errors(tmp_path, trained):
    with pytest.raises(FitrainError, match="checkpoint not found"):
        export(tmp_path / "nope.ckpt", tmp_path / "o")
    with pytest.raises(FitrainError, match="holds no checkpoint"):
        export(tmp_path, tmp_path / "o")
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(FitrainError, match="not a fitrain checkpoint"):
        export(bad, tmp_path / "o")
