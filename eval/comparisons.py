"""The report's numbers: every arm against the reference arm, paired over the same items, with intervals.

For each metric with per-item scores (fitrain_eval.items) in every run:

1. **the same items for every arm**: the items compared are those every run (all arms, all seeds) scored;
   an item that failed for any run after retries, or that some run did not evaluate, is left out for all
   and counted (and, with ``exclude_contaminated``, an item flagged by decontamination);
2. each run's statistic on those items (fitrain_eval.stats.aggregate), an arm's value the mean over its
   seeds (± the standard deviation over seeds when there are several);
3. the arm's 95% interval and its difference to the reference arm with a 95% paired-bootstrap interval and
   a two-sided p-value (fitrain_eval.stats: one item resample for all arms, seeds resampled per arm).

Head-to-head win rates (``pairwise/<baseline>/win_rate`` in a run's items): grouped by (arm of the judged
model, arm of the baseline); several seed pairs become rows of one matrix over their common items; the
interval is a bootstrap over items and the p-value tests a win rate of 0.5. AlpacaEval's length-controlled
win rate is shown with its own standard error (the mean over seed pairs).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fitrain.core.layout import parse_run_id
from fitrain_eval import stats
from fitrain_eval.benchmarks import benchmarks, of_metric
from fitrain_eval.items import ItemScores
from fitrain_eval.report_data import Run, benchmark_of

PERCENT_LEAVES = ("acc", "acc_norm", "exact_match", "em", "f1", "mc1", "mc2", "overall", "free_form",
                  "multiple_choice", "win_rate")


def label(metric: str) -> str:
    """A metric's column label: its benchmark's (fitrain_eval.benchmarks), else the metric itself."""
    b = of_metric(metric)
    return (b.label(metric) if b else None) or metric


def scale(metric: str) -> float:
    """100 for scores in [0, 1] shown as percentages; 1 for losses, perplexities, 1-10 ratings."""
    leaf = metric.rsplit("/", 1)[-1].split("[")[0]
    b = of_metric(metric)
    return 100.0 if leaf.startswith(PERCENT_LEAVES) and (b is None or b.percent) else 1.0


@dataclass
class ArmResult:
    arm: str
    runs: list[str]
    per_seed: list[float]
    value: float
    sd: float | None = None
    lo: float | None = None
    hi: float | None = None
    diff: stats.Estimate | None = None     # vs the reference arm (paired)
    failed: dict = field(default_factory=dict)   # run -> items that failed for that run


@dataclass
class MetricResult:
    metric: str
    higher_is_better: bool
    paired: bool                           # from per-item scores (else results.json values only)
    n_items: int = 0
    excluded: dict = field(default_factory=dict)  # reason -> items left out for every arm
    contaminated: int | None = None        # compared items flagged by decontamination
    arms: list[ArmResult] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # judge models, prompt versions, rules (sets over runs)

    @property
    def label(self) -> str:
        return label(self.metric)

    def arm(self, name: str) -> ArmResult | None:
        return next((a for a in self.arms if a.arm == name), None)


@dataclass
class HeadToHead:
    model_arm: str
    baseline: str                          # the baseline's arm (or its name when it is not an arm)
    pairs: list[tuple[str, str]]           # (model run, baseline run)
    estimate: stats.Estimate
    n_items: int
    excluded: int
    lc: float | None = None                # mean LC win rate over the pairs (seeds)
    lc_se: float | None = None             # its standard error: sqrt(sum se_i^2) / k (mean_se)
    counts: dict = field(default_factory=dict)   # wins / ties / losses over the compared items, all pairs
    info: dict = field(default_factory=dict)


def _info(files: list[ItemScores]) -> dict:
    keys = ("benchmark", "judge_model", "prompt_version", "rules", "lc_glm", "format", "five_shot")
    out = {}
    for k in keys:
        vals = sorted({str(f.info[k]) for f in files if f.info.get(k) not in (None, "")})
        if vals:
            out[k] = vals
    return out


def compare_metric(metric: str, arms: dict[str, list[Run]], reference: str, flagged: set[str] | None = None,
                   exclude_flagged: bool = False, n_boot: int = 10000, seed: int = 0, level: float = 0.95
                   ) -> MetricResult | None:
    """The paired comparison of one metric over the arms all of whose runs have its per-item scores."""
    arms = {a: rs for a, rs in arms.items() if rs and all(metric in r.items for r in rs)}
    runs = [r for rs in arms.values() for r in rs]
    if not runs:
        return None
    files = {r.name: ItemScores.load(r.items[metric]) for r in runs}
    first = next(iter(files.values()))
    all_ids = list(dict.fromkeys(i for f in files.values() for i in f.scores))
    in_all = [i for i in all_ids if all(i in f.scores for f in files.values())]
    common = [i for i in in_all if all(f.scores[i] is not None for f in files.values())]
    excluded = {"not evaluated by every run": len(all_ids) - len(in_all),
                "failed for some run": len(in_all) - len(common)}
    n_flagged = None
    if flagged is not None:
        hit = [i for i in common if i in flagged]
        n_flagged = len(hit)
        if exclude_flagged:
            common = [i for i in common if i not in flagged]
            excluded["contaminated"] = len(hit)
    res = MetricResult(metric, first.higher_is_better, True, len(common), {k: v for k, v in excluded.items() if v},
                       n_flagged, info=_info(list(files.values())))
    if not common:
        return res
    w = np.array([first.weights[i] for i in common]) if first.weights else None
    strata = np.array([first.strata[i] for i in common]) if first.strata else None
    mats = {a: np.array([[files[r.name].scores[i] for i in common] for r in rs]) for a, rs in arms.items()}
    per_seed = {a: [stats.aggregate(row, w, strata) for row in m] for a, m in mats.items()}
    names = list(mats)
    ref = reference if reference in mats else None
    others = [a for a in names if a != ref]
    if ref is not None:
        ref_est, rest = stats.compare(mats[ref], [mats[a] for a in others], w, strata, n_boot, seed, level)
        ests = {ref: (ref_est, None), **{a: e for a, e in zip(others, rest)}}
    else:
        reps = stats.replicates([mats[a] for a in names], w, strata, n_boot, seed)
        ests = {a: (stats.Estimate(stats.observed(mats[a], w, strata), *np.quantile(
            reps[:, j], [(1 - level) / 2, (1 + level) / 2]).tolist()), None) for j, a in enumerate(names)}
    for a in names:
        mean, sd = stats.mean_sd(per_seed[a])
        est, diff = ests[a]
        res.arms.append(ArmResult(a, [r.name for r in arms[a]], per_seed[a], mean, sd, est.lo, est.hi, diff,
                                  {r.name: sum(v is None for v in files[r.name].scores.values()) for r in arms[a]}))
    return res


def unpaired_metric(metric: str, arms: dict[str, list[Run]]) -> MetricResult | None:
    """A metric without per-item scores: each arm's mean (± sd over seeds; ± 1.96 lm-eval stderr for one run)."""
    res = MetricResult(metric, True, False)
    for a, rs in arms.items():
        vals = [r.metrics[metric] for r in rs if metric in r.metrics]
        if not vals:
            continue
        mean, sd = stats.mean_sd(vals)
        lo = hi = None
        se = [r.metrics.get(f"{metric}_stderr") for r in rs]
        if len(vals) == 1 and isinstance(se[0], (int, float)):
            lo, hi = mean - 1.96 * se[0], mean + 1.96 * se[0]
        res.arms.append(ArmResult(a, [r.name for r in rs], vals, mean, sd, lo, hi))
    return res if res.arms else None


