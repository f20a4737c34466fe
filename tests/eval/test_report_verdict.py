"""fitrain_eval.report_verdict: the verdict's wording in both directions and for a tie, chance levels and the
flag of an arm at chance (and the chance line in the plot), the overfitting test on rising and falling held-out
curves, the final loss as a token-weighted mean of the last steps."""
import pytest

from fitrain_eval import report_verdict as v
from fitrain_eval.comparisons import ArmResult, MetricResult
from fitrain_eval.stats import Estimate


def _loss(diff: Estimate) -> MetricResult:
    return MetricResult("heldout/answer_loss", False, True, n_items=47, arms=[
        ArmResult("fi", ["fi"], [7.596], 7.596, lo=7.263, hi=7.817),
        ArmResult("standard", ["standard"], [7.341], 7.341, lo=7.179, hi=7.459, diff=diff)])


def _acc(diff: Estimate, fi=(0.30, 0.18, 0.44), std=(0.40, 0.28, 0.52)) -> MetricResult:
    return MetricResult("lm_eval/fitrain_mixeval_mc/acc", True, True, n_items=50, arms=[
        ArmResult("fi", ["fi"], [fi[0]], fi[0], lo=fi[1], hi=fi[2]),
        ArmResult("standard", ["standard"], [std[0]], std[0], lo=std[1], hi=std[2], diff=diff)])


def test_verdict_wording_both_directions_and_a_tie():
    # lower is better: standard's loss is 0.255 lower -> standard beats fi
    r = _loss(Estimate(-0.255, -0.412, -0.004, 0.047))
    assert v.verdict_sentence(r, r.arms[1], "fi") == (
        "standard beats fi on held-out answer loss by 0.255 nats [0.004, 0.412], p = 0.047 (lower is better).")
    # the same sign on a higher-is-better metric: fi wins
    a = _acc(Estimate(-0.10, -0.18, -0.02, 0.012))
    assert v.verdict_sentence(a, a.arms[1], "fi") == (
        "fi beats standard on fitrain_mixeval_mc acc by 10.0 points [2.0, 18.0], p = 0.012 (higher is better).")
    a = _acc(Estimate(0.10, 0.02, 0.18, 0.0004))
    assert v.verdict_sentence(a, a.arms[1], "fi").startswith(
        "standard beats fi on fitrain_mixeval_mc acc by 10.0 points [2.0, 18.0], p < 0.001")
    # an interval that covers 0 (a zero-width one included) is no detectable difference, whatever the sign
    for d in (Estimate(0.02, -0.06, 0.10, 0.83), Estimate(0.0, 0.0, 0.0, 1.0)):
        s = v.verdict_sentence(_acc(d), _acc(d).arms[1], "fi")
        assert s.startswith("No detectable difference between standard and fi on fitrain_mixeval_mc acc: "
                            "standard − fi = ")
    lines = v.verdict([_loss(Estimate(-0.255, -0.412, -0.004, 0.047))], "fi", {})
    assert lines == [v.verdict_sentence(_loss(Estimate(-0.255, -0.412, -0.004, 0.047)),
                                        _loss(Estimate(-0.255, -0.412, -0.004, 0.047)).arms[1], "fi")]


def test_chance_of_the_shipped_tasks_and_arms_at_chance_flagged():
    c = v.chance_level("lm_eval/fitrain_mixeval_mc/acc", {})
    n = v._task_choices("fitrain_mixeval_mc")
    assert len(n) == 200 and c == pytest.approx(sum(1 / k for k in n) / 200) and 0.2 < c < 0.5
    assert v.chance_level("lm_eval_instruction/fitrain_mixeval_hard_mc/acc_norm", {}) is not None
    assert v.chance_level("heldout/answer_loss", {}) is None and v.chance_level("lm_eval/hellaswag/acc", {}) is None
    r = _acc(Estimate(0.1, 0.02, 0.18, 0.01), fi=(0.16, 0.06, 0.26), std=(0.60, 0.5, 0.7))
    flags = v.chance_flags(r, 0.25)
    assert flags == ["fi on fitrain_mixeval_mc acc: 16.0 [6.0, 26.0] covers chance (25.0): no signal above guessing."]
    assert v.verdict([r], "fi", {r.metric: 0.25})[-1] == flags[0]


def test_the_chance_line_is_drawn(tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    from fitrain_eval.report_plots import CHANCE_COLOR, plot_scores

    r = _acc(Estimate(0.1, 0.02, 0.18, 0.01))
    plot_scores([r], {"fi": "#1f77b4", "standard": "#d62728"}, tmp_path / "with.png", {r.metric: 0.25})
    plot_scores([r], {"fi": "#1f77b4", "standard": "#d62728"}, tmp_path / "without.png")

    def gray_rows(p):  # rows holding a long (dashed) run of the chance line's colour
        img = mpimg.imread(p)[..., :3]
        rgb = np.array([int(CHANCE_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        return int(((np.abs(img - rgb).max(axis=-1) < 0.2).sum(axis=1) > 100).sum())  # antialiased

    assert gray_rows(tmp_path / "with.png") >= 1 and gray_rows(tmp_path / "without.png") == 0


def _curve(vals, every=1000):
    return [{"step": i + 1, "tokens": (i + 1) * every, "loss": None, "val_loss": x} for i, x in enumerate(vals)]


def test_overfitting_warned_on_a_rising_curve_not_on_a_falling_one():
    rising = _curve([7.9, 7.46, 7.5, 7.6, 7.78])     # the quickstart's FI arm: best early, then up
    assert v.heldout_rise(rising) == (7.46, 2000, 7.78, 5000)
    assert v.heldout_rise(_curve([7.9, 7.7, 7.5, 7.4, 7.35])) is None   # falling
    assert v.heldout_rise(_curve([7.9, 7.5, 7.2, 7.21, 7.205])) is None  # flat within 0.5% of the best
    assert v.heldout_rise(_curve([7.9, 7.8])) is None                   # too few evaluations


def test_final_loss_is_the_token_weighted_mean_of_the_last_steps():
    rows = [{"step": s, "tokens": s * 1000.0, "loss": 5.0} for s in range(1, 96)]
    rows.append({"step": 96, "tokens": 95025.0, "loss": 9.0})  # a budget-cut last step of 25 tokens
    mean, k = v.final_loss(rows)
    assert k == 10 and mean == pytest.approx((9 * 1000 * 5.0 + 25 * 9.0) / (9 * 1000 + 25))
    # weighted by the loss (supervised) tokens where logged; a step with none (loss nan) is left out
    rows = [{"tokens": 100.0 * s, "supervised_tokens": 40.0 * s, "loss": 6.0 + (s == 7)} for s in range(1, 10)]
    rows.append({"tokens": 911.0, "supervised_tokens": 360.0, "loss": float("nan")})
    mean, k = v.final_loss(rows)
    assert k == 5 and mean == pytest.approx((4 * 40 * 6.0 + 40 * 7.0) / 200)
    assert v.final_loss([]) is None
