"""Session fixtures shared by every home's tests.

* ``corpus_texts``: real English text every Python install carries (pydoc topics + stdlib docstrings).
* ``tokenizer_dir``: a small byte-level BPE (vocab 1000) trained on that text in this session (~1 s);
  a transformers tokenizer directory with ``<|endoftext|>`` (eos) and ``<|pad|>`` (pad), no BOS.
* ``pairs_shards``: a prepared pairs directory (fitrain.data.prepare of the Dolly records, seq_len 256,
  response mask) with manifest.json and shards, for trainer and loader tests.
* ``documents_shards``: the same Dolly records' documents prepared for the standard arm (seq_len 256).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# benchmark data: never downloaded in tests (an `official` setting is a clear offline error; the tests read
# tests/fixtures, and the fetch tests serve their own local mirror)
os.environ["FITRAIN_OFFLINE"] = "1"
os.environ["FITRAIN_DATA_CACHE"] = os.path.join(__import__("tempfile").gettempdir(), f"fitrain-test-data-{os.getpid()}")
os.environ.pop("FITRAIN_DATA_MIRROR", None)


def _stdlib_docstrings(limit_chars: int) -> list[str]:
    import importlib
    import inspect

    out, n = [], 0
    for name in ("collections", "json", "pathlib", "argparse", "textwrap", "statistics", "datetime",
                 "functools", "itertools", "random", "string", "csv", "heapq", "fractions", "decimal"):
        mod = importlib.import_module(name)
        for _, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
            if doc and len(doc) > 80:
                out.append(doc)
                n += len(doc)
                if n >= limit_chars:
                    return out
    return out


@pytest.fixture(scope="session")
def corpus_texts() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)] + _stdlib_docstrings(200_000)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus_texts) -> Path:
    from fitrain.data.tokenizer import TokenizerConfig, train_tokenizer_from_texts

    out = tmp_path_factory.mktemp("tokenizer")
    return train_tokenizer_from_texts(corpus_texts, TokenizerConfig(out=str(out), vocab_size=1000))


@pytest.fixture(scope="session")
def dolly_pairs_file(tmp_path_factory) -> Path:
    from tests.helpers.dolly import write_dolly_pairs

    return write_dolly_pairs(tmp_path_factory.mktemp("dolly") / "dolly_pairs.parquet")


def _prepare(out: Path, tokenizer_dir: Path, pairs_file: Path, **kw) -> Path:
    from fitrain.data.prepare import PrepareConfig, prepare
    from fitrain.data.records import InputConfig

    cfg = PrepareConfig(input=InputConfig(paths=[str(pairs_file)]), tokenizer=str(tokenizer_dir),
                        out=str(out), progress=False)
    cfg.pack.seq_len = 256
    for k, v in kw.items():
        setattr(cfg, k, v)
    prepare(cfg)
    return out


@pytest.fixture(scope="session")
def pairs_shards(tmp_path_factory, tokenizer_dir, dolly_pairs_file) -> Path:
    return _prepare(tmp_path_factory.mktemp("prepared") / "fi", tokenizer_dir, dolly_pairs_file)


@pytest.fixture(scope="session")
def documents_shards(tmp_path_factory, tokenizer_dir, dolly_pairs_file) -> Path:
    return _prepare(tmp_path_factory.mktemp("prepared") / "standard", tokenizer_dir, dolly_pairs_file,
                    documents_from_pairs=True)
