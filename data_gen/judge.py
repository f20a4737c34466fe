"""Stage 5, judge: score every pair on the 1-5 rubric (prompts/judge_flow.yaml) and store the score.

The reply is parsed robustly: ``<score>n</score>`` (whitespace, "4/5", "4.0" tolerated), else a final
"Score: n"; the ``<feedback>`` text is kept when present. A score outside 1-5 or none is unparsable
(asked again, then counted as ``judge_unparsable``). Every scored pair is written with its score
(``judged.parquet``); the write stage keeps those with score >= ``judge.min_score`` (4).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator

from data_gen.config import DataGenConfig
from data_gen.prompting import load_prompt, reject_lone_surrogate
from data_gen.shards import (ProgressLog, StageStats, check_server_failures, iter_parquet, read_parquet_rows,
                             require_done, row_count, row_sink, run_shards, shard_dir)
from fitrain.core.llm import Backend, Request, stream_parsed

BATCH = 256  # rows read and written per parquet batch (requests stream through the llm window regardless)
_SCORE_TAG = re.compile(r"<score>\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*5)?\s*</score>", re.IGNORECASE)
_SCORE_LINE = re.compile(r"score\s*(?:is|of|:|=)?\s*\**\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*5)?", re.IGNORECASE)
_FEEDBACK = re.compile(r"<feedback>(.*?)</feedback>", re.IGNORECASE | re.DOTALL)


def parse_judgement(text: str) -> tuple[float, str]:
    """(score, feedback); ValueError when no score in 1..5 can be read."""
    reject_lone_surrogate(text)
    tags = _SCORE_TAG.findall(text)
    found = tags[-1] if tags else None
    if found is None:
        lines = _SCORE_LINE.findall(text)
        found = lines[-1] if lines else None
    if found is None:
        raise ValueError("no score in reply")
    score = float(found)
    if not 1 <= score <= 5:
        raise ValueError(f"score {score} outside 1-5")
    fb = _FEEDBACK.search(text)
    return score, (fb.group(1).strip() if fb else "")


def judged_schema():
    import pyarrow as pa

    from data_gen.instantiate import pair_schema

    return pair_schema().append(pa.field("judge_score", pa.float64())).append(pa.field("judge_feedback", pa.string()))


def run(cfg: DataGenConfig, stage_dir: Path, pairs_dir: Path, matches_dir: Path,
        backend: Callable[[Path], Backend], shard=None, log=print) -> dict:
    jc = cfg.judge
    prompt = load_prompt(jc.prompt, {"instruction", "answer"})

    def work(i: int, out: Path) -> StageStats:
        require_done(shard_dir(pairs_dir, i), f"instantiate shard {i}")
        st = StageStats("judge")
        docs = {r["doc_id"]: r["text"] for r in read_parquet_rows(shard_dir(matches_dir, i) / "documents.parquet")}
        src = shard_dir(pairs_dir, i) / "pairs.parquet"

        def requests() -> Iterator[Request]:
            for batch in iter_parquet(src, BATCH):
                for p in batch:
                    doc = docs[p["doc_id"]][: cfg.instantiate.max_document_chars]
                    inputs = {"instruction": p["instruction"], "answer": p["answer"], "document": doc}
                    r = prompt.request("judge", inputs, jc.max_new_tokens, f"{p['doc_id']}|{p['template_id']}",
                                       **inputs)
                    r.meta["row"] = p
                    yield r

        hist: dict[str, int] = {}
        be = backend(out)
        with stream_parsed(be, requests(), parse_judgement, st.rejects, what="judge") as stream, \
                ProgressLog(f"judge shard {i}", row_count(src), cfg.progress_every_s, log, cfg.progress,
                            lambda: st.rejects.total, lambda: stream.in_flight) as progress, \
                row_sink(out / "judged.parquet", judged_schema(), st, BATCH) as add:
            for req, res in stream:
                st.inputs += 1
                progress.update()
                if res is None:
                    continue
                score, feedback = res
                hist[f"{score:g}"] = hist.get(f"{score:g}", 0) + 1
                add({**req.meta["row"], "judge_score": score, "judge_feedback": feedback})
                if score >= jc.min_score:
                    st.count("at_or_above_min_score")
            check_server_failures(st, be, cfg.max_failed_share, f"[judge] shard {i}")
        st.counters["score_histogram"] = hist
        return st

    return run_shards("judge", stage_dir, cfg.num_shards, work, shard, log)
