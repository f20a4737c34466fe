"""Per-item scores of one metric of one run: what the paired comparison of the report is computed from.

Every evaluation that has per-item scores writes ``<eval dir>/items/<metric>.jsonl`` (``/`` in the metric
name written as ``__``): a header line ``{"_header": {...}}`` with the metric, its direction, the null value
of a win rate, and how it was obtained (judge model, prompt version, rules, decoding; see each judge), then
one line per item ``{"id", "score"[, "stratum"][, "weight"][, "failure"]}``. ``score`` is null for an item
that failed after retries (generation or judgment); ``failure`` says why. The statistic (fitrain_eval.stats)
is the mean over strata of the weighted mean over the items of each stratum.

Item ids are the benchmark's own (``free_form:12`` / ``multiple_choice:7`` for MixEval, ``<task>-<id>`` for
MT-Bench-101 dialogues, the instruction index for AlpacaEval, ``<doc_id>`` for lm-eval tasks,
``<row>:<segment>`` for held-out pairs), the same for every arm and the same as in decontamination.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.errors import FitrainError

ITEMS_DIR = "items"


def slug(metric: str) -> str:
    return metric.replace("/", "__")


@dataclass
class ItemScores:
    metric: str
    scores: dict[str, float | None]                    # id -> score; None = failed (reason in failures)
    failures: dict[str, str] = field(default_factory=dict)
    strata: dict[str, str] | None = None               # id -> stratum (MT-Bench-101: the task)
    weights: dict[str, float] | None = None            # id -> weight (held-out loss: answer tokens)
    higher_is_better: bool = True
    null: float | None = None                          # a win rate's no-difference value (0.5)
    info: dict = field(default_factory=dict)           # judge model, prompt version, rules, decoding, ...

    def scored(self) -> dict[str, float]:
        return {k: v for k, v in self.scores.items() if v is not None}

    def path(self, eval_dir: str | Path) -> Path:
        return Path(eval_dir) / ITEMS_DIR / f"{slug(self.metric)}.jsonl"

    def save(self, eval_dir: str | Path) -> Path:
        from fitrain.core.io import atomic_path

        p = self.path(eval_dir)
        head = {"metric": self.metric, "higher_is_better": self.higher_is_better, "null": self.null,
                "n_items": len(self.scores), "n_failed": len(self.scores) - len(self.scored()),
                "failures_by_reason": _count(self.failures.values()), **self.info}
        with atomic_path(p) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"_header": head}, ensure_ascii=False, default=str) + "\n")
            for k, v in self.scores.items():
                row: dict = {"id": k, "score": v}
                if self.strata is not None:
                    row["stratum"] = self.strata[k]
                if self.weights is not None:
                    row["weight"] = self.weights[k]
                if k in self.failures:
                    row["failure"] = self.failures[k]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "ItemScores":
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
            head = json.loads(lines[0])["_header"]
            rows = [json.loads(x) for x in lines[1:] if x.strip()]
        except (IndexError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise FitrainError(f"{p}: not a per-item score file ({type(e).__name__}: {e})") from None
        info = {k: v for k, v in head.items() if k not in ("metric", "higher_is_better", "null", "n_items",
                                                             "n_failed", "failures_by_reason")}
        strata = {r["id"]: r["stratum"] for r in rows} if rows and "stratum" in rows[0] else None
        weights = {r["id"]: r["weight"] for r in rows} if rows and "weight" in rows[0] else None
        return cls(head["metric"], {r["id"]: r["score"] for r in rows},
                   {r["id"]: r["failure"] for r in rows if "failure" in r}, strata, weights,
                   head.get("higher_is_better", True), head.get("null"), info)


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def item_files(eval_dir: str | Path) -> dict[str, Path]:
    """metric -> its per-item file in ``eval_dir``."""
    d = Path(eval_dir) / ITEMS_DIR
    return {p.stem.replace("__", "/"): p for p in sorted(d.glob("*.jsonl"))} if d.is_dir() else {}
