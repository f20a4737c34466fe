"""Paired statistics over per-item scores: the numbers behind "did FI win, by how much, how sure".

Every evaluated arm is scored on the same items (the report keeps only items that every run scored), so
arms are compared **paired**: one bootstrap replicate draws one resample of the items and applies it to every
arm at once, which removes the between-item variance that an unpaired comparison would carry.

The statistic of an arm is ``mean over strata of (sum_i w_i x_i / sum_i w_i)`` over the items of each
stratum: a plain mean (one stratum, unit weights) for accuracies and judge grades, a token-weighted mean for
the held-out answer loss (weights = answer tokens: sum of CE / sum of tokens, the ``val_loss`` of training),
the mean of per-task means for MT-Bench-101 (strata = tasks, as OpenCompass aggregates).

**Bootstrap** (hierarchical and stratified): each replicate resamples the items with replacement within each
stratum (the same draw for every arm; a stratum of a single item has no spread to resample, so when any
stratum holds fewer than two items the items are resampled together instead, each keeping its weight in the
mean of stratum means) and, for an arm with several seeds, resamples its seeds with
replacement (independently per arm: seeds are not paired across arms), then computes every arm's statistic
on the per-item means over the drawn seeds. With one seed this is the ordinary paired item bootstrap.
Intervals are percentile intervals of the replicates. **p-values** invert those intervals (two-sided):
``p = min(1, 2 (1 + #{d* <= d0}) / (B + 1), 2 (1 + #{d* >= d0}) / (B + 1))`` with ``d0`` the null (0 for a
difference, 0.5 for a win rate), so ``p < 0.05`` exactly when the 95% percentile interval excludes ``d0``
(up to the ``+1`` of the finite-B correction) and the table never shows an interval and a p-value that
disagree. Identical arms give ``p = 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Estimate:
    """An arm's (or a difference's) value with its percentile interval and, for a test, the p-value."""

    value: float
    lo: float
    hi: float
    p: float | None = None

    def to_dict(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, **({"p": self.p} if self.p is not None else {})}


def _groups(n: int, strata: np.ndarray | None) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    _, codes = np.unique(np.asarray(strata), return_inverse=True)
    return [np.flatnonzero(codes == k) for k in range(codes.max() + 1)] if n else []


def aggregate(x: np.ndarray, weights: np.ndarray | None = None, strata: np.ndarray | None = None) -> float:
    """The statistic of one arm on per-item scores ``x`` (see the module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(_stat(x[None, :], np.ones((1, len(x))) * w, _groups(len(x), strata))[0])


def _stat(x: np.ndarray, cw: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Row-wise statistic for item values ``x`` [B, n] (or [1, n]) and resampling counts x weights ``cw``."""
    parts = [(cw[:, g] * x[:, g]).sum(axis=1) / cw[:, g].sum(axis=1) for g in groups]
    return np.mean(parts, axis=0)


def replicates(arms: list[np.ndarray], weights: np.ndarray | None = None, strata: np.ndarray | None = None,
               n_boot: int = 10000, seed: int = 0, chunk: int = 250) -> np.ndarray:
    """Bootstrap replicates ``[n_boot, len(arms)]`` of every arm's statistic. ``arms[j]``: scores
    ``[seeds_j, n_items]`` (the same items, in the same order, for every arm)."""
    arms = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in arms]
    n = arms[0].shape[1]
    if any(a.shape[1] != n for a in arms):
        raise ValueError(f"arms scored on different numbers of items: {[a.shape[1] for a in arms]}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    groups = _groups(n, strata)
    if len(groups) > 1 and min(len(g) for g in groups) < 2:
        # fixed weights of the mean of stratum means, items resampled together (the module docstring)
        macro = np.empty(n)
        for g in groups:
            macro[g] = w[g] / (len(groups) * w[g].sum())
        w, groups = macro, [np.arange(n)]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(arms)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        counts = np.zeros((b, n))
        for g in groups:
            counts[:, g] = rng.multinomial(len(g), np.full(len(g), 1.0 / len(g)), size=b)
        cw = counts * w
        for j, a in enumerate(arms):
            s = a.shape[0]
            per_item = a[0][None, :] if s == 1 else (rng.multinomial(s, np.full(s, 1.0 / s), size=b) / s) @ a
            out[start:start + b, j] = _stat(np.broadcast_to(per_item, (b, n)), cw, groups)
    return out


def _interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def _p(reps: np.ndarray, null: float) -> float:
    b = len(reps)
    below, above = (reps <= null + 1e-12).sum(), (reps >= null - 1e-12).sum()
    return float(min(1.0, 2 * (1 + below) / (b + 1), 2 * (1 + above) / (b + 1)))


def observed(arm: np.ndarray, weights=None, strata=None) -> float:
    """The arm's statistic on the per-item means over its seeds."""
    return aggregate(np.atleast_2d(np.asarray(arm, dtype=np.float64)).mean(axis=0), weights, strata)


def compare(reference: np.ndarray, others: list[np.ndarray], weights=None, strata=None, n_boot: int = 10000,
            seed: int = 0, level: float = 0.95) -> tuple[Estimate, list[tuple[Estimate, Estimate]]]:
    """The reference arm's estimate and, for every other arm, (its estimate, its difference to the
    reference with a paired interval and p-value). All from one set of replicates."""
    reps = replicates([reference, *others], weights, strata, n_boot, seed)
    ref_obs = observed(reference, weights, strata)
    ref = Estimate(ref_obs, *_interval(reps[:, 0], level))
    out = []
    for j, o in enumerate(others, 1):
        obs = observed(o, weights, strata)
        d = reps[:, j] - reps[:, 0]
        out.append((Estimate(obs, *_interval(reps[:, j], level)),
                    Estimate(obs - ref_obs, *_interval(d, level), p=_p(d, 0.0))))
    return ref, out


def one_sample(scores: np.ndarray, null: float, weights=None, strata=None, n_boot: int = 10000, seed: int = 0,
               level: float = 0.95) -> Estimate:
    """An estimate with its interval and the p-value against ``null`` (a win rate against 0.5)."""
    reps = replicates([scores], weights, strata, n_boot, seed)[:, 0]
    obs = observed(scores, weights, strata)
    return Estimate(obs, *_interval(reps, level), p=_p(reps, null))


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation over seeds (None for one seed)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)
