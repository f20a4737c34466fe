"""MT-Bench-101 (official OpenCompass loader): for the tasks FR, CR, AR, SA, SC and CM the first turn is
context only (``skip_first_tasks``); it is neither generated nor judged, and so cannot set the dialogue's
minimum."""
import json

from fitrain.accounting import Rejects
from fitrain_eval.generate import Generation
from fitrain_eval.judges import mtbench101 as mt
from fitrain_eval.judges.common import Judged
from tests.eval.eval_helpers import DATA

FILE = DATA / "mt_bench_101" / "mtbench101.jsonl"


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
