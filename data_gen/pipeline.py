"""The data-generation pipeline: ``run(cfg, stages=None)`` runs the stages in order, shard by shard.

templatize -> index -> match -> instantiate -> judge -> write, under ``RunLayout(cfg.run_dir).data_gen``.
Finished shards are skipped, so a rerun resumes. Work is stage-major: with ``task`` (or
``SLURM_ARRAY_TASK_ID``) one array task runs its contiguous range of ``shards_per_task`` document shards
through each selected stage in turn (``shard`` runs exactly one shard); templatize and index are
corpus-wide (run them once, or as their own arrays), and a per-shard stage needs only its own shard of
the previous stage. An LLM stage behind ``serve.enabled`` starts its server once for the whole range, after
the encoder has released its GPU memory. A JSON report of every stage's statistics and of the backend
that made each stage's output is written to ``data_gen/report.json``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from data_gen.config import STAGE_DIRS, STAGES, DataGenConfig
from fitrain.core.errors import FitrainError
from fitrain.core.io import clean_dead_temps, read_json, write_json
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

    def release_encoder(self) -> None:
        """Free the encoder (and its GPU memory) before a model server needs the GPU (vLLM claims
        ``--gpu-memory-utilization`` of it at start and refuses to start when that much is not free)."""
        if self._encoder is None:
            return
        on_gpu = str(getattr(self._encoder, "device", "cpu")).startswith("cuda")
        self._encoder = None
        import gc

        gc.collect()
        if on_gpu:
            import torch

            torch.cuda.empty_cache()

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


def _serves(cfg: DataGenConfig, stage: str) -> bool:
    llm = _llm_of(cfg, stage)
    return llm is not None and cfg.serve.enabled and llm.backend == "openai"


def _stage_llm(cfg: DataGenConfig, stage: str, layout: RunLayout, first_shard: int | None):
    """The stage's LLMConfig (None for a stage without a model), served and checked (data_gen.serve.serving)."""
    from data_gen.serve import serving

    log = Path(cfg.serve.log) if cfg.serve.log else layout.server_log(stage, first_shard)
    return serving(_llm_of(cfg, stage), cfg.serve, log)


DOCUMENT_STAGES = ("match", "instantiate", "judge", "write")


def document_shards(cfg: DataGenConfig, shard: int | None = None, task: int | None = None) -> list[int] | int | None:
    """The document shards one process runs: ``shard`` alone, the range of array ``task`` (default: the
    Slurm array task's), else None (all)."""
    from data_gen.shards import slurm_array_task, task_count, task_shards

    if shard is not None:
        return shard
    task = slurm_array_task() if task is None else task
    if task is None:
        return None
    if task >= task_count(cfg.num_shards, cfg.shards_per_task) and task == slurm_array_task():
        return []  # more array tasks than needed: nothing to do
    return task_shards(cfg.num_shards, cfg.shards_per_task, task)


def run(cfg: DataGenConfig, stages: list[str] | None = None, shard: int | None = None,
        log: Callable[[str], None] = print, encoder=None, task: int | None = None, overwrite: bool = False) -> dict:
    """Run the selected stages (all by default); returns ``{stage: status}`` with merged statistics.
    ``shard``: one document shard; ``task``: the contiguous shards of that array task (shards_per_task);
    ``encoder``: an already loaded data_gen.encoder.Encoder to reuse (it must match ``cfg.encoder``).
    A stage whose finished output was made with other settings is refused unless ``overwrite``
    (data_gen.settings).
    SIGINT/SIGTERM stop it at the next safe point (fitrain.core.stop: exit 3, rerun to resume)."""
    from fitrain.core.stop import graceful_stop

    chosen = _check_stages(stages)
    with graceful_stop("rerun the same data-gen command to resume (finished shards are skipped, replies "
                       "received are cached)"):
        return _run(cfg, chosen, shard, log, encoder, task, overwrite)


