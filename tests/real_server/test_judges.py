"""eval's judges (MixEval, MT-Bench-101, AlpacaEval head-to-head, official prompts) with the real server as the
judge on a few items: every judgment is a score or a counted reject, never an infrastructure error; the
server sends no log-probabilities, so the head-to-head takes its documented fallback (the reply token), which
is counted and named, never a crash or a silent 0.5."""
from __future__ import annotations

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig
from fitrain_eval.judges import mixeval, mtbench101, official
from fitrain_eval.judges.common import Judge, JudgeConfig
from fitrain_eval.judges.pairwise import PairwiseConfig, head_to_head, rules_name


def _judge(smol: LLMConfig, tmp_path) -> Judge:
    import dataclasses

    llm = dataclasses.replace(smol, max_new_tokens=64)
    return Judge(JudgeConfig(llm=llm, max_parse_retries=0), cache_dir=tmp_path)


def test_mixeval_and_mtbench101_judgments_are_scores_or_counted(smol_server, tmp_path):
    judge = _judge(smol_server, tmp_path)
    items = [mixeval.Item("1", "free_form", "What is the capital of France?", None, ["Paris"], "triviaqa"),
             mixeval.Item("2", "multiple_choice", "Which number is even?", None, [1], "mmlu", ["3", "4", "7"])]
    rejects = Rejects()
    try:
        metrics, records, scores = mixeval.score_split(items, {"free_form:1": "Paris.", "multiple_choice:2": "B. 4"},
                                                       judge, rejects)
    except FitrainError as e:  # the documented one-line end when no judgment parses (a 135M judge, seen here)
        assert "no item could be scored" in str(e)
        scores = {}
    judged = [k for k, v in scores.items() if v is not None]
    assert all(0.0 <= scores[k] <= 1.0 for k in judged)
    failed = sum(n for r, n in rejects.counts.items() if r.startswith("mixeval_judge"))
    assert len(judged) + failed == 2 and "mixeval_judge_failed" not in rejects.counts, rejects.counts

    d = mtbench101.Dialogue("CM", "1", [{"user": "My name is Ann.", "bot": "Nice to meet you, Ann."},
                                        {"user": "What is my name?", "bot": "Ann."}])
    rj = Rejects()
    (r,) = judge.judge([mtbench101.judge_request(d, 1, "Your name is Ann.")], mtbench101.parse_rating, rj,
                       official.MTBENCH101_VERSION, what="mtbench101_judge")
    assert (r.value is not None and 1 <= r.value <= 10) or rj.counts == {"mtbench101_judge_unparsable": 1}, rj.counts


def test_head_to_head_without_logprobs_takes_the_named_token_fallback(smol_server, tmp_path):
    judge = _judge(smol_server, tmp_path)
    instructions = ["Name a primary colour.", "What is 2 + 2?", "Say hello in French."]
    ours = ["Red.", "4", "Bonjour."]
    theirs = ["Banana.", "5", "Hello."]
    rejects = Rejects()
    cfg = PairwiseConfig(enabled=True, lc=PairwiseConfig().lc)
    cfg.lc.enabled = False
    try:
        metrics, records, per_item = head_to_head(instructions, ours, theirs, judge, rejects, "base", cfg)
    except FitrainError as e:  # the documented end when not one reply was m or M
        assert "no instruction could be judged" in str(e) and rejects.counts.get("pairwise_judge_unparsable") == 3
        return
    n = metrics["pairwise/base/n"]
    assert metrics["pairwise/base/preference_from_token"] == n  # no logprobs from this server: all from the token
    assert {r["read_from"] for r in records} == {"token"} and all(r["preference"] in (1.0, 2.0) for r in records)
    assert n + rejects.counts.get("pairwise_unjudged_instruction", 0) == 3
    assert rules_name(cfg, metrics, "base") == "official (preference from the reply token: no logprobs)"
    assert [v for v in per_item.values() if v is not None] == [r["score"] for r in records]
