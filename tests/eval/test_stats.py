import numpy as np
import pytest

from fitrain_eval import stats


def test_known_difference_is_covered_with_a_small_p_value():
    rng = np.random.default_rng(1)
    ref = rng.normal(0.5, 0.2, size=400)
    other = ref + 0.1 + rng.normal(0, 0.05, size=400)  # the true paired difference is 0.1
    ref_est, [(est, diff)] = stats.compare(ref, [other], n_boot=4000, seed=0)
    assert diff.value == pytest.approx(other.mean() - ref.mean())
    assert diff.lo < 0.1 < diff.hi and diff.hi - diff.lo < 0.02   # paired: tight, about 4 SE of 0.0025
    assert diff.p < 0.001
    assert ref_est.lo < ref.mean() < ref_est.hi and est.lo < other.mean() < est.hi
    # the same difference, unpaired, would need an interval about 5x wider (the item variance)
    width_unpaired = 2 * 1.96 * np.sqrt(ref.var(ddof=1) / 400 + other.var(ddof=1) / 400)
    assert width_unpaired > 4 * (diff.hi - diff.lo)


def test_identical_arms_cover_zero_with_p_one():
    x = np.random.default_rng(2).integers(0, 2, size=300).astype(float)
    _, [(_, diff)] = stats.compare(x, [x.copy()], n_boot=2000)
    assert (diff.value, diff.lo, diff.hi) == (0.0, 0.0, 0.0) and diff.p == 1.0
    # two arms drawn from the same distribution: the interval covers 0 and p is not small
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 300).astype(float), rng.integers(0, 2, 300).astype(float)
    _, [(_, d)] = stats.compare(a, [b], n_boot=2000)
    assert d.lo < 0 < d.hi and d.p > 0.05


def test_intervals_have_their_nominal_coverage():
    """Over 200 simulated paired experiments with a true difference of 0.05, the 95% interval covers it in
    about 95% of them (binomial 95% range for 200 draws: 184-196)."""
    rng = np.random.default_rng(4)
    covered = 0
    for k in range(200):
        base = rng.uniform(0, 1, size=120)
        ref = (rng.uniform(size=120) < base).astype(float)
        other = (rng.uniform(size=120) < np.clip(base + 0.05, 0, 1)).astype(float)
        true = np.clip(base + 0.05, 0, 1).mean() - base.mean()
        _, [(_, d)] = stats.compare(ref, [other], n_boot=1000, seed=k)
        covered += d.lo <= true <= d.hi
    assert 180 <= covered <= 198, covered


def test_strata_weights_and_seeds_aggregate_like_the_benchmarks():
    x = np.array([1.0, 3.0, 5.0, 10.0])
    # MT-Bench-101: the mean of task means (tasks A: 1, 3; B: 5, 10) -> (2 + 7.5) / 2, not the item mean 4.75
    assert stats.aggregate(x, strata=np.array(["A", "A", "B", "B"])) == pytest.approx((2 + 7.5) / 2)
    # held-out loss: sum(CE) / sum(tokens) from per-item mean losses weighted by their tokens
    ce, tokens = np.array([2.0, 9.0, 4.0]), np.array([1.0, 3.0, 2.0])
    assert stats.aggregate(ce / tokens, weights=tokens) == pytest.approx(ce.sum() / tokens.sum())
    # several seeds: the per-item mean over seeds, and the seed spread widens the interval
    one = np.random.default_rng(5).uniform(size=200)
    seeds = np.stack([one + s for s in (-0.2, 0.0, 0.2)])
    assert stats.observed(seeds) == pytest.approx(one.mean())
    single, [_] = stats.compare(one, [one], n_boot=2000)
    multi, [_] = stats.compare(seeds, [seeds], n_boot=2000)
    assert (multi.hi - multi.lo) > 3 * (single.hi - single.lo)
    assert stats.mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0) and stats.mean_sd([4.0]) == (4.0, None)


def test_strata_of_single_items_still_have_an_interval():
    """One dialogue per MT-Bench-101 task: within-task resampling would give a zero-width interval; the items
    are resampled together instead, each with its weight in the mean of task means."""
    rng = np.random.default_rng(7)
    a, b = rng.integers(1, 11, 13).astype(float), rng.integers(1, 11, 13).astype(float)
    tasks = np.array([f"T{i}" for i in range(13)])
    ref, [(_, d)] = stats.compare(a, [b], strata=tasks, n_boot=2000)
    assert ref.value == pytest.approx(a.mean()) and ref.hi - ref.lo > 1.0
    assert d.lo < d.value < d.hi and d.p > 0.001
    uneven = np.array(["A"] * 5 + ["B"])
    x = np.array([1.0, 1, 1, 1, 1, 9])
    reps = stats.replicates([x], strata=uneven, n_boot=4000)[:, 0]
    assert stats.aggregate(x, strata=uneven) == 5.0 and reps.std() > 1.0


def test_one_sample_win_rate_against_one_half():
    rng = np.random.default_rng(6)
    wins = (rng.uniform(size=500) < 0.7).astype(float)
    e = stats.one_sample(wins, 0.5, n_boot=2000)
    assert e.lo < 0.7 < e.hi and e.p < 0.001
    even = np.array([1.0, 0.0] * 100)
    e = stats.one_sample(even, 0.5, n_boot=2000)
    assert e.value == 0.5 and e.lo < 0.5 < e.hi and e.p == 1.0


def test_p_value_agrees_with_the_interval():
    rng = np.random.default_rng(8)
    for k in range(30):
        a = (rng.uniform(size=50) < 0.3).astype(float)
        b = (rng.uniform(size=50) < 0.3 + 0.01 * k).astype(float)
        _, [(_, d)] = stats.compare(a, [b], n_boot=2000, seed=k)
        if d.lo > 0.005 or d.hi < -0.005:  # clearly excluded (away from the finite-B boundary)
            assert d.p < 0.05, (k, d)
        elif d.lo < -0.005 and d.hi > 0.005:
            assert d.p > 0.05, (k, d)


def test_arms_must_share_items():
    with pytest.raises(ValueError, match="different numbers of items"):
        stats.replicates([np.zeros(3), np.zeros(4)])
