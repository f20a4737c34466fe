"""The report's answer first (README "The report"): the Verdict section's sentences, chance levels of the
multiple-choice metrics, each arm's passes over its own data, the held-out-loss trend that warns of
overfitting, and the final training loss as a token-weighted mean of the last steps (from ``metrics.csv``).

* a verdict sentence per metric and arm, direction-aware: "standard beats fi on held-out answer loss by
  0.255 nats [0.004, 0.412], p = 0.047"; "no detectable difference" when the 95% interval of the difference
  covers 0;
* chance: the expected accuracy of a uniform guess over each compared item's options (the shipped lm-eval
  tasks, whose items are in eval/tasks); an arm whose interval covers chance is flagged;
* passes: tokens trained / tokens of the arm's prepared data (``prepared/<arm>/manifest.json``);
* overfitting: the held-out answer loss rose over the last part of training (the last half of its
  evaluations, by tokens seen): a positive least-squares slope there and a final value above the run's best.
"""
from __future__ import annotations

import json
import math

from fitrain_eval import comparisons as cmp
from fitrain_eval.report_data import Run

LAST_FRACTION = 0.1      # final loss: the last 10% of the logged steps ...
LAST_MIN_ROWS = 5        # ... and at least 5 of them
RISE_TOLERANCE = 0.005   # a final held-out loss more than 0.5% above the best counts as a rise


# -------------------------------------------------------------------------------------------- verdict
def _unit(metric: str) -> str:
    if cmp.scale(metric) == 100:
        return " points"
    return " nats" if "loss" in metric.rsplit("/", 1)[-1] else ""


def _num(x: float, metric: str) -> str:
    k = cmp.scale(metric)
    return f"{x * k:.1f}" if k == 100 else f"{x:.3f}"


def verdict_sentence(r: cmp.MetricResult, a: cmp.ArmResult, ref: str) -> str:
    """One sentence on ``a`` against ``ref`` on metric ``r`` (``a.diff`` is arm − ref)."""
    d = a.diff
    p = "p < 0.001" if d.p is not None and d.p < 0.001 else (f"p = {d.p:.3f}" if d.p is not None else "")
    if d.lo <= 0 <= d.hi:
        return (f"No detectable difference between {a.arm} and {ref} on {r.label}: {a.arm} − {ref} = "
                f"{_num(d.value, r.metric)}{_unit(r.metric)} [{_num(d.lo, r.metric)}, {_num(d.hi, r.metric)}]"
                + (f", {p}" if p else "") + ".")
    sign = 1 if r.higher_is_better else -1   # gain: positive when the arm is better
    g, glo, ghi = sign * d.value, min(sign * d.lo, sign * d.hi), max(sign * d.lo, sign * d.hi)
    win, lose, g, glo, ghi = (a.arm, ref, g, glo, ghi) if g > 0 else (ref, a.arm, -g, -ghi, -glo)
    how = "lower" if not r.higher_is_better else "higher"
    return (f"{win} beats {lose} on {r.label} by {_num(g, r.metric)}{_unit(r.metric)} "
            f"[{_num(glo, r.metric)}, {_num(ghi, r.metric)}]" + (f", {p}" if p else "") + f" ({how} is better).")


def chance_flags(r: cmp.MetricResult, chance: float | None) -> list[str]:
    """A sentence per arm whose interval covers the chance level."""
    if chance is None:
        return []
    out = []
    for a in r.arms:
        lo, hi = (a.lo, a.hi) if a.lo is not None else (a.value, a.value)
        if lo <= chance <= hi:
            out.append(f"{a.arm} on {r.label}: {_num(a.value, r.metric)} [{_num(lo, r.metric)}, {_num(hi, r.metric)}]"
                       f" covers chance ({_num(chance, r.metric)}): no signal above guessing.")
    return out


def verdict(results: list[cmp.MetricResult], ref: str, chances: dict[str, float]) -> list[str]:
    """The Verdict section's sentences: every paired metric's comparison of every arm with ``ref``."""
    lines = []
    for r in results:
        for a in r.arms:
            if a.diff is not None:
                lines.append(verdict_sentence(r, a, ref))
        lines += chance_flags(r, chances.get(r.metric))
    return lines


