import json

import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.formatting import FormatConfig
from fitrain_eval import harness
from fitrain_eval.generate import render_instruction


def test_local_yaml_with_missing_data_file_is_a_clear_error(tmp_path):
    (tmp_path / "t.yaml").write_text("task: mine\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                     "    test: nope.jsonl\noutput_type: multiple_choice\n")
    with pytest.raises(FitrainError, match="data file 'nope.jsonl' not found"):
        harness.resolve_tasks([str(tmp_path / "t.yaml")])
    with pytest.raises(FitrainError, match="task file or folder not found"):
        harness.resolve_tasks([str(tmp_path / "other.yaml")])
    (tmp_path / "nope.jsonl").write_text("\n  \n")
    with pytest.raises(FitrainError, match=r"data file 'nope.jsonl' \(.*\) is empty"):
        harness.resolve_tasks([str(tmp_path / "t.yaml")])


@pytest.mark.slow
def test_registry_names_checked_unknown_ones_get_nearest_names():
    import yaml

    tm = harness._task_manager()
    recipe = yaml.safe_load((harness.TASKS_DIR.parents[1] / "recipes" / "eval" / "cloze.yaml").read_text())
    assert recipe["lm_eval"]["tasks"] == harness.CLOZE_TASKS
    specs, needs_registry = harness.resolve_tasks(harness.CLOZE_TASKS, tm)  # every shipped cloze name exists
    assert specs == harness.CLOZE_TASKS and needs_registry
    with pytest.raises(FitrainError, match=r"'helaswag' \(nearest: hellaswag"):
        harness.resolve_tasks(["arc_easy", "helaswag"], tm)


def test_instruction_rendering_matches_the_training_format():
    fmt = FormatConfig()
    msgs = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"}]
    assert render_instruction(msgs, fmt) == "Instruction: Q1\n\nAnswer: A1\n\nInstruction: Q2\n\nAnswer: "
    assert fmt.generation_prompt("Q2") == "Instruction: Q2\n\nAnswer: "
    partial = msgs + [{"role": "assistant", "content": "The"}]
    assert render_instruction(partial, fmt, add_generation_prompt=False).endswith("Answer: The")


@pytest.mark.slow
def test_lm_eval_on_local_task_yaml_both_formats(tiny_model_dir, tmp_path):
    rows = [{"q": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "label": 0}
            for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (6, 1)]]
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks" / "sums.yaml").write_text(
        "task: tiny_sums\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: sums.jsonl\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n")
    cfg = harness.HarnessConfig(tasks=[str(tmp_path / "tasks"), "fitrain_mixeval_mc"], limit=8,
                                formats=["plain", "instruction"], batch_size=8, device="cpu", bootstrap_iters=0,
                                save_samples=True)
    m = harness.run_harness(tiny_model_dir, cfg, tmp_path / "out")
    for pre in ("lm_eval", "lm_eval_instruction"):
        assert 0.0 <= m[f"{pre}/tiny_sums/acc"] <= 1.0
        assert 0.0 <= m[f"{pre}/fitrain_mixeval_mc/acc_norm"] <= 1.0
    saved = json.loads((tmp_path / "out" / "lm_eval" / "instruction.json").read_text())
    assert saved["n-samples"]["tiny_sums"]["effective"] == 6
    assert saved["fitrain"]["format"] == "instruction"
    assert "samples" not in saved
    # the requests themselves: plain is the task's text, instruction the training format
    def first_request(fmt):
        for line in (tmp_path / "out" / "lm_eval" / f"{fmt}_samples.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec["task"] == "tiny_sums":
                return rec["arguments"][0]
    ctx, cont = first_request("plain")[:2]
    assert (ctx, cont) == ("What is 1 plus 2?", " 3")
    ctx, cont = first_request("instruction")[:2]
    assert (ctx, cont) == ("Instruction: What is 1 plus 2?\n\nAnswer: ", "3")
    # the shipped cloze task's text ends with its own "Answer:" cue: it is said once, not twice
    shipped = [json.loads(x) for x in (tmp_path / "out" / "lm_eval" / "instruction_samples.jsonl").read_text()
               .splitlines() if json.loads(x)["task"] == "fitrain_mixeval_mc"]
    ctx = shipped[0]["arguments"][0][0]
    assert ctx == f"Instruction: Question: {shipped[0]['doc']['question']}\n\nAnswer: " and "Answer:\n" not in ctx
    # per-item scores from lm-eval's own per-sample metrics, one file per task and metric
    from fitrain_eval.items import ItemScores

    for pre in ("lm_eval", "lm_eval_instruction"):
        items = ItemScores.load(tmp_path / "out" / "items" / f"{pre}__tiny_sums__acc.jsonl")
        assert sorted(items.scores) == [str(i) for i in range(6)]
        assert sum(items.scores.values()) / 6 == pytest.approx(m[f"{pre}/tiny_sums/acc"])
        assert items.info["format"] == ("plain" if pre == "lm_eval" else "instruction")
    assert (tmp_path / "out" / "items" / "lm_eval__fitrain_mixeval_mc__acc_norm.jsonl").is_file()


@pytest.mark.slow
def test_lm_eval_on_an_in_memory_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = harness.HarnessConfig(tasks=["fitrain_mixeval_hard_mc"], limit=3, device="cpu", bootstrap_iters=0)
    m = harness.run_harness("in-memory", cfg, tmp_path, model=model, tokenizer=tok)
    assert set(m) >= {"lm_eval/fitrain_mixeval_hard_mc/acc", "lm_eval/fitrain_mixeval_hard_mc/acc_norm"}
