"""The report: did the FineInstructions arm win, by how much, and how sure -- as ``report.md`` +
``report.html`` + PNGs + ``comparisons.json`` (and to W&B when enabled).

* **Verdict** first (fitrain_eval.report_verdict): one sentence per metric and arm, direction-aware, "no
  detectable difference" when the interval covers 0; arms at chance flagged; a warning per arm whose held-out
  loss rose at the end; a note when one seed per arm leaves only the items' sampling in the intervals.
* **What each run trained on** (fitrain_eval.report_arms): what each arm trains on, tokens trained, passes
  over its own data, the final training loss as the token-weighted mean of the last steps.
* **Headline** (the layout of the paper's Table 1): arms as rows, benchmarks as columns; each cell the arm's
  score (mean ± sd over seeds when there are several) with its 95% interval and, for every arm but the
  reference (``reference``, default ``fi``), its difference to the reference with a 95% paired-bootstrap
  interval and a p-value; the last column is the reference arm's head-to-head win rate against that arm.
* **Head-to-head**: win rates with intervals and p-values (against 50%), AlpacaEval's length-controlled win
  rate, wins/ties/losses.
* **Paired comparisons**: every metric with per-item scores (judged benchmarks, lm-eval tasks' per-sample
  metrics, held-out answer loss), the same columns in long form.
* **Benchmarks**: items compared, items left out for every arm (failed for some run, not evaluated by
  every run, contaminated) and failures per run, judge model, prompt version and rules, and decontamination
  beside the scores (``exclude_contaminated`` scores without the flagged items).
* plots (fitrain_eval.report_plots), every metric on its own axis with error bars; the held-out answer loss of
  every arm on one axis, training losses apart.

The numbers and the method are fitrain_eval.comparisons and fitrain_eval.stats; the inputs
fitrain_eval.report_data (files only).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.checks import POSITIVE, SEED, check_fields, fail, interval, one_of
from fitrain.core.errors import FitrainError
from fitrain_eval import comparisons as cmp, report_verdict as verdict
from fitrain_eval.report_arms import arms_section
from fitrain_eval.report_data import Run, by_arm, contaminated_ids, data_gen_table, discover, load_run

METHOD = ("Intervals are 95% percentile intervals of a paired bootstrap over items ({B} replicates, seed {seed}): "
          "each replicate resamples the items once for every arm (within MT-Bench-101's tasks), and each arm's "
          "seeds independently; an arm's per-item score is the mean over the drawn seeds. Δ is arm − {ref}; p is the "
          "two-sided bootstrap p-value of Δ = 0 (for a win rate, of 50%), the inversion of the percentile "
          "interval (p < 0.05 exactly when the 95% interval excludes 0). Only items that every run scored are "
          "compared: an item that failed for any run is left out for all and counted (Benchmarks table).")


@dataclass
class ReportConfig:
    run_dirs: list[str] = field(default_factory=list)
    out: str = ""                   # '' = <first experiment>/report
    title: str = "fitrain report"
    reference: str = "fi"           # the arm every other arm is compared with
    bootstrap: int = 10000          # bootstrap replicates
    confidence: float = 0.95
    seed: int = 0
    headline: list[str] = field(default_factory=list)  # metrics of the headline table ([] = the benchmarks found)
    exclude_contaminated: bool = False  # score without the items decontamination flagged
    wandb: bool = False             # log the tables and the images to W&B
    wandb_project: str = "fitrain"
    wandb_mode: str = ""            # '' = W&B's default (WANDB_MODE); online | offline | disabled

    def __post_init__(self) -> None:
        check_fields(self, bootstrap=POSITIVE, confidence=interval("(0, 1)"), seed=SEED,
                     wandb_mode=one_of("", "online", "offline", "disabled"))
        seen: dict[Path, str] = {}
        for d in self.run_dirs:
            same = seen.setdefault(Path(d).resolve(), d)
            if same is not d:
                fail("run_dirs", f"name one directory twice ('{same}' and '{d}'): each run counts once")


# --------------------------------------------------------------------------------------- formatting
def fmt_value(v: float | None, k: float = 1.0, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    x = v * k
    s = f"{x:+.1f}" if k == 100 and signed else f"{x:.1f}" if k == 100 else (
        f"{x:+.3f}" if signed else (f"{x:.4g}" if abs(x) >= 1000 else f"{x:.3f}"))
    return s.replace("-", "−")


def fmt_p(p: float | None, prefix: str = "") -> str:
    """``<0.001`` / ``0.023`` (with ``prefix="p"``: ``p<0.001`` / ``p=0.023``)."""
    if p is None:
        return "–"
    return (f"{prefix}<0.001" if p < 0.001 else f"{prefix}{'=' if prefix else ''}{p:.3f}")


def _interval(lo, hi, k: float, signed: bool = False) -> str:
    return "–" if lo is None else f"[{fmt_value(lo, k, signed)}, {fmt_value(hi, k, signed)}]"


def _value(a: cmp.ArmResult, k: float) -> str:
    """The value, with ``± sd`` over seeds when there are several."""
    if a.sd is None:
        return fmt_value(a.value, k)
    return fmt_value(a.value, k) + " ± " + fmt_value(a.sd, k)  # the sd in the value's own decimals


def _count(v) -> str:
    return "–" if v is None else (f"{int(v):,}" if float(v).is_integer() else f"{v:.4g}")


# ------------------------------------------------------------------------------------------ blocks
def headline_table(results: list[cmp.MetricResult], h2h: list[cmp.HeadToHead], arms: dict[str, list[Run]],
                   headline: list[str], ref: str, chances: dict[str, float] | None = None
                   ) -> tuple[list[str], list[list[str]]]:
    by_metric = {r.metric: r for r in results}
    chances = chances or {}
    cols = [m for m in headline if m in by_metric]
    wins = {h.baseline: h for h in h2h if h.model_arm == ref}
    head = ["arm"] + [f"{cmp.label(m)}{' (%)' if cmp.scale(m) == 100 else ''}"
                      + ("" if by_metric[m].higher_is_better else " ↓")
                      + (f" (chance {fmt_value(chances[m], cmp.scale(m))})" if m in chances else "") for m in cols]
    if wins:
        head.append(f"{ref}'s win rate vs this arm (%)")
    rows = []
    for arm, rs in arms.items():
        row = [arm + (f" ({len(rs)} seeds)" if len(rs) > 1 else "")]
        for m in cols:
            a, k = by_metric[m].arm(arm), cmp.scale(m)
            if a is None:
                row.append("–")
                continue
            cell = _value(a, k) + (f" {_interval(a.lo, a.hi, k)}" if a.lo is not None else "")
            if m in chances and (a.lo if a.lo is not None else a.value) <= chances[m] <= (
                    a.hi if a.hi is not None else a.value):
                cell += " ⚠ at chance"
            if a.diff is not None:
                cell += f"<br>Δ {fmt_value(a.diff.value, k, True)} {_interval(a.diff.lo, a.diff.hi, k, True)}, " \
                        f"{fmt_p(a.diff.p, 'p')}"
            row.append(cell)
        if wins:
            h = wins.get(arm)
            row.append("–" if h is None else f"{fmt_value(h.estimate.value, 100)} "
                       f"{_interval(h.estimate.lo, h.estimate.hi, 100)}, {fmt_p(h.estimate.p, 'p')}"
                       + (f"<br>LC {_lc(h)}" if h.lc is not None else ""))
        rows.append(row)
    return head, rows


def comparison_table(results: list[cmp.MetricResult], ref: str, chances: dict[str, float] | None = None
                     ) -> tuple[list[str], list[list[str]]]:
    chances = chances or {}
    head = ["metric", "arm", "seeds", "value", "95% CI", f"Δ vs {ref}", "95% CI of Δ", "p", "items", "excluded",
            "chance"]
    rows = []
    for r in results:  # headline metrics first (all_results' order), then the others by name
        if not r.paired:
            continue
        k = cmp.scale(r.metric)
        for a in r.arms:
            d = a.diff
            rows.append([r.label, a.arm, str(len(a.runs)), _value(a, k), _interval(a.lo, a.hi, k),
                         fmt_value(d.value, k, True) if d else "–", _interval(d.lo, d.hi, k, True) if d else "–",
                         fmt_p(d.p) if d else "–", f"{r.n_items:,}", _excluded(r),
                         fmt_value(chances[r.metric], k) if r.metric in chances else "–"])
    return head, rows


def _excluded(r: cmp.MetricResult) -> str:
    return ", ".join(f"{v} {k}" for k, v in r.excluded.items()) or "0"


def _lc(h: cmp.HeadToHead) -> str:
    return fmt_value(h.lc, 100) + (f" ± {fmt_value(h.lc_se, 100)}" if h.lc_se is not None else "")


def h2h_table(h2h: list[cmp.HeadToHead]) -> tuple[list[str], list[list[str]]]:
    head = ["model", "vs", "seed pairs", "win rate (%)", "95% CI", "p (vs 50%)", "length-controlled (%)",
            "wins / ties / losses", "items", "excluded", "judge", "rules"]
    rows = [[h.model_arm, h.baseline, str(len(h.pairs)), fmt_value(h.estimate.value, 100),
             _interval(h.estimate.lo, h.estimate.hi, 100), fmt_p(h.estimate.p),
             "–" if h.lc is None else _lc(h) + (f" ({', '.join(h.info['lc_glm'])})" if h.info.get("lc_glm") else ""),
             f"{h.counts['wins']} / {h.counts['ties']} / {h.counts['losses']}", f"{h.n_items:,}", str(h.excluded),
             ", ".join(h.info.get("judge_model", ["–"])), ", ".join(h.info.get("rules", ["–"]))] for h in h2h]
    return head, rows


def benchmarks_table(results: list[cmp.MetricResult], flagged: dict) -> tuple[list[str], list[list[str]]]:
    head = ["metric", "items compared", "left out for every arm", "failed per run", "judge", "prompts (version)",
            "decontamination: compared items flagged"]
    rows = []
    for r in results:
        if not r.paired:
            continue
        failed = ", ".join(f"{run} {n}" for a in r.arms for run, n in a.failed.items() if n) or "0"
        prompts = ", ".join(r.info.get("rules", [])) + (f" ({', '.join(r.info['prompt_version'])})"
                                                        if r.info.get("prompt_version") else "")
        dec = "not checked" if r.contaminated is None else f"{r.contaminated} of {r.n_items}"
        rows.append([r.label, f"{r.n_items:,}", _excluded(r), failed, ", ".join(r.info.get("judge_model", ["–"])),
                     prompts or "–", dec])
    return head, rows


def metrics_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    keys = sorted({k for r in runs for k in r.metrics})
    return ["metric"] + [r.name for r in runs], [[k] + [_count(r.metrics.get(k)) for r in runs] for k in keys]


def checkpoint_table(arms: dict[str, list[Run]]) -> tuple[list[str], tuple[list[str], list[list[str]]]]:
    keys = sorted({k for rs in arms.values() for r in rs for m in r.checkpoints.values() for k in m
                   if not k.rsplit("/", 1)[-1].startswith("n_") and "stderr" not in k})[:8]
    rows = [[r.name, str(st)] + [_count(m.get(k)) for k in keys]
            for rs in arms.values() for r in rs for st, m in sorted(r.checkpoints.items())]
    return keys, (["run", "step"] + keys, rows)


# ------------------------------------------------------------------------------------------ rendering
def _md_table(head, rows) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def _html_table(head, rows) -> str:
    e = html.escape
    cell = lambda c: e(c).replace("&lt;br&gt;", "<br>")  # noqa: E731
    return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def render(title: str, blocks: list[tuple]) -> tuple[str, str]:
    md, parts = [f"# {title}", ""], []
    for b in blocks:
        kind = b[0]
        if kind == "h2":
            md += [f"## {b[1]}", ""]
            parts.append(f"<h2>{html.escape(b[1])}</h2>")
        elif kind == "p":
            md += [b[1], ""]
            parts.append(f"<p>{html.escape(b[1])}</p>")
        elif kind == "ul":
            md += [f"- {x}" for x in b[1]] + [""]
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            md += _md_table(b[1], b[2])
            parts.append(_html_table(b[1], b[2]))
        elif kind == "img":
            md += [f"![{b[2]}]({b[1]})", ""]
            parts.append(f"<p><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'></p>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>" + "\n".join(parts) + "</body></html>")
    return "\n".join(md), page


# ------------------------------------------------------------------------------------------ the report
def _nearest(name: str, names) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def make_report(run_dirs: list[str | Path], out_dir: str | Path | None = None, cfg: ReportConfig | None = None
                ) -> Path:
    """Write report.md, report.html, comparisons.json and the PNGs into ``out_dir``; returns report.md."""
    from fitrain.core.io import write_json
    from fitrain_eval import report_plots as plots

    cfg = cfg or ReportConfig()
    rejects = Rejects()
    runs = [load_run(r, rejects) for r in discover(run_dirs)]
    arms = by_arm(runs, cfg.reference)
    if cfg.reference not in arms:
        raise FitrainError(f"report: the reference arm '{cfg.reference}' is not among the arms {list(arms)}"
                           f"{_nearest(cfg.reference, arms)}; set reference=<arm>")
    headline = cmp.headline_metrics(arms, cfg.headline)
    unknown = [m for m in cfg.headline if m not in headline]
    if unknown:
        known = cmp.headline_metrics(arms, [])
        raise FitrainError(f"report: headline metric '{unknown[0]}' is in no run{_nearest(unknown[0], known)}; the runs' "
                           f"headline metrics are {known}")
    for r in runs:  # the last step alone is noise (a budget-cut step may hold a few tokens): the last steps' mean
        fl = verdict.final_loss(r.curve)
        if fl is not None:
            r.metrics["train/final_loss"] = fl[0]
    out = Path(out_dir or cfg.out or Path(run_dirs[0]) / "report")
    out.mkdir(parents=True, exist_ok=True)
    flagged = contaminated_ids(runs)
    results, h2h = cmp.all_results(runs, arms, cfg.reference, flagged, cfg.exclude_contaminated, cfg.bootstrap,
                                   cfg.seed, cfg.confidence, headline)
    colors = plots.arm_colors(list(arms))
    by_metric = {r.metric: r for r in results}
    chances = {m: c for m in by_metric if (c := verdict.chance_level(m, arms)) is not None}
    ck_keys, ck_table = checkpoint_table(arms)
    images = {}
    for fname, ok, caption in (
            ("scores.png", lambda p: plots.plot_scores([by_metric[m] for m in headline if m in by_metric], colors, p,
                                                        chances),
             "Headline scores with 95% intervals"),
            ("differences.png", lambda p: plots.plot_differences([by_metric[m] for m in headline if m in by_metric],
                                                                 cfg.reference, colors, p),
             f"Differences to {cfg.reference} with 95% paired intervals"),
            ("head_to_head.png", lambda p: plots.plot_head_to_head(h2h, colors, p), "Head-to-head win rates"),
            ("loss_vs_tokens.png", lambda p: plots.plot_loss(arms, colors, p), "Loss vs tokens"),
            ("checkpoint_evals.png", lambda p: plots.plot_checkpoints(arms, ck_keys, colors, p),
             "Evaluations of saved checkpoints")):
        if ok(out / fname):
            images[fname] = caption

    lines = verdict.verdict(results, cfg.reference, chances)
    arm_head, arm_rows, warnings = arms_section(arms)
    note = verdict.seeds_note(arms)
    blocks: list[tuple] = [("h2", "Verdict"), ("ul", (lines or ["No paired comparison to make (one arm, or no "
                                                               "per-item scores)."]) + warnings
                                               + ([note] if note else []))]
    blocks += [("h2", "What each run trained on"), ("table", arm_head, arm_rows)]
    head, rows = headline_table(results, h2h, arms, headline, cfg.reference, chances)
    if len(head) > 1:
        blocks += [("h2", "Headline"), ("table", head, rows),
                   ("p", METHOD.format(B=cfg.bootstrap, seed=cfg.seed, ref=cfg.reference)
                    + (" Items flagged by decontamination are left out." if cfg.exclude_contaminated else ""))]
    if h2h:
        blocks += [("h2", "Head-to-head"), ("table", *h2h_table(h2h))]
    head, rows = comparison_table(results, cfg.reference, chances)
    if rows:
        blocks += [("h2", "Paired comparisons"), ("table", head, rows), ("h2", "Benchmarks"),
                   ("table", *benchmarks_table(results, flagged))]
    dec_rows = [[bench, str(d.get("checked", "–")), str(d.get("contaminated", "–")),
                 f"{100 * d.get('contaminated', 0) / d['checked']:.1f}%" if d.get("checked") else "–", r.name]
                for r in runs for bench, d in sorted(r.decontamination.items())]
    if dec_rows:
        blocks += [("h2", "Decontamination"), ("table", ["benchmark", "items checked", "contaminated", "fraction",
                                                         "found in"], dec_rows)]
    dg_head, dg_rows = data_gen_table(run_dirs)
    if dg_rows:
        blocks += [("h2", "Data generation"), ("table", dg_head, dg_rows)]
    for fname, caption in images.items():
        blocks += [("h2", caption), ("img", fname, caption)]
    blocks += [("h2", "All metrics per run"), ("table", *metrics_table(runs))] if any(r.metrics for r in runs) else \
        [("p", "No metrics found (no results.json or summary.json in these runs).")]
    if ck_table[1]:
        blocks += [("h2", "Evaluations of saved checkpoints"), ("table", *ck_table)]
    if rejects.total:
        blocks += [("h2", "Notes"), ("p", f"Unreadable rows skipped: {rejects.summary()}")]
    md, page = render(cfg.title, blocks)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(page)
    write_json(out / "comparisons.json", _to_json(results, h2h, cfg))
    if cfg.wandb:
        _log_wandb(cfg, comparison_table(results, cfg.reference), out, images)
    return out / "report.md"


def _to_json(results, h2h, cfg: ReportConfig) -> dict:
    import dataclasses

    def est(e):
        return e.to_dict() if e is not None else None

    return {"reference": cfg.reference, "bootstrap": cfg.bootstrap, "confidence": cfg.confidence, "seed": cfg.seed,
            "metrics": [{**{k: v for k, v in dataclasses.asdict(r).items() if k != "arms"},
                         "arms": [{**{k: v for k, v in dataclasses.asdict(a).items() if k != "diff"}, "diff": est(a.diff)}
                                  for a in r.arms]} for r in results],
            "head_to_head": [{**{k: v for k, v in dataclasses.asdict(h).items() if k != "estimate"},
                              "estimate": est(h.estimate)} for h in h2h]}


def _log_wandb(cfg: ReportConfig, table, out: Path, images: dict) -> None:
    import wandb

    from fitrain.core.errors import FitrainError

    kw = {"mode": cfg.wandb_mode} if cfg.wandb_mode else {}
    try:
        run = wandb.init(project=cfg.wandb_project, name=cfg.title, job_type="report", dir=str(out), **kw)
    except Exception as e:  # no credentials, no network, ...
        raise FitrainError(f"W&B logging failed ({type(e).__name__}: {e}); the report files are written in {out}. "
                           "Log in (`wandb login`) or set WANDB_MODE=offline") from None
    try:
        run.log({"report/paired_comparisons": wandb.Table(columns=table[0], data=table[1]),
                 **{f"report/{Path(f).stem}": wandb.Image(str(out / f)) for f in images}})
    finally:
        run.finish()