def seeds_note(arms: dict[str, list[Run]]) -> str | None:
    if all(len(rs) <= 1 for rs in arms.values()):
        return ("Each arm has one seed: the intervals cover the sampling of evaluation items only, not the "
                "randomness of training; a difference can change with another seed (train more seeds: seeds=[0,1,2]).")
    return None


# --------------------------------------------------------------------------------------------- chance
def _task_choices(task: str) -> list[int] | None:
    """Number of options per item of a shipped task (eval/tasks/<task>.yaml's data file), by item index."""
    from fitrain_eval.harness import TASKS_DIR, read_task_yaml

    p = TASKS_DIR / f"{task}.yaml"
    if not p.is_file():
        return None
    data_file = (read_task_yaml(p).get("dataset_kwargs") or {}).get("data_file")
    if not data_file or not (TASKS_DIR / data_file).is_file():
        return None
    return [len(json.loads(x)["choices"]) for x in (TASKS_DIR / data_file).read_text().splitlines() if x.strip()]


def chance_level(metric: str, arms: dict[str, list[Run]]) -> float | None:
    """Uniform guessing's expected accuracy on the compared items of a shipped multiple-choice task's
    ``acc``/``acc_norm`` (None for any other metric)."""
    from fitrain_eval.items import ItemScores

    parts = metric.split("/")
    if len(parts) != 3 or parts[0] not in ("lm_eval", "lm_eval_instruction") or parts[2] not in ("acc", "acc_norm"):
        return None
    n = _task_choices(parts[1])
    if not n:
        return None
    ids = next((ItemScores.load(r.items[metric]).scored() for rs in arms.values() for r in rs if metric in r.items),
               None)
    idx = [int(i) for i in ids if str(i).isdigit() and int(i) < len(n)] if ids else list(range(len(n)))
    return sum(1 / n[i] for i in idx) / len(idx) if idx else None


# ----------------------------------------------------------------------------------- training curves
def final_loss(curve: list[dict]) -> tuple[float, int] | None:
    """The token-weighted mean training loss of the last steps (``LAST_FRACTION`` of the logged steps, at least
    ``LAST_MIN_ROWS``), each row weighted by the loss tokens since the previous row (``supervised_tokens``
    where logged, else ``tokens``); a row without a finite loss (a step with no loss tokens) is left out.
    Returns (mean, rows used)."""
    key = "supervised_tokens" if any(r.get("supervised_tokens") is not None for r in curve) else "tokens"
    rows, prev = [], 0.0
    for r in curve:
        if r.get(key) is None:
            continue
        w, prev = r[key] - prev, r[key]
        if r.get("loss") is not None and math.isfinite(r["loss"]) and w > 0:
            rows.append((r["loss"], w))
    if not rows:
        return None
    last = rows[-min(len(rows), max(LAST_MIN_ROWS, round(LAST_FRACTION * len(rows)))):]
    return sum(v * w for v, w in last) / sum(w for _, w in last), len(last)


def heldout_rise(curve: list[dict]) -> tuple[float, float, float, float] | None:
    """(best, tokens at best, final, final tokens) when the held-out loss rose over the last half of its
    evaluations; None when it did not (or with fewer than 3 evaluations)."""
    pts = [(r["tokens"], r["val_loss"]) for r in curve if r.get("val_loss") is not None and r.get("tokens") is not None
           and math.isfinite(r["val_loss"])]
    if len(pts) < 3:
        return None
    tail = pts[len(pts) // 2:]
    mx = sum(t for t, _ in tail) / len(tail)
    my = sum(v for _, v in tail) / len(tail)
    slope = sum((t - mx) * (v - my) for t, v in tail)
    best_t, best = min(pts, key=lambda p: p[1])
    last_t, last = pts[-1]
    if slope > 0 and last > best * (1 + RISE_TOLERANCE):
        return best, best_t, last, last_t
    return None


def prepared_tokens(run: Run) -> int | None:
    """Tokens of the run's arm's prepared data (``<experiment>/prepared/<arm>/manifest.json``)."""
    if run.train_dir is None:
        return None
    exp = run.train_dir.parent.parent
    m = exp / "prepared" / run.arm.rsplit("/", 1)[-1] / "manifest.json"
    try:
        man = json.loads(m.read_text())
    except (OSError, ValueError):
        return None
    n = (man.get("counts") or {}).get("total_tokens") if isinstance(man, dict) else None
    return int(n) if isinstance(n, (int, float)) and n > 0 else None
