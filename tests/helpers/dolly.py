"""The Dolly subsets in tests/fixtures/dolly as fitrain records (shared by the data tests, conftest and the
prepare benchmark). Each Dolly record becomes one document with one pair: the document is the record's
context paragraph when it has one, else its human-written response (so the standard arm has real text);
the pair is (instruction, response)."""
from __future__ import annotations

import json
from pathlib import Path

from fitrain.data.records import Document, DocumentPairs, Pair, write_pairs_parquet
from tests.helpers.paths import FIXTURES

DOLLY_DIR = FIXTURES / "dolly"

_HEAD = "### Instruction:\n"
_INPUT = "\n\n### Input:\n"
_RESP = "\n\n### Response:"


def _parse_alpaca(prompt: str) -> tuple[str, str]:
    body = prompt.split(_HEAD, 1)[1]
    body = body[: body.rindex(_RESP)]
    instruction, _, context = body.partition(_INPUT)
    return instruction, context


def dolly_records() -> list[dict]:
    """All 163 records as {instruction, context, response} (151 triforce + 12 litgpt)."""
    out = []
    for line in (DOLLY_DIR / "triforce_reproduce_dolly_151.jsonl").read_text().splitlines():
        rec = json.loads(line)
        instruction, context = _parse_alpaca(rec["prompt"])
        out.append({"instruction": instruction, "context": context,
                    "response": rec["answer"].removesuffix("###eos_token###")})
    for rec in json.loads((DOLLY_DIR / "litgpt_fixture_dolly.json").read_text()):
        out.append({k: rec[k] for k in ("instruction", "context", "response")})
    return out


def dolly_groups() -> list[DocumentPairs]:
    groups = []
    for i, r in enumerate(dolly_records()):
        doc = Document(f"dolly-{i:04d}", r["context"] or r["response"])
        groups.append(DocumentPairs(doc, [Pair(doc.doc_id, r["instruction"], r["response"], template_id=f"t{i}")]))
    return groups


def write_dolly_pairs(path: str | Path) -> Path:
    """The Dolly records as a released-layout parquet file."""
    write_pairs_parquet(path, dolly_groups())
    return Path(path)
