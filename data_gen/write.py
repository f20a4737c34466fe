"""Stage 6, write: the judged pairs with score >= ``judge.min_score`` in the released FineInstructions column
layout (``warc_record_id``, ``text`` and ``token_count`` on each document's first row, ``template_id``,
``instantiated_instruction``, ``answer``, ``synthetic_token_count``) plus our columns (``judge_score``,
``excerpt_fraction``, ``chunk_index``, ``slot_count``), one parquet file per shard:
``final/shard-NNNNN/pairs.parquet``, which ``fitrain prepare`` reads directly (glob ``final/*/pairs.parquet``).

Token counts: with ``write.tokenizer`` (a tokenizer directory; an experiment passes its own) ``token_count``
is the document's tokens and ``synthetic_token_count`` the pair's (instruction + answer), plain text
without special tokens (the release does not document its exact definition); without a tokenizer both
are null.

Write-out is budget-free by design: the token-for-token budget needs token counts of the *formatted* pair
(template and EOS included) under the experiment's tokenizer, which may be trained after the data exists.
``fitrain prepare`` applies it with fitrain.data.budget.TokenBudget, the one implementation, and counts the
tokens itself; the counts written here are information for readers of the shards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from data_gen.config import DataGenConfig
from data_gen.shards import StageStats, iter_parquet, require_done, run_shards, shard_dir
from fitrain.data.records import Document, DocumentPairs, Pair, write_pairs_parquet

FINAL_GLOB = "shard-*/pairs.parquet"


def final_paths(final_dir: Path) -> list[str]:
    return sorted(str(p) for p in Path(final_dir).glob(FINAL_GLOB))


def run(cfg: DataGenConfig, stage_dir: Path, judged_dir: Path, matches_dir: Path, shard: int | None = None,
        log=print) -> dict:
    min_score = cfg.judge.min_score
    count = token_counter(cfg.write.tokenizer) if cfg.write.tokenizer else None

    def work(i: int, out: Path) -> StageStats:
        require_done(shard_dir(judged_dir, i), f"judge shard {i}")
        st = StageStats("write")
        by_doc: dict[str, list[Pair]] = {}
        for batch in iter_parquet(shard_dir(judged_dir, i) / "judged.parquet"):
            for r in batch:
                st.inputs += 1
                if r["judge_score"] < min_score:
                    st.filtered.add("below_min_judge_score", f"{r['doc_id']}|{r['template_id']}",
                                    f"score {r['judge_score']:g}")
                    continue
                by_doc.setdefault(r["doc_id"], []).append(Pair(
                    doc_id=r["doc_id"], instruction=r["instruction"], answer=r["answer"],
                    template_id=r["template_id"], judge_score=r["judge_score"],
                    excerpt_fraction=r["excerpt_fraction"], chunk_index=r["chunk_index"],
                    slot_count=r["slot_count"]))
        groups = []
        for batch in iter_parquet(shard_dir(matches_dir, i) / "documents.parquet"):
            for d in batch:  # document order of the match stage
                if d["doc_id"] in by_doc:
                    groups.append(DocumentPairs(Document(d["doc_id"], d["text"]), by_doc.pop(d["doc_id"])))
        if count is not None:
            fill_token_counts(groups, count)
        st.outputs = write_pairs_parquet(out / "pairs.parquet", groups, extra=cfg.write.extra_columns)
        st.count("documents", len(groups))
        return st

    return run_shards("write", stage_dir, cfg.num_shards, work, shard, log)


def token_counter(tokenizer: str) -> Callable[[Sequence[str]], list[int]]:
    """Tokens per text under a tokenizer directory, no special tokens (one batched call)."""
    from fitrain.data.formatting import FormatConfig, Formatter
    from fitrain.data.tokenizer import load_tokenizer

    fmt = Formatter(load_tokenizer(tokenizer), FormatConfig())
    return lambda texts: [len(ids) for ids in fmt.encode_texts(list(texts))]


def fill_token_counts(groups: list[DocumentPairs], count: Callable[[Sequence[str]], list[int]]) -> None:
    docs = count([g.document.text or "" for g in groups])
    pairs = [p for g in groups for p in g.pairs]
    parts = count([p.instruction for p in pairs] + [p.answer for p in pairs])
    for g, n in zip(groups, docs):
        g.document.token_count = n
    for p, a, b in zip(pairs, parts[:len(pairs)], parts[len(pairs):]):
        p.synthetic_token_count = a + b
