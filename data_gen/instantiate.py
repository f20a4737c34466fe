"""Stage 4, instantiate: (template, document) -> instruction + answer, grounded in the document.

Released contract: the user message is the JSON ``{"instruction_template": ..., "document": ...}``; the
reply is a JSON object with the instantiated instruction and the answer, or ``null`` when the template does
not fit (counted as ``template_not_applicable``). Answers quote the document with excerpt markers, expanded
by data_gen.excerpts (a marker matching no span or several is a reject with that reason); an answer whose
excerpt fraction is under ``min_excerpt_fraction`` (0.8) is rejected; an instruction with a ``<fi>`` slot
left is rejected. Output per shard: ``pairs.parquet``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

from data_gen.config import DataGenConfig
from data_gen.excerpts import ExcerptError, expand_excerpts
from data_gen.prompting import extract_json, load_prompt
from data_gen.shards import (ProgressLog, StageStats, check_server_failures, iter_parquet, read_parquet_rows,
                             require_done, row_count, row_sink, run_shards, shard_dir)
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Backend, Request, stream_parsed

BATCH = 256  # rows read and written per parquet batch (requests stream through the llm window regardless)
NULL = object()  # the template does not fit the document
INSTRUCTION_KEYS = ("instantiated_instruction", "instruction", "query")
ANSWER_KEYS = ("answer", "response", "output")


def parse_instantiation(text: str):
    """``{"instruction", "answer"}``, or NULL for a null reply; ValueError when unparsable."""
    s = text.strip()
    if s.lower().strip("`. \n") in ("null", "none", "json\nnull"):
        return NULL
    obj = extract_json(s)
    if obj is None:
        return NULL
    if not isinstance(obj, dict):
        raise ValueError(f"reply is a JSON {type(obj).__name__}, not an object")
    ins = next((obj[k] for k in INSTRUCTION_KEYS if k in obj), None)
    ans = next((obj[k] for k in ANSWER_KEYS if k in obj), None)
    if ins is None and ans is None and all(v is None for v in obj.values()):
        return NULL
    if not isinstance(ins, str) or not isinstance(ans, str):
        if ins is None or ans is None:
            return {"instruction": ins, "answer": ans}  # a null field: counted as null_answer/instruction
        raise ValueError("instruction and answer must be strings")
    return {"instruction": ins, "answer": ans}


def pair_schema():
    import pyarrow as pa

    return pa.schema([("doc_id", pa.string()), ("template_id", pa.string()), ("instruction", pa.string()),
                      ("answer", pa.string()), ("excerpt_fraction", pa.float64()), ("chunk_index", pa.int64()),
                      ("slot_count", pa.int64()), ("similarity", pa.float32())])


def check_pair(parsed, document: str, min_fraction: float) -> tuple[dict | None, str | None, str]:
    """(row fields, None, '') for a good pair, else (None, reject reason, detail)."""
    if parsed is NULL:
        return None, "template_not_applicable", ""
    ins, ans = parsed["instruction"], parsed["answer"]
    if ins is None or not str(ins).strip():
        return None, "null_instruction", ""
    if ans is None or not str(ans).strip():
        return None, "null_answer", ""
    if "<fi>" in ins or "</fi>" in ins:
        return None, "unfilled_slot", ins[:120]
    try:
        exp = expand_excerpts(ans, document)
    except ExcerptError as e:
        return None, e.reason, e.detail
    if not exp.text:
        return None, "null_answer", ""
    if exp.excerpt_fraction < min_fraction:
        return None, "excerpt_fraction_low", f"{exp.excerpt_fraction:.2f}"
    return {"instruction": ins.strip(), "answer": exp.text, "excerpt_fraction": round(exp.excerpt_fraction, 6)}, None, ""


def run(cfg: DataGenConfig, stage_dir: Path, matches_dir: Path, templates_dir: Path,
        backend: Callable[[Path], Backend], shard=None, log=print) -> dict:
    from data_gen.templatize import read_templates

    ic = cfg.instantiate
    prompt = load_prompt(ic.prompt, {"input_json"})
    templates = {r["template_id"]: r["template"] for r in read_templates(templates_dir)}

    def work(i: int, out: Path) -> StageStats:
        require_done(shard_dir(matches_dir, i), f"match shard {i}")
        st = StageStats("instantiate")
        src = shard_dir(matches_dir, i)
        docs = {r["doc_id"]: r["text"] for r in read_parquet_rows(src / "documents.parquet")}

        def requests() -> Iterator[Request]:
            for batch in iter_parquet(src / "matches.parquet", BATCH):
                for m in batch:
                    tpl = templates.get(m["template_id"])
                    if tpl is None:
                        raise FitrainError(f"template {m['template_id']} of {src} is not in {templates_dir}")
                    doc = docs[m["doc_id"]][: ic.max_document_chars]
                    payload = json.dumps({"instruction_template": tpl, "document": doc}, ensure_ascii=False)
                    r = prompt.request("instantiate", {"instruction_template": tpl, "document": doc},
                                       ic.max_new_tokens, f"{m['doc_id']}|{m['template_id']}", input_json=payload)
                    r.meta["row"] = m
                    yield r

        be = backend(out)
        with stream_parsed(be, requests(), parse_instantiation, st.rejects, what="instantiator") as stream, \
                ProgressLog(f"instantiate shard {i}", row_count(src / "matches.parquet"), cfg.progress_every_s, log,
                            cfg.progress, lambda: st.rejects.total, lambda: stream.in_flight) as progress, \
                row_sink(out / "pairs.parquet", pair_schema(), st, BATCH) as add:
            for req, p in stream:
                m = req.meta["row"]
                st.inputs += 1
                progress.update()
                if p is None:
                    continue  # transport failure or unparsable: counted by stream_parsed
                fields, reason, detail = check_pair(p, docs[m["doc_id"]], ic.min_excerpt_fraction)
                if reason:
                    st.rejects.add(reason, f"{m['doc_id']}|{m['template_id']}", detail)
                    continue
                add({"doc_id": m["doc_id"], "template_id": m["template_id"], **fields,
                     "chunk_index": m["chunk_index"], "slot_count": m["slot_count"], "similarity": m["similarity"]})
            check_server_failures(st, be, cfg.max_failed_share, f"[instantiate] shard {i}")
        return st

    return run_shards("instantiate", stage_dir, cfg.num_shards, work, shard, log)
