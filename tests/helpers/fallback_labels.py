"""The hand-labelled pairs of the offline fallback (tests/data_gen/fixtures/fallback_labels.jsonl), read by
tests/data_gen/test_fallback_quality.py and benchmarks/fallback_quality.py.

File layout: line 1 ``{"rule": ..., "source": ...}``; then one pair per line (``corpus``, ``doc_id``,
``instruction``, ``answer``, ``judge_score_when_drawn``, ``label``: sensible | not, optional ``note``);
the last line ``{"documents": {"<corpus>|<doc_id>": text}}``.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.paths import REPO

LABELS = REPO / "tests" / "data_gen" / "fixtures" / "fallback_labels.jsonl"


def load_labels(path: Path = LABELS) -> tuple[str, list[dict]]:
    """(the labelling rule, the labelled pairs with their ``document`` text)."""
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    docs = lines[-1]["documents"]
    rows = [{**r, "document": docs[f"{r['corpus']}|{r['doc_id']}"]} for r in lines[1:-1]]
    return lines[0]["rule"], rows


def rejudge(rows: list[dict], encoder) -> list[int]:
    """The current fallback judge's score of every labelled pair."""
    from data_gen.extractive import ExtractiveHandlers
    from data_gen.fallback_judge import judge_pair

    h = ExtractiveHandlers(encoder)
    h._vecs([t for r in rows for t in (r["instruction"], r["answer"])])
    return [judge_pair(r["instruction"], r["answer"], r["document"], h.sim)[0] for r in rows]


def figures(rows: list[dict], scores: list[int], min_score: float = 4) -> dict:
    """Per corpus and in all: pairs, pairs the judge keeps, the sensible share of those, and how often the
    judge's keep/drop agrees with the labels."""
    out = {}
    for corpus in sorted({r["corpus"] for r in rows}) + ["all"]:
        sel = [(r, s) for r, s in zip(rows, scores) if corpus in ("all", r["corpus"])]
        kept = [r for r, s in sel if s >= min_score]
        out[corpus] = {"labelled": len(sel), "kept": len(kept),
                       "sensible_of_kept": sum(r["label"] == "sensible" for r in kept) / max(1, len(kept)),
                       "agreement": sum((s >= min_score) == (r["label"] == "sensible") for r, s in sel) / max(1, len(sel)),
                       "sensible_of_all": sum(r["label"] == "sensible" for r, _ in sel) / max(1, len(sel))}
    return out
