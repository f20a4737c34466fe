"""What the report reads: runs found from directories, their metrics, curves, per-item score files and
decontamination findings. Only files are read (``logs/metrics.csv``, ``summary.json``, ``results.json``,
``items/*.jsonl``, ``decontamination.json``, ``eval/<run>/checkpoints/*/results.json``, and an experiment's
``data_gen/report.json``: which backend made the pairs and each stage's rows in, out and rejected).

A run is found from any of: an experiment directory (``runs/<exp>`` with ``train/<run>`` and/or
``eval/<run>``: one run per run id), a train run directory (``train/<run>``, with ``logs/metrics.csv``) or an
eval run directory (``eval/<run>``, with ``results.json``); the sibling of each is picked up when present.
Run ids are ``<arm>`` or ``<arm>.seed<k>`` (fitrain.core.layout.run_id); runs are grouped by arm. An eval
directory that holds only decontamination results (no model was evaluated) is a data run: its findings
are used, it is not an arm.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout, TrainDir, parse_run_id

LOSS_COLUMNS = ("step", "tokens", "loss")


@dataclass
class Run:
    name: str
    train_dir: Path | None = None
    eval_dir: Path | None = None
    metrics: dict = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)   # rows of metrics.csv (floats or None)
    checkpoints: dict = field(default_factory=dict)   # step -> metrics of eval/<run>/checkpoints/step-*/
    items: dict = field(default_factory=dict)         # metric -> items/*.jsonl path
    decontamination: dict = field(default_factory=dict)  # benchmark -> {"ids": [...], "checked": n, ...}

    @property
    def arm(self) -> str:
        """The run's arm (``fi`` for ``fi.seed2``); runs of several experiments keep their prefix (``exp/fi``)."""
        prefix, _, last = self.name.rpartition("/")
        return (f"{prefix}/" if prefix else "") + parse_run_id(last)[0]

    @property
    def seed(self) -> int | None:
        return parse_run_id(self.name.rsplit("/", 1)[-1])[1]

    @property
    def is_data_only(self) -> bool:
        """An eval dir with decontamination results only (no model evaluated, no training run)."""
        return self.train_dir is None and bool(self.metrics) and not self.items and all(
            k.startswith("decontamination/") for k in self.metrics)


# ------------------------------------------------------------------------------------------- discovery
def discover(run_dirs: list[str | Path]) -> list[Run]:
    runs: list[Run] = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise FitrainError(f"run directory not found: {d}")
        exp, as_train = RunLayout(d), TrainDir(d)
        if (d / "train").is_dir() or (d / "eval").is_dir():
            names = sorted(set(exp.train_arms()) | set(exp.eval_arms()))
            prefix = f"{d.name}/" if len(run_dirs) > 1 else ""
            runs += [_run(prefix + a, exp.train(a).root, exp.eval(a)) for a in names]
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
    from fitrain_eval.items import item_files

    if run.eval_dir is not None:
        if (run.eval_dir / "results.json").is_file():
            run.metrics.update(_results(run.eval_dir / "results.json"))
        run.items = item_files(run.eval_dir)
        dec = run.eval_dir / "decontamination.json"
        if dec.is_file():
            try:
                run.decontamination = dict(json.loads(dec.read_text()).get("benchmarks") or {})
            except (json.JSONDecodeError, AttributeError) as e:
                raise FitrainError(f"{dec}: not a decontamination file ({e})") from None
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


def by_arm(runs: list[Run], reference: str) -> dict[str, list[Run]]:
    """Model runs grouped by arm (reference arm first, then the others by name; seeds in order)."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if not r.is_data_only:
            groups.setdefault(r.arm, []).append(r)
    order = sorted(groups, key=lambda a: (a != reference, a))
    return {a: sorted(groups[a], key=lambda r: (r.seed is None, r.seed or 0, r.name)) for a in order}


def contaminated_ids(runs: list[Run]) -> dict[str, set[str]]:
    """benchmark -> ids flagged by any decontamination found (the union: flagged against any arm's data)."""
    out: dict[str, set[str]] = {}
    for r in runs:
        for bench, d in r.decontamination.items():
            ids = d.get("ids")
            if ids is None and d.get("contaminated", 0) <= len(d.get("examples") or []):
                ids = [e["id"] for e in d.get("examples") or []]  # an older file: complete only when all are listed
            out.setdefault(bench, set()).update(str(i) for i in ids or [])
    return out


def benchmark_of(metric: str) -> str | None:
    """The decontamination set a metric's items come from (fitrain_eval.benchmarks), if any."""
    from fitrain_eval.benchmarks import of_metric

    b, prefix = of_metric(metric), metric.split("/", 1)[0]
    return next((s for s, p in b.sets.items() if p == prefix), None) if b else None


def data_gen_table(run_dirs: list[str | Path]) -> tuple[list[str], list[list[str]]]:
    """One row per data_gen stage of each experiment directory that has ``data_gen/report.json``: the
    backend (an offline fallback says so), rows in and out, rejects and filters by their most frequent reasons."""
    head = ["experiment", "stage", "backend", "in", "out", "rejected or filtered (top reasons)"]
    rows: list[list[str]] = []
    for d in map(Path, run_dirs):
        p = RunLayout(d).data_gen_report
        if not p.is_file():
            continue
        try:
            rep = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise FitrainError(f"{p}: unreadable data_gen report ({e})") from None
        backends = rep.get("backends", {}) if isinstance(rep.get("backends"), dict) else {}
        for stage, st in rep.items():
            if stage == "backends" or not isinstance(st, dict):
                continue
            reasons: dict[str, int] = {}
            for kind in ("rejected", "filtered"):  # rejects (bad rows) and filters (e.g. the judge's minimum)
                for k, v in ((st.get(kind) or {}).get("by_reason") or {}).items():
                    reasons[k] = reasons.get(k, 0) + v
            top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
            why = ", ".join(f"{k} {v:,}" for k, v in top)
            backend = re.sub(r"/\S*/([^/\s]+)", r"\1", str(backends.get(stage, "–")))  # file names, not paths
            rows.append([d.name, stage, backend, f"{st.get('in', 0):,}", f"{st.get('out', 0):,}",
                         f"{sum(reasons.values()):,}" + (f" ({why})" if why else "")])
    return head, rows
