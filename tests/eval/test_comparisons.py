import json

import numpy as np
import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.layout import RunLayout, run_id
from fitrain_eval import comparisons as cmp
from fitrain_eval import stats
from fitrain_eval.items import ItemScores, item_files
from fitrain_eval.report_data import by_arm, contaminated_ids, discover, load_run


def _runs(root):
    return [load_run(r, Rejects()) for r in discover([root])]


def test_item_files_round_trip(tmp_path):
    s = ItemScores("mtbench101/overall", {"GR-1": 3.0, "AR-2": None}, {"AR-2": "no turn rated"},
                   strata={"GR-1": "GR", "AR-2": "AR"}, info={"judge_model": "j"})
    s.save(tmp_path)
    assert item_files(tmp_path) == {"mtbench101/overall": tmp_path / "items" / "mtbench101__overall.jsonl"}
    back = ItemScores.load(item_files(tmp_path)["mtbench101/overall"])
    assert (back.scores, back.failures, back.strata, back.info) == (s.scores, s.failures, s.strata, s.info)
    head = json.loads((tmp_path / "items" / "mtbench101__overall.jsonl").read_text().splitlines()[0])["_header"]
    assert head["n_failed"] == 1 and head["failures_by_reason"] == {"no turn rated": 1}


def test_same_items_for_every_arm_and_failures_counted(tmp_path):
    """Three arms; fi fails item 3, ipt fails item 5, standard never evaluated item 7: those three items are
    left out for every arm, and every arm's score is its mean over the other seven."""
    lay = RunLayout.of(tmp_path / "exp")
    rng = np.random.default_rng(0)
    scores = {arm: rng.uniform(size=10) for arm in ("fi", "standard", "ipt")}
    for arm, x in scores.items():
        s = {str(i): float(v) for i, v in enumerate(x)}
        if arm == "fi":
            s["3"] = None
        if arm == "ipt":
            s["5"] = None
        if arm == "standard":
            del s["7"]
        ItemScores("mixeval/overall", s, {k: "judgment failed" for k, v in s.items() if v is None}).save(lay.eval(arm))
    runs = _runs(lay.root)
    arms = by_arm(runs, "fi")
    assert list(arms) == ["fi", "ipt", "standard"]
    res = cmp.compare_metric("mixeval/overall", arms, "fi", n_boot=500)
    keep = [i for i in range(10) if i not in (3, 5, 7)]
    assert res.n_items == 7 and res.excluded == {"failed for some run": 2, "not evaluated by every run": 1}
    for a in res.arms:
        assert a.value == pytest.approx(scores[a.arm][keep].mean())
        assert a.lo <= a.value <= a.hi
    std = res.arm("standard")
    assert std.diff.value == pytest.approx(scores["standard"][keep].mean() - scores["fi"][keep].mean())
    assert std.diff.lo < std.diff.value < std.diff.hi and res.arm("fi").diff is None
    assert res.arm("fi").failed == {"fi": 1} and res.arm("standard").failed == {"standard": 0}


