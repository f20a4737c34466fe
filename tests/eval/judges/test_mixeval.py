import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain_eval.items import ItemScores
from fitrain_eval.judges import mixeval, official, paraphrased
from tests.helpers.eval_clients import DATA, generator_for, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message

ROOT = DATA / "mixeval" / "mixeval-2024-08-11"


def test_loads_the_real_files_with_their_counts():
    # subsets of the official files (tests/fixtures/PROVENANCE.md; the full files are pinned by sha256 in
    # fitrain_eval.data_sources): 34 + 39 and 35 + 40 items, gaps in the ids kept as published
    r = Rejects()
    full = mixeval.load_split(ROOT, "mixeval", r)
    hard = mixeval.load_split(ROOT, "mixeval_hard", r)
    assert r.total == 0
    assert sum(i.kind == "free_form" for i in full) == 34
    assert sum(i.kind == "multiple_choice" for i in full) == 39
    assert sum(i.kind == "free_form" for i in hard) == 35 and sum(i.kind == "multiple_choice" for i in hard) == 40
    ids = [i.id for i in full if i.kind == "multiple_choice"]
    assert "197" not in ids and ids[:3] == ["0", "1", "2"]  # ordered by numeric id, gaps kept
    mc = next(i for i in hard if i.kind == "multiple_choice")
    p = mixeval.model_prompt(mc)
    assert p == (f"{mc.prompt}\nA. Contingent remainders\nB. Executory interests\nC. Vested remainders subject to "
                 "open\nD. Reversions\nAnswer with the option letter from the given choices directly.")
    ff = next(i for i in full if i.kind == "free_form" and i.context)
    assert mixeval.model_prompt(ff) == f"Question: {ff.context}\n{ff.prompt}\nAnswer the question shortly."
    gsm = next(i for i in full if i.benchmark == "GSM8k")
    assert mixeval.model_prompt(gsm).endswith("\nAnswer the question. \nLet's think step by step.")
    five = mixeval.model_prompt(gsm, five_shot=True)
    assert five.startswith("Question: The volume of a cone") and five.endswith("step by step.\n")
    assert "\x0crac{1}{3}" in five  # MixEval's own few-shot text, form feed included
    assert mixeval.load_split(ROOT, "mixeval_hard", Rejects(), limit=7)[7].kind == "multiple_choice"


def test_wrong_format_is_a_clear_error(tmp_path):
    with pytest.raises(FitrainError, match="not a MixEval file: not valid JSON"):
        mixeval.load_file(DATA / "mt_bench_101" / "mtbench101.jsonl", "free_form", Rejects())
    with pytest.raises(FitrainError, match="keyed by string ids, got a list"):
        mixeval.load_file(DATA / "alpaca_eval" / "example_outputs.json", "free_form", Rejects())
    with pytest.raises(FitrainError, match="no valid multiple-choice items"):
        mixeval.load_file(ROOT / "mixeval" / "free-form.json", "multiple_choice", Rejects())
    bad = tmp_path / "mc.json"
    bad.write_text(json.dumps({"0": {"prompt": "q", "options": ["a", "b"], "target": [5]},
                               "1": {"prompt": "q", "options": ["a", "b"], "target": [1]}}))
    r = Rejects()
    assert [i.id for i in mixeval.load_file(bad, "multiple_choice", r)] == ["1"]
    assert r.counts == {"mixeval_bad_item": 1}
    with pytest.raises(FitrainError, match="not found"):
        mixeval.load_file(tmp_path / "nope.json", "free_form", Rejects())
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(FitrainError, match=r"a MixEval free-form file with no items \(\{\}\)"):
        mixeval.load_file(tmp_path / "empty.json", "free_form", Rejects())


def _subset_root(tmp_path):
    """First 4 free-form and 2 multiple-choice items of the real MixEval-Hard, as a 'mixeval' split."""
    src = ROOT / "mixeval-hard"
    for name, n in (("free-form", 4), ("multiple-choice", 2)):
        d = json.loads((src / f"{name}.json").read_text())
        (tmp_path / "mixeval").mkdir(parents=True, exist_ok=True)
        (tmp_path / "mixeval" / f"{name}.json").write_text(json.dumps({k: d[k] for k in list(d)[:n]}))
    return tmp_path


