"""The data-generation pipeline: ``run(cfg, stages=None)`` runs the stages in order, shard by shard.

templatize -> index -> match -> instantiate -> judge -> write, under ``RunLayout(cfg.run_dir).data_gen``.
Finished shards are skipped, so a rerun resumes. With ``shard`` (or ``SLURM_ARRAY_TASK_ID``) one array task
runs one document shard of each selected sharded stage; templatize and index are corpus-wide (run them
once, or as their own arrays), and a per-shard stage needs only its own shard of the previous stage.
A JSON report of every stage's statistics is written to ``data_gen/report.json``.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

from data_gen.config import STAGE_DIRS, STAGES, DataGenConfig
from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json, write_json
from fitrain.core.llm import Backend, CachedBackend, LLMConfig, make_backend
from fitrain.core.layout import RunLayout

__all__ = ["DataGenConfig", "run", "plan", "STAGES"]


def _check_stages(stages) -> list[str]:
    chosen = list(STAGES) if not stages else list(stages)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise FitrainError(f"unknown data-gen stage(s) {unknown}; stages are {', '.join(STAGES)}")
    return [s for s in STAGES if s in chosen]


class _Resources:
    """Lazily loaded encoder (shared by index, match and the extractive handlers)."""

    def __init__(self, cfg: DataGenConfig, encoder=None):
        self.cfg = cfg
        self._encoder = encoder

    def encoder(self):
        if self._encoder is None:
            from data_gen.encoder import Encoder

            self._encoder = Encoder(self.cfg.encoder)
        return self._encoder

    def backend_factory(self, llm: LLMConfig) -> Callable[[Path], Backend]:
        def make(shard_out: Path) -> Backend:
            import dataclasses

            cfg = llm if llm.cache or llm.backend == "extractive" else dataclasses.replace(
                llm, cache=str(shard_out / "llm_cache.jsonl"))  # a killed shard keeps the replies it got
            if cfg.backend == "extractive":
                from data_gen.extractive import ExtractiveHandlers

                be: Backend = ExtractiveHandlers(self.encoder()).backend()
                return CachedBackend(be, cfg.cache) if cfg.cache else be
            return make_backend(cfg)
        return make


def _llm_of(cfg: DataGenConfig, stage: str) -> LLMConfig | None:
    return {"templatize": cfg.templatize.llm if cfg.templatize.source == "queries" else None,
            "instantiate": cfg.instantiate.llm, "judge": cfg.judge.llm}.get(stage)


@contextlib.contextmanager
def _stage_llm(cfg: DataGenConfig, stage: str, layout: RunLayout):
    """The stage's LLMConfig, behind a `vllm serve` process when serve.enabled."""
    llm = _llm_of(cfg, stage)
    if llm is None or not cfg.serve.enabled or llm.backend != "openai":
        yield llm
        return
    from data_gen.serve import served

    log = Path(cfg.serve.log) if cfg.serve.log else layout.server_log(stage)
    with served(llm, cfg.serve, log) as pointed:
        yield pointed


def run(cfg: DataGenConfig, stages: list[str] | None = None, shard: int | None = None,
        log: Callable[[str], None] = print, encoder=None) -> dict:
    """Run the selected stages (all by default); returns ``{stage: status}`` with merged statistics.
    ``encoder``: an already loaded data_gen.encoder.Encoder to reuse (it must match ``cfg.encoder``)."""
    from data_gen import index, instantiate, judge, match, templatize, write

    chosen = _check_stages(stages)
    layout = RunLayout.of(cfg.run_dir)
    d = {s: layout.data_gen(STAGE_DIRS[s]) for s in STAGES}
    res = _Resources(cfg, encoder)
    out: dict = {}
    for stage in chosen:
        t0 = time.perf_counter()
        with _stage_llm(cfg, stage, layout) as llm:
            if llm is not None and llm.backend == "openai":
                from fitrain.core.llm import check_reachable

                check_reachable(llm)
            if stage == "templatize":
                status = templatize.run(cfg, d[stage], res.backend_factory(llm) if llm else None, shard, log)
            elif stage == "index":
                status = index.run(cfg, d[stage], d["templatize"], res.encoder, shard, log)
            elif stage == "match":
                _builtin_corpus(cfg, layout, log)
                status = match.run(cfg, d[stage], d["index"], res.encoder, shard, log)
            elif stage == "instantiate":
                status = instantiate.run(cfg, d[stage], d["match"], d["templatize"], res.backend_factory(llm),
                                         shard, log)
            elif stage == "judge":
                status = judge.run(cfg, d[stage], d["instantiate"], d["match"], res.backend_factory(llm), shard, log)
            else:
                status = write.run(cfg, d[stage], d["judge"], d["match"], shard, log)
        status["wall_s"] = round(time.perf_counter() - t0, 3)
        out[stage] = status
    _report(layout)
    return out


def _builtin_corpus(cfg: DataGenConfig, layout: RunLayout, log) -> None:
    """``match.builtin_corpus`` with no documents: write the Python documentation corpus once and use it."""
    if cfg.match.documents or not cfg.match.builtin_corpus:
        return
    try:
        from fitrain.data.corpus import CorpusConfig, write_builtin_corpus
    except ImportError as e:
        raise FitrainError(f"match.builtin_corpus needs fitrain.data.corpus ({e}); name match.documents instead") from None
    out = layout.corpus
    if not (out / "stats.json").is_file():
        stats = write_builtin_corpus(CorpusConfig(max_documents=cfg.match.max_documents), out)
        log(f"[match] built-in corpus: {stats['documents']} documents in {out}")
    cfg.match.documents = [str(out / "documents.jsonl")]
    cfg.match.id_column = cfg.match.id_column or "id"


def _report(layout: RunLayout) -> None:
    """``data_gen/report.json``: the merged statistics of every finished stage."""
    rep = {}
    for stage in STAGES:
        p = layout.data_gen(STAGE_DIRS[stage]) / "stats.json"
        if p.is_file():
            rep[stage] = read_json(p)
    if rep:
        write_json(layout.data_gen_report, rep)


def plan(cfg: DataGenConfig, stages: list[str] | None = None, shard: int | None = None) -> list[dict]:
    """What ``run`` would do, without loading any model: per stage, its shards and which are done."""
    from data_gen.shards import selected_shards, shard_dir
    from fitrain.core.io import is_done

    layout = RunLayout.of(cfg.run_dir)
    rows = []
    for stage in _check_stages(stages):
        sdir = layout.data_gen(STAGE_DIRS[stage])
        if stage == "templatize":
            n = cfg.query_shards if cfg.templatize.source == "queries" else 1
        elif stage == "index":
            n = 1
        else:
            n = cfg.num_shards
        llm = _llm_of(cfg, stage)
        sel = selected_shards(n, shard) if stage not in ("index",) else [0]
        if stage == "index":
            done = [0] if is_done(sdir) else []
        else:
            done = [i for i in range(n) if is_done(shard_dir(sdir, i))]
        rows.append({"stage": stage, "dir": str(sdir), "shards": n, "selected": sel,
                     "done": done, "todo": [i for i in sel if i not in done],
                     "backend": None if llm is None else f"{llm.backend}:{llm.model or '-'}",
                     "stage_done": is_done(sdir),
                     "stats": read_json(sdir / "stats.json") if (sdir / "stats.json").is_file() else None})
    return rows
