"""The report: every metric of every run in one table, all runs' loss-vs-tokens curves in one plot, eval
bar charts and head-to-head win rates, as ``report.md`` + ``report.html`` + PNGs (and to W&B when enabled).

A run is found from any of: an experiment directory (``runs/<exp>`` with ``train/<arm>`` and/or
``eval/<arm>``: one run per arm), a train arm directory (``train/<arm>``, with ``logs/metrics.csv``) or an
eval arm directory (``eval/<arm>``, with ``results.json``); the sibling of each is picked up when present.
The report reads only files: ``logs/metrics.csv``, ``summary.json``, ``results.json``.
"""
from __future__ import annotations

import csv
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout, TrainDir

LOSS_COLUMNS = ("step", "tokens", "loss")
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class ReportConfig:
    run_dirs: list[str] = field(default_factory=list)
    out: str = ""                   # '' = <first experiment>/report
    title: str = "fitrain report"
    wandb: bool = False             # log the table and the images to W&B
    wandb_project: str = "fitrain"
    wandb_mode: str = ""            # '' = W&B's default (WANDB_MODE); online | offline | disabled


@dataclass
class Run:
    name: str
    train_dir: Path | None = None
    eval_dir: Path | None = None
    metrics: dict = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)   # rows of metrics.csv (floats or None)
    checkpoints: dict = field(default_factory=dict)   # step -> metrics of eval/<arm>/checkpoints/step-*/


# ------------------------------------------------------------------------------------------- discovery
def discover(run_dirs: list[str | Path]) -> list[Run]:
    runs: list[Run] = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise FitrainError(f"run directory not found: {d}")
        exp, as_train = RunLayout(d), TrainDir(d)
        if (d / "train").is_dir() or (d / "eval").is_dir():
            arms = sorted(set(exp.train_arms()) | set(exp.eval_arms()))
            prefix = f"{d.name}/" if len(run_dirs) > 1 else ""
            runs += [_run(prefix + a, exp.train(a).root, exp.eval(a)) for a in arms]
        elif as_train.metrics_csv.is_file() or as_train.summary.is_file():
            parent = as_train.experiment() or RunLayout(d.parent.parent)
            runs.append(_run(d.name, d, parent.eval(d.name)))
        elif (d / "results.json").is_file():
            runs.append(_run(d.name, RunLayout(d.parent.parent).train(d.name).root, d))
        else:
            raise FitrainError(f"{d} is not a run: expected an experiment directory (train/, eval/), a train "
                               "directory (logs/metrics.csv) or an eval directory (results.json)")
    if not runs:
        raise FitrainError(f"no runs found in {[str(x) for x in run_dirs]}")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        for i, r in enumerate(runs):
            r.name = f"{i}:{r.name}"
    return runs


def _run(name: str, train_dir: Path, eval_dir: Path) -> Run:
    return Run(name, train_dir if train_dir.is_dir() else None, eval_dir if eval_dir.is_dir() else None)


def _results(p: Path) -> dict:
    try:
        res = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FitrainError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(res, dict):
        raise FitrainError(f"{p}: expected a flat {{metric: value}} object")
    return {k: v for k, v in res.items() if _is_num(v)}


def load_run(run: Run, rejects: Rejects) -> Run:
    if run.eval_dir is not None:
        if (run.eval_dir / "results.json").is_file():
            run.metrics.update(_results(run.eval_dir / "results.json"))
        for p in sorted((run.eval_dir / "checkpoints").glob("*/results.json")):
            m = re.search(r"step-(\d+)", p.parent.name)
            if m:
                run.checkpoints[int(m.group(1))] = _results(p)
            else:
                rejects.add("checkpoint_eval_without_step", str(p.parent))
    if run.train_dir is not None:
        s = TrainDir(run.train_dir).summary
        if s.is_file():
            try:
                summ = json.loads(s.read_text())
            except json.JSONDecodeError as e:
                raise FitrainError(f"{s}: not valid JSON ({e})") from None
            run.metrics.update({f"train/{k}": v for k, v in summ.items() if _is_num(v)})
        m = TrainDir(run.train_dir).metrics_csv
        if m.is_file():
            run.curve = read_metrics_csv(m, rejects)
    return run


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_metrics_csv(path: Path, rejects: Rejects) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in LOSS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise FitrainError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
        rows = []
        for i, row in enumerate(reader, 2):
            try:
                rows.append({k: (float(v) if v not in ("", None) else None) for k, v in row.items() if k})
            except ValueError as e:
                rejects.add("metrics_csv_bad_row", f"{path}:{i}", str(e))
    return rows