def _run_e2e(tmp_path, prompts):
    root = _subset_root(tmp_path / "data")
    ff = json.loads((root / "mixeval" / "free-form.json").read_text())
    mc = json.loads((root / "mixeval" / "multiple-choice.json").read_text())
    wrong_letter = "ABCD"[(mc["1"]["target"][0] + 1) % 4]
    answers = {ff["0"]["prompt"]: "ANS-ff0", ff["1"]["prompt"]: "ANS-ff1", ff["2"]["prompt"]: "ANS-ff2",
               ff["3"]["prompt"]: "   ", mc["0"]["prompt"]: "ANS-mc0", mc["1"]["prompt"]: "ANS-mc1"}
    # ff0: malformed once then 1; ff1: 0.2 (the official reply format; a later [[0.9]] is ignored: the first
    # rating counts); ff2: never parsable (counted); mc0: 500 once then the gold letter D; mc1: a wrong letter.
    # ff3's answer is empty: scored 0 without asking the judge.
    official = prompts == "official"
    script = {"ANS-ff0": ["looks right", "The correctness score: [[1.0]]."],
              "ANS-ff1": ["The correctness score: [[0.2]]. Not [[0.9]]." if official else "[[0.2]]"],
              "ANS-ff2": ["no verdict here"], "ANS-mc0": [500, "The option chosen by the model: [[D]]."],
              "ANS-mc1": [f"It picks [[{wrong_letter}]]."]}
    marker = "Model's Answer: " if official else "Model answer:\n"
    seen: dict[str, int] = {}
    judged_msgs = []

    def responder(kind, body):
        if kind == "completions":
            return Reply(text=next(a for q, a in answers.items() if q.strip() in body["prompt"]))
        msg = last_user_message(body)
        judged_msgs.append(body["messages"])
        key = next(k for k in script if f"{marker}{k}" in msg)
        n = seen[key] = seen.get(key, 0) + 1
        step = script[key][min(n, len(script[key])) - 1]
        return Reply(status=step) if isinstance(step, int) else Reply(text=step)

    cfg = mixeval.MixEvalConfig(enabled=True, root=str(root), splits=["mixeval"], prompts=prompts)
    with ScriptedLLMServer(responder) as srv:
        r = Rejects()
        m = mixeval.evaluate_mixeval(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", r)
        assert m["mixeval/free_form"] == pytest.approx((1 + 0.2 + 0) / 3)
        assert m["mixeval/multiple_choice"] == pytest.approx(1 / 2)
        assert m["mixeval/overall"] == pytest.approx((1 + 0.2 + 0 + 1 + 0) / 5)  # item-weighted, not 0.45
        assert (m["mixeval/n_free_form"], m["mixeval/n_multiple_choice"], m["mixeval/n_failed"]) == (3, 2, 1)
        assert r.counts == {"mixeval_generation_empty": 1, "mixeval_judge_unparsable": 1}
        assert seen["ANS-ff2"] == 3 and seen["ANS-ff0"] == 2 and seen["ANS-mc0"] == 2

        recs = [json.loads(x) for x in (tmp_path / "out" / "mixeval" / "judgments.jsonl").read_text().splitlines()]
        judged = [x for x in recs if x.get("judgment") != "empty answer"]
        assert all(x["judge_model"] == "scripted" and x["decoding"]["temperature"] == 0.0 for x in judged)
        items = ItemScores.load(tmp_path / "out" / "items" / "mixeval__overall.jsonl")
        assert items.scores == {"free_form:0": 1.0, "free_form:1": 0.2, "free_form:2": None, "free_form:3": 0.0,
                                "multiple_choice:0": 1.0, "multiple_choice:1": 0.0}
        assert items.failures == {"free_form:2": "judgment failed"} and items.info["rules"] == prompts
        gens = (tmp_path / "out" / "mixeval" / "generations.jsonl").read_text().splitlines()
        before = dict(seen)
        m2 = mixeval.evaluate_mixeval(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", Rejects())
        assert m2 == m
        # cached judgments are not asked again; only the unparsable one is retried (twice, past the cache)
        assert {k: seen[k] - before[k] for k in seen} == {"ANS-ff0": 0, "ANS-ff1": 0, "ANS-ff2": 2,
                                                          "ANS-mc0": 0, "ANS-mc1": 0}
    return ff, json.loads(gens[1]), judged, judged_msgs


def test_end_to_end_official_rules_scores_equal_hand_computed(tmp_path):
    ff, gen0, judged, msgs = _run_e2e(tmp_path, "official")
    assert gen0["prompt"] == f"Question: {ff['0']['context']}\n{ff['0']['prompt']}\nAnswer the question shortly."
    assert {x["prompt_version"] for x in judged} == {f"{official.MIXEVAL_VERSION}:freeform",
                                                      f"{official.MIXEVAL_VERSION}:multichoice"}
    # the official judge never sees the context
    ff_msgs = [m for m in msgs if "Golden Answer(s)" in m[1]["content"]]
    assert ff_msgs and all(ff["0"]["context"][:30] not in m[1]["content"] for m in ff_msgs)
    assert {m[0]["content"] for m in msgs} == {"In this task, I want you to act as a judge.",
                                                "In this task, I want you to act as an option extractor."}


def test_end_to_end_paraphrased_prompts_stay_available(tmp_path):
    ff, gen0, judged, _ = _run_e2e(tmp_path, "paraphrased")
    assert gen0["prompt"].startswith(ff["0"]["context"].strip()[:40])
    assert {x["prompt_version"] for x in judged} == {paraphrased.MIXEVAL_FF_VERSION, paraphrased.MIXEVAL_MC_VERSION}


def test_official_parsers_take_the_first_rating():
    assert mixeval.parse_grade_official("x [[0.3]] y [[0.9]]") == 0.3
    assert mixeval.parse_grade_official("score [0.7] then nothing") == 0.7
    assert mixeval.parse_letter_official("maybe [[B]] or [[C]]") == "B"
    assert mixeval.parse_letter_official("[E]") == "E"  # any capital letter, as MixEval: wrong unless gold
    for bad in ("[[1.5]]", "no score"):
        with pytest.raises(ValueError):
            mixeval.parse_grade_official(bad)


def test_unreachable_judge_is_a_clear_error(tmp_path):
    from fitrain.core.llm import LLMConfig
    from fitrain_eval.judges.common import Judge, JudgeConfig

    with pytest.raises(FitrainError, match="not reachable"):
        Judge(JudgeConfig(llm=LLMConfig(model="j", base_url="http://127.0.0.1:9/v1")), cache_dir=tmp_path)
    with pytest.raises(FitrainError, match="judge.llm.model"):
        Judge(JudgeConfig(), cache_dir=tmp_path)
