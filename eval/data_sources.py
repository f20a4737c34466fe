"""The judged benchmarks' official data: each file's source at a pinned revision and its sha256 (README
"Benchmark data"). A benchmark setting (``mixeval.root``, ``mtbench101.path``, ``pairwise.instructions``) is
``official`` by default: the files are fetched once into the cache and verified (fitrain.core.fetch); a local
path instead is used as it is (offline use). ``fitrain eval fetch`` fills the cache ahead of time.
"""
from __future__ import annotations

from pathlib import Path

from fitrain.core.errors import FitrainError
from fitrain.core.fetch import Source, cached_path, fetch

OFFICIAL = "official"

_MIXEVAL = "https://raw.githubusercontent.com/Psycoy/MixEval/7c52b41929d461df7733573528bdfb08774b0c53/mix_eval/data"
_MTBENCH = ("https://raw.githubusercontent.com/mtbench101/mt-bench-101/bc18b3e2c18c99164e11528f1a79c92083db5953/"
            "data/subjective")
_ALPACA = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"
MIXEVAL_VERSION = "mixeval-2024-08-11"

SOURCES: dict[str, list[Source]] = {
    "mixeval": [
        Source("mixeval", _MIXEVAL, f"{MIXEVAL_VERSION}/mixeval/free-form.json",
               "6709e72987079e0a01a196395995e3e5c6f98d517a0009d07dcc3fd0e5732ca6"),
        Source("mixeval", _MIXEVAL, f"{MIXEVAL_VERSION}/mixeval/multiple-choice.json",
               "db8bc584529f471e6af4668017871767eb1885624570f71d07d1a8f3fac48254"),
        Source("mixeval", _MIXEVAL, f"{MIXEVAL_VERSION}/mixeval-hard/free-form.json",
               "4784526892f825d421a43a3c34a139adcfa9f8b17d1898b7e5c57079fecf5b4e"),
        Source("mixeval", _MIXEVAL, f"{MIXEVAL_VERSION}/mixeval-hard/multiple-choice.json",
               "3015ee7cc02f20ae7e412e0b42919a9a7d361c6c37de36db5ada38a576a36fea"),
    ],
    "mtbench101": [
        Source("mtbench101", _MTBENCH, "mtbench101.jsonl",
               "1a1e433acf7e2ef013b5001b60fd8e48bc3e4202460727e25b2ea8575aae7d80"),
    ],
    "alpaca_eval": [
        Source("alpaca_eval", _ALPACA, "example/outputs.json",
               "4337273753e16055c9c9a2c3c917a43de8b7a50d538f2c0a6200d21ff711eed5"),
        Source("alpaca_eval", _ALPACA, "results/gpt4_1106_preview/model_outputs.json",  # AlpacaEval 2's reference
               "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4"),
    ],
}

SETTING = {"mixeval": "mixeval.root", "mtbench101": "mtbench101.path", "alpaca_eval": "pairwise.instructions"}


def _fetch_all(name: str, setting: str, rels: tuple[str, ...] = ()) -> list[Path]:
    return [fetch(s, setting) for s in SOURCES[name] if not rels or s.rel in rels]


def mixeval_root(root: str, splits: list[str]) -> str:
    """``root`` itself, or for ``official`` the cached version folder with the ``splits``' files fetched."""
    if root != OFFICIAL:
        return root
    from fitrain_eval.judges.mixeval import SPLITS

    _fetch_all("mixeval", "mixeval.root", tuple(f"{MIXEVAL_VERSION}/{SPLITS[s]}/{k}.json" for s in splits
                                                 for k in ("free-form", "multiple-choice")))
    return str(cached_path(SOURCES["mixeval"][0]).parents[1])


def mtbench101_path(path: str) -> str:
    return path if path != OFFICIAL else str(_fetch_all("mtbench101", "mtbench101.path")[0])


def alpaca_instructions(path: str) -> str:
    return path if path != OFFICIAL else str(_fetch_all("alpaca_eval", "pairwise.instructions",
                                                        ("example/outputs.json",))[0])


def fetch_benchmarks(names: list[str]) -> list[Path]:
    """``fitrain eval fetch``: every file of ``names`` (all benchmarks when empty) in the cache, verified."""
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        raise FitrainError(f"fitrain eval fetch: unknown benchmark {', '.join(unknown)}; "
                           f"choose from {', '.join(SOURCES)}")
    return [p for n in (names or list(SOURCES)) for p in _fetch_all(n, SETTING[n])]
