"""n-gram overlap between the training data and each eval set, reported per benchmark.

Texts are lower-cased and split into word tokens (``\\w+``). An eval item is *contaminated* when at least
``threshold`` of its word n-grams occur anywhere in the training texts (instructions, answers and, when
``include_documents``, the source documents), the instance-level rule of Tulu-3's decontamination. Items
shorter than ``ngram`` words cannot be checked and are counted as ``too_short``.

Training data are read through :mod:`fitrain.data.records` (pairs or raw documents); eval sets through the
judges' own loaders, so both sides see exactly what training and evaluation see.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.checks import FRACTION, NON_NEGATIVE, POSITIVE, check_fields, one_of
from fitrain.core.errors import FitrainError
from fitrain.data.records import InputConfig

WORD = re.compile(r"\w+")
BENCHMARKS = ("mixeval", "mixeval_hard", "mtbench101", "alpaca_eval")


@dataclass
class DecontaminationConfig:
    enabled: bool = False
    train: InputConfig = field(default_factory=InputConfig)   # the training pairs or documents
    ngram: int = 8
    threshold: float = 0.5            # contaminated when >= this fraction of an item's n-grams are in training
    include_documents: bool = True    # pairs: also scan each pair's source document text
    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    max_examples: int = 10            # contaminated item ids listed per benchmark in decontamination.json

    def __post_init__(self) -> None:
        check_fields(self, ngram=POSITIVE, threshold=FRACTION, benchmarks=one_of(*BENCHMARKS), max_examples=NON_NEGATIVE)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(ws: list[str], n: int):
    return (tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))


class Index:
    """Eval n-grams -> ids, with each item's n-gram id set."""

    def __init__(self, sets: dict[str, list[tuple[str, str]]], n: int):
        self.n = n
        self.ids: dict[tuple, int] = {}
        self.items: dict[str, list[tuple[str, set[int]]]] = {}
        self.too_short: dict[str, int] = {}
        for bench, items in sets.items():
            rows = []
            short = 0
            for item_id, text in items:
                ws = words(text)
                if len(ws) < n:
                    short += 1
                    continue
                rows.append((item_id, {self.ids.setdefault(g, len(self.ids)) for g in ngrams(ws, n)}))
            self.items[bench], self.too_short[bench] = rows, short
        self.matched: set[int] = set()

    def scan(self, text: str) -> None:
        ids = self.ids
        for g in ngrams(words(text), self.n):
            i = ids.get(g)
            if i is not None:
                self.matched.add(i)


def training_texts(cfg: InputConfig, include_documents: bool, rejects: Rejects):
    from fitrain.data.records import iter_document_pairs, iter_documents

    if cfg.kind == "documents":
        for d in iter_documents(cfg, rejects):
            yield d.text
    elif cfg.kind == "pairs":
        for g in iter_document_pairs(cfg, rejects):
            if include_documents and g.document.text:
                yield g.document.text
            for p in g.pairs:
                yield p.instruction
                yield p.answer
    else:
        raise FitrainError(f"decontamination.train.kind must be pairs or documents, got '{cfg.kind}'")


def decontaminate(cfg: DecontaminationConfig, sets: dict[str, list[tuple[str, str]]], rejects: Rejects
                  ) -> tuple[dict, dict]:
    """Returns (flat metrics ``decontamination/<bench>/...``, details with contaminated ids)."""
    if not cfg.train.paths:
        raise FitrainError("decontamination.train.paths is empty: give the training pairs or documents")
    if cfg.ngram < 1 or not 0 < cfg.threshold <= 1:
        raise FitrainError("decontamination needs ngram >= 1 and 0 < threshold <= 1")
    index = Index(sets, cfg.ngram)
    n_texts = 0
    for text in training_texts(cfg.train, cfg.include_documents, rejects):
        index.scan(text)
        n_texts += 1
    if n_texts == 0:
        raise FitrainError(f"decontamination: no training text read from {cfg.train.paths} ({rejects.summary()})")
    metrics: dict = {}
    details: dict = {"ngram": cfg.ngram, "threshold": cfg.threshold, "training_texts": n_texts, "benchmarks": {}}
    for bench, rows in index.items.items():
        hits = []
        for item_id, grams in rows:
            frac = len(grams & index.matched) / len(grams)
            if frac >= cfg.threshold:
                hits.append((item_id, round(frac, 4)))
        checked = len(rows)
        pre = f"decontamination/{bench}"
        metrics.update({f"{pre}/contaminated": len(hits), f"{pre}/n_checked": checked,
                        f"{pre}/n_too_short": index.too_short[bench],
                        f"{pre}/contaminated_fraction": len(hits) / checked if checked else 0.0})
        details["benchmarks"][bench] = {"items": checked + index.too_short[bench], "checked": checked,
                                        "too_short": index.too_short[bench], "contaminated": len(hits),
                                        "examples": [{"id": i, "overlap": f} for i, f in hits[:cfg.max_examples]],
                                        "ids": [i for i, _ in hits]}
    return metrics, details


def check_benchmarks(benchmarks: list[str]) -> None:
    unknown = sorted(b for b in benchmarks if b not in BENCHMARKS)
    if unknown:
        raise FitrainError(f"unknown decontamination benchmark(s) {unknown}; one of {BENCHMARKS}")


def eval_sets(benchmarks: list[str], mixeval_root: str, mtbench101_path: str, alpaca_path: str, rejects: Rejects
              ) -> dict[str, list[tuple[str, str]]]:
    """``{benchmark: [(item id, text the model is asked)]}`` from the judges' loaders."""
    from fitrain_eval.judges import mixeval, mtbench101, pairwise

    check_benchmarks(benchmarks)
    out: dict[str, list[tuple[str, str]]] = {}
    for b in benchmarks:
        if b in ("mixeval", "mixeval_hard"):
            out[b] = [(it.uid, f"{it.context or ''}\n{it.prompt}")
                      for it in mixeval.load_split(mixeval_root, b, rejects)]
        elif b == "mtbench101":
            out[b] = [(d.key, "\n".join(h["user"] for h in d.history))
                      for d in mtbench101.load(mtbench101_path, rejects)]
        else:
            out[b] = [(str(i), r["instruction"]) for i, r in
                      enumerate(pairwise.load_outputs(Path(alpaca_path), need_output=False))]
    return out