# ---------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(runs: list[Run], path: Path) -> bool:
    drawn = [r for r in runs if any(row.get("loss") is not None and row.get("tokens") is not None for row in r.curve)]
    if not drawn:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for i, r in enumerate(runs):
        c = COLORS[i % len(COLORS)]
        pts = [(row["tokens"], row["loss"]) for row in r.curve if row.get("loss") is not None
               and row.get("tokens") is not None]
        if pts:
            ax.plot(*zip(*pts), color=c, linewidth=2, label=f"{r.name} train")
        val = [(row["tokens"], row["val_loss"]) for row in r.curve if row.get("val_loss") is not None
               and row.get("tokens") is not None]
        if val:
            ax.plot(*zip(*val), color=c, linestyle="--", marker="o", label=f"{r.name} val")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss")
    ax.set_title("Loss vs tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def headline_metrics(metrics: dict) -> list[str]:
    """The metrics worth a bar: scores, not counts, standard errors or training bookkeeping."""
    keep = []
    for k in metrics:
        leaf = k.rsplit("/", 1)[-1]
        if k.startswith(("train/", "decontamination/", "pairwise/")) or "stderr" in leaf or leaf.endswith("_se"):
            continue
        if leaf.startswith("n_") or leaf in ("n", "wins", "ties", "losses", "inconsistent"):
            continue
        keep.append(k)
    return sorted(keep)


def plot_bars(runs: list[Run], path: Path) -> bool:
    keys = sorted({k for r in runs for k in headline_metrics(r.metrics)})
    if not keys:
        return False
    families: dict[str, list[str]] = {}
    for k in keys:
        families.setdefault(k.split("/", 1)[0], []).append(k)
    plt = _plt()
    fig, axes = plt.subplots(len(families), 1, figsize=(max(6, 1.2 * max(map(len, families.values())) + 3),
                                                         3.2 * len(families)), dpi=100, squeeze=False)
    width = 0.8 / len(runs)
    for ax, (fam, ks) in zip(axes[:, 0], sorted(families.items())):
        for i, r in enumerate(runs):
            vals = [r.metrics.get(k, float("nan")) for k in ks]
            ax.bar([j + (i - (len(runs) - 1) / 2) * width for j in range(len(ks))], vals, width,
                   color=COLORS[i % len(COLORS)], label=r.name)
        ax.set_xticks(range(len(ks)))
        ax.set_xticklabels([k.split("/", 1)[1] for k in ks], rotation=20, ha="right", fontsize=8)
        ax.set_title(fam)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_checkpoints(runs: list[Run], path: Path, max_metrics: int = 6) -> bool:
    """Headline metrics of the saved checkpoints' evaluations against the training step."""
    keys = sorted({k for r in runs for m in r.checkpoints.values() for k in headline_metrics(m)})[:max_metrics]
    if not keys:
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), dpi=100, squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        for i, r in enumerate(runs):
            pts = sorted((s, m[k]) for s, m in r.checkpoints.items() if k in m)
            if pts:
                ax.plot(*zip(*pts), color=COLORS[i % len(COLORS)], marker="o", label=r.name)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def head_to_head_rows(runs: list[Run]) -> list[tuple[str, str, float, float, dict]]:
    rows = []
    for r in runs:
        for k, v in sorted(r.metrics.items()):
            if k.startswith("pairwise/") and k.endswith("/win_rate"):
                base = k[len("pairwise/"):-len("/win_rate")]
                pre = f"pairwise/{base}"
                counts = {c: r.metrics.get(f"{pre}/{c}") for c in ("wins", "ties", "losses", "n")}
                rows.append((r.name, base, float(v), float(r.metrics.get(f"{pre}/win_rate_se", float("nan"))), counts))
    return rows


def plot_head_to_head(runs: list[Run], path: Path) -> bool:
    rows = head_to_head_rows(runs)
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.4 + 0.5 * len(rows)), dpi=100)
    names = [r.name for r in runs]
    for j, (name, base, wr, se, _) in enumerate(rows):
        ax.barh(j, 100 * wr, xerr=None if math.isnan(se) else 100 * se, capsize=4,
                color=COLORS[names.index(name) % len(COLORS)])
    ax.axvline(50, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{n} vs {b}" for n, b, *_ in rows])
    ax.set_xlim(0, 100)
    ax.set_xlabel("win rate % (ties count half; bars: ±1 standard error)")
    ax.set_title("Head-to-head")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------- writing
def checkpoint_rows(runs: list[Run]) -> tuple[list[str], list[tuple[str, int, dict]]]:
    keys = sorted({k for r in runs for m in r.checkpoints.values() for k in headline_metrics(m)})
    return keys, [(r.name, st, m) for r in runs for st, m in sorted(r.checkpoints.items())]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4g}"
    return f"{int(v):,}"


