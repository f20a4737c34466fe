import json
import re
from collections import Counter

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain_eval.generate import Generation
from fitrain_eval.items import ItemScores
from fitrain_eval.judges import mtbench101 as mt
from fitrain_eval.judges import official
from fitrain_eval.judges.common import Judged
from tests.helpers.eval_clients import DATA, generator_for, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message

FILE = DATA / "mt_bench_101" / "mtbench101.jsonl"
# the fixture: the first three dialogues of each of the 13 tasks (tests/fixtures/PROVENANCE.md)
PUBLISHED = {t: 3 for t in ("AR", "IC", "SI", "CC", "CR", "MR", "PI", "TS", "CM", "SC", "FR", "SA", "GR")}


def test_loads_the_real_file_with_published_counts():
    r = Rejects()
    ds = mt.load(FILE, r)
    assert r.total == 0
    assert len(ds) == 39 and sum(len(d.history) for d in ds) == 113
    assert Counter(d.task for d in ds) == PUBLISHED and set(PUBLISHED) == set(mt.TASKS)
    d = next(x for x in ds if x.task == "GR" and x.id == "1")
    msgs = d.turn_messages(2)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == d.history[0]["bot"] and msgs[4]["content"] == d.history[2]["user"]
    assert Counter(x.task for x in mt.load(FILE, Rejects(), limit_per_task=1)) == {t: 1 for t in PUBLISHED}


def test_wrong_format_and_bad_rows(tmp_path):
    with pytest.raises(FitrainError, match="not an MT-Bench-101 file: line 1 is not JSON"):
        mt.load(DATA / "mixeval" / "mixeval-2024-08-11" / "mixeval-hard" / "free-form.json", Rejects())
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"instruction": "hi"}\n')
    with pytest.raises(FitrainError, match="unknown task None on line 1"):
        mt.load(bad, Rejects())
    rows = FILE.read_text().splitlines()[:2] + ["{torn", json.dumps({"task": "GR", "id": 9, "history": []})]
    bad.write_text("\n".join(rows) + "\n")
    r = Rejects()
    assert len(mt.load(bad, r)) == 2
    assert r.counts == {"mtbench101_malformed_json": 1, "mtbench101_bad_dialogue": 1}
    with pytest.raises(FitrainError, match="unknown MT-Bench-101 task"):
        mt.load(FILE, Rejects(), tasks=["XX"])


