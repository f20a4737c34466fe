import json
import math
import random
import re
import statistics

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain_eval.items import ItemScores
from fitrain_eval.judges import pairwise as pw
from tests.helpers.eval_clients import DATA, generator_for, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message

EXAMPLE = DATA / "alpaca_eval" / "example_outputs.json"
GPT4 = DATA / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json"


def test_loads_the_real_files():
    a, b = pw.load_outputs(EXAMPLE), pw.load_outputs(GPT4)
    assert len(a) == len(b) == 120  # the fixture: the first 120 of the 805
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


def test_head_to_head_official_single_random_order_probability_weighted(tmp_path):
    insts = pw.load_outputs(EXAMPLE)[:6]
    gpt4 = pw.load_outputs(GPT4)[:6]
    base = [dict(r) for r in gpt4]
    base[2]["output"] = "OURS-2"  # identical outputs: a draw without asking the judge
    (tmp_path / "base.json").write_text(json.dumps(base))
    # p(ours better) per instruction; "tok": no log-probabilities, the reply token decides; None: never parsable
    plan = {0: 0.8, 1: "tok", 3: None, 4: 0.0, 5: 0.3}
    seen: dict[int, dict] = {}

    def responder(kind, body):
        if kind == "completions":
            i = next(i for i, r in enumerate(insts) if r["instruction"] == body["prompt"])
            return Reply(text=f"OURS-{i}")
        user = body["messages"][1]["content"]
        i = int(re.search(r"OURS-(\d)", user).group(1))
        ours_first = user.index("OURS-") < user.index('"model_identifier": "M"')
        seen[i] = {"body": body, "ours_first": ours_first}
        ours, theirs = ("m", "M") if ours_first else ("M", "m")
        v = plan[i]
        if v is None:
            return Reply(text="x")
        if v == "tok":
            return Reply(text=ours)
        top = {ours: math.log(v)} if v > 0 else {}
        top.update({theirs: math.log(1 - v), "Both": -9.0})
        return Reply(text=max(top, key=top.get), top_logprobs=top)

    cfg = pw.PairwiseConfig(enabled=True, instructions=str(EXAMPLE), limit=6, baselines=[str(tmp_path / "base.json")])
    with ScriptedLLMServer(responder) as srv:
        r = Rejects()
        m = pw.evaluate_pairwise(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", r, "fi")
        n_asked = len(srv.requests)
        # a rerun reads the judgments, log-probabilities included, from the cache
        again = pw.evaluate_pairwise(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out2", Rejects(),
                                     "fi")
        judge_calls = [b for k, b in srv.requests[n_asked:] if k == "chat"]
    assert again == m and len(judge_calls) == 2  # the unparsable one: asked twice more, past the cache
    scores = [0.8, 1.0, 0.5, 0.0, 0.3]
    pre = "pairwise/gpt4_1106_preview"
    assert m[f"{pre}/win_rate"] == pytest.approx(sum(scores) / 5)
    assert m[f"{pre}/win_rate_se"] == pytest.approx(statistics.stdev(scores) / math.sqrt(5))
    assert (m[f"{pre}/wins"], m[f"{pre}/ties"], m[f"{pre}/losses"], m[f"{pre}/n"], m[f"{pre}/n_failed"]) == (
        2, 1, 2, 5, 1)
    assert m[f"{pre}/preference_from_token"] == 1  # the documented fallback, named (module docstring)
    assert r.counts == {"pairwise_judge_unparsable": 1, "pairwise_unjudged_instruction": 1}
    assert 2 not in seen and len(seen) == 5
    for i, x in seen.items():  # one order per instruction, AlpacaEval's seeded coin
        coin = random.Random("is_switched_outputs" + insts[i]["instruction"] + "0").choices([False, True])[0]
        assert x["ours_first"] == coin == pw.switched(insts[i]["instruction"])
        body = x["body"]
        assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 5)
    assert {x["ours_first"] for x in seen.values()} == {True, False}  # both orders occur
    items = ItemScores.load(tmp_path / "out" / "items" / "pairwise__gpt4_1106_preview__win_rate.jsonl")
    assert items.scores == {"0": pytest.approx(0.8), "1": 1.0, "2": 0.5, "3": None, "4": 0.0, "5": pytest.approx(0.3)}
    assert items.null == 0.5 and items.info["rules"] == "official (preference from the reply token: no logprobs)" and items.info["baseline"] == "gpt4_1106_preview"
    recs = [json.loads(x) for x in
            (tmp_path / "out" / "alpaca_eval" / "pairwise_vs_gpt4_1106_preview.jsonl").read_text().splitlines()]
    assert [x["read_from"] for x in recs] == ["logprobs", "token", "identical outputs", "logprobs", "logprobs"]


def test_parse_preference_follows_the_logprob_parser():
    from fitrain.core.llm import Completion

    lp = {"m": math.log(0.6), "M": math.log(0.2), "The": math.log(0.1)}
    assert pw.parse_preference(Completion("m", logprobs=[lp]))[0] == pytest.approx(2 - 0.6 / 0.8)
    assert pw.parse_preference(Completion("M", logprobs=[{"M": -0.1, "x": -3}])) == (2.0, "logprobs")
    assert pw.parse_preference(Completion(" m ")) == (1.0, "token")
    with pytest.raises(ValueError):
        pw.parse_preference(Completion("Output (a)"))


def test_several_baselines_are_each_judged(tmp_path):
    insts = pw.load_outputs(EXAMPLE)[:3]
    for name in ("standard", "ipt"):
        pw.write_outputs(tmp_path / name / "alpaca_eval" / pw.OUTPUTS_FILE, insts, [f"{name} answer"] * 3, name)

    def responder(kind, body):
        if kind == "completions":
            return Reply(text="our answer")
        user = body["messages"][1]["content"]
        ours_first = user.index("our answer") < user.index('"model_identifier": "M"')
        return Reply(text="m" if ours_first else "M")  # ours always preferred

    cfg = pw.PairwiseConfig(enabled=True, instructions=str(EXAMPLE), limit=3, baseline_outputs=str(tmp_path / "standard"),
                            baselines=[str(tmp_path / "ipt"), str(tmp_path / "standard")])
    assert pw.baseline_paths(cfg) == [str(tmp_path / "standard"), str(tmp_path / "ipt")]
    with ScriptedLLMServer(responder) as srv:
        m = pw.evaluate_pairwise(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", Rejects(), "fi")
    assert m["pairwise/standard/win_rate"] == 1.0 and m["pairwise/ipt/win_rate"] == 1.0
    assert sorted(p.name for p in (tmp_path / "out" / "items").iterdir()) == [
        "pairwise__ipt__win_rate.jsonl", "pairwise__standard__win_rate.jsonl"]


def test_head_to_head_paraphrased_both_orders_win_rate_se_ties(tmp_path):
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

    cfg = pw.PairwiseConfig(enabled=True, instructions=str(EXAMPLE), limit=5, baseline_outputs=str(GPT4),
                            prompts="paraphrased")
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
