"""Shared fixtures for the data_gen tests: one MiniLM encoder per session (loading costs seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.paths import FIXTURES

DOLLY = FIXTURES / "dolly"


@pytest.fixture(scope="session")
def encoder():
    import torch

    from data_gen.config import EncoderConfig
    from data_gen.encoder import Encoder

    torch.set_num_threads(1)  # the cores are shared (xdist workers, other suites): one thread is faster here

    return Encoder(EncoderConfig(max_length=256, batch_size=32))


@pytest.fixture(scope="session")
def dolly_contexts() -> list[dict]:
    """The Dolly records with a context paragraph (litgpt fixture 7 + triforce 47), as documents."""
    docs = []
    for i, rec in enumerate(json.loads((DOLLY / "litgpt_fixture_dolly.json").read_text())):
        if rec.get("context", "").strip():
            docs.append({"id": f"litgpt:{i}", "text": rec["context"], "instruction": rec["instruction"]})
    for i, line in enumerate((DOLLY / "triforce_reproduce_dolly_151.jsonl").read_text().splitlines()):
        prompt = json.loads(line)["prompt"]
        if "### Input:\n" in prompt:
            ins = prompt.split("### Instruction:\n", 1)[1].split("\n\n### Input:\n", 1)[0]
            ctx = prompt.split("### Input:\n", 1)[1].rsplit("\n\n### Response:", 1)[0]
            docs.append({"id": f"triforce:{i}", "text": ctx, "instruction": ins})
    assert len(docs) == 54
    return docs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def final_rows(run_dir: Path) -> list[tuple]:
    rows = []
    for p in sorted((run_dir / "data_gen" / "final").glob("shard-*/pairs.parquet")):
        rows += [tuple(r.values()) for r in pq.read_table(p).to_pylist()]
    return rows