def test_end_to_end_official_rules_and_opencompass_aggregation(tmp_path):
    """OpenCompass's rule: a dialogue scores the minimum over its *judged* turns; a turn whose judgment
    never parses is left out of that minimum and does not drop the dialogue."""
    rows = [json.loads(x) for x in FILE.read_text().splitlines()]
    chosen = [r for r in rows if r["task"] == "GR"][:3] + [r for r in rows if r["task"] == "AR"][:3]
    sub = tmp_path / "mt.jsonl"
    sub.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    # the lowest turn per dialogue; every other turn is rated 10.  GR: 5, 8, 8 -> 7.  AR: 3; then a dialogue
    # whose last answer is empty (rated 1 without the judge) -> 1; then one whose first judged turn never parses:
    # the minimum over its other turns (10, 10) -> 10.  AR = (3 + 1 + 10) / 3; overall = mean of the two tasks.
    low = {"GR-1": 5, "GR-2": 8, "GR-3": 8, "AR-222": 3, "AR-223": 10, "AR-224": 10}
    bad_turn = ("AR-224", 1)  # AR's turn 0 is context only (mt.SKIP_FIRST_TASKS): never generated nor judged
    empty_turn = ("AR-223", 3)
    gen_msgs: dict[str, list] = {}
    judge_bodies: dict[tuple, dict] = {}

    def responder(kind, body):
        if body["messages"][0]["role"] != "system":  # a generation request (chat format)
            msg = last_user_message(body)
            t = len(body["messages"]) // 2
            d = next(r for r in chosen if len(r["history"]) > t and r["history"][t]["user"] == msg
                     and all(r["history"][i]["bot"] == body["messages"][2 * i + 1]["content"] for i in range(t)))
            key = f"{d['task']}-{d['id']}"
            gen_msgs[f"{key}#{t}"] = body["messages"]
            return Reply(text="" if (key, t) == empty_turn else f"ANS-{key}-{t}")
        key, t = re.search(r"ANS-(\w+-\d+)-(\d+) \n \*\*\*", body["messages"][1]["content"]).groups()
        t = int(t)
        judge_bodies[(key, t)] = body
        if (key, t) == bad_turn:
            return Reply(text="a fine answer, I would say")
        first = 1 if key.startswith("AR") else 0
        return Reply(text=f"Reason. Rating: [[{low[key] if t == first else 10}]]; not [[2]].")

    cfg = mt.MTBench101Config(enabled=True, path=str(sub))
    with ScriptedLLMServer(responder) as srv:
        r = Rejects()
        m = mt.evaluate_mtbench101(cfg, generator_for(srv, "chat"), judge_for(srv, tmp_path), tmp_path / "out", r)
    ar = (3 + 1 + 10) / 3
    assert m["mtbench101/task/GR"] == pytest.approx(7.0)
    assert m["mtbench101/task/AR"] == pytest.approx(ar)
    assert m["mtbench101/overall"] == pytest.approx((7.0 + ar) / 2)
    assert m["mtbench101/n_tasks"] == 2 and m["mtbench101/n_dialogues"] == 6 and m["mtbench101/n_failed"] == 0
    assert r.counts == {"mtbench101_generation_empty": 1, "mtbench101_judge_unparsable": 1,
                        "mtbench101_turn_missing": 1}
    items = ItemScores.load(tmp_path / "out" / "items" / "mtbench101__overall.jsonl")
    # for the paired statistics AR-224 (a turn unrated) is a failed item, though the benchmark score keeps it
    assert items.scores == {"GR-1": 5.0, "GR-2": 8.0, "GR-3": 8.0, "AR-222": 3.0, "AR-223": 1.0, "AR-224": None}
    assert items.failures == {"AR-224": "a turn not rated"}
    assert items.strata["AR-224"] == "AR" and items.info["rules"] == "official"
    # each turn was generated with the gold history before it
    d = chosen[1]
    msgs = gen_msgs[f"GR-{d['id']}#2"]
    assert [m["content"] for m in msgs if m["role"] == "assistant"] == [h["bot"] for h in d["history"][:2]]
    # what the judge saw: the official system prompt of the task, the gold dialogue as history and reference
    body = judge_bodies[("GR-2", 2)]
    assert body["messages"][0]["content"] == official.mtbench101_system("GR")
    assert mt.official_history(mt.Dialogue("GR", "2", d["history"]), 2) in body["messages"][1]["content"]
    recs = [json.loads(x) for x in (tmp_path / "out" / "mtbench101" / "judgments.jsonl").read_text().splitlines()]
    assert sum(1 for x in recs if x.get("prompt_version") == official.MTBENCH101_VERSION) == sum(
        len(c["history"]) for c in chosen) - 3 - 2


def test_aggregation_with_a_missing_turn_equals_opencompass_by_hand():
    """Turn ratings of four dialogues in two tasks, one turn of GR-1 missing (its judgment failed)."""
    ds = [mt.Dialogue("GR", str(i), [{"user": "u", "bot": "b"}] * 3) for i in (1, 2)] + \
         [mt.Dialogue("AR", str(i), [{"user": "u", "bot": "b"}] * 3) for i in (1, 2)]
    turns = {"GR-1": {0: 6.0, 2: 9.0}, "GR-2": {0: 4.0, 1: 7.0, 2: 8.0}, "AR-1": {1: 2.0, 2: 5.0}, "AR-2": {1: 9.0}}
    r = Rejects()
    m, per = mt.aggregate(turns, ds, r)
    # by hand: GR-1 = min(6, 9) = 6 (kept, not dropped), GR-2 = 4 -> GR 5; AR-1 = 2, AR-2 = 9 -> AR 5.5
    assert per == {"GR-1": 6.0, "GR-2": 4.0, "AR-1": 2.0, "AR-2": 9.0}
    assert (m["mtbench101/task/GR"], m["mtbench101/task/AR"], m["mtbench101/overall"]) == (5.0, 5.5, 5.25)
    assert r.counts == {"mtbench101_turn_missing": 2}  # GR-1 lacks turn 1, AR-2 lacks turn 2
    m, per = mt.aggregate({"GR-1": {0: 3.0}}, ds[:2], Rejects())
    assert per == {"GR-1": 3.0, "GR-2": None} and m["mtbench101/n_failed"] == 1


