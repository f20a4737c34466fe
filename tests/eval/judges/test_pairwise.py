import json
import math
import statistics

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain_eval.judges import pairwise as pw
from tests.helpers.eval_clients import DATA, generator_for, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message

EXAMPLE = DATA / "alpaca_eval" / "example_outputs.json"
GPT4 = DATA / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json"


def test_loads_the_real_files():
    a, b = pw.load_outputs(EXAMPLE), pw.load_outputs(GPT4)
    assert len(a) == len(b) == 805
    assert [x["instruction"] for x in a] == [x["instruction"] for x in b]
    assert {x["generator"] for x in b} == {"gpt4_1106_preview"}


def test_wrong_format_is_a_clear_error(tmp_path):
    with pytest.raises(FitrainError, match="expected a JSON list .* got a dict"):
        pw.load_outputs(DATA / "mixeval" / "mixeval-2024-08-11" / "mixeval-hard" / "free-form.json")
    with pytest.raises(FitrainError, match="not valid JSON"):
        pw.load_outputs(DATA / "mt_bench_101" / "mtbench101.jsonl")
    (tmp_path / "x.json").write_text(json.dumps([{"prompt": "hi"}]))
    with pytest.raises(FitrainError, match="entry 0 has no string 'instruction'"):
        pw.load_outputs(tmp_path / "x.json")


def test_head_to_head_both_orders_win_rate_se_ties(tmp_path):
    insts = pw.load_outputs(EXAMPLE)[:5]
    # verdicts per instruction: (ours shown first, ours shown second)
    script = {0: ("[[A]]", "[[B]]"),       # win, win        -> 1
              1: ("[[tie]]", "[[A]]"),     # tie, loss       -> 0.25
              2: ("[[A]]", "[[A]]"),       # win, loss       -> 0.5 (position-biased judge: inconsistent)
              3: ("[[C]]", "[[B]]"),       # never parsable  -> left out, counted
              4: ("[[A]]", 500)}           # server error    -> left out, counted
    asked: dict = {}

    def responder(kind, body):
        if kind == "completions":
            i = next(i for i, r in enumerate(insts) if r["instruction"] == body["prompt"])
            return Reply(text=f"OURS-{i}")
        msg = last_user_message(body)
        first = msg.split("[Answer A]\n")[1].split("\n[End of answer A]")[0]
        i = int((first if first.startswith("OURS-") else msg.split("[Answer B]\n")[1]).split("OURS-")[1][0])
        order = 0 if first.startswith("OURS-") else 1
        asked[(i, order)] = asked.get((i, order), 0) + 1
        v = script[i][order]
        return Reply(status=v) if isinstance(v, int) else Reply(text=f"Because. {v}")

    cfg = pw.PairwiseConfig(enabled=True, instructions=str(EXAMPLE), limit=5, baseline_outputs=str(GPT4))
    with ScriptedLLMServer(responder) as srv:
        r = Rejects()
        m = pw.evaluate_pairwise(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", r, "fi")
    scores = [1.0, 0.25, 0.5]
    pre = "pairwise/gpt4_1106_preview"
    assert m[f"{pre}/win_rate"] == pytest.approx(sum(scores) / 3)
    assert m[f"{pre}/win_rate_se"] == pytest.approx(statistics.stdev(scores) / math.sqrt(3))
    assert (m[f"{pre}/wins"], m[f"{pre}/ties"], m[f"{pre}/losses"]) == (3, 1, 2)
    assert m[f"{pre}/inconsistent"] == 2 and m[f"{pre}/n"] == 3
    assert r.counts == {"pairwise_judge_unparsable": 1, "pairwise_judge_failed": 1,
                        "pairwise_unjudged_instruction": 2}
    assert asked[(3, 0)] == 3 and asked[(4, 1)] == 2  # parse-retried twice; transport-retried once
    outs = json.loads((tmp_path / "out" / "alpaca_eval" / "model_outputs.json").read_text())
    assert [o["instruction"] for o in outs] == [x["instruction"] for x in insts]
    assert outs[2] == {"instruction": insts[2]["instruction"], "output": "OURS-2", "generator": "fi",
                       "dataset": insts[2]["dataset"]}
    recs = [json.loads(x) for x in
            (tmp_path / "out" / "alpaca_eval" / "pairwise_vs_gpt4_1106_preview.jsonl").read_text().splitlines()]
    assert [x["score"] for x in recs] == scores and recs[0]["prompt_version"] == pw.PROMPT_VERSION


def test_baseline_missing_instructions_is_an_error(tmp_path):
    (tmp_path / "base.json").write_text(json.dumps([{"instruction": "other", "output": "x", "generator": "b"}]))
    cfg = pw.PairwiseConfig(instructions=str(EXAMPLE), limit=2, baseline_outputs=str(tmp_path / "base.json"))
    with ScriptedLLMServer(lambda k, b: Reply(text="hello")) as srv:
        with pytest.raises(FitrainError, match="lack 2 of the instructions"):
            pw.evaluate_pairwise(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "o", Rejects(), "fi")
