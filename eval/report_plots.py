"""The report's plots. Each metric has its own axis (a perplexity never shares a scale with accuracies); scores are
dots with their 95% intervals as whiskers drawn in :data:`ERR_COLOR`, on axes from 0 (percentages 0-100) so a
small gap is not magnified, with the chance level of multiple-choice metrics as a dashed line; differences sit
on a symmetric axis around 0 of a minimum span; each arm keeps one colour in every plot; the loss plot puts the
held-out answer loss of every arm (the same held-out pairs) on one axis and each arm's training loss (its own
objective, not comparable across arms) on another."""
from __future__ import annotations

import math
from pathlib import Path

from fitrain_eval.comparisons import HeadToHead, MetricResult, scale
from fitrain_eval.report_data import Run

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
ERR_COLOR = "#4a1486"      # error bars: a colour no arm and no text uses
CHANCE_COLOR = "#808000"   # chance levels (dashed): another colour of its own
LINESTYLES = ["-", "--", ":", "-."]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, axes=(), xlabel: str = "") -> None:
    """Label and grid line plots' axes, then write the figure."""
    for x in axes:
        x.set_xlabel(xlabel)
        x.grid(alpha=0.3)
        x.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def arm_colors(arms: list[str]) -> dict[str, str]:
    return {a: COLORS[i % len(COLORS)] for i, a in enumerate(arms)}


def _grid(n: int, per_row: int = 3):
    plt = _plt()
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return plt, fig, axes.ravel()[:n]


def _yerr(v, lo, hi, k):
    if lo is None or hi is None:
        return None
    return [[max(0.0, (v - lo) * k)], [max(0.0, (hi - v) * k)]]


def plot_scores(results: list[MetricResult], colors: dict[str, str], path: Path,
                chances: dict[str, float] | None = None) -> int:
    """One axis per metric: a dot per arm at its value with its 95% interval as whiskers, on an axis that does
    not magnify differences (percentages 0-100, other scores from 0), and the chance level of a
    multiple-choice metric as a dashed line. Returns the number of axes."""
    results = [r for r in results if r.arms]
    if not results:
        return 0
    chances = chances or {}
    plt, fig, axes = _grid(len(results))
    for ax, res in zip(axes, results):
        k = scale(res.metric)
        for j, a in enumerate(res.arms):
            ax.plot(j, a.value * k, "o", color=colors.get(a.arm, COLORS[0]), markersize=9, zorder=2)
            err = _yerr(a.value, a.lo, a.hi, k)
            if err is not None:  # above the dot: a narrow interval still shows (its caps)
                ax.errorbar(j, a.value * k, yerr=err, fmt="none", ecolor=ERR_COLOR, elinewidth=2.2, capsize=6,
                            capthick=2.2, zorder=3)
        ax.set_xticks(range(len(res.arms)))
        ax.set_xticklabels([a.arm for a in res.arms], fontsize=9)
        ax.set_xlim(-0.6, len(res.arms) - 0.4)
        unit = " (%)" if k == 100 else ""
        ax.set_title(_wrap(f"{res.label}{unit}") + ("" if res.higher_is_better else "\n(lower is better)"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        c = chances.get(res.metric)
        if c is not None:
            ax.axhline(c * k, color=CHANCE_COLOR, linestyle="--", linewidth=1.2, label=f"chance {c * k:.1f}")
            ax.legend(fontsize=7, loc="upper right")
        highs = [(a.hi if a.hi is not None else a.value) * k for a in res.arms]
        ax.set_ylim(0, 100) if k == 100 else ax.set_ylim(min(0.0, *highs), max(highs) * 1.15 or 1.0)
    fig.suptitle("Scores with 95% intervals (paired bootstrap over items; seeds resampled)", fontsize=10)
    _save(plt, fig, path)
    return len(results)


def plot_differences(results: list[MetricResult], reference: str, colors: dict[str, str], path: Path) -> bool:
    """One axis per metric: each arm's difference to the reference arm with its 95% paired interval."""
    results = [r for r in results if any(a.diff is not None for a in r.arms)]
    if not results:
        return False
    plt, fig, axes = _grid(len(results))
    for ax, res in zip(axes, results):
        k = scale(res.metric)
        rows = [a for a in res.arms if a.diff is not None]
        for j, a in enumerate(rows):
            d = a.diff
            ax.plot(d.value * k, j, "o", color=colors.get(a.arm, COLORS[0]), markersize=7, zorder=2)
            ax.errorbar(d.value * k, j, xerr=[[(d.value - d.lo) * k], [(d.hi - d.value) * k]], fmt="none",
                        ecolor=ERR_COLOR, elinewidth=2.2, capsize=6, capthick=2.2, zorder=3)
        ax.axvline(0, color="black", linestyle=":", linewidth=1)
        # a span that neither hides nor magnifies: at least 10 points (percentages) or 5% of the reference's value
        ref_v = next((a.value for a in res.arms if a.diff is None), 0.0)
        span = max([abs(x) * k for a in rows for x in (a.diff.lo, a.diff.hi)]
                   + [5.0 if k == 100 else 0.05 * abs(ref_v) or 0.05])
        ax.set_xlim(-1.15 * span, 1.15 * span)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([a.arm for a in rows], fontsize=9)
        ax.set_ylim(-0.8, len(rows) - 0.2)
        ax.set_title(_wrap(f"{res.label}: arm − {reference}" + (" (%-points)" if k == 100 else "")), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Differences to {reference} with 95% paired-bootstrap intervals", fontsize=10)
    _save(plt, fig, path)
    return True


def plot_head_to_head(h2h: list[HeadToHead], colors: dict[str, str], path: Path) -> bool:
    if not h2h:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 2.4 + 0.55 * len(h2h)), dpi=100)
    for j, h in enumerate(h2h):
        e = h.estimate
        ax.barh(j, 100 * e.value, 0.6, color=colors.get(h.model_arm, COLORS[0]),
                xerr=[[100 * (e.value - e.lo)], [100 * (e.hi - e.value)]], ecolor=ERR_COLOR,
                error_kw={"elinewidth": 2.2, "capsize": 6, "capthick": 2.2})
        if h.lc is not None:
            ax.plot(100 * h.lc, j, marker="D", color="black", markersize=6,
                    label="length-controlled" if j == 0 else None)
    ax.axvline(50, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(h2h)))
    ax.set_yticklabels([f"{h.model_arm} vs {h.baseline}" for h in h2h])
    ax.set_xlim(0, 100)
    ax.set_xlabel("win rate % (95% bootstrap interval over instructions)")
    ax.set_title("Head-to-head (AlpacaEval)")
    if any(h.lc is not None for h in h2h):
        ax.legend(fontsize=8, loc="lower right")
    _save(plt, fig, path)
    return True