def make_report(run_dirs: list[str | Path], out_dir: str | Path | None = None, cfg: ReportConfig | None = None
                ) -> Path:
    """Write report.md, report.html and the PNGs into ``out_dir``; returns the path of report.md."""
    cfg = cfg or ReportConfig()
    rejects = Rejects()
    runs = [load_run(r, rejects) for r in discover(run_dirs)]
    out = Path(out_dir or cfg.out or Path(run_dirs[0]) / "report")
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for fname, fn, caption in (("loss_vs_tokens.png", plot_loss, "Loss vs tokens"),
                               ("eval_bars.png", plot_bars, "Evaluation scores"),
                               ("head_to_head.png", plot_head_to_head, "Head-to-head win rates"),
                               ("checkpoint_evals.png", plot_checkpoints, "Evaluations of saved checkpoints")):
        if fn(runs, out / fname):
            images[fname] = caption
    keys = sorted({k for r in runs for k in r.metrics})
    names = [r.name for r in runs]
    h2h = head_to_head_rows(runs)

    md = [f"# {cfg.title}", "", "Runs: " + ", ".join(
        f"`{r.name}` ({', '.join(str(p) for p in (r.train_dir, r.eval_dir) if p)})" for r in runs), ""]
    if keys:
        md += ["## Metrics", "", "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        md += [f"| {k} | " + " | ".join(_fmt(r.metrics.get(k)) for r in runs) + " |" for k in keys]
        md.append("")
    else:
        md += ["No metrics found (no results.json or summary.json in these runs).", ""]
    if h2h:
        md += ["## Head-to-head", "", "| run | baseline | win rate | ± SE | wins | ties | losses | n |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {n} | {b} | {100 * wr:.1f}% | {100 * se:.1f} | " + " | ".join(_fmt(c[x]) for x in
               ("wins", "ties", "losses", "n")) + " |" for n, b, wr, se, c in h2h]
        md.append("")
    ck_keys, ck_rows = checkpoint_rows(runs)
    if ck_rows:
        md += ["## Evaluations of saved checkpoints", "", "| run | step | " + " | ".join(ck_keys) + " |",
               "|---|---|" + "---|" * len(ck_keys)]
        md += [f"| {n} | {st} | " + " | ".join(_fmt(m.get(k)) for k in ck_keys) + " |" for n, st, m in ck_rows]
        md.append("")
    for fname, caption in images.items():
        md += [f"## {caption}", "", f"![{caption}]({fname})", ""]
    if rejects.total:
        md += ["## Notes", "", f"Unreadable rows skipped: {rejects.summary()}", ""]
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text(_html(cfg.title, runs, keys, h2h, images, rejects))
    if cfg.wandb:
        _log_wandb(cfg, runs, keys, out, images)
    return out / "report.md"


def _html(title: str, runs: list[Run], keys: list[str], h2h, images: dict, rejects: Rejects) -> str:
    e = html.escape
    head = "".join(f"<th>{e(r.name)}</th>" for r in runs)
    body = "".join(f"<tr><td>{e(k)}</td>" + "".join(f"<td>{e(_fmt(r.metrics.get(k)))}</td>" for r in runs) + "</tr>"
                   for k in keys)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>",
             f"</head><body><h1>{e(title)}</h1>"]
    if keys:
        parts.append(f"<h2>Metrics</h2><table><tr><th>metric</th>{head}</tr>{body}</table>")
    if h2h:
        rows = "".join(f"<tr><td>{e(n)}</td><td>{e(b)}</td><td>{100 * wr:.1f}%</td><td>{100 * se:.1f}</td>"
                       + "".join(f"<td>{e(_fmt(c[x]))}</td>" for x in ("wins", "ties", "losses", "n")) + "</tr>"
                       for n, b, wr, se, c in h2h)
        parts.append("<h2>Head-to-head</h2><table><tr><th>run</th><th>baseline</th><th>win rate</th><th>± SE</th>"
                     f"<th>wins</th><th>ties</th><th>losses</th><th>n</th></tr>{rows}</table>")
    for fname, caption in images.items():
        parts.append(f"<h2>{e(caption)}</h2><img src='{e(fname)}' alt='{e(caption)}'>")
    if rejects.total:
        parts.append(f"<p>Unreadable rows skipped: {e(rejects.summary())}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _log_wandb(cfg: ReportConfig, runs: list[Run], keys: list[str], out: Path, images: dict) -> None:
    import wandb

    kw = {"mode": cfg.wandb_mode} if cfg.wandb_mode else {}
    try:
        run = wandb.init(project=cfg.wandb_project, name=cfg.title, job_type="report", dir=str(out), **kw)
    except Exception as e:  # no credentials, no network, ...
        raise FitrainError(f"W&B logging failed ({type(e).__name__}: {e}); the report files are written in {out}. "
                           "Log in (`wandb login`) or set WANDB_MODE=offline") from None
    try:
        table = wandb.Table(columns=["metric"] + [r.name for r in runs],
                            data=[[k] + [r.metrics.get(k) for r in runs] for k in keys])
        run.log({"report/metrics": table, **{f"report/{Path(f).stem}": wandb.Image(str(out / f)) for f in images}})
    finally:
        run.finish()
