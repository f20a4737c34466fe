import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain_eval.judges import mixeval
from tests.helpers.eval_clients import DATA, generator_for, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message

ROOT = DATA / "mixeval" / "mixeval-2024-08-11"


def test_loads_the_real_files_with_published_counts():
    r = Rejects()
    full = mixeval.load_split(ROOT, "mixeval", r)
    hard = mixeval.load_split(ROOT, "mixeval_hard", r)
    assert r.total == 0
    assert sum(i.kind == "free_form" for i in full) == 2000
    assert sum(i.kind == "multiple_choice" for i in full) == 1995
    assert sum(i.kind == "free_form" for i in hard) == 500 and sum(i.kind == "multiple_choice" for i in hard) == 500
    ids = [i.id for i in full if i.kind == "multiple_choice"]
    assert "197" not in ids and ids[:3] == ["0", "1", "2"]  # ordered by numeric id, gaps kept
    mc = next(i for i in hard if i.kind == "multiple_choice")
    p = mixeval.model_prompt(mc)
    assert "A. Contingent remainders" in p and "D. Reversions" in p
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


def _subset_root(tmp_path):
    """First 4 free-form and 2 multiple-choice items of the real MixEval-Hard, as a 'mixeval' split."""
    src = ROOT / "mixeval-hard"
    for name, n in (("free-form", 4), ("multiple-choice", 2)):
        d = json.loads((src / f"{name}.json").read_text())
        (tmp_path / "mixeval").mkdir(parents=True, exist_ok=True)
        (tmp_path / "mixeval" / f"{name}.json").write_text(json.dumps({k: d[k] for k in list(d)[:n]}))
    return tmp_path


def test_end_to_end_scores_equal_hand_computed(tmp_path):
    root = _subset_root(tmp_path / "data")
    ff = json.loads((root / "mixeval" / "free-form.json").read_text())
    mc = json.loads((root / "mixeval" / "multiple-choice.json").read_text())
    wrong_letter = "ABCD"[(mc["1"]["target"][0] + 1) % 4]
    answers = {ff["0"]["prompt"]: "ANS-ff0", ff["1"]["prompt"]: "ANS-ff1", ff["2"]["prompt"]: "ANS-ff2",
               ff["3"]["prompt"]: "   ", mc["0"]["prompt"]: "ANS-mc0", mc["1"]["prompt"]: "ANS-mc1"}
    # ff0: malformed once then 1; ff1: 0.25; ff2: never parsable (counted); mc0: 500 once then the gold
    # letter D; mc1: a wrong letter.  ff3's answer is empty: scored 0 without asking the judge.
    script = {"ANS-ff0": ["looks right", "[[1]]"], "ANS-ff1": ["[[0.25]]"], "ANS-ff2": ["no verdict here"],
              "ANS-mc0": [500, "[[D]]"], "ANS-mc1": [f"It picks [[{wrong_letter}]]."]}
    seen: dict[str, int] = {}

    def responder(kind, body):
        if kind == "completions":
            return Reply(text=next(a for q, a in answers.items() if q.strip() in body["prompt"]))
        msg = last_user_message(body)
        key = next(k for k in script if f"Model answer:\n{k}" in msg)
        n = seen[key] = seen.get(key, 0) + 1
        step = script[key][min(n, len(script[key])) - 1]
        return Reply(status=step) if isinstance(step, int) else Reply(text=step)

    cfg = mixeval.MixEvalConfig(enabled=True, root=str(root), splits=["mixeval"])
    with ScriptedLLMServer(responder) as srv:
        r = Rejects()
        m = mixeval.evaluate_mixeval(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", r)
        assert m["mixeval/free_form"] == pytest.approx((1 + 0.25 + 0) / 3)
        assert m["mixeval/multiple_choice"] == pytest.approx(1 / 2)
        assert m["mixeval/overall"] == pytest.approx((1 + 0.25 + 0 + 1 + 0) / 5)  # item-weighted, not 0.4583
        assert (m["mixeval/n_free_form"], m["mixeval/n_multiple_choice"]) == (3, 2)
        assert r.counts == {"mixeval_generation_empty": 1, "mixeval_judge_unparsable": 1}
        assert seen["ANS-ff2"] == 3 and seen["ANS-ff0"] == 2 and seen["ANS-mc0"] == 2

        recs = [json.loads(x) for x in (tmp_path / "out" / "mixeval" / "judgments.jsonl").read_text().splitlines()]
        judged = [x for x in recs if x.get("judgment", 1) is not None]
        assert {x["prompt_version"] for x in judged} == {mixeval.FF_PROMPT_VERSION, mixeval.MC_PROMPT_VERSION}
        assert all(x["judge_model"] == "scripted" and x["decoding"]["temperature"] == 0.0 for x in judged)
        gens = (tmp_path / "out" / "mixeval" / "generations.jsonl").read_text().splitlines()
        assert json.loads(gens[1])["prompt"].startswith(ff["0"]["context"].strip()[:40])

        before = dict(seen)
        m2 = mixeval.evaluate_mixeval(cfg, generator_for(srv), judge_for(srv, tmp_path), tmp_path / "out", Rejects())
        assert m2 == m
        # cached judgments are not asked again; only the unparsable one is retried (twice, past the cache)
        assert {k: seen[k] - before[k] for k in seen} == {"ANS-ff0": 0, "ANS-ff1": 0, "ANS-ff2": 2,
                                                          "ANS-mc0": 0, "ANS-mc1": 0}


def test_unreachable_judge_is_a_clear_error(tmp_path):
    from fitrain.core.llm import LLMConfig
    from fitrain_eval.judges.common import Judge, JudgeConfig

    with pytest.raises(FitrainError, match="not reachable"):
        Judge(JudgeConfig(llm=LLMConfig(model="j", base_url="http://127.0.0.1:9/v1")), cache_dir=tmp_path)
    with pytest.raises(FitrainError, match="judge.llm.model"):
        Judge(JudgeConfig(), cache_dir=tmp_path)
