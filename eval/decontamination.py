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

from fitrain.core.accounting import Rejects
from fitrain.core.checks import FRACTION, NON_NEGATIVE, POSITIVE, check_fields
from fitrain.core.errors import FitrainError
from fitrain.data.records import InputConfig

WORD = re.compile(r"\w+")


def _known_set(name: str) -> str:
    """A decontamination set of a registered benchmark (fitrain_eval.benchmarks, plug-ins included)."""
    known = _every_set()
    return "" if name in known else f"must be one of {known}"


def _every_set() -> list[str]:
    from fitrain_eval.benchmarks import set_names

    return set_names()


@dataclass
class DecontaminationConfig:
    enabled: bool = False
    train: InputConfig = field(default_factory=InputConfig)   # the training pairs or documents
    ngram: int = 8
    threshold: float = 0.5            # contaminated when >= this fraction of an item's n-grams are in training
    include_documents: bool = True    # pairs: also scan each pair's source document text
    benchmarks: list[str] = field(default_factory=_every_set)  # (every benchmark's sets)
    max_examples: int = 10            # contaminated item ids listed per benchmark in decontamination.json

    def __post_init__(self) -> None:
        check_fields(self, ngram=POSITIVE, threshold=FRACTION, benchmarks=_known_set, max_examples=NON_NEGATIVE)


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
    from fitrain_eval.benchmarks import set_names

    known = tuple(set_names())
    unknown = sorted(b for b in benchmarks if b not in known)
    if unknown:
        raise FitrainError(f"unknown decontamination benchmark(s) {unknown}; one of {known}")


def benchmark_sets(benchmarks: list[str], cfg, rejects: Rejects) -> dict[str, list[tuple[str, str]]]:
    """``{set: [(item id, text the model is asked)]}`` from each set's benchmark (fitrain_eval.benchmarks),
    with the data paths of ``cfg`` (an EvalConfig)."""
    from fitrain_eval.benchmarks import owner_of_set

    check_benchmarks(benchmarks)
    return {b: owner_of_set(b).load_set(cfg, b, rejects) for b in benchmarks}


def eval_sets(benchmarks: list[str], mixeval_root: str, mtbench101_path: str, alpaca_path: str, rejects: Rejects
              ) -> dict[str, list[tuple[str, str]]]:
    """:func:`benchmark_sets` of the built-in benchmarks' data at these paths."""
    from types import SimpleNamespace

    from fitrain_eval.judges.mixeval import MixEvalConfig
    from fitrain_eval.judges.mtbench101 import MTBench101Config
    from fitrain_eval.judges.pairwise import PairwiseConfig

    paths = SimpleNamespace(mixeval=MixEvalConfig(root=mixeval_root), mtbench101=MTBench101Config(path=mtbench101_path),
                            pairwise=PairwiseConfig(instructions=alpaca_path))
    return benchmark_sets(benchmarks, paths, rejects)