def head_to_heads(arms: dict[str, list[Run]], n_boot: int = 10000, seed: int = 0, level: float = 0.95
                  ) -> list[HeadToHead]:
    groups: dict[tuple[str, str], list[tuple[Run, str]]] = {}
    for a, rs in arms.items():
        for r in rs:
            for metric in r.items:
                if metric.startswith("pairwise/") and metric.endswith("/win_rate"):
                    base = metric[len("pairwise/"):-len("/win_rate")]
                    groups.setdefault((a, parse_run_id(base)[0]), []).append((r, base))
    out = []
    for (a, b), pairs in sorted(groups.items()):
        files = [ItemScores.load(r.items[f"pairwise/{base}/win_rate"]) for r, base in pairs]
        all_ids = list(dict.fromkeys(i for f in files for i in f.scores))
        common = [i for i in all_ids if all(f.scores.get(i) is not None for f in files)]
        if not common:
            continue
        mat = np.array([[f.scores[i] for i in common] for f in files])
        est = stats.one_sample(mat, 0.5, n_boot=n_boot, seed=seed, level=level)
        lcs = [r.metrics.get(f"pairwise/{base}/lc_win_rate") for r, base in pairs]
        ses = [r.metrics.get(f"pairwise/{base}/lc_standard_error") for r, base in pairs]
        flat = mat.ravel()
        out.append(HeadToHead(a, b, [(r.name, base) for r, base in pairs], est, len(common),
                              len(all_ids) - len(common),
                              float(np.mean(lcs)) if all(v is not None for v in lcs) else None,
                              mean_se(ses) if all(v is not None for v in ses) else None,
                              {"wins": int((flat > 0.5).sum()), "ties": int((flat == 0.5).sum()),
                               "losses": int((flat < 0.5).sum())}, _info(files)))
    return out


def mean_se(ses: list[float]) -> float:
    """The standard error of a mean over k independent seeds, each with its own standard error:
    ``sqrt(sum se_i^2) / k``."""
    return float(np.sqrt(np.sum(np.square(ses))) / len(ses))


def headline_metrics(arms: dict[str, list[Run]], wanted: list[str]) -> list[str]:
    """The headline table's metrics: ``wanted`` when given, else the judged benchmarks, the held-out answer
    loss and each lm-eval task's accuracy (or its first metric), those present in some run."""
    present = {m for rs in arms.values() for r in rs for m in list(r.items) + list(r.metrics)}
    if wanted:
        return [m for m in wanted if m in present]
    ordered = sorted(benchmarks(), key=lambda b: b.headline_group)  # (within a group, registry order)
    return [m for b in ordered for m in b.headline_metrics(present)]


def all_results(runs: list[Run], arms: dict[str, list[Run]], reference: str, flagged: dict[str, set[str]],
                exclude_flagged: bool, n_boot: int, seed: int, level: float, headline: list[str]
                ) -> tuple[list[MetricResult], list[HeadToHead]]:
    """Paired results for every metric with per-item scores (plus unpaired ones for headline metrics
    without them), and the head-to-heads."""
    metrics = sorted({m for rs in arms.values() for r in rs for m in r.items if not m.startswith("pairwise/")})
    out = []
    for m in metrics:
        bench = benchmark_of(m)
        res = compare_metric(m, arms, reference, flagged.get(bench) if bench else None, exclude_flagged,
                             n_boot, seed, level)
        if res is not None:
            out.append(res)
    have = {r.metric for r in out}
    heads = headline_metrics(arms, headline)
    for m in heads:
        if m not in have and not m.startswith("pairwise/"):
            res = unpaired_metric(m, arms)
            if res is not None:
                out.append(res)
    out.sort(key=lambda r: (heads.index(r.metric) if r.metric in heads else len(heads), r.metric))
    return out, head_to_heads(arms, n_boot, seed, level)
