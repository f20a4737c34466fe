"""Stage 1, templatize: real user queries -> instruction templates with ``<fi>…</fi>`` slots.

Source ``queries``: each query goes to the templatizer through the llm layer (released contract: the bare
query as the user message; JSON with ``template`` and ``compatible_document_description`` back).
Source ``bank``: a template bank is read instead (the released FineTemplates parquet, or our jsonl asset).
Either way each template is validated (balanced ``<fi>`` tags, >= 1 non-empty slot, <= max_slots, a
non-empty description), deduplicated on its normalised text, given a stable id, and its slot count is
recorded. Output: ``templates/templates.parquet`` (+ per-shard parts, stats.json, _SUCCESS).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Callable, Iterator

from data_gen.config import DataGenConfig
from data_gen.prompting import extract_json, load_prompt
from data_gen.shards import (ProgressLog, StageStats, check_server_failures, iter_parquet, parquet_sink,
                             run_shards, shard_dir)
from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Backend, stream_parsed
from fitrain.data.records import expand_paths, iter_rows, lone_surrogate

SLOT = re.compile(r"<fi>(.*?)</fi>", re.DOTALL)
TAG = re.compile(r"</?fi>")


class TemplateError(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def slots_of(template: str) -> list[str]:
    return [s.strip() for s in SLOT.findall(template)]


def validate_template(template: object, description: object, max_slots: int) -> int:
    """The slot count of a valid template; raises TemplateError(reason) otherwise."""
    if not isinstance(template, str) or not template.strip():
        raise TemplateError("empty_template")
    if not isinstance(description, str) or not description.strip():
        raise TemplateError("empty_description")
    if lone_surrogate(template) is not None or lone_surrogate(description) is not None:
        raise TemplateError("lone_surrogate")
    depth = 0
    for m in TAG.finditer(template):
        depth += 1 if m.group() == "<fi>" else -1
        if depth not in (0, 1):
            raise TemplateError("unbalanced_slot_tags")
    if depth != 0:
        raise TemplateError("unbalanced_slot_tags")
    slots = slots_of(template)
    if not slots:
        raise TemplateError("no_slots")
    if any(not s for s in slots):
        raise TemplateError("empty_slot")
    if len(slots) > max_slots:
        raise TemplateError("too_many_slots")
    return len(slots)


def normalize_template(template: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", template).lower().split())


def template_id(template: str) -> str:
    return hashlib.sha1(normalize_template(template).encode("utf-8")).hexdigest()[:16]


def parse_templatizer(text: str) -> dict:
    obj = extract_json(text)
    if not isinstance(obj, dict) or "template" not in obj or "compatible_document_description" not in obj:
        raise ValueError("reply lacks 'template' and 'compatible_document_description'")
    return obj


# ----------------------------------------------------------------------------------------------- inputs
def iter_queries(paths: list[str], column: str, rejects: Rejects, pattern: str = "") -> Iterator[tuple[str, str]]:
    """``(location, query)`` from jsonl/parquet files or JSON-list files; bad rows counted by reason."""
    rx = re.compile(pattern, re.DOTALL) if pattern else None
    for path in expand_paths(paths):
        for where, rec in _rows(path, rejects):
            q = rec.get(column)
            if column not in rec:
                raise FitrainError(f"{where}: no column '{column}' (set templatize.query_column); row has {sorted(rec)}")
            if isinstance(q, bytes):
                try:
                    q = q.decode("utf-8")
                except UnicodeDecodeError as e:
                    rejects.add("invalid_utf8", where, str(e))
                    continue
            if not isinstance(q, str) or not q.strip():
                rejects.add("empty_query", where)
                continue
            if lone_surrogate(q) is not None:  # not text (a JSON "\ud83d" without its pair): no server takes it
                rejects.add("lone_surrogate", where, lone_surrogate(q))
                continue
            if rx is not None:
                m = rx.search(q)
                if not m:
                    rejects.add("query_pattern_mismatch", where)
                    continue
                q = m.group(1) if m.groups() else m.group(0)
            yield where, q.strip()


def _rows(path: str, rejects: Rejects) -> Iterator[tuple[str, dict]]:
    yield from iter_rows(path, None, rejects)


def _schema():
    import pyarrow as pa

    return pa.schema([("template_id", pa.string()), ("template", pa.string()),
                      ("compatible_document_description", pa.string()), ("slot_count", pa.int64()),
                      ("query", pa.string()), ("source", pa.string())])


# ------------------------------------------------------------------------------------------------ stage
def run(cfg: DataGenConfig, stage_dir: Path, backend: Callable[[Path], Backend], shard: int | None = None,
        log=print) -> dict:
    t = cfg.templatize
    if t.source == "queries":
        if not t.queries:
            raise FitrainError("templatize.queries is empty: name query files, or set templatize.source=bank")
        n = cfg.query_shards
        work = lambda i, d: _templatize_shard(cfg, i, n, d, backend(d), log)  # noqa: E731
    elif t.source == "bank":
        if not t.bank:
            raise FitrainError("templatize.bank is empty: name template bank files (parquet/jsonl)")
        n = 1
        work = lambda i, d: _bank_shard(cfg, d)  # noqa: E731
    else:
        raise FitrainError(f"templatize.source must be 'queries' or 'bank', got '{t.source}'")
    return run_shards("templatize", stage_dir, n, work, shard, log,
                      on_complete=lambda total: _merge(stage_dir, n, total))


def _templatize_shard(cfg: DataGenConfig, i: int, n: int, out: Path, backend: Backend, log=print) -> StageStats:
    t = cfg.templatize
    stats = StageStats("templatize")
    prompt = load_prompt(t.prompt, {"query"})
    queries = []
    for j, (where, q) in enumerate(iter_queries(t.queries, t.query_column, stats.rejects, t.query_pattern)):
        if t.max_queries and j >= t.max_queries:
            break
        if j % n == i:
            queries.append((where, q))
    stats.inputs = len(queries)
    reqs = (prompt.request("templatize", {"query": q}, t.max_new_tokens, where, query=q) for where, q in queries)
    with stream_parsed(backend, reqs, parse_templatizer, stats.rejects, what="templatizer") as stream, \
            ProgressLog(f"templatize shard {i}", len(queries), cfg.progress_every_s, log, cfg.progress,
                        lambda: stats.rejects.total, lambda: stream.in_flight) as progress, \
            parquet_sink(out / "templates.parquet", _schema()) as write:
        rows = []
        for req, obj in stream:
            progress.update()
            if obj is None:
                continue  # counted by stream_parsed
            row = _validated(obj, req.meta["inputs"]["query"], "query", t.max_slots, stats, req.meta["id"])
            if row:
                rows.append(row)
        check_server_failures(stats, backend, cfg.max_failed_share, f"[templatize] shard {i}")
        write(rows)
    return stats


def _bank_shard(cfg: DataGenConfig, out: Path) -> StageStats:
    t = cfg.templatize
    stats = StageStats("templatize")
    with parquet_sink(out / "templates.parquet", _schema()) as write:
        rows = []
        for path in expand_paths(t.bank):
            for where, rec in _rows(path, stats.rejects):
                stats.inputs += 1
                obj = {"template": rec.get(t.bank_template_column),
                       "compatible_document_description": rec.get(t.bank_description_column)}
                row = _validated(obj, rec.get("query"), str(rec.get("source") or "bank"), t.max_slots, stats, where)
                if row:
                    given = rec.get(t.bank_id_column) if t.bank_id_column else None
                    if given is not None and str(given).strip():
                        row["template_id"] = str(given)
                    rows.append(row)
                if len(rows) >= 4096:
                    write(rows)
                    rows = []
        write(rows)
    return stats


def _validated(obj: dict, query, source: str, max_slots: int, stats: StageStats, where: str) -> dict | None:
    template, desc = obj.get("template"), obj.get("compatible_document_description")
    try:
        slots = validate_template(template, desc, max_slots)
    except TemplateError as e:
        stats.rejects.add(e.reason, where, str(template)[:120])
        return None
    stats.outputs += 1
    return {"template_id": template_id(template), "template": template.strip(),
            "compatible_document_description": desc.strip(), "slot_count": slots,
            "query": query if isinstance(query, str) else None, "source": source}


def _merge(stage_dir: Path, n: int, total: StageStats) -> None:
    """Deduplicate the shards' templates (first occurrence wins, in shard then row order)."""
    seen_text: set[str] = set()
    seen_id: set[str] = set()
    slot_counts: dict[str, int] = {}
    kept = dup = 0
    with parquet_sink(stage_dir / "templates.parquet", _schema()) as write:
        for i in range(n):
            for batch in iter_parquet(shard_dir(stage_dir, i) / "templates.parquet"):
                rows = []
                for r in batch:
                    key = normalize_template(r["template"])
                    if key in seen_text or r["template_id"] in seen_id:
                        dup += 1
                        continue
                    seen_text.add(key)
                    seen_id.add(r["template_id"])
                    slot_counts[str(r["slot_count"])] = slot_counts.get(str(r["slot_count"]), 0) + 1
                    rows.append(r)
                kept += len(rows)
                write(rows)
    if dup:
        total.filtered.add("duplicate_template", n=dup)
    total.outputs = kept
    total.counters["slot_counts"] = dict(sorted(slot_counts.items(), key=lambda kv: int(kv[0])))
    if not kept:
        raise FitrainError(f"templatize produced no valid template ({total.rejects.summary()}); see "
                           f"{stage_dir}/shard-*/stats.json")


def read_templates(stage_dir: Path) -> list[dict]:
    from data_gen.shards import read_parquet_rows, require_done

    require_done(stage_dir, "templatize")
    return read_parquet_rows(stage_dir / "templates.parquet")
