"""Stage 6, write: the judged pairs with score >= ``judge.min_score`` in the released FineInstructions column
layout (``warc_record_id``, ``text`` and ``token_count`` on each document's first row, ``template_id``,
``instantiated_instruction``, ``answer``, ``synthetic_token_count``) plus our columns (``judge_score``,
``excerpt_fraction``, ``chunk_index``, ``slot_count``), one parquet file per shard:
``final/shard-NNNNN/pairs.parquet``, which ``fitrain prepare`` reads directly (glob ``final/*/pairs.parquet``).

Write-out is budget-free by design: the token-for-token budget needs token counts under the experiment's
tokenizer (formatted pair incl. EOS, document incl. EOS), and that tokenizer is often trained after the data
exists. ``fitrain prepare`` applies it with fitrain.data.budget.TokenBudget, the one implementation, so
``token_count`` and ``synthetic_token_count`` are left empty here.
"""
from __future__ import annotations

from pathlib import Path

from data_gen.config import DataGenConfig
from data_gen.shards import StageStats, iter_parquet, require_done, run_shards, shard_dir
from fitrain.data.records import Document, DocumentPairs, Pair, write_pairs_parquet

FINAL_GLOB = "shard-*/pairs.parquet"


def final_paths(final_dir: Path) -> list[str]:
    return sorted(str(p) for p in Path(final_dir).glob(FINAL_GLOB))


def run(cfg: DataGenConfig, stage_dir: Path, judged_dir: Path, matches_dir: Path, shard: int | None = None,
        log=print) -> dict:
    min_score = cfg.judge.min_score

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
        st.outputs = write_pairs_parquet(out / "pairs.parquet", groups, extra=cfg.write.extra_columns)
        st.count("documents", len(groups))
        return st

    return run_shards("write", stage_dir, cfg.num_shards, work, shard, log)
