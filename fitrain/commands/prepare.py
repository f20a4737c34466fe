"""fitrain prepare: records -> response-masked packed token shards + manifest.json."""
from __future__ import annotations

import argparse
import json

HELP = "tokenize, mask and pack pairs or documents into training shards"
DESCRIPTION = """\
Read instruction-answer pairs (FineInstructions released layout or generic pair files) or raw documents
(parquet/jsonl files or globs), format them (`Instruction: {instruction}\\n\\nAnswer: {answer}` + EOS by
default, response-only loss mask), pack them into fixed seq_len rows and write memory-mapped shards plus
manifest.json (counts, rejects, tokenizer identity, fingerprint, budget). Killed and rerun, it gives
byte-identical shards.

examples:
  # FI arm, token-for-token budget against the source documents, judge score >= 4
  fitrain prepare input.paths=[data/fi/*.parquet] input.min_judge_score=4 \\
      budget.enabled=true tokenizer=runs/tok out=runs/exp/prepared/fi
  # standard arm from the same FI files, checked against the FI arm's budget
  fitrain prepare input.paths=[data/fi/*.parquet] documents_from_pairs=true \\
      budget_from=runs/exp/prepared/fi tokenizer=runs/tok out=runs/exp/prepared/standard
  # raw documents
  fitrain prepare input.kind=documents input.paths=[corpus/*.jsonl] tokenizer=runs/tok out=prepared/docs
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fitrain.commands.common import add_recipe_arguments

    add_recipe_arguments(p, example="pack.seq_len=4096 tokenizer=runs/tok")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished directory prepared with other settings (refused otherwise)")


def run(args: argparse.Namespace) -> int:
    from fitrain.commands.common import load
    from fitrain.data.prepare import PrepareConfig, prepare

    cfg = load(args, PrepareConfig)
    if cfg is None:
        return 0
    cfg.overwrite = cfg.overwrite or args.overwrite
    m = prepare(cfg)
    c = m.counts
    print(json.dumps({"out": cfg.out, "kind": m.kind, "fingerprint": m.fingerprint, "rows": c.rows,
                      "total_tokens": c.total_tokens, "supervised_tokens": c.supervised_tokens,
                      "packing_efficiency": round(c.packing_efficiency, 6), "rejects": m.rejects.total,
                      "overlong": {k: v for k, v in m.overlong.items() if v}}, indent=2))
    return 0