def test_paired_item_scores_fail_a_dialogue_with_any_turn_unrated():
    """The benchmark keeps GR-1 at min over its rated turns; the per-item scores for the paired statistics
    mark it failed, so that no arm's min over {0, 2} is paired with another's min over {0, 1, 2}."""
    ds = [mt.Dialogue("GR", str(i), [{"user": "u", "bot": "b"}] * 3) for i in (1, 2, 3)] + \
         [mt.Dialogue("AR", "1", [{"user": "u", "bot": "b"}] * 3)]
    turns = {"GR-1": {0: 6.0, 2: 9.0}, "GR-2": {0: 4.0, 1: 7.0, 2: 8.0}, "AR-1": {1: 2.0, 2: 5.0}}
    m, per = mt.aggregate(turns, ds, Rejects())
    assert per["GR-1"] == 6.0 and m["mtbench101/task/GR"] == 5.0  # OpenCompass: (6 + 4) / 2, GR-3 has none
    scores, failures = mt.paired_item_scores(turns, ds)
    assert scores == {"GR-1": None, "GR-2": 4.0, "GR-3": None, "AR-1": 2.0}  # AR's turn 0 is context only
    assert failures == {"GR-1": "a turn not rated", "GR-3": "no turn rated"}


def test_official_rating_is_the_first_bracketed_integer():
    assert mt.parse_rating("Rating: [[6]] and later [[2]]") == 6.0
    assert mt.parse_rating("[7] is my score") == 7.0
    for bad in ("Rating: [[6.5]]", "no rating", "[[11]]"):
        with pytest.raises(ValueError):
            mt.parse_rating(bad)
    assert mt.parse_score("[[3]] no, [[4]]") == 4.0  # the paraphrased prompt's rule: the last one


def test_instruction_format_renders_gold_history_as_training_pairs():
    from fitrain_eval.generate import GenerationConfig, Generator

    class Dummy:
        name, model = "dummy", "dummy"

    g = Generator(GenerationConfig(prompt_format="instruction"), backend=Dummy())
    msgs = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"}]
    assert g.request(msgs, "x").prompt == "Instruction: Q1\n\nAnswer: A1\n\nInstruction: Q2\n\nAnswer: "
    assert g.request(msgs, "x").stop == ["\n\nInstruction:"]


# the gold reference is shown to the judge only for the reasoning tasks
def _dialogue(task):
    return mt.Dialogue(task=task, id=1, history=[{"user": "u0", "bot": "GOLD-0"}, {"user": "u1", "bot": "GOLD-1"}])


def test_gold_reference_shown_only_for_reasoning_tasks():
    for task in mt.TASKS:
        text = mt.judge_request(_dialogue(task), 1, "ANSWER", "paraphrased").messages[0]["content"]
        assert "ANSWER" in text and "GOLD-0" in text  # the gold history is always context
        assert ("GOLD-1" in text) == (task in mt.REFERENCE_TASKS), task
        assert text.count("ANSWER") == 1
        official_user = mt.judge_request(_dialogue(task), 1, "ANSWER").messages[1]["content"]
        assert ("GOLD-1" in official_user) == (task in ("MR", "GR")), task  # the gold dialogue as reference


# official OpenCompass loader: for FR, CR, AR, SA, SC and CM the first turn is context only
# (``skip_first_tasks``); it is neither generated nor judged, and so cannot set the dialogue's minimum
class FakeGen:
    model = "fake"

    def __init__(self):
        self.ids = []

    def decoding(self):
        return {}

    def generate(self, items, rejects, what="generation"):
        self.ids += [i for i, _ in items]
        return [Generation(i, msgs, f"ANS {i}") for i, msgs in items]


class FakeJudge:
    """Scores 1 on turn 0, 9 on every other turn."""

    model = "fake-judge"

    def decoding(self):
        return {}

    def judge(self, requests, parse, rejects, prompt_version, what="judge"):
        return [Judged(1.0 if r.meta["id"].endswith("#0") else 9.0, {}) for r in requests]


def test_first_turn_of_skip_first_tasks_is_not_scored(tmp_path):
    rows = [json.loads(x) for x in FILE.read_text().splitlines()]
    chosen = [next(r for r in rows if r["task"] == t) for t in ("AR", "SA", "GR")]
    sub = tmp_path / "mt.jsonl"
    sub.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    gen = FakeGen()
    r = Rejects()
    m = mt.evaluate_mtbench101(mt.MTBench101Config(enabled=True, path=str(sub)), gen, FakeJudge(),
                               tmp_path / "out", r)
    assert not any(i.startswith(("AR-", "SA-")) and i.endswith("#0") for i in gen.ids)
    assert any(i.startswith("GR-") and i.endswith("#0") for i in gen.ids)
    assert m["mtbench101/task/AR"] == 9.0 and m["mtbench101/task/SA"] == 9.0
    assert m["mtbench101/task/GR"] == 1.0
    assert r.total == 0