def test_seeds_fold_into_mean_sd_and_the_paired_bootstrap(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    rng = np.random.default_rng(1)
    base = rng.uniform(size=50)
    per_run = {}
    for arm, shift in (("fi", 0.2), ("standard", 0.0)):
        for seed in (0, 1, 2):
            x = np.clip(base + shift + rng.normal(0, 0.05, 50), 0, 1)
            per_run[(arm, seed)] = x
            ItemScores("heldout/answer_loss", {str(i): float(v) for i, v in enumerate(x)},
                       weights={str(i): float(i % 4 + 1) for i in range(50)}, higher_is_better=False
                       ).save(lay.eval(run_id(arm, seed)))
    arms = by_arm(_runs(lay.root), "fi")
    assert [r.name for r in arms["fi"]] == ["fi.seed0", "fi.seed1", "fi.seed2"]
    res = cmp.compare_metric("heldout/answer_loss", arms, "fi", n_boot=1000)
    w = np.array([i % 4 + 1 for i in range(50)], dtype=float)
    for a in res.arms:
        vals = [float((per_run[(a.arm, s)] * w).sum() / w.sum()) for s in (0, 1, 2)]
        assert a.per_seed == pytest.approx(vals)
        assert a.value == pytest.approx(np.mean(vals)) and a.sd == pytest.approx(np.std(vals, ddof=1))
    d = res.arm("standard").diff
    assert d.hi < 0 and d.p < 0.01 and not res.higher_is_better  # standard's loss is lower by ~0.2


def test_head_to_heads_group_seed_pairs_by_arm(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    rng = np.random.default_rng(2)
    for s in (0, 1):
        fi = lay.eval(run_id("fi", s))
        ItemScores(f"pairwise/{run_id('standard', s)}/win_rate",
                   {str(i): float(rng.uniform() < 0.75) for i in range(60)}, null=0.5,
                   info={"judge_model": "judge", "rules": "official"}).save(fi)
        (fi / "results.json").write_text(json.dumps({f"pairwise/{run_id('standard', s)}/lc_win_rate": 0.7 + s / 10,
                                                     f"pairwise/{run_id('standard', s)}/lc_standard_error": 0.02 * (1 + s)}))
        lay.eval(run_id("standard", s)).mkdir(parents=True)
        (lay.eval(run_id("standard", s)) / "results.json").write_text("{}")
    [h] = cmp.head_to_heads(by_arm(_runs(lay.root), "fi"), n_boot=1000)
    assert (h.model_arm, h.baseline, len(h.pairs), h.n_items) == ("fi", "standard", 2, 60)
    assert h.estimate.lo > 0.5 and h.estimate.p < 0.01
    # the mean of two seeds' LC win rates, and the standard error of that mean: sqrt(0.02^2 + 0.04^2) / 2
    assert h.lc == pytest.approx(0.75) and h.lc_se == pytest.approx((0.0004 + 0.0016) ** 0.5 / 2)
    assert h.info["judge_model"] == ["judge"] and sum(h.counts.values()) == 120


def test_contaminated_items_are_counted_and_can_be_left_out(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    for arm, v in (("fi", 1.0), ("standard", 0.0)):
        ItemScores("mixeval/overall", {f"free_form:{i}": v if i > 1 else 1 - v for i in range(6)}).save(lay.eval(arm))
    data = lay.eval("data")
    data.mkdir(parents=True)
    (data / "results.json").write_text(json.dumps({"decontamination/mixeval/contaminated": 2}))
    (data / "decontamination.json").write_text(json.dumps({"benchmarks": {"mixeval": {
        "checked": 6, "contaminated": 2, "ids": ["free_form:0", "free_form:1"], "examples": []}}}))
    runs = _runs(lay.root)
    arms = by_arm(runs, "fi")
    assert list(arms) == ["fi", "standard"]  # the data-only eval dir is not an arm
    flagged = contaminated_ids(runs)
    kept = cmp.compare_metric("mixeval/overall", arms, "fi", flagged["mixeval"], False, n_boot=200)
    assert kept.n_items == 6 and kept.contaminated == 2 and kept.arm("fi").value == pytest.approx(4 / 6)
    left = cmp.compare_metric("mixeval/overall", arms, "fi", flagged["mixeval"], True, n_boot=200)
    assert left.n_items == 4 and left.excluded == {"contaminated": 2} and left.arm("fi").value == 1.0
    assert left.arm("standard").diff.value == -1.0


def test_headline_picks_benchmarks_and_lm_eval_accuracies(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    lay.eval("fi").mkdir(parents=True)
    (lay.eval("fi") / "results.json").write_text(json.dumps({
        "lm_eval/t/acc": 0.3, "lm_eval/t/acc_norm": 0.3, "lm_eval_instruction/t/acc": 0.4, "lm_eval/t/acc_stderr": 0.01,
        "mtbench101/overall": 3.0, "heldout/answer_loss": 2.0, "lm_eval/w/word_perplexity": 2.6e25}))
    arms = by_arm(_runs(lay.root), "fi")
    assert cmp.headline_metrics(arms, []) == ["mtbench101/overall", "heldout/answer_loss", "lm_eval/t/acc",
                                              "lm_eval_instruction/t/acc", "lm_eval/w/word_perplexity"]
    u = cmp.unpaired_metric("lm_eval/t/acc", arms)
    assert (u.arms[0].lo, u.arms[0].hi) == pytest.approx((0.3 - 0.0196, 0.3 + 0.0196))
    assert cmp.scale("lm_eval/t/acc") == 100 and cmp.scale("lm_eval/w/word_perplexity") == 1
    assert cmp.scale("mtbench101/overall") == 1 and cmp.scale("mixeval_hard/overall") == 100
    assert stats.aggregate(np.array([1.0]), None, None) == 1.0