def plot_loss(arms: dict[str, list[Run]], colors: dict[str, str], path: Path) -> bool:
    """Top: held-out answer loss (``val_loss``) of every run; bottom: each run's training loss."""
    def pts(r: Run, key: str):
        return [(row["tokens"], row[key]) for row in r.curve if row.get(key) is not None
                and row.get("tokens") is not None]

    runs = [(a, i, r) for a, rs in arms.items() for i, r in enumerate(rs)]
    has_val = any(pts(r, "val_loss") for _, _, r in runs)
    if not any(pts(r, "loss") for _, _, r in runs) and not has_val:
        return False
    plt = _plt()
    fig, axes = plt.subplots(2 if has_val else 1, 1, figsize=(8, 7 if has_val else 4), dpi=100, squeeze=False)
    axes = axes[:, 0]
    if has_val:
        for a, i, r in runs:
            p = pts(r, "val_loss")
            if p:
                axes[0].plot(*zip(*p), color=colors[a], linestyle=LINESTYLES[i % 4], marker="o", markersize=3,
                             label=r.name)
        axes[0].set_title("Held-out answer loss: the same held-out pairs for every arm (comparable)", fontsize=10)
        axes[0].set_ylabel("answer loss (nats/token)")
    ax = axes[-1]
    for a, i, r in runs:
        p = pts(r, "loss")
        if p:
            ax.plot(*zip(*p), color=colors[a], linestyle=LINESTYLES[i % 4], linewidth=1.5, label=r.name)
    ax.set_title("Training loss: each arm's own objective (FI: answer tokens; standard: every document token)\n"
                 "not comparable across arms", fontsize=9)
    ax.set_ylabel("training loss")
    _save(plt, fig, path, axes, "tokens seen")
    return True


def plot_checkpoints(arms: dict[str, list[Run]], keys: list[str], colors: dict[str, str], path: Path) -> bool:
    """Metrics of the saved checkpoints' evaluations against the training step."""
    if not keys:
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), dpi=100, squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        for a, rs in arms.items():
            for i, r in enumerate(rs):
                p = sorted((s, m[k]) for s, m in r.checkpoints.items() if k in m)
                if p:
                    ax.plot(*zip(*p), color=colors[a], linestyle=LINESTYLES[i % 4], marker="o", label=r.name)
        ax.set_title(k, fontsize=9)
    _save(plt, fig, path, axes[:, 0], "step")
    return True


def _wrap(title: str, width: int = 44) -> str:
    """A subplot title on lines that fit its axis (long lm-eval metric names would run into the next one)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width)) or title