def _run(cfg: DataGenConfig, chosen: list[str], shard: int | None, log: Callable[[str], None], encoder,
         task: int | None, overwrite: bool) -> dict:
    from data_gen import index, instantiate, judge, match, templatize, write
    from data_gen.settings import check_stage, stage_settings

    layout = RunLayout.of(cfg.run_dir)
    d = {s: layout.data_gen(STAGE_DIRS[s]) for s in STAGES}
    settings = stage_settings(cfg)
    res = _Resources(cfg, encoder)
    docs = document_shards(cfg, shard, task)
    first = docs if isinstance(docs, int) else (docs[0] if docs else None)
    out: dict = {}
    for stage in chosen:
        clean_dead_temps(d[stage])  # what killed jobs were writing into the stage (its shards: run_shards)
        check_stage(stage, d[stage], settings[stage], overwrite, log)
        t0 = time.perf_counter()
        sel = docs if stage in DOCUMENT_STAGES else shard
        if _serves(cfg, stage):
            res.release_encoder()
        with _stage_llm(cfg, stage, layout, first) as llm:
            if stage == "templatize":
                status = templatize.run(cfg, d[stage], res.backend_factory(llm) if llm else None, sel, log)
            elif stage == "index":
                status = index.run(cfg, d[stage], d["templatize"], res.encoder, sel, log)
            elif stage == "match":
                _builtin_corpus(cfg, layout, log)
                status = match.run(cfg, d[stage], d["index"], res.encoder, sel, log)
            elif stage == "instantiate":
                status = instantiate.run(cfg, d[stage], d["match"], d["templatize"], res.backend_factory(llm),
                                         sel, log)
            elif stage == "judge":
                status = judge.run(cfg, d[stage], d["instantiate"], d["match"], res.backend_factory(llm), sel, log)
            else:
                status = write.run(cfg, d[stage], d["judge"], d["match"], sel, log)
        status["wall_s"] = round(time.perf_counter() - t0, 3)
        out[stage] = status
    _report(cfg, layout)
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


def backends(cfg: DataGenConfig) -> dict[str, str]:
    """Which backend made each stage's output, e.g. ``{"instantiate": "extractive (offline fallback, not an
    LLM)"}``; the report of an experiment names it next to the pairs."""
    out = {}
    for stage in ("templatize", "instantiate", "judge"):
        llm = _llm_of(cfg, stage)
        if llm is None:
            out[stage] = f"template bank {', '.join(cfg.templatize.bank)}"
        elif llm.backend == "extractive":
            out[stage] = "extractive (offline heuristic fallback, not an LLM)"
        else:
            cmd = " ".join([Path(cfg.serve.command[0]).name, *cfg.serve.command[1:]]) if cfg.serve.command else ""
            out[stage] = f"{llm.backend}:{llm.model or '-'}" + (f" ({cmd})" if _serves(cfg, stage) else "")
    return out


def _report(cfg: DataGenConfig, layout: RunLayout) -> None:
    """``data_gen/report.json``: the merged statistics of every finished stage and the backends."""
    rep: dict = {}
    for stage in STAGES:
        p = layout.data_gen(STAGE_DIRS[stage]) / "stats.json"
        if p.is_file():
            rep[stage] = read_json(p)
    if rep:
        rep["backends"] = backends(cfg)
        write_json(layout.data_gen_report, rep)


def plan(cfg: DataGenConfig, stages: list[str] | None = None, shard: int | None = None,
         task: int | None = None) -> list[dict]:
    """What ``run`` would do, without loading any model: per stage, its shards and which are done."""
    from data_gen.shards import selected_shards, shard_dir
    from fitrain.core.io import is_done

    layout = RunLayout.of(cfg.run_dir)
    docs = document_shards(cfg, shard, task)
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
        sel = [0] if stage == "index" else selected_shards(n, docs if stage in DOCUMENT_STAGES else shard)
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
